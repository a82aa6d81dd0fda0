"""Node liveness from encrypted keepalives between real data planes: every
100 ms each sends its peers an ESP dummy packet (next header 59) that Scapy,
an independent ESP implementation, decrypts with the SA from the config; a
data plane that stops is down on its peer within a second (three missed
keepalives: 300-400 ms), pods then get ICMP host unreachable at once instead
of waiting for a timeout, and a restarted data plane is up again as soon as
it speaks."""
import json
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.ipsec import ESP
from scapy.utils import rdpcap

import meshwire_topology as topo
from meshwire_control import CTL, show

DOWN_WITHIN_S = 1.0    # correctness bound: 3 x 100 ms of silence, evaluated every 100 ms
UP_WITHIN_S = 1.0


def liveness(node, peer: str) -> str:
    """What `meshwirectl show peers` says of peer on node."""
    return next(p["liveness"] for p in show(node, "peers")["peers"] if p["name"] == peer)


def fast_liveness(node, peer: str) -> str:
    """The same from the telemetry socket: cheap enough to poll every few ms."""
    return node.telemetry.peers()[peer]["liveness"]


def ping_once(src, dst, family: int):
    """One echo; returns (seconds it took, ping's output)."""
    started = time.monotonic()
    done = topo.run(["ping", f"-{family}", "-n", "-c", "1", "-W", "5", dst.address(family)], ns=src.ns,
                    check=False, timeout=15)
    return time.monotonic() - started, done.stdout + done.stderr


def keepalives_in(pcap, sender, receiver):
    """The payloads of sender's keepalives to receiver in a fabric capture,
    decrypted by Scapy with sender's SAs (which verifies the ICV)."""
    sas = {sa.spi: sa for sa in sender.outbound[receiver.name]}
    payloads = []
    for frame in rdpcap(str(pcap)):
        if ESP not in frame or frame[IP].src != sender.tunnel_address or frame[ESP].spi not in sas:
            continue
        outer = frame[IP].copy()
        payload = sas[frame[ESP].spi].scapy(sender.tunnel_address, receiver.tunnel_address,
                                             frame[UDP].sport).decrypt(outer)
        if outer.proto != 59:
            continue  # pod traffic of another test
        payloads.append(bytes(payload))
    return payloads


def test_keepalives_are_esp_dummies_that_scapy_decrypts(cluster, node1, node2):
    sent, received = node1.counter("keepalives_sent"), node2.counter("keepalives_received")
    bad_trailers = node2.counter("bad_trailer")
    with cluster.fabric_capture("keepalives") as pcap:
        time.sleep(0.5)
    from_node1 = keepalives_in(pcap, node1, node2)
    from_node2 = keepalives_in(pcap, node2, node1)
    # 0.5 s at one every 100 ms (the capture runs a little longer).
    assert len(from_node1) >= 3 and len(from_node2) >= 3, (len(from_node1), len(from_node2))
    # The payload (README, Node liveness): magic, generation, peer index,
    # interval, then the sender's wall clock, the echo of the receiver's
    # last stamp and how long the sender held it, in microseconds.
    node2_stamps = set()
    for data in from_node2:
        assert len(data) == 36 and data[:4] == b"MWKA", data.hex()
        node2_stamps.add(int.from_bytes(data[16:24], "big"))
    now_us = time.time() * 1e6
    for data in from_node1:
        assert len(data) == 36 and data[:4] == b"MWKA", data.hex()
        assert int.from_bytes(data[14:16], "big") == 100  # interval_ms
        sent_us, echo_us, held_us = (int.from_bytes(data[16:24], "big"), int.from_bytes(data[24:32], "big"),
                                     int.from_bytes(data[32:36], "big"))
        assert abs(sent_us - now_us) < 5e6, (sent_us, now_us)
        assert echo_us != 0 and echo_us < sent_us, data.hex()  # both nodes have run for a while
        assert held_us < 1_000_000, held_us  # the receiver's stamp, held until the next keepalive
    # Most echoes are of node2 keepalives seen in this capture (the first
    # may echo one sent just before it began).
    echoes = [int.from_bytes(d[24:32], "big") for d in from_node1]
    assert sum(e in node2_stamps for e in echoes) >= len(echoes) - 1, (echoes, sorted(node2_stamps))
    assert node1.counter("keepalives_sent") >= sent + len(from_node1)
    topo.wait_counter(node2, "keepalives_received", received + len(from_node1))
    assert node2.counter("bad_trailer") == bad_trailers
    assert node2.telemetry.peers()["node1"]["liveness"] == "up"


def test_peers_show_the_round_trip_clock_offset_and_traffic(cluster, node1, node2):
    """From the echoes: a round trip well under a second on one machine, and
    a clock offset near 0 (one clock); ESP counted each way, at least the
    keepalives (10 a second)."""
    before = {p["name"]: p for p in show(node1, "peers")["peers"]}["node2"]
    time.sleep(0.5)
    peer = {p["name"]: p for p in show(node1, "peers")["peers"]}["node2"]
    assert 0 < peer["keepalive_rtt_us"] < 1_000_000, peer
    assert peer["clock_known"] is True, peer
    assert abs(int(peer.get("clock_offset_ms", 0))) < 100, peer
    for field in ("tx_packets", "rx_packets"):
        assert int(peer[field]) >= int(before.get(field, 0)) + 3, (field, before, peer)
    for field in ("tx_bytes", "rx_bytes"):
        assert int(peer[field]) >= int(before.get(field, 0)) + 3 * 80, (field, before, peer)  # >= 80-byte frames
    table = subprocess.run([CTL, "--socket", node1.api_socket, "show", "peers"], capture_output=True, text=True,
                           check=True).stdout
    assert "RTT" in table and "CLOCK" in table, table


