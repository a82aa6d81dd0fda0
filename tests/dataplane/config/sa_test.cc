#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "config/sa.h"
#include "config_test_util.h"

namespace meshwire::dp {
namespace {

YAML::Node outbound0(YAML::Node& d) { return d["peers"][0]["sas"]["outbound"][0]; }

// --- parse_hex_secret ---

TEST(HexSecretTest, AcceptsPrefixSeparatorsAndCase) {
  const std::vector<uint8_t> expected{0x00, 0x1a, 0xbc, 0xff};
  for (const char* text : {"001abcff", "0x001ABCff", "0X001abcff", "00:1a:bc:ff", "00 1a bc ff", "  0x00:1a bc\tff\n",
                           "\n001a\nbcff\n"}) {
    const auto bytes = parse_hex_secret(text, 4, "");
    ASSERT_TRUE(bytes.ok()) << "'" << text << "': " << bytes.error();
    EXPECT_EQ(*bytes, expected) << text;
  }
}

TEST(HexSecretTest, SaysWhatIsWrongWithoutQuotingTheText) {
  struct Case {
    const char* text;
    size_t size;
    const char* what;
    const char* error;
  };
  const Case cases[] = {
      {"0011223344556677", 16, "for aes-128-gcm", "expected 32 hex digits for aes-128-gcm, got 16"},
      {"deadbee", 4, "", "expected 8 hex digits, got 7"},
      {"deadbeef00", 4, "", "expected 8 hex digits, got 10"},
      {"", 4, "", "expected 8 hex digits, got 0"},
      {"0x", 4, "", "expected 8 hex digits, got 0"},
      {"deadbeeg", 4, "", "character 8 is not a hex digit (allowed: 0-9 a-f A-F, ':' and blanks)"},
      {"dead-beef", 4, "", "character 5 is not a hex digit"},
      {"0x0x00112233", 4, "", "character 4 is not a hex digit"},
  };
  for (const Case& c : cases) {
    const auto bytes = parse_hex_secret(c.text, c.size, c.what);
    ASSERT_FALSE(bytes.ok()) << c.text;
    EXPECT_PRED2(starts_with, bytes.error(), c.error);
  }
}

// --- One SA, through parse_config ---

struct SaErrorCase {
  const char* name;
  Edit edit;
  const char* error;
  friend void PrintTo(const SaErrorCase& c, std::ostream* os) { *os << c.name; }
};

class SaErrorTest : public testing::TestWithParam<SaErrorCase> {};

TEST_P(SaErrorTest, NamesTheFieldAndHidesTheKey) {
  const SaErrorCase& c = GetParam();
  const Result<Config> parsed = parse_edited(c.edit);
  ASSERT_FALSE(parsed.ok()) << "expected: " << c.error;
  EXPECT_PRED2(starts_with, parsed.error(), c.error);
  // No run of 6 key or salt digits from the document may show up.
  YAML::Node doc = YAML::Load(std::string(kMinimal));
  c.edit(doc);
  for (const YAML::Node& peer : doc["peers"]) {
    for (const char* direction : {"outbound", "inbound"}) {
      for (const YAML::Node& sa : peer["sas"][direction]) {
        if (!sa.IsMap()) continue;
        for (const char* field : {"key", "salt"}) {
          if (!sa[field] || !sa[field].IsScalar()) continue;
          const std::string secret = sa[field].Scalar();
          for (size_t i = 0; i + 6 <= secret.size(); ++i) {
            EXPECT_EQ(parsed.error().find(secret.substr(i, 6)), std::string::npos)
                << parsed.error() << " shows part of " << field;
          }
        }
      }
    }
  }
}

// clang-format off
const SaErrorCase kSaErrorCases[] = {
  {"UnknownField", [](YAML::Node& d) { outbound0(d)["keyfile"] = "k"; },
   "peers[0].sas.outbound[0].keyfile: unknown field (did you mean key_file?)"},
  {"NotMapping", [](YAML::Node& d) { d["peers"][0]["sas"]["outbound"][0] = "0x1001"; },
   "peers[0].sas.outbound[0]: expected a mapping of fields, got a scalar"},
  {"SpiMissing", [](YAML::Node& d) { outbound0(d).remove("spi"); }, "peers[0].sas.outbound[0].spi: required field missing"},
  {"SpiReserved", [](YAML::Node& d) { outbound0(d)["spi"] = 255; },
   "peers[0].sas.outbound[0].spi: must be 256..0xffffffff (0..255 are reserved), got 255"},
  {"SpiZeroHex", [](YAML::Node& d) { outbound0(d)["spi"] = "0x0"; }, "peers[0].sas.outbound[0].spi: must be 256..0xffffffff"},
  {"SpiTooLarge", [](YAML::Node& d) { outbound0(d)["spi"] = "0x100000000"; },
   "peers[0].sas.outbound[0].spi: must be 256..0xffffffff (0..255 are reserved), got 0x100000000"},
  {"SpiText", [](YAML::Node& d) { outbound0(d)["spi"] = "spi1"; }, "peers[0].sas.outbound[0].spi: expected an integer, got 'spi1'"},
  {"SpiDuplicateOutbound", [](YAML::Node& d) {
     d["workers"] = 2; YAML::Node sa = YAML::Clone(outbound0(d)); sa["key"] = "00000000000000000000000000000099";
     d["peers"][0]["sas"]["outbound"].push_back(sa); },
   "peers[0].sas.outbound[1].spi: 0x1001 already used by peers[0].sas.outbound[0]"},
  {"SpiDuplicateInbound", [](YAML::Node& d) {
     YAML::Node sa = YAML::Clone(d["peers"][0]["sas"]["inbound"][0]); sa["salt"] = "00000099";
     d["peers"][0]["sas"]["inbound"].push_back(sa); },
   "peers[0].sas.inbound[1].spi: 0x2001 already used by peers[0].sas.inbound[0]"},
  {"AlgorithmUnknown", [](YAML::Node& d) { outbound0(d)["algorithm"] = "aes-128-cbc"; },
   "peers[0].sas.outbound[0].algorithm: must be aes-128-gcm or aes-256-gcm, got 'aes-128-cbc'"},
  {"KeyAndKeyFile", [](YAML::Node& d) { outbound0(d)["key_file"] = "k.key"; },
   "peers[0].sas.outbound[0]: needs exactly one of key and key_file"},
  {"NoKey", [](YAML::Node& d) { outbound0(d).remove("key"); }, "peers[0].sas.outbound[0]: needs exactly one of key and key_file"},
  {"KeyShort", [](YAML::Node& d) { outbound0(d)["key"] = std::string(kKey1.substr(0, 30)); },
   "peers[0].sas.outbound[0].key: expected 32 hex digits for aes-128-gcm, got 30"},
  {"KeyTooShortFor256", [](YAML::Node& d) { outbound0(d)["algorithm"] = "aes-256-gcm"; },
   "peers[0].sas.outbound[0].key: expected 64 hex digits for aes-256-gcm, got 32"},
  {"KeyTooLong", [](YAML::Node& d) { outbound0(d)["key"] = std::string(kKey1) + "ab"; },
   "peers[0].sas.outbound[0].key: expected 32 hex digits for aes-128-gcm, got 34"},
  {"KeyBadDigit", [](YAML::Node& d) { d["peers"][0]["sas"]["inbound"][0]["key"] = "a1a2a3a4a5a6a7a8a9aaabacadaeafbz"; },
   "peers[0].sas.inbound[0].key: character 32 is not a hex digit"},
  {"KeyNotScalar", [](YAML::Node& d) { outbound0(d)["key"] = YAML::Load("[0f1e2d3c4b5a6978]"); },
   "peers[0].sas.outbound[0].key: expected a string, got a list"},
  {"SaltShort", [](YAML::Node& d) { outbound0(d)["salt"] = "c0ffee"; }, "peers[0].sas.outbound[0].salt: expected 8 hex digits, got 6"},
  {"SaltAndSaltFile", [](YAML::Node& d) { outbound0(d)["salt_file"] = "s"; },
   "peers[0].sas.outbound[0]: needs exactly one of salt and salt_file"},
  {"NoSalt", [](YAML::Node& d) { d["peers"][0]["sas"]["inbound"][0].remove("salt"); },
   "peers[0].sas.inbound[0]: needs exactly one of salt and salt_file"},
  {"KeyFileEmptyName", [](YAML::Node& d) { outbound0(d).remove("key"); outbound0(d)["key_file"] = ""; },
   "peers[0].sas.outbound[0].key_file: must not be empty"},
};
// clang-format on

INSTANTIATE_TEST_SUITE_P(Table, SaErrorTest, testing::ValuesIn(kSaErrorCases),
                         [](const testing::TestParamInfo<SaErrorCase>& info) { return info.param.name; });

// --- key_file / salt_file ---

class SaFileTest : public testing::Test {
 protected:
  void SetUp() override {
    char dir_template[] = "/tmp/meshwire-sa-test-XXXXXX";
    ASSERT_NE(mkdtemp(dir_template), nullptr);
    dir_ = dir_template;
    std::filesystem::create_directory(dir_ / "keys");
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  void write(const std::string& name, std::string_view text) { std::ofstream(dir_ / name) << text; }

  // kMinimal with outbound[0]'s key and salt read from these files instead.
  Result<Config> parse_with_files(const std::string& key_file, const std::string& salt_file) {
    return parse_edited(
        [&](YAML::Node& d) {
          YAML::Node sa = outbound0(d);
          sa.remove("key");
          sa.remove("salt");
          sa["key_file"] = key_file;
          sa["salt_file"] = salt_file;
        },
        dir_.string());
  }

  std::filesystem::path dir_;
};

TEST_F(SaFileTest, ResolvesRelativeToBaseDirAndAcceptsAbsolute) {
  write("keys/n1-n2.key", "0x" + std::string(kKey1) + "\n");
  write("keys/n1-n2.salt", "c0:ff:ee:01\n");
  const Result<Config> relative = parse_with_files("keys/n1-n2.key", "keys/n1-n2.salt");
  ASSERT_TRUE(relative.ok()) << relative.error();
  const Result<Config> inline_keys = parse_config(kMinimal, "");
  ASSERT_TRUE(inline_keys.ok());
  EXPECT_EQ(relative->peers[0].outbound[0].key, inline_keys->peers[0].outbound[0].key);
  EXPECT_EQ(relative->peers[0].outbound[0].salt, inline_keys->peers[0].outbound[0].salt);

  const Result<Config> absolute =
      parse_with_files((dir_ / "keys/n1-n2.key").string(), (dir_ / "keys/n1-n2.salt").string());
  ASSERT_TRUE(absolute.ok()) << absolute.error();
  EXPECT_EQ(absolute->peers[0].outbound[0].key, inline_keys->peers[0].outbound[0].key);
}

TEST_F(SaFileTest, MissingFileNamesFieldAndPath) {
  write("keys/n1-n2.key", kKey1);
  const Result<Config> parsed = parse_with_files("keys/n1-n2.key", "keys/absent.salt");
  ASSERT_FALSE(parsed.ok());
  EXPECT_EQ(parsed.error(), "peers[0].sas.outbound[0].salt_file: cannot read " + (dir_ / "keys/absent.salt").string() +
                                ": No such file or directory");
}

TEST_F(SaFileTest, DirectoryIsNotAKeyFile) {
  write("s", kSalt1);
  const Result<Config> parsed = parse_with_files("keys", "s");
  ASSERT_FALSE(parsed.ok());
  EXPECT_PRED2(starts_with, parsed.error(), "peers[0].sas.outbound[0].key_file: cannot read " + (dir_ / "keys").string());
}

TEST_F(SaFileTest, UnreadableFileNamesFieldAndPath) {
  write("k", kKey1);
  write("s", kSalt1);
  ASSERT_EQ(chmod((dir_ / "k").c_str(), 0), 0);
  // Root reads any file: parse in a child that runs as nobody.
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    close(fds[0]);
    if (geteuid() == 0 && (chmod(dir_.c_str(), 0755) != 0 || setgid(65534) != 0 || setuid(65534) != 0)) _exit(2);
    const Result<Config> parsed = parse_with_files("k", "s");
    const std::string out = parsed.ok() ? std::string("ok") : parsed.error();
    const ssize_t w = ::write(fds[1], out.data(), out.size());
    _exit(w == static_cast<ssize_t>(out.size()) ? 0 : 3);
  }
  close(fds[1]);
  std::string got;
  char buf[512];
  for (ssize_t r; (r = read(fds[0], buf, sizeof(buf))) > 0;) got.append(buf, static_cast<size_t>(r));
  close(fds[0]);
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "child status " << status;
  EXPECT_EQ(got, "peers[0].sas.outbound[0].key_file: cannot read " + (dir_ / "k").string() + ": Permission denied");
}

TEST_F(SaFileTest, BadContentNamesPathButNotContent) {
  write("k", kKey1.substr(0, 30));
  write("s", kSalt1);
  const Result<Config> parsed = parse_with_files("k", "s");
  ASSERT_FALSE(parsed.ok());
  EXPECT_EQ(parsed.error(), "peers[0].sas.outbound[0].key_file: " + (dir_ / "k").string() +
                                ": expected 32 hex digits for aes-128-gcm, got 30");
}

TEST_F(SaFileTest, RejectsOversizedFile) {
  write("k", std::string(5000, 'a'));
  write("s", kSalt1);
  const Result<Config> parsed = parse_with_files("k", "s");
  ASSERT_FALSE(parsed.ok());
  EXPECT_EQ(parsed.error(), "peers[0].sas.outbound[0].key_file: " + (dir_ / "k").string() +
                                ": larger than 4096 bytes, not a key file");
}

}  // namespace
}  // namespace meshwire::dp
