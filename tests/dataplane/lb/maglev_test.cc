// Weighted Maglev: table sizes, even and weighted spread, the same table
// whatever the backends' order, and little disruption when one backend comes
// or goes.
#include "lb/maglev.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <random>
#include <string>

namespace meshwire::dp::lb {
namespace {

std::vector<std::string> keys(size_t n, size_t first = 0) {
  std::vector<std::string> out;
  for (size_t i = first; i < first + n; ++i) {
    out.push_back("10." + std::to_string(1 + i / 65536) + "." + std::to_string(i / 256 % 256) + "." +
                  std::to_string(i % 256) + ":8080");
  }
  return out;
}

std::vector<MaglevBackend> backends(const std::vector<std::string>& k, uint32_t weight = 1) {
  std::vector<MaglevBackend> out;
  for (const std::string& s : k) out.push_back({s, weight});
  return out;
}

// Slot -> backend key, to compare tables built from different lists.
std::vector<std::string> owners(const std::vector<uint16_t>& table, const std::vector<MaglevBackend>& b) {
  std::vector<std::string> out;
  for (uint16_t i : table) out.push_back(i == kNoBackend ? "" : std::string(b[i].key));
  return out;
}

bool is_prime(uint32_t n) {
  for (uint32_t d = 2; d * d <= n; ++d) {
    if (n % d == 0) return false;
  }
  return n > 1;
}

TEST(Maglev, TableSizeIsAPrimeOverAHundredSlotsPerBackend) {
  EXPECT_EQ(maglev_table_size(0), 251u);
  EXPECT_EQ(maglev_table_size(1), 251u);
  for (size_t n : {2, 3, 10, 100, 500}) {
    const uint32_t m = maglev_table_size(n);
    EXPECT_TRUE(is_prime(m)) << m;
    EXPECT_GE(m, 128 * n);
    EXPECT_LT(m, 128 * n + 200) << "the smallest such prime";
  }
}

TEST(Maglev, TheHashIsTheDocumentedOne) {
  // Values from an independent implementation (Python) of FNV-1a 64 with
  // offset basis ^ seed * golden ratio, then splitmix64's finaliser.
  EXPECT_EQ(maglev_hash("", 1), 0x1090a5ec3e8490fbull);
  EXPECT_EQ(maglev_hash("10.1.0.5:8080", 1), 0x1227c4c365410c61ull);
  EXPECT_EQ(maglev_hash("10.1.0.5:8080", 2), 0x53f4ef6cc486b669ull);
  EXPECT_EQ(maglev_hash("10.1.0.5:8080", 3), 0x0e7206ed2f16a9bdull);
}

TEST(Maglev, EqualWeightsGetSharesWithinOneSlot) {
  for (size_t n : {1, 2, 3, 7, 64, 300}) {
    const auto k = keys(n);
    const auto b = backends(k);
    const auto table = maglev_build(b);
    ASSERT_EQ(table.size(), maglev_table_size(n));
    std::vector<uint32_t> count(n);
    for (uint16_t i : table) {
      ASSERT_LT(i, n);
      ++count[i];
    }
    const auto [lo, hi] = std::minmax_element(count.begin(), count.end());
    EXPECT_LE(*hi - *lo, 1u) << n << " backends";
  }
}

TEST(Maglev, WeightsGiveProportionalShares) {
  const auto k = keys(3);
  std::vector<MaglevBackend> b = {{k[0], 1}, {k[1], 2}, {k[2], 5}};
  const auto table = maglev_build(b, 10007);
  std::vector<double> count(3);
  for (uint16_t i : table) ++count[i];
  EXPECT_NEAR(count[0] / table.size(), 1.0 / 8, 0.002);
  EXPECT_NEAR(count[1] / table.size(), 2.0 / 8, 0.002);
  EXPECT_NEAR(count[2] / table.size(), 5.0 / 8, 0.002);
}

TEST(Maglev, ZeroWeightGetsNothingAndNoWeightAtAllFillsNothing) {
  const auto k = keys(3);
  std::vector<MaglevBackend> b = {{k[0], 1}, {k[1], 0}, {k[2], 1}};
  for (uint16_t i : maglev_build(b)) EXPECT_NE(i, 1);
  std::vector<MaglevBackend> none = {{k[0], 0}};
  for (uint16_t i : maglev_build(none)) EXPECT_EQ(i, kNoBackend);
  for (uint16_t i : maglev_build({})) EXPECT_EQ(i, kNoBackend);
}

TEST(Maglev, TheSameTableWhateverTheBackendsOrder) {
  const auto k = keys(50);
  auto b = backends(k);
  const auto first = owners(maglev_build(b), b);
  std::mt19937 rng(7);
  std::shuffle(b.begin(), b.end(), rng);
  EXPECT_EQ(owners(maglev_build(b), b), first);  // what every node builds
}

TEST(Maglev, OneBackendLessMovesFewFlowsOfTheOthers) {
  for (size_t n : {10, 100}) {
    const auto k = keys(n);
    const auto all = backends(k);
    const auto before = owners(maglev_build(all), all);
    auto fewer = all;
    const std::string gone(fewer[n / 2].key);
    fewer.erase(fewer.begin() + static_cast<long>(n / 2));
    // The same table size, as a rebuild for a changed backend set keeps it
    // while the count stays in its range.
    const auto after = owners(maglev_build(fewer, static_cast<uint32_t>(before.size())), fewer);
    size_t others = 0, moved = 0;
    for (size_t s = 0; s < before.size(); ++s) {
      if (before[s] == gone) {
        EXPECT_NE(after[s], gone);
        continue;
      }
      ++others;
      moved += before[s] != after[s];
    }
    // Its flows are spread over the rest; of the others' flows, a few per
    // cent move (the paper's figure for tables ~100x the backends).
    EXPECT_LT(static_cast<double>(moved) / others, 0.03) << n << " backends: " << moved << " of " << others;
    RecordProperty("moved_of_others_" + std::to_string(n), std::to_string(moved) + "/" + std::to_string(others));
    // ... and adding it back restores the table exactly.
    EXPECT_EQ(owners(maglev_build(all, static_cast<uint32_t>(before.size())), all), before);
  }
}

TEST(Maglev, OneBackendMoreTakesItsShareMostlyFromEveryone) {
  const auto k = keys(21);
  const std::vector<std::string> k20(k.begin(), k.begin() + 20);
  const auto b20 = backends(k20);
  const auto b21 = backends(k);
  const uint32_t m = maglev_table_size(21);
  const auto before = owners(maglev_build(b20, m), b20);
  const auto after = owners(maglev_build(b21, m), b21);
  size_t to_new = 0, reshuffled = 0;
  for (size_t s = 0; s < m; ++s) {
    if (after[s] == k[20]) ++to_new;
    else if (after[s] != before[s]) ++reshuffled;
  }
  EXPECT_NEAR(static_cast<double>(to_new) / m, 1.0 / 21, 0.002);
  EXPECT_LT(static_cast<double>(reshuffled) / m, 0.03);
}

}  // namespace
}  // namespace meshwire::dp::lb
