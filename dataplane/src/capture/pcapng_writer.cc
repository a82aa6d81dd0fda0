// librte_pcapng is experimental in DPDK 22.11.
#define ALLOW_EXPERIMENTAL_API 1
#include "capture/pcapng_writer.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>
#include <ctime>
#include <cstring>

#include <rte_byteorder.h>
#include <rte_cycles.h>
#include <rte_errno.h>
#include <rte_ether.h>
#include <rte_pcapng.h>

namespace meshwire::dp::capture {
namespace {

// Offsets in an enhanced packet block (pcapng, draft-ietf-opsawg-pcapng
// section 4.3) and an interface statistics block (4.6) of what is set again
// here: the original length (the copy was cut to snaplen before
// rte_pcapng_copy() saw it) and the timestamps (22.11's TSC-to-time
// conversion overflows a few seconds after the process started: the
// files would say the 23rd century).
constexpr size_t kEpbOriginalLength = 24;
constexpr size_t kTimestampHigh = 12;  // then the low half; the same in both blocks

void set_timestamp(uint8_t* block, uint64_t ns) {
  const uint32_t hi = static_cast<uint32_t>(ns >> 32), lo = static_cast<uint32_t>(ns);
  std::memcpy(block + kTimestampHigh, &hi, 4);
  std::memcpy(block + kTimestampHigh + 4, &lo, 4);
}

// Gives an inner IP packet a synthetic Ethernet header.
bool add_ethernet(rte_mbuf* m) {
  if (m->data_len == 0) return false;
  const uint8_t version = rte_pktmbuf_mtod(m, const uint8_t*)[0] >> 4;
  auto* eth = reinterpret_cast<rte_ether_hdr*>(rte_pktmbuf_prepend(m, sizeof(rte_ether_hdr)));
  if (eth == nullptr) return false;
  std::memset(eth, 0, 2 * RTE_ETHER_ADDR_LEN);
  eth->ether_type = rte_cpu_to_be_16(version == 6 ? RTE_ETHER_TYPE_IPV6 : RTE_ETHER_TYPE_IPV4);
  return true;
}

}  // namespace

Result<std::unique_ptr<PcapngWriter>> PcapngWriter::open(Point point, std::vector<uint16_t> port_ids,
                                                         rte_mempool* pool, const std::string& comment) {
  std::unique_ptr<PcapngWriter> w(new PcapngWriter());
  w->point_ = point;
  w->port_ids_ = std::move(port_ids);
  w->pool_ = pool;
  timespec now{};
  w->tsc0_ = rte_rdtsc();
  clock_gettime(CLOCK_REALTIME, &now);
  w->ns0_ = static_cast<uint64_t>(now.tv_sec) * 1000000000u + static_cast<uint64_t>(now.tv_nsec);
  w->hz_ = rte_get_tsc_hz();
  w->fd_ = memfd_create("meshwire-capture", MFD_CLOEXEC);
  if (w->fd_ < 0) return make_error(std::string("capture file: memfd_create: ") + std::strerror(errno));
  w->pcapng_ = rte_pcapng_fdopen(w->fd_, nullptr, nullptr, "meshwire-dataplane", comment.c_str());
  if (w->pcapng_ == nullptr) {
    ::close(w->fd_);
    w->fd_ = -1;
    return make_error(std::string("capture file: rte_pcapng_fdopen: ") + rte_strerror(rte_errno));
  }
  return w;
}

PcapngWriter::~PcapngWriter() {
  if (pcapng_) rte_pcapng_close(pcapng_);  // closes fd_
}

unsigned PcapngWriter::write(rte_mbuf** copies, unsigned n) {
  constexpr unsigned kBatch = 64;
  const bool inner = is_inner(point_);
  const auto direction = point_ == Point::kRx || point_ == Point::kPostDecrypt ? RTE_PCAPNG_DIRECTION_IN
                                                                               : RTE_PCAPNG_DIRECTION_OUT;
  unsigned done = 0;
  for (unsigned base = 0; base < n; base += kBatch) {
    const unsigned k = n - base < kBatch ? n - base : kBatch;
    rte_mbuf* blocks[kBatch];
    uint16_t nb = 0;
    for (unsigned i = 0; i < k; ++i) {
      rte_mbuf* c = copies[base + i];
      const CopyMeta meta = *meta_of(c);
      rte_mbuf* b = nullptr;
      if ((!inner || add_ethernet(c)) && meta.port_index < port_ids_.size()) {
        b = rte_pcapng_copy(port_ids_[meta.port_index], meta.worker, c, pool_, UINT32_MAX, meta.tsc, direction);
      }
      rte_pktmbuf_free(c);
      if (b == nullptr) {
        ++lost_;
        continue;
      }
      const uint32_t orig = meta.orig_len + (inner ? RTE_ETHER_HDR_LEN : 0);
      std::memcpy(rte_pktmbuf_mtod_offset(b, uint8_t*, kEpbOriginalLength), &orig, sizeof(orig));
      set_timestamp(rte_pktmbuf_mtod(b, uint8_t*), ns_of(meta.tsc));
      blocks[nb++] = b;
    }
    if (nb == 0) continue;
    if (rte_pcapng_write_packets(pcapng_, blocks, nb) < 0) {
      lost_ += nb;
    } else {
      written_ += nb;
      done += nb;
    }
    rte_pktmbuf_free_bulk(blocks, nb);  // 22.11 leaves them to the caller
  }
  return done;
}

void PcapngWriter::write_stats(uint16_t port_index, uint64_t received, uint64_t dropped, const std::string& comment) {
  if (port_index >= port_ids_.size()) return;
  const off_t at = ::lseek(fd_, 0, SEEK_CUR);
  if (at < 0 || rte_pcapng_write_stats(pcapng_, port_ids_[port_index], comment.empty() ? nullptr : comment.c_str(), 0,
                                       0, received, dropped) < 0) {
    return;
  }
  uint8_t head[kTimestampHigh + 8];
  if (::pread(fd_, head, sizeof(head), at) != static_cast<ssize_t>(sizeof(head))) return;
  set_timestamp(head, ns_of(rte_rdtsc()));
  (void)!::pwrite(fd_, head, sizeof(head), at);
}

uint64_t PcapngWriter::ns_of(uint64_t tsc) const {
  const __int128 delta = static_cast<__int128>(static_cast<int64_t>(tsc - tsc0_)) * 1000000000 / hz_;
  return static_cast<uint64_t>(static_cast<__int128>(ns0_) + delta);
}

Result<std::string> PcapngWriter::take() {
  const off_t end = ::lseek(fd_, 0, SEEK_CUR);
  if (end < 0) return make_error(std::string("capture file: lseek: ") + std::strerror(errno));
  std::string out(static_cast<size_t>(end), '\0');
  size_t got = 0;
  while (got < out.size()) {
    const ssize_t r = ::pread(fd_, out.data() + got, out.size() - got, static_cast<off_t>(got));
    if (r <= 0) return make_error(std::string("capture file: pread: ") + (r == 0 ? "short" : std::strerror(errno)));
    got += static_cast<size_t>(r);
  }
  if (::ftruncate(fd_, 0) != 0 || ::lseek(fd_, 0, SEEK_SET) != 0) {
    return make_error(std::string("capture file: reset: ") + std::strerror(errno));
  }
  return out;
}

}  // namespace meshwire::dp::capture
