"""Hostile and broken input on node2's uplink, injected by Scapy from the
fabric: each kind is dropped and counted under its own reason, exactly once
per packet, while pod traffic across the nodes keeps flowing. And broken
configs are refused with the field's path."""
import subprocess
import time

import pytest
import yaml
from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import ICMPv6EchoRequest, IPv6
from scapy.packet import raw
from scapy.utils import rdpcap

import meshwire_topology as topo


def echo_to(b, a, ident=0x6261, seq=0):
    """An inner echo request from pod a (node1) to pod b (node2)."""
    return IP(src=a.ipv4, dst=b.ipv4) / ICMP(id=ident, seq=seq) / (b"bad-input" * 4)


def expect_drops(cluster, node1, node2, injector, frames, counter):
    """Sends `frames` on the fabric during a background ping node1 -> node2;
    asserts node2's `counter` rose by exactly len(frames) and the ping lost
    nothing (but possibly the one in flight when it was stopped)."""
    a, b = node1.pods[1], node2.pods[1]
    warm = cluster.ping(a, b, 4, count=1)
    assert warm.returncode == 0, f"path n1p2 -> n2p2 broken before the test:\n{warm.stdout}"
    before = node2.counter(counter)
    with topo.BackgroundPing(a, b, interval=0.1) as bg:
        time.sleep(0.3)
        sent = injector.send(frames)
        after = topo.wait_counter(node2, counter, before + sent)
        time.sleep(0.5)
        transmitted, received = bg.stop()
    assert after == before + sent, f"{counter}: expected +{sent}, got +{after - before}"
    assert received > 0 and received >= transmitted - 1, \
        f"background ping suffered: {received}/{transmitted} replies\n{bg.output}"


def test_forged_icv_is_auth_failed(cluster, node1, node2, injector, esp_sender):
    a, b = node1.pods[0], node2.pods[0]
    frames = []
    for i in range(3):
        frame = bytearray(esp_sender.esp_frame(echo_to(b, a, seq=i)))
        frame[-1 - i] ^= 0x01     # a bit of the 16-byte tag
        frames.append(bytes(frame))
    expect_drops(cluster, node1, node2, injector, frames, "auth_failed")


def test_forged_ciphertext_is_auth_failed(cluster, node1, node2, injector, esp_sender):
    a, b = node1.pods[0], node2.pods[0]
    frame = bytearray(esp_sender.esp_frame(echo_to(b, a)))
    frame[14 + 20 + 8 + 8 + 8 + 2] ^= 0x80   # inside the encrypted inner header
    expect_drops(cluster, node1, node2, injector, [bytes(frame)], "auth_failed")


