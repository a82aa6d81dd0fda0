"""What meshwire puts on the fabric, checked against independent ESP
implementations: Scapy (decrypts and verifies the ICV with ESN) and tshark
(decodes the layout and plaintext). And the other way round: packets Scapy
encrypts are accepted and delivered by the data plane."""
import struct
import subprocess
from collections import defaultdict

import pytest
from scapy.layers.inet import ICMP, IP, UDP
from scapy.layers.inet6 import ICMPv6EchoReply, ICMPv6EchoRequest, IPv6
from scapy.layers.ipsec import ESP
from scapy.layers.l2 import ARP
from scapy.utils import rdpcap

import meshwire_topology as topo

MARK = b"meshwire"                        # ping payload pattern, found again after decryption
ND_TYPES = {133, 134, 135, 136, 137}      # RS, RA, NS, NA, redirect
PINGS = 4


def is_nd(frame) -> bool:
    return IPv6 in frame and frame[IPv6].nh == 58 and getattr(frame[IPv6].payload, "type", None) in ND_TYPES


class Wire:
    def __init__(self, cluster, pcap, a, b):
        self.cluster = cluster
        self.pcap = pcap
        self.frames = rdpcap(str(pcap))
        self.a, self.b = a, b
        n1, n2 = cluster.node("node1"), cluster.node("node2")
        # (outer source, SPI) -> (SA, outer destination), as a receiver looks SAs up.
        self.sas = {}
        for sender, receiver in ((n1, n2), (n2, n1)):
            for sa in sender.outbound[receiver.name]:
                self.sas[(sender.tunnel_address, sa.spi)] = (sa, receiver.tunnel_address)

    def esp_frames(self):
        for frame in self.frames:
            if ESP in frame:
                yield frame

    def outer(self, frame):
        return frame[IPv6] if IPv6 in frame and IP not in frame else frame[IP]

    def decrypt(self, frame):
        """The inner packet (ICV verified by Scapy, ESN high bits 0)."""
        outer = self.outer(frame)
        sa, dst = self.sas[(outer.src, frame[ESP].spi)]
        return sa.scapy(outer.src, dst, frame[UDP].sport).decrypt(outer.copy())


@pytest.fixture(scope="module")
def wire(cluster, node1, node2):
    a, b = node1.pods[0], node2.pods[0]
    pattern = MARK.hex()
    with cluster.fabric_capture("esp-wire") as pcap:
        for family in (4, 6):
            done = cluster.ping(a, b, family, count=PINGS, extra=["-p", pattern])
            assert done.returncode == 0, f"ping -{family} failed:\n{done.stdout}{done.stderr}"
    return Wire(cluster, pcap, a, b)


def test_fabric_carries_only_esp_in_udp_4500(wire):
    offenders = []
    for i, frame in enumerate(wire.frames):
        if ARP in frame:
            continue
        if is_nd(frame):
            continue
        if IP not in frame and IPv6 not in frame:
            offenders.append(f"#{i} non-IP: {frame.summary()}")
            continue
        if not (UDP in frame and frame[UDP].dport == 4500 and ESP in frame):
            offenders.append(f"#{i} {frame.summary()}")
    assert not offenders, "plaintext on the fabric:\n" + "\n".join(offenders[:20])
    # Echo requests and replies, IPv4 and IPv6.
    assert len(list(wire.esp_frames())) >= 4 * PINGS


def test_scapy_decrypts_and_finds_the_inner_echo(wire):
    seen = set()
    for frame in wire.esp_frames():
        esp = frame[ESP]
        assert struct.unpack("!Q", esp.data[:8])[0] == esp.seq, \
            f"IV must be the 64-bit sequence number (seq-hi 0): seq {esp.seq}, IV {esp.data[:8].hex()}"
        inner = wire.decrypt(frame)   # raises IPSecIntegrityError on a bad ICV / AAD without ESN
        if isinstance(inner, IP) and ICMP in inner and inner[ICMP].type in (0, 8):
            seen.add((4, inner.src, inner.dst, inner[ICMP].type))
            assert MARK in bytes(inner[ICMP].payload), inner.show(dump=True)
        elif isinstance(inner, IPv6) and (ICMPv6EchoRequest in inner or ICMPv6EchoReply in inner):
            echo = inner[ICMPv6EchoRequest] if ICMPv6EchoRequest in inner else inner[ICMPv6EchoReply]
            seen.add((6, inner.src, inner.dst, echo.type))
            assert MARK in bytes(echo.data), inner.show(dump=True)
    a, b = wire.a, wire.b
    expected = {(4, a.ipv4, b.ipv4, 8), (4, b.ipv4, a.ipv4, 0),
                (6, a.ipv6, b.ipv6, 128), (6, b.ipv6, a.ipv6, 129)}
    assert expected <= seen, f"missing inner echoes: {expected - seen}"


