"""Pod-to-pod forwarding through two meshwire data planes: ping (IPv4/IPv6)
across nodes and on one node, iperf3 TCP, path MTU (ICMP errors for
too-big DF packets) and TCP MSS clamping."""
import json
import subprocess

import pytest
from scapy.layers.inet import TCP
from scapy.utils import rdpcap

import meshwire_topology as topo

# Outer IPv4 + UDP + ESP header + IV + ESP trailer (pad length, next header) + ICV,
# without padding: what encapsulation adds at least on an IPv4 fabric.
ESP_OVERHEAD_V4 = 20 + 8 + 8 + 8 + 2 + 16
FABRIC_MTU = 1500


def counters(*nodes):
    return [n.counters() for n in nodes]


@pytest.mark.parametrize("family", [4, 6])
def test_ping_across_nodes(cluster, node1, node2, family):
    a, b = node1.pods[0], node2.pods[0]
    (c1, c2) = counters(node1, node2)
    done = cluster.ping(a, b, family, count=5)
    assert done.returncode == 0, f"ping -{family} {a.name} -> {b.name} failed:\n{done.stdout}{done.stderr}"
    # Requests: node1 encrypts, node2 decrypts; replies the other way round.
    for node, before in ((node1, c1), (node2, c2)):
        for name in ("encrypted_packets", "decrypted_packets"):
            topo.wait_counter(node, name, topo.counter_value(before, name) + 5)
        after = node.counters()
        assert after["encrypted_bytes"] > before["encrypted_bytes"]
        assert after["decrypted_bytes"] > before["decrypted_bytes"]


@pytest.mark.parametrize("family", [4, 6])
def test_ping_same_node(cluster, node1, family):
    a, b = node1.pods[0], node1.pods[1]
    before = node1.counter("forwarded_local")
    done = cluster.ping(a, b, family, count=5)
    assert done.returncode == 0, f"ping -{family} {a.name} -> {b.name} failed:\n{done.stdout}{done.stderr}"
    topo.wait_counter(node1, "forwarded_local", before + 10)  # 5 requests + 5 replies


