// Turns a capture's copies (capture/tap.h) into a pcapng file, with DPDK's
// librte_pcapng: a section header and one interface block per DPDK port
// first, then an enhanced packet block per copy (the port as interface,
// the worker as queue, rx/post-decrypt inbound, tx/pre-encrypt outbound),
// and interface statistics at the end. The file is kept in memory
// (memfd) and handed out in pieces that end on block boundaries, so that
// whatever prefix of them reaches the reader is a valid file.
//
// Inner packets (pre-encrypt, post-decrypt) have no link header of their
// own: each gets a synthetic Ethernet header (zero addresses, EtherType of
// its IP version), so that every interface of the file is Ethernet.
//
// Threading: one thread at a time; the pool's mbufs may be allocated from
// any thread.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include <rte_mbuf.h>
#include <rte_mempool.h>

#include <meshwire/dp/result.h>

#include "capture/tap.h"

struct rte_pcapng;

namespace meshwire::dp::capture {

class PcapngWriter {
 public:
  // port_ids[i]: the DPDK port id of port index i. pool: where the blocks
  // are made (the capture's). comment goes in the section header.
  static Result<std::unique_ptr<PcapngWriter>> open(Point point, std::vector<uint16_t> port_ids, rte_mempool* pool,
                                                    const std::string& comment);
  ~PcapngWriter();
  PcapngWriter(const PcapngWriter&) = delete;
  PcapngWriter& operator=(const PcapngWriter&) = delete;

  // Writes copies[0..n) (and frees them); returns how many went into the
  // file (the others found no mbuf for their block: counted in lost()).
  unsigned write(rte_mbuf** copies, unsigned n);
  // An interface statistics block for port index i (at the end).
  void write_stats(uint16_t port_index, uint64_t received, uint64_t dropped, const std::string& comment);
  // The bytes written since the last call: whole blocks.
  Result<std::string> take();

  uint64_t written() const { return written_; }
  uint64_t lost() const { return lost_; }

 private:
  PcapngWriter() = default;
  // Wall-clock nanoseconds of a TSC reading.
  uint64_t ns_of(uint64_t tsc) const;
  Point point_ = Point::kRx;
  std::vector<uint16_t> port_ids_;
  rte_mempool* pool_ = nullptr;
  int fd_ = -1;
  rte_pcapng* pcapng_ = nullptr;  // owns fd_
  uint64_t tsc0_ = 0, ns0_ = 0, hz_ = 1;  // a TSC reading and the wall clock then
  uint64_t written_ = 0;
  uint64_t lost_ = 0;
};

}  // namespace meshwire::dp::capture
