#!/usr/bin/python3
"""Golden vectors for nat_test.cc, from Scapy (an implementation independent
of meshwire's): each vector is an IP packet before and after a NAT rewrite,
both built whole by Scapy with every checksum (IPv4 header, TCP/UDP, SCTP
CRC32c, ICMP/ICMPv6) computed from scratch. nat_test.cc applies the rewrite
to the first and expects the second, byte for byte.

For ICMP errors, the quote is cut from the original packet (whole, with
correct checksums) and from the same packet after the rewrite: the quoted
TCP/UDP checksum is then that of the whole rewritten packet, which is what
an incremental update of the quote gives.

Run with Debian's python3 (python3-scapy) and paste the output into
nat_test.cc (kGolden):
    /usr/bin/python3 tests/dataplane/net/nat_vectors.py
"""
from scapy.all import IP, IPv6, TCP, UDP, ICMP, Raw, raw
from scapy.layers.inet6 import ICMPv6PacketTooBig, ICMPv6DestUnreach
from scapy.layers.sctp import SCTP, SCTPChunkData, SCTPChunkInit, crc32c

CLIENT4, VIP4, BACKEND4, ROUTER4 = "10.244.1.7", "10.96.0.20", "10.244.2.9", "10.244.0.1"
CLIENT6, VIP6, BACKEND6 = "fd00:10:244:1::7", "fd00:96::20", "fd00:10:244:2::9"


def vector(name, call, before, after):
    b, a = raw(before), raw(after)
    assert len(a) == len(b)
    print('    {"%s", %s,\n     "%s",\n     "%s"},' % (name, call, b.hex(), a.hex()))


def icmp4_error(outer_src, outer_dst, icmp, orig, quote_len):
    return IP(src=outer_src, dst=outer_dst, id=77) / icmp / Raw(raw(orig)[:quote_len])


def icmp6_error(outer_src, outer_dst, icmp, orig, quote_len):
    return IPv6(src=outer_src, dst=outer_dst) / icmp / Raw(raw(orig)[:quote_len])


def main():
    # The RFC 9260 appendix A / iSCSI check value, as Scapy's SCTP layer
    # computes it (byte-swapped: the order it goes on the wire in).
    assert crc32c(b"123456789") == 0x839206E3

    data = SCTPChunkData(tsn=1, stream_id=0, stream_seq=0, proto_id=46, data=b"hello sctp, odd length")
    vector("SCTP/IPv4 dst", "kDst, BACKEND4, 3869",
           IP(src=CLIENT4, dst=VIP4, id=1) / SCTP(sport=40000, dport=3868, tag=0x1234ABCD) / data,
           IP(src=CLIENT4, dst=BACKEND4, id=1) / SCTP(sport=40000, dport=3869, tag=0x1234ABCD) / data)
    init = SCTPChunkInit(init_tag=0xA1B2C3D4, a_rwnd=106496, n_out_streams=10, n_in_streams=65535, init_tsn=7)
    vector("SCTP/IPv6 src", "kSrc, VIP6, 3868",
           IPv6(src=BACKEND6, dst=CLIENT6) / SCTP(sport=3869, dport=40000, tag=0) / init,
           IPv6(src=VIP6, dst=CLIENT6) / SCTP(sport=3868, dport=40000, tag=0) / init)

    syn = dict(flags="S", seq=123456789, window=64800, options=[("MSS", 1440), ("SAckOK", b""), ("WScale", 7)])
    vector("TCP/IPv6 dst", "kDst, BACKEND6, 8080",
           IPv6(src=CLIENT6, dst=VIP6, fl=0x12345) / TCP(sport=51000, dport=80, **syn),
           IPv6(src=CLIENT6, dst=BACKEND6, fl=0x12345) / TCP(sport=51000, dport=8080, **syn))
    vector("TCP/IPv4 src", "kSrc, VIP4, 80",
           IP(src=BACKEND4, dst=CLIENT4, id=9, flags="DF") / TCP(sport=8080, dport=51000, flags="PA", seq=7,
                                                                  ack=9) / Raw(b"HTTP/1.1 200 OK\r\n"),
           IP(src=VIP4, dst=CLIENT4, id=9, flags="DF") / TCP(sport=80, dport=51000, flags="PA", seq=7,
                                                              ack=9) / Raw(b"HTTP/1.1 200 OK\r\n"))
    vector("UDP/IPv6 dst", "kDst, BACKEND6, 5353",
           IPv6(src=CLIENT6, dst=VIP6) / UDP(sport=33333, dport=53) / Raw(b"\x12\x34\x01\x00dns?"),
           IPv6(src=CLIENT6, dst=BACKEND6) / UDP(sport=33333, dport=5353) / Raw(b"\x12\x34\x01\x00dns?"))

    # A router on the way tells the client that client -> backend needs
    # fragmenting: the quoted destination becomes VIP:port again, the outer
    # header stays. The quote holds the whole TCP header (its checksum too).
    fwd = IP(src=CLIENT4, dst=BACKEND4, id=5, flags="DF") / TCP(sport=51000, dport=8080, flags="A") / Raw(b"x" * 8)
    fwd_as_sent = IP(src=CLIENT4, dst=VIP4, id=5, flags="DF") / TCP(sport=51000, dport=80, flags="A") / Raw(b"x" * 8)
    vector("ICMP frag needed quoting TCP/IPv4", "kInnerDst, VIP4, 80",
           icmp4_error(ROUTER4, CLIENT4, ICMP(type=3, code=4, nexthopmtu=1400), fwd, 48),
           icmp4_error(ROUTER4, CLIENT4, ICMP(type=3, code=4, nexthopmtu=1400), fwd_as_sent, 48))
    # The backend itself says port unreachable: quoted UDP (8 bytes only) and
    # the outer source, rewritten in two calls.
    udp = IP(src=CLIENT4, dst=BACKEND4, id=6) / UDP(sport=33333, dport=5353) / Raw(b"query")
    udp_as_sent = IP(src=CLIENT4, dst=VIP4, id=6) / UDP(sport=33333, dport=53) / Raw(b"query")
    vector("ICMP port unreachable from the backend quoting UDP/IPv4", "kInnerDstAndOuterSrc, VIP4, 53",
           icmp4_error(BACKEND4, CLIENT4, ICMP(type=3, code=3), udp, 28),
           icmp4_error(VIP4, CLIENT4, ICMP(type=3, code=3), udp_as_sent, 28))
    fwd6 = IPv6(src=CLIENT6, dst=BACKEND6) / TCP(sport=51000, dport=8080, flags="A") / Raw(b"y" * 1200)
    fwd6_as_sent = IPv6(src=CLIENT6, dst=VIP6) / TCP(sport=51000, dport=80, flags="A") / Raw(b"y" * 1200)
    vector("ICMPv6 packet too big from the backend quoting TCP/IPv6", "kInnerDstAndOuterSrc, VIP6, 80",
           icmp6_error(BACKEND6, CLIENT6, ICMPv6PacketTooBig(mtu=1280), fwd6, 64),
           icmp6_error(VIP6, CLIENT6, ICMPv6PacketTooBig(mtu=1280), fwd6_as_sent, 64))
    # Only 8 bytes of TCP quoted: no TCP checksum to fix.
    vector("ICMPv6 unreachable quoting 8 bytes of TCP/IPv6", "kInnerDst, VIP6, 80",
           icmp6_error(CLIENT6, CLIENT6, ICMPv6DestUnreach(code=3), fwd6, 48),
           icmp6_error(CLIENT6, CLIENT6, ICMPv6DestUnreach(code=3), fwd6_as_sent, 48))


if __name__ == "__main__":
    main()