def check_iperf(report: dict, what: str) -> None:
    end = report["end"]
    received = end["sum_received"]["bytes"]
    sent = end["sum_sent"]["bytes"]
    retransmits = end["sum_sent"].get("retransmits", 0)
    segments = max(1, sent // 1400)
    assert received > 0, f"{what}: iperf3 received nothing: {end}"
    # A storm (e.g. every segment dropped for a bad checksum) retransmits
    # about as much as it sends; a healthy run a small fraction.
    assert retransmits < segments // 5 + 50, \
        f"{what}: {retransmits} retransmits for ~{segments} segments ({sent} bytes)"


def test_iperf3_across_nodes(cluster, node1, node2):
    before = counters(node1, node2)
    report = cluster.iperf3(node1.pods[0], node2.pods[0], family=4, seconds=3)
    check_iperf(report, "n1p1 -> n2p1")
    # Every received byte crossed the fabric in segments of at most one MTU.
    segments = report["end"]["sum_received"]["bytes"] // 1500
    topo.wait_counter(node1, "encrypted_packets", before[0]["encrypted_packets"] + segments)
    topo.wait_counter(node2, "decrypted_packets", before[1]["decrypted_packets"] + segments)


def test_iperf3_same_node(cluster, node2):
    before = node2.counter("forwarded_local")
    report = cluster.iperf3(node2.pods[0], node2.pods[1], family=4, seconds=3, port=5202)
    check_iperf(report, "n2p1 -> n2p2")
    topo.wait_counter(node2, "forwarded_local", before + report["end"]["sum_received"]["bytes"] // 1500)


def flush_pmtu(pod) -> None:
    """Forgets the path MTU the pod learnt from ICMP errors."""
    topo.run(["ip", "route", "flush", "cache"], ns=pod.ns, check=False)
    topo.run(["ip", "-6", "route", "flush", "cache"], ns=pod.ns, check=False)


@pytest.mark.parametrize("family,too_big,fits,message", [
    (4, 1460, 1300, "frag needed"),      # 1488-byte IPv4 packet, DF
    (6, 1440, 1280, "packet too big"),   # 1488-byte IPv6 packet
])
def test_too_big_gets_icmp_error(cluster, node1, node2, family, too_big, fits, message):
    # Its own pod pair: the learnt path MTU must not leak into other tests.
    a, b = node1.pods[1], node2.pods[1]
    flush_pmtu(a)
    try:
        assert cluster.ping(a, b, family, count=1).returncode == 0, "path does not work at all"
        before = node1.counter("too_big")
        done = cluster.ping(a, b, family, count=2, deadline=4, size=too_big, extra=["-M", "do"])
        out = (done.stdout + done.stderr).lower()
        assert done.returncode != 0, f"{too_big}-byte DF ping went through:\n{out}"
        assert message in out, f"no '{message}' error from the data plane:\n{out}"
        topo.wait_counter(node1, "too_big", before + 1)
        done = cluster.ping(a, b, family, count=3, size=fits, extra=["-M", "do"])
        assert done.returncode == 0, f"{fits}-byte DF ping failed:\n{done.stdout}{done.stderr}"
    finally:
        flush_pmtu(a)


def test_ipv4_without_df_is_fragmented_to_fit_the_tunnel(cluster, node1, node2):
    """A 1488-byte IPv4 packet without DF (ping -M dont) does not fit the
    1438 bytes the tunnel leaves: the data plane fragments it before
    encryption and the pod on the other node reassembles it."""
    a, b = node1.pods[0], node2.pods[0]
    flush_pmtu(a)
    before = node1.counter("fragmented")
    done = cluster.ping(a, b, 4, count=3, size=1460, extra=["-M", "dont"])
    assert done.returncode == 0, done.stdout
    assert node1.counter("fragmented") >= before + 3
    assert "1468 bytes from" in done.stdout  # 1460 + 8: the whole reply came back


@pytest.mark.parametrize("family", [4, 6])
def test_tcp_mss_is_clamped_across_nodes(cluster, node1, node2, family):
    a, b = node1.pods[0], node2.pods[0]
    flush_pmtu(a)
    flush_pmtu(b)
    before = node1.counter("mss_clamped") + node2.counter("mss_clamped")
    # SYNs and SYN-ACKs only (no IPv6 extension headers here: flags at 40 + 13).
    syn = "tcp[tcpflags] & tcp-syn != 0" if family == 4 else "ip6 and tcp and ip6[53] & 2 != 0"
    with cluster.capture(b.ns, "eth0", syn, name=f"mss{family}-server") as at_server, \
            cluster.capture(a.ns, "eth0", syn, name=f"mss{family}-client") as at_client:
        report = cluster.iperf3(a, b, family=family, seconds=None, port=5203 + family,
                                extra=["-n", "256K"])
    check_iperf(report, f"mss test IPv{family}")

    inner_headers = (20 if family == 4 else 40) + 20

    def syn_mss(pcap, flags):
        found = []
        for pkt in rdpcap(str(pcap)):
            if TCP in pkt and (pkt[TCP].flags & 0x12) == flags:
                found += [v for k, v in pkt[TCP].options if k == "MSS"]
        return found

    syn_mss_at_server = syn_mss(at_server, 0x02)
    synack_mss_at_client = syn_mss(at_client, 0x12)
    assert syn_mss_at_server, "no SYN with an MSS option reached the server pod"
    assert synack_mss_at_client, "no SYN-ACK with an MSS option reached the client pod"
    limit = FABRIC_MTU - ESP_OVERHEAD_V4 - inner_headers
    for what, values in (("SYN", syn_mss_at_server), ("SYN-ACK", synack_mss_at_client)):
        assert all(v <= limit for v in values), \
            f"{what} MSS {values} not clamped: a full segment would not fit the fabric MTU (limit {limit})"
    after = node1.counter("mss_clamped") + node2.counter("mss_clamped")
    assert after >= before + 2, f"mss_clamped went from {before} to {after}"


def test_counters_through_dpdk_telemetry_py(cluster, node1, node2):
    """The operator's tool: DPDK's own dpdk-telemetry.py reads /meshwire/...
    (and lists the commands with their help)."""
    a, b = node1.pods[0], node2.pods[0]
    assert cluster.ping(a, b, 4, count=2).returncode == 0
    done = subprocess.run(["dpdk-telemetry.py", "-f", node1.file_prefix],
                          input="/\n/help,/meshwire/counters\n/meshwire/counters\n/meshwire/drop_reasons\n",
                          capture_output=True, text=True, timeout=20)
    replies = {}
    for line in done.stdout.splitlines():
        line = line.strip().removeprefix("--> ").strip()
        if line.startswith("{"):
            replies.update(json.loads(line))
    assert "/meshwire/counters" in replies.get("/", []), done.stdout
    assert "worker" in replies["/help"]["/meshwire/counters"]
    counters = replies["/meshwire/counters"]
    assert counters["encrypted_packets"] >= 2 and counters["decrypted_packets"] >= 2
    assert set(counters["drops"]) == set(replies["/meshwire/drop_reasons"]) >= {"auth_failed", "replay", "no_sa"}


def test_telemetry_ports_peers_and_sas(cluster, node1, node2):
    """/meshwire/ports, /meshwire/peers and /meshwire/sas describe what the
    config asked for and move with the traffic."""
    a, b = node1.pods[0], node2.pods[0]
    assert cluster.ping(a, b, 4, count=2).returncode == 0
    ports_before = node1.telemetry.ports()
    sas_before = node1.telemetry.sas() or {}
    assert cluster.ping(a, b, 4, count=3).returncode == 0

    ports = node1.telemetry.ports()
    assert ports["pods"]["role"] == "local" and ports["fabric"]["role"] == "uplink"
    for name in ("pods", "fabric"):
        for field in ("rx_packets", "tx_packets"):
            assert ports[name][field] >= ports_before[name][field] + 3, (name, field, ports[name])
    uplink_mac = topo.json.loads(topo.run(["ip", "-j", "-n", node1.ns, "link", "show",
                                           node1.uplink_if]).stdout)[0]["address"]
    assert ports["fabric"]["mac"].lower() == uplink_mac

    peers = node1.telemetry.peers()
    assert peers["node2"]["tunnel_address"] == node2.tunnel_address
    # DPDK 22.11 telemetry has no JSON booleans: "true" stands for true.
    assert peers["node2"]["resolved"] in (True, "true"), peers
    assert peers["node2"]["mac"].lower() == node2.uplink_mac().lower()

    sas = node1.telemetry.sas()
    assert isinstance(sas, dict) and {"outbound", "inbound"} <= set(sas), f"/meshwire/sas gave {sas!r}"
    configured_out = {sa.spi for sa in node1.outbound["node2"]}
    configured_in = {sa.spi for sa in node1.inbound["node2"]}
    out = {sa["spi"]: sa for sa in sas["outbound"] if sa["peer"] == "node2"}
    assert set(out) == configured_out
    assert {sa["spi"] for sa in sas["inbound"] if sa["peer"] == "node2"} == configured_in
    out_before = {sa["spi"]: sa["seq"] for sa in sas_before.get("outbound", [])}
    assert sum(out[spi]["seq"] - out_before[spi] for spi in out) >= 3
    for sa in sas["outbound"] + sas["inbound"]:
        assert sa["algorithm"] == "aes-128-gcm"
        assert not any(k in sa for k in ("key", "salt")), f"SA telemetry shows key material: {sa}"


def test_ttl_exhausted_is_dropped(cluster, node1, node2):
    a, b = node1.pods[0], node2.pods[0]
    before = node1.counter("ttl_exceeded")
    done = cluster.ping(a, b, 4, count=2, deadline=3, extra=["-t", "1"])
    assert done.returncode != 0, f"TTL 1 crossed a routing hop:\n{done.stdout}"
    topo.wait_counter(node1, "ttl_exceeded", before + 1)


def test_ttl_hops_answer_like_routers(cluster, node1, node2):
    """A traceroute's view: TTL 1 expires at node1 (answered from the pods'
    gateway address), TTL 2 at node2 (answered through the tunnel, from
    node2's tunnel address), TTL 3 reaches the pod."""
    a, b = node1.pods[0], node2.pods[0]
    assert cluster.ping(a, b, 4, count=1).returncode == 0  # both nodes know the pods
    hop1 = cluster.ping(a, b, 4, count=1, deadline=3, extra=["-t", "1"])
    assert "From 169.254.1.1" in hop1.stdout and "Time to live exceeded" in hop1.stdout, hop1.stdout
    before = node2.counter("icmp_errors_sent")
    hop2 = cluster.ping(a, b, 4, count=1, deadline=3, extra=["-t", "2"])
    assert f"From {node2.tunnel_address}" in hop2.stdout and "Time to live exceeded" in hop2.stdout, hop2.stdout
    assert node2.counter("icmp_errors_sent") > before
    assert cluster.ping(a, b, 4, count=1, deadline=3, extra=["-t", "3"]).returncode == 0


def test_sigint_and_sigterm_stop_cleanly(cluster):
    """Both signals end the data plane with exit code 0, promptly, leaving
    no process in its namespace (its own small cluster: this one dies)."""
    small = topo.Cluster(cluster.binary, nodes=2, pods_per_node=1)
    try:
        small.create()
        small.start()
        assert small.ping(small.nodes[0].pods[0], small.nodes[1].pods[0], 4, count=2).returncode == 0
        for node, sig in zip(small.nodes, (topo.signal.SIGINT, topo.signal.SIGTERM)):
            node.process.send_signal(sig)
            try:
                rc = node.process.wait(timeout=15)
            except topo.subprocess.TimeoutExpired:
                pytest.fail(f"{node.name} still running 15 s after {sig.name}\n{node.log_tail()}")
            assert rc == 0, f"{node.name} exit code {rc} after {sig.name}\n{node.log_tail()}"
            assert topo._netns_pids(node.ns) == []
    finally:
        small.teardown()


def test_node_answers_arp_and_ping_for_its_tunnel_address(cluster, node2, injector):
    """On the fabric a data plane is a host: it answers ARP and ICMP echo for
    its tunnel address (from anyone), and nothing else of its own."""
    from scapy.layers.inet import ICMP, IP
    from scapy.layers.l2 import ARP, Ether
    uplink_mac = node2.uplink_mac()
    with cluster.capture(cluster.fabric_ns, cluster.inject_if, "arp or icmp", name="tunnel-host") as pcap:
        injector.send([
            Ether(src=injector.mac, dst="ff:ff:ff:ff:ff:ff") /
            ARP(op=1, hwsrc=injector.mac, psrc="192.0.2.99", pdst=node2.tunnel_address),
            Ether(src=injector.mac, dst=uplink_mac) /
            IP(src="192.0.2.99", dst=node2.tunnel_address) / ICMP(id=0x7475, seq=1) / b"meshwire",
        ])
        topo.wait_for(lambda: len([p for p in rdpcap(str(pcap)) if p.src == uplink_mac]) >= 2
                      if pcap.exists() and pcap.stat().st_size > 24 else False,
                      timeout=10, what="ARP reply and echo reply from node2")
    answers = [p for p in rdpcap(str(pcap)) if p.src == uplink_mac]
    arp = [p for p in answers if ARP in p]
    assert arp and arp[0][ARP].op == 2 and arp[0][ARP].psrc == node2.tunnel_address
    assert arp[0][ARP].hwsrc == uplink_mac and arp[0][ARP].pdst == "192.0.2.99"
    echo = [p for p in answers if ICMP in p]
    assert echo and echo[0][ICMP].type == 0 and echo[0][ICMP].id == 0x7475
    assert echo[0][IP].src == node2.tunnel_address and echo[0][IP].len == 20 + 8 + 8
    assert echo[0][ICMP].load == b"meshwire"


@pytest.mark.parametrize("family,gateway", [(4, "169.254.1.1"), (6, "fe80::1%eth0")])
def test_pods_can_ping_their_gateway(cluster, node1, family, gateway):
    """The pods' gateway address answers echo (proxy ARP/ND makes it reachable)."""
    done = cluster.ping(node1.pods[0], gateway, family, count=2)
    assert done.returncode == 0, done.stdout