FAKETIME = Path("/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1")


def test_a_peer_whose_clock_is_ahead_is_measured_and_doctor_says_so(cluster):
    """node2's data plane runs with its wall clock 5 s ahead (libfaketime;
    its monotonic clock and TSC untouched): node1 measures the offset from
    the keepalives' stamps, node2 the opposite, and meshwirectl doctor on
    node1 warns of the skew naming node2 and the fix."""
    if not FAKETIME.exists():
        pytest.fail(f"{FAKETIME} missing: install Debian's faketime (make deps)", pytrace=False)
    env = {"LD_PRELOAD": str(FAKETIME), "FAKETIME": "+5s", "FAKETIME_DONT_FAKE_MONOTONIC": "1",
           "FAKETIME_NO_CACHE": "1"}
    with topo.running_cluster(cluster.binary, nodes=2, pods_per_node=1, node_env={"node2": env}) as c:
        n1, n2 = c.nodes

        def offset(node, peer):
            p = {p["name"]: p for p in show(node, "peers")["peers"]}[peer]
            return int(p.get("clock_offset_ms", 0)) if p.get("clock_known") else None

        topo.wait_for(lambda: offset(n1, "node2") is not None and offset(n2, "node1") is not None, timeout=5,
                      what="both clock offsets measured")
        assert 4800 < offset(n1, "node2") < 5200, offset(n1, "node2")
        assert -5200 < offset(n2, "node1") < -4800, offset(n2, "node1")
        done = subprocess.run([str(CTL), "--socket", str(n1.api_socket), "--json", "doctor"], capture_output=True,
                              text=True, timeout=60)
        findings = json.loads(done.stdout)["findings"]
        skew = [f for f in findings if f["check"] == "clock-skew"]
        assert skew and skew[0]["severity"] == "warning", skew
        assert "node2" in skew[0]["found"] and "ahead" in skew[0]["found"], skew
        assert "chronyc" in skew[0]["fix"], skew


@pytest.fixture(scope="module")
def pair(cluster):
    """Two data planes of their own (`cluster` first: the environment checks
    ran): this module stops and restarts one."""
    with topo.running_cluster(cluster.binary, nodes=2, pods_per_node=1) as c:
        yield c


def test_a_stopped_data_plane_is_down_within_a_second_and_back_up_when_restarted(pair):
    n1, n2 = pair.nodes
    a, b = n1.pods[0], n2.pods[0]

    # Both up within a second of both being ready.
    ready = time.monotonic()
    topo.wait_for(lambda: liveness(n1, "node2") == "up" and liveness(n2, "node1") == "up",
                  timeout=UP_WITHIN_S, interval=0.02, what="both peers up")
    print(f"up on both {time.monotonic() - ready:.3f} s after ready")
    table = subprocess.run([str(CTL), "--socket", str(n1.api_socket), "show", "peers"], capture_output=True,
                           text=True, timeout=10, check=True).stdout
    assert re.search(r"^node2\s.*\bup\b", table, re.M), table
    assert "LIVENESS" in table and "HEARD" in table, table
    for family in (4, 6):
        assert pair.ping(a, b, family, count=1).returncode == 0  # both know their pods' MACs

    # node2's data plane stops: node1 says down after three missed keepalives.
    stopped = time.monotonic()
    n2.process.send_signal(signal.SIGTERM)
    topo.wait_for(lambda: fast_liveness(n1, "node2") == "down", timeout=5, interval=0.005,
                  what="node1 to see node2 down")
    took = time.monotonic() - stopped
    pair.stop_node(n2)
    print(f"node2 down on node1 {took * 1000:.0f} ms after SIGTERM")
    assert took < DOWN_WITHIN_S
    assert liveness(n1, "node2") == "down"
    log = n1.stderr_path.read_text(errors="replace")
    silence = re.search(r"peer node2 \(192\.0\.2\.2\) down: no keepalive for (\d+) ms", log)
    assert silence, log[-2000:]
    assert 300 < int(silence.group(1)) < 1000, silence.group(0)

    # Its pods are unreachable at once, not after a timeout.
    drops = n1.counter("drops.peer_down")
    for family, text in ((4, "Destination Host Unreachable"), (6, "Address unreachable")):
        took, out = ping_once(a, b, family)
        assert text in out, out
        assert took < 1.0, f"ping -{family} took {took:.2f} s:\n{out}"
    assert n1.counter("drops.peer_down") >= drops + 2

    # Restarted with fresh keys (as its controller would: a new epoch), so
    # that node1's replay window does not hold its sequence numbers against
    # it: node1's spare inbound SA for node2 stands in for that.
    n2.outbound["node1"] = [pair.spare_sa("node2", "node1", 0)]
    pair._write_config(n2)
    pair.start_node(n2)
    ready = time.monotonic()
    topo.wait_for(lambda: fast_liveness(n1, "node2") == "up", timeout=UP_WITHIN_S, interval=0.005,
                  what="node1 to see node2 up again")
    print(f"node2 up again on node1 {(time.monotonic() - ready) * 1000:.0f} ms after it was ready")
    assert liveness(n1, "node2") == "up"
    assert re.search(r"peer node2 \(192\.0\.2\.2\) up: heard again after \d+ ms",
                     n1.stderr_path.read_text(errors="replace"))
    for family in (4, 6):
        assert pair.ping(a, b, family, count=1).returncode == 0
        assert pair.ping(b, a, family, count=1).returncode == 0
    topo.wait_for(lambda: liveness(n2, "node1") == "up", timeout=UP_WITHIN_S, what="node2 to see node1 up")