def test_duplicate_is_replay(cluster, node1, node2, injector, esp_sender):
    a, b = node1.pods[0], node2.pods[0]
    frames = []
    for i in range(3):
        frame = esp_sender.esp_frame(echo_to(b, a, seq=i))
        frames += [frame, frame]
    decrypted = node2.counter("decrypted_packets")
    before = node2.counter("replay")
    sent = injector.send(frames)
    after = topo.wait_counter(node2, "replay", before + sent // 2)
    assert after == before + 3
    assert node2.counter("decrypted_packets") >= decrypted + 3   # the first copies went through
    # And once more under a background ping: the same packets are replays now.
    expect_drops(cluster, node1, node2, injector, frames[::2], "replay")


def test_truncated_esp_is_malformed(cluster, node1, node2, injector, esp_sender):
    src, dst = node1.tunnel_address, node2.tunnel_address
    spi = esp_sender.sa.spi
    payloads = [
        # SPI and sequence number, then less than IV + ICV.
        spi.to_bytes(4, "big") + esp_sender.take_seq().to_bytes(4, "big") + b"\x00" * 10,
        # SPI and sequence number only.
        spi.to_bytes(4, "big") + esp_sender.take_seq().to_bytes(4, "big"),
        # A real packet cut after its IV.
        bytes(IP(esp_sender.esp_packet(echo_to(node2.pods[0], node1.pods[0])))[UDP].payload)[:16],
    ]
    frames = [esp_sender.frame(IP(src=src, dst=dst) / UDP(sport=esp_sender.sport, dport=4500, chksum=0) / p)
              for p in payloads]
    expect_drops(cluster, node1, node2, injector, frames, "malformed")


def test_unknown_spi_is_no_sa(cluster, node1, node2, injector, esp_sender):
    a, b = node1.pods[0], node2.pods[0]
    stranger = topo.Sa.fresh(0x00DEAD01)
    frames = [esp_sender.esp_frame(echo_to(b, a, seq=i), sa=stranger, seq=i + 1) for i in range(3)]
    expect_drops(cluster, node1, node2, injector, frames, "no_sa")


def test_esp_from_a_non_peer_is_unknown_peer(cluster, node1, node2, injector, esp_sender):
    a, b = node1.pods[0], node2.pods[0]
    assert node2.tunnel_address.count(".") == 3, "this test assumes an IPv4 fabric"
    frames = [esp_sender.esp_frame(echo_to(b, a, seq=i), src=topo.NON_PEER_V4) for i in range(3)]
    expect_drops(cluster, node1, node2, injector, frames, "unknown_peer")


def test_plaintext_to_a_pod_on_the_uplink(cluster, node1, node2, injector, esp_sender):
    a, b = node1.pods[0], node2.pods[0]
    packets = [
        IP(src=a.ipv4, dst=b.ipv4) / UDP(sport=40000, dport=9) / b"plaintext",
        IP(src=a.ipv4, dst=b.ipv4) / TCP(sport=40000, dport=9, flags="S"),
        IP(src=a.ipv4, dst=b.ipv4) / ICMP(id=0x7777) / b"plaintext",
        IP(src=node1.tunnel_address, dst=b.ipv4) / UDP(sport=40000, dport=9) / b"plaintext",
        IPv6(src=a.ipv6, dst=b.ipv6) / UDP(sport=40000, dport=9) / b"plaintext",
        IPv6(src=a.ipv6, dst=b.ipv6) / ICMPv6EchoRequest(id=0x7777),
    ]
    leak_filter = "udp port 9 or tcp port 9 or (icmp and icmp[4:2] = 0x7777) or icmp6"
    with cluster.capture(b.ns, "eth0", leak_filter, name="plaintext-leak") as at_pod:
        expect_drops(cluster, node1, node2, injector, [esp_sender.frame(raw(p)) for p in packets],
                     "plaintext_on_uplink")
    leaked = [p.summary() for p in rdpcap(str(at_pod)) if b"plaintext" in bytes(p) or
              (ICMPv6EchoRequest in p and p[ICMPv6EchoRequest].id == 0x7777) or
              (TCP in p and p[TCP].dport == 9)]
    assert not leaked, f"plaintext from the fabric reached pod {b.name}: {leaked}"


def test_garbage_frames_are_malformed(cluster, node1, node2, injector, esp_sender):
    v4 = raw(IP(src=node1.tunnel_address, dst=node2.tunnel_address) / UDP(sport=4500, dport=4500) / (b"x" * 16))
    v6 = raw(IPv6(src="2001:db8::1", dst="2001:db8::2") / UDP(dport=4500) / (b"x" * 16))
    bad_ihl = bytearray(v4)
    bad_ihl[0] = 0x44                                    # header length 16 < 20
    long_total = bytearray(v4)
    long_total[2:4] = (1400).to_bytes(2, "big")          # IPv4 total length beyond the frame
    long_plen = bytearray(v6)
    long_plen[4:6] = (1400).to_bytes(2, "big")           # IPv6 payload length beyond the frame
    frames = [
        esp_sender.frame(v4[:10]),                       # IPv4 header cut short
        esp_sender.frame(bytes(bad_ihl)),
        esp_sender.frame(bytes(long_total)),
        esp_sender.frame(v6[:30]),                       # IPv6 header cut short
        esp_sender.frame(bytes(long_plen)),
    ]
    expect_drops(cluster, node1, node2, injector, frames, "malformed")


# ---------------------------------------------------------------------------
# Broken configurations

def _mutate_key(cfg):
    cfg["peers"][0]["sas"]["outbound"][0]["key"] = "00" * 15


def _unknown_top_field(cfg):
    cfg["colour"] = "blue"


def _unknown_port_field(cfg):
    cfg["ports"][1]["speed"] = 100


def _bad_tunnel_address(cfg):
    cfg["node"]["tunnel_address"] = "192.0.2.300"


def _bad_salt(cfg):
    cfg["peers"][0]["sas"]["inbound"][0]["salt"] = "zz" * 4


def _missing_device(cfg):
    # Valid YAML, refused only once DPDK looks for the interface.
    cfg["ports"][0]["device"] = "net_af_packet0,iface=mwnothere0"


def _uplink_too_small_for_ipv6_pods(cfg):
    cfg["ports"][1]["mtu"] = 1300   # leaves 1238 bytes inside the tunnel; IPv6 needs 1280


@pytest.mark.parametrize("mutate,path", [
    (_mutate_key, "peers[0].sas.outbound[0].key"),
    (_unknown_top_field, "colour"),
    (_unknown_port_field, "ports[1].speed"),
    (_bad_tunnel_address, "node.tunnel_address"),
    (_bad_salt, "peers[0].sas.inbound[0].salt"),
    (_missing_device, "ports[0].device"),
    (_uplink_too_small_for_ipv6_pods, "ports[1].mtu"),
], ids=["key-length", "unknown-field", "unknown-port-field", "tunnel-address", "salt", "missing-device",
        "uplink-mtu"])
def test_bad_config_is_refused(cluster, node1, tmp_path, mutate, path):
    cfg = yaml.safe_load(node1.config_path.read_text())
    prefix = f"{cluster.prefix}-bad"
    eal = cfg["eal"]
    eal[eal.index("--file-prefix") + 1] = prefix   # never touch node1's runtime folder
    mutate(cfg)
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(cfg, sort_keys=False))
    ns = cluster.scratch_ns()
    proc = topo.popen([cluster.binary, "--config", bad], ns=ns, stdin=subprocess.DEVNULL,
                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = proc.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        topo.stop_process(proc, timeout=5)
        pytest.fail(f"meshwire-dataplane with a bad {path} still runs after 15 s")
    assert proc.returncode != 0, f"bad {path} accepted:\n{out}\n{err}"
    assert path in err, f"stderr does not name {path}:\n{err}"
    assert "meshwire-dataplane: ready" not in out
    assert topo._netns_pids(ns) == [], "a process was left running"


def test_inner_source_outside_the_peers_pods_is_inner_spoofed(cluster, node1, node2, injector, esp_sender):
    b = node2.pods[0]
    spoofed = [IP(src=src, dst=b.ipv4) / ICMP(id=0x5350) / b"spoofed"
               for src in ("10.99.0.1", node2.pods[1].ipv4, "192.0.2.1")]
    spoofed.append(IPv6(src="fd00:99::1", dst=b.ipv6) / ICMPv6EchoRequest(id=0x5350))
    expect_drops(cluster, node1, node2, injector, [esp_sender.esp_frame(p) for p in spoofed], "inner_spoofed")


def test_broken_esp_trailer_is_bad_trailer(cluster, node1, node2, injector, esp_sender):
    a, b = node1.pods[0], node2.pods[0]
    inner = raw(echo_to(b, a, ident=0x7472))
    # Control: the same construction with a correct trailer is accepted.
    decrypted = node2.counter("decrypted_packets")
    injector.send([esp_sender.sealed_frame(topo.esp_trailer(inner, 4))])
    topo.wait_counter(node2, "decrypted_packets", decrypted + 1)
    pad = (-(len(inner) + 2)) % 4 or 4
    frames = [
        esp_sender.sealed_frame(topo.esp_trailer(inner, 4, pad_length=250)),   # pad longer than the payload
        esp_sender.sealed_frame(topo.esp_trailer(inner, 99)),                # next header no tunnel carries
        esp_sender.sealed_frame(inner + bytes([9] * pad) + bytes([pad, 4])),  # padding not 1, 2, 3, ...
    ]
    expect_drops(cluster, node1, node2, injector, frames, "bad_trailer")


def test_anti_replay_window(cluster, node1, node2, injector, esp_sender):
    """Within the window a new number passes and a seen one is a replay.
    Left of it, ESN inference (RFC 4303 A2.2) takes the number for one of the
    next 2^32 epoch, so the ICV, computed with the wrong high bits, fails: the
    packet is dropped as a replay (too old), not counted as a forgery."""
    a, b = node1.pods[0], node2.pods[0]
    old = esp_sender.take_seq()                  # never sent
    ahead = old + 100_000                        # far beyond any anti-replay window
    esp_sender.skip_to(ahead + 1)
    decrypted = node2.counter("decrypted_packets")
    injector.send([esp_sender.esp_frame(echo_to(b, a), seq=ahead)])
    topo.wait_counter(node2, "decrypted_packets", decrypted + 1)
    inside = esp_sender.esp_frame(echo_to(b, a), seq=ahead - 100)
    injector.send([inside])
    topo.wait_counter(node2, "decrypted_packets", decrypted + 2)
    expect_drops(cluster, node1, node2, injector, [inside], "replay")
    expect_drops(cluster, node1, node2, injector, [esp_sender.esp_frame(echo_to(b, a), seq=old)], "replay")