def test_sequence_numbers_grow_per_spi(wire):
    by_spi = defaultdict(list)
    for frame in wire.esp_frames():
        by_spi[frame[ESP].spi].append(frame[ESP].seq)
    for spi, seqs in by_spi.items():
        assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs), f"SPI {spi:#x}: {seqs}"
        assert seqs[0] >= 1


def test_udp_source_port_is_per_spi(wire):
    ports = defaultdict(set)
    for frame in wire.esp_frames():
        ports[frame[ESP].spi].add(frame[UDP].sport)
    assert len(ports) >= 2, f"expected both directions' SPIs, got {sorted(ports)}"
    for spi, sports in ports.items():
        assert len(sports) == 1, f"SPI {spi:#x} used several UDP source ports {sorted(sports)}"
    all_ports = {p for s in ports.values() for p in s}
    assert all_ports != {4500}, "UDP source port is the constant 4500, not derived from the SPI"


def test_tshark_decodes_the_inner_icmp(wire):
    args = ["tshark", "-n", "-r", str(wire.pcap), "-o", "esp.enable_encryption_decode:TRUE"]
    for (src, _spi), (sa, dst) in wire.sas.items():
        args += sa.tshark_uat(src, dst)
    args += ["-Y", "esp && (icmp.type == 8 || icmp.type == 0 || icmpv6.type == 128 || icmpv6.type == 129)",
             "-T", "fields", "-E", "separator=|", "-e", "ip.src", "-e", "ip.dst",
             "-e", "ipv6.src", "-e", "ipv6.dst", "-e", "icmp.type", "-e", "icmpv6.type"]
    done = subprocess.run(args, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    a, b = wire.a, wire.b
    seen = set()
    for line in done.stdout.splitlines():
        ip_src, ip_dst, ip6_src, ip6_dst, icmp_type, icmp6_type = line.split("|")
        # Outer and inner addresses come comma-separated, outer first.
        for srcs, dsts, kind in ((ip_src, ip_dst, icmp_type), (ip6_src, ip6_dst, icmp6_type)):
            if srcs and kind:
                seen.add((srcs.split(",")[-1], dsts.split(",")[-1], int(kind.split(",")[-1])))
    expected = {(a.ipv4, b.ipv4, 8), (b.ipv4, a.ipv4, 0), (a.ipv6, b.ipv6, 128), (b.ipv6, a.ipv6, 129)}
    assert expected <= seen, f"tshark did not show inner echoes {expected - seen}; output:\n{done.stdout[:2000]}"


@pytest.mark.parametrize("family", [4, 6])
def test_scapy_encrypted_packets_are_delivered(cluster, node1, node2, esp_sender, family):
    a, b = node1.pods[0], node2.pods[0]
    assert cluster.ping(a, b, family, count=1).returncode == 0   # node2 knows b's MAC
    ident = 0x4d57 + family
    count = 3
    if family == 4:
        inners = [IP(src=a.ipv4, dst=b.ipv4) / ICMP(id=ident, seq=i) / (MARK * 4) for i in range(count)]
        at_pod_filter = f"icmp and icmp[4:2] = {ident}"
    else:
        inners = [IPv6(src=a.ipv6, dst=b.ipv6) / ICMPv6EchoRequest(id=ident, seq=i, data=MARK * 4)
                  for i in range(count)]
        at_pod_filter = "icmp6"

    # The pod's replies go back encrypted towards node1 (a's node): find them on the fabric.
    def replies(pcap):
        wire = Wire(cluster, pcap, a, b)
        found = []
        for frame in wire.esp_frames():
            if wire.outer(frame).src != node2.tunnel_address:
                continue
            inner = wire.decrypt(frame)
            if ICMP in inner and inner[ICMP].type == 0 and inner[ICMP].id == ident:
                found.append(inner)
            if ICMPv6EchoReply in inner and inner[ICMPv6EchoReply].id == ident:
                found.append(inner)
        return found

    before = node2.counter("decrypted_packets")
    encrypted_before = node2.counter("encrypted_packets")
    with cluster.capture(b.ns, "eth0", at_pod_filter, name=f"inject{family}-pod") as at_pod, \
            cluster.fabric_capture(f"inject{family}-fabric") as on_fabric:
        esp_sender.send([esp_sender.esp_frame(p) for p in inners])
        topo.wait_counter(node2, "decrypted_packets", before + count)
        topo.wait_counter(node2, "encrypted_packets", encrypted_before + count)  # the pod's replies
    requests = [p for p in rdpcap(str(at_pod))
                if (ICMP in p and p[ICMP].type == 8 and p[ICMP].id == ident)
                or (ICMPv6EchoRequest in p and p[ICMPv6EchoRequest].id == ident)]
    assert len(requests) == count, f"pod {b.name} got {len(requests)} of {count} injected echo requests"
    assert all(MARK in bytes(p) for p in requests)
    assert len(replies(on_fabric)) == count


@pytest.fixture(scope="module")
def v6_fabric(cluster):
    """A second, smaller cluster whose nodes talk over IPv6 tunnel addresses
    (2001:db8::1, ::2); `cluster` first so that the environment checks ran."""
    with topo.running_cluster(cluster.binary, nodes=2, pods_per_node=1, tunnel_family=6) as c:
        yield c


def test_ipv6_fabric_carries_esp_that_scapy_decrypts(v6_fabric):
    n1, n2 = v6_fabric.nodes
    a, b = n1.pods[0], n2.pods[0]
    with v6_fabric.fabric_capture("v6-fabric") as pcap:
        for family in (4, 6):
            done = v6_fabric.ping(a, b, family, count=3, extra=["-p", MARK.hex()])
            assert done.returncode == 0, f"ping -{family} over an IPv6 fabric failed:\n{done.stdout}{done.stderr}"
    wire = Wire(v6_fabric, pcap, a, b)
    offenders, seen = [], set()
    for frame in wire.frames:
        if is_nd(frame):
            continue
        if IP in frame or not (IPv6 in frame and UDP in frame and frame[UDP].dport == 4500 and ESP in frame):
            offenders.append(frame.summary())
            continue
        assert frame[UDP].chksum != 0, "UDP over IPv6 needs a checksum"
        inner = wire.decrypt(frame)
        if ICMP in inner and inner[ICMP].type in (0, 8):
            seen.add((inner.src, inner.dst, inner[ICMP].type))
        for layer in (ICMPv6EchoRequest, ICMPv6EchoReply):
            if layer in inner:
                seen.add((inner.src, inner.dst, inner[layer].type))
    assert not offenders, "not ESP-in-UDP/IPv6 on the fabric:\n" + "\n".join(offenders[:20])
    expected = {(a.ipv4, b.ipv4, 8), (b.ipv4, a.ipv4, 0), (a.ipv6, b.ipv6, 128), (b.ipv6, a.ipv6, 129)}
    assert expected <= seen, f"missing inner echoes: {expected - seen}"


def test_esn_high_bits_across_2_pow_32(cluster, node1, node2, injector):
    """Sequence numbers crossing 2^32: only the low 32 bits travel, the
    receiver infers the high ones and authenticates them (AAD = SPI, seq-hi,
    seq-lo). Uses node2's second spare SA, so the first keeps small numbers."""
    sender = topo.EspSender(cluster, injector, spare=1)
    a, b = node1.pods[0], node2.pods[0]
    assert cluster.ping(a, b, 4, count=1).returncode == 0   # node2 knows b's MAC
    # A fresh SA's window sits at 0, where 2^32 - 3 would be inferred as
    # epoch -1 (RFC 4303 A2.2): step to 2^31 first.
    seqs = [1 << 31, (1 << 32) - 3, (1 << 32) - 1, (1 << 32) + 1, (1 << 32) + 2]
    before = node2.counter("decrypted_packets")
    with cluster.capture(b.ns, "eth0", "icmp and icmp[4:2] = 0x4553", name="esn-pod") as at_pod:
        for i, seq in enumerate(seqs):
            inner = bytes(IP(src=a.ipv4, dst=b.ipv4) / ICMP(id=0x4553, seq=i) / MARK)
            frame = sender.sealed_frame(topo.esp_trailer(inner, 4), seq=seq)
            # One at a time, in order: each must be decrypted before the next
            # goes (the window's position decides how the next is inferred).
            # A frame the data plane never received (lost on the injection
            # path of a busy machine: its uplink counted nothing) is sent
            # again; one it received and did not decrypt fails the test.
            for attempt in range(2):
                rx = node2.telemetry.ports()["fabric"]["rx_packets"]
                injector.send([frame])
                try:
                    topo.wait_counter(node2, "decrypted_packets", before + i + 1, timeout=5)
                    break
                except AssertionError as e:
                    if attempt or node2.telemetry.ports()["fabric"]["rx_packets"] != rx:
                        raise AssertionError(f"seq {seq:#x}: {e}") from None
    got = sorted(p[ICMP].seq for p in rdpcap(str(at_pod)) if ICMP in p and p[ICMP].type == 8)
    assert got == list(range(len(seqs))), f"pod got echo requests {got}"
    # The same low bits with the old high bits (0) are a replay or fail the ICV.
    auth, replay = node2.counter("auth_failed"), node2.counter("replay")
    inner = bytes(IP(src=a.ipv4, dst=b.ipv4) / ICMP(id=0x4553, seq=99) / MARK)
    injector.send([sender.sealed_frame(topo.esp_trailer(inner, 4), seq=2)])
    topo.wait_for(lambda: node2.counter("auth_failed") + node2.counter("replay") > auth + replay,
                  timeout=5, what="seq-hi 0 packet dropped")
    assert node2.counter("decrypted_packets") == before + len(seqs)
