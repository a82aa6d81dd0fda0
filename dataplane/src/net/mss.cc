#include "net/mss.h"

#include "net/checksum.h"

namespace meshwire::dp::net {
namespace {

constexpr uint8_t kTcpOptEol = 0;
constexpr uint8_t kTcpOptNop = 1;
constexpr uint8_t kTcpOptMss = 2;
constexpr uint8_t kTcpFlagSyn = 0x02;

// Writes value at tcp[off..off+2) and folds the change into the checksum at
// tcp[16..18). The checksum works on 16-bit words at even offsets from the
// start of the segment, so a value at an odd offset changes two words.
void rewrite_be16(uint8_t* tcp, size_t off, uint16_t value) {
  const size_t first = off & ~static_cast<size_t>(1);
  const size_t words = (off & 1) != 0 ? 2 : 1;
  uint16_t old_words[2];
  for (size_t i = 0; i < words; ++i) old_words[i] = load_be16(tcp + first + 2 * i);
  store_be16(tcp + off, value);
  uint16_t csum = load_be16(tcp + 16);
  for (size_t i = 0; i < words; ++i) csum = checksum_adjust16(csum, old_words[i], load_be16(tcp + first + 2 * i));
  store_be16(tcp + 16, csum);
}

}  // namespace

bool clamp_tcp_mss(uint8_t* ip_packet, size_t len, const PacketInfo& info, uint16_t max_mss) {
  if (ip_packet == nullptr || !info_fits(info, len)) return false;
  if (info.l4_proto != kProtoTcp || !info.has_l4 || info.later_fragment) return false;
  if (info.l4_len < kTcpHdrLen) return false;
  uint8_t* tcp = ip_packet + info.l4_offset;
  if ((tcp[13] & kTcpFlagSyn) == 0) return false;
  const size_t hdr_len = static_cast<size_t>(tcp[12] >> 4) * 4;
  if (hdr_len < kTcpHdrLen || hdr_len > info.l4_len) return false;

  bool changed = false;
  size_t pos = kTcpHdrLen;
  while (pos < hdr_len) {
    const uint8_t kind = tcp[pos];
    if (kind == kTcpOptEol) break;
    if (kind == kTcpOptNop) {
      ++pos;
      continue;
    }
    if (hdr_len - pos < 2) break;
    const size_t opt_len = tcp[pos + 1];
    if (opt_len < 2 || opt_len > hdr_len - pos) break;
    if (kind == kTcpOptMss && opt_len == 4 && load_be16(tcp + pos + 2) > max_mss) {
      rewrite_be16(tcp, pos + 2, max_mss);
      changed = true;
    }
    pos += opt_len;
  }
  return changed;
}

}  // namespace meshwire::dp::net
