// IPv4 fragmentation before encapsulation (RFC 791, RFC 4459 section 3):
// an inner IPv4 packet without DF that does not fit the tunnel is split
// into fragments that do, and the destination pod reassembles them. Pure
// code over plain bytes; never reads or writes outside the given buffers.
#pragma once

#include <cstddef>
#include <cstdint>

namespace meshwire::dp::net {

// Fragments needed for the IPv4 packet ip[0..len) so that each is at most
// max_len bytes; 0 if it cannot be fragmented that small (the header alone
// leaves no room for 8 bytes of data, or len is not a valid IPv4 packet).
// 1 means it fits as it is.
size_t ipv4_fragment_count(const uint8_t* ip, size_t len, size_t max_len);

// Writes fragment k (0-based, k < ipv4_fragment_count()) into out: a header
// (all options in the first fragment, only those with the copied flag in
// later ones), offset and MF set relative to the original (which may itself
// be a fragment), a fresh header checksum, and its slice of the payload.
// Returns its length, or 0 if cap is too small or k out of range.
size_t ipv4_build_fragment(const uint8_t* ip, size_t len, size_t max_len, size_t k, uint8_t* out, size_t cap);

}  // namespace meshwire::dp::net
