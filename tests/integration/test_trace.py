"""Packet trace (`meshwirectl trace`) on real data planes: pings across
the nodes traced on both sides (the pod's packet routed to the peer,
sealed and sent as ESP; the ESP authenticated, decrypted and delivered), a
packet to nowhere traced to its drop, a SYN to a ClusterIP traced through
its DNAT, and bad requests refused naming what is wrong."""
import json
import subprocess
import threading
import time

import pytest

import meshwire_topology as topo
from meshwire_control import CTL


def trace(node, *args: str, timeout: float = 30) -> dict:
    done = subprocess.run([str(CTL), "--socket", str(node.api_socket), "--json", "trace", *args],
                          capture_output=True, text=True, timeout=timeout)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def while_running(action, body):
    """Runs `action` (traffic) in a thread while `body` (the trace) runs;
    the traffic starts a little later, once the trace is armed."""
    def later():
        time.sleep(0.5)
        action()
    t = threading.Thread(target=later, daemon=True)
    t.start()
    try:
        return body()
    finally:
        t.join(timeout=30)


def steps(packet: dict) -> list[str]:
    return [s["step"] for s in packet["steps"]]


def test_a_ping_is_traced_from_the_pod_to_the_fabric(cluster):
    n1, n2 = cluster.nodes
    a, b = n1.pods[0], n2.pods[0]
    got = while_running(lambda: cluster.ping(a, b, count=10, extra=["-i", "0.1"]),
                        lambda: trace(n1, "-c", "3", "--port", "pods", "--wait", "5"))
    packets = got["packets"]
    assert len(packets) == 3, got
    echo = [p for p in packets if f"IPv4 {a.ipv4} > {b.ipv4}" in p["steps"][0]["detail"]]
    assert echo, packets
    p = echo[0]
    assert p["complete"] is True
    assert steps(p) == ["rx", "route", "encrypt", "tx"], p
    assert "port pods" in p["steps"][0]["detail"] and "ICMP type 8" in p["steps"][0]["detail"]
    assert "to peer node2 (192.0.2.2)" in p["steps"][1]["detail"]
    spi = p["steps"][2]["detail"].split("spi ")[1].split(",")[0]
    assert int(spi, 16) in {sa.spi for sa in n1.outbound["node2"]}, (spi, p)
    # What left: ESP-in-UDP from node1 to node2 with that SPI.
    tx = p["steps"][3]["detail"]
    assert "port fabric" in tx and "IPv4 192.0.2.1 > 192.0.2.2" in tx and f"ESP spi {spi}" in tx, tx
    times = [int(s["at_ns"]) for s in p["steps"]]
    assert times == sorted(times) and times[0] == 0


def test_esp_is_traced_through_decryption_to_the_pod(cluster):
    n1, n2 = cluster.nodes
    a, b = n1.pods[0], n2.pods[0]
    got = while_running(lambda: cluster.ping(a, b, count=20, extra=["-i", "0.05"]),
                        lambda: trace(n2, "-c", "20", "--port", "fabric", "--wait", "5"))
    decrypted = [p for p in got["packets"] if "decrypt" in steps(p)]
    assert decrypted, got
    p = next(p for p in decrypted if f"IPv4 {a.ipv4} > {b.ipv4}" in p["steps"][1]["detail"])
    assert steps(p) == ["rx", "decrypt", "tx"], p
    assert "ESP spi" in p["steps"][0]["detail"]
    assert "authenticated, from peer node1" in p["steps"][1]["detail"]
    assert "port pods" in p["steps"][2]["detail"] and "ICMP type 8" in p["steps"][2]["detail"]
    # The fabric also carries keepalives: consumed where they arrive.
    keepalives = [p for p in got["packets"] if steps(p) == ["rx", "decrypt"] or "consumed" in steps(p)]
    assert all(steps(k) == ["rx", "consumed"] for k in keepalives), keepalives


def test_a_packet_to_nowhere_is_traced_to_its_drop(cluster):
    n1 = cluster.nodes[0]
    a = n1.pods[0]
    got = while_running(lambda: topo.run(["ping", "-4", "-c", "5", "-i", "0.1", "-W", "1", "10.99.0.1"], ns=a.ns,
                                         check=False, timeout=20),
                        lambda: trace(n1, "-c", "3", "--port", "pods", "--wait", "5"))
    dropped = [p for p in got["packets"] if "> 10.99.0.1" in p["steps"][0]["detail"]]
    assert dropped, got
    assert steps(dropped[0]) == ["rx", "drop"], dropped[0]
    assert dropped[0]["steps"][1]["detail"].startswith("no_route (no route for the destination)")


def test_a_connection_to_a_cluster_ip_is_traced_through_its_dnat(cluster, tmp_path):
    n1, n2 = cluster.nodes
    a, b = n1.pods[0], n2.pods[0]
    services = {"services": [{"name": "default/traced:http", "vip": "10.96.0.77", "port": 80, "protocol": "TCP",
                              "backends": [{"address": b.ipv4, "port": 8080, "node": "node2",
                                            "target": f"default/{b.name}"}]}]}
    path = tmp_path / "services.json"
    path.write_text(json.dumps(services))
    topo.run([CTL, "--socket", n1.api_socket, "apply-services", "-f", path])
    try:
        got = while_running(lambda: topo.run(["curl", "-sS", "--max-time", "2", "http://10.96.0.77/"], ns=a.ns,
                                             check=False, timeout=10),
                            lambda: trace(n1, "-c", "4", "--port", "pods", "--wait", "5"))
        # The pod may ARP for its gateway first (punted, traced too): the
        # SYN is the first packet to the VIP.
        to_vip = [p for p in got["packets"] if "> 10.96.0.77" in p["steps"][0]["detail"]]
        assert to_vip, got
        p = to_vip[0]
        assert steps(p) == ["rx", "service", "route", "encrypt", "tx"], p
        assert "TCP" in p["steps"][0]["detail"]
        assert p["steps"][1]["detail"] == (f"service default/traced:http: to backend {b.ipv4}:8080 "
                                           f"(default/{b.name} on node2)"), p
    finally:
        path.write_text(json.dumps({"services": []}))
        topo.run([CTL, "--socket", n1.api_socket, "apply-services", "-f", path])


def test_the_table_and_bad_requests(cluster):
    n1, n2 = cluster.nodes
    text = while_running(lambda: cluster.ping(n1.pods[0], n2.pods[0], count=5, extra=["-i", "0.1"]),
                         lambda: subprocess.run([str(CTL), "--socket", str(n1.api_socket), "trace", "-c", "1",
                                                 "--port", "pods"], capture_output=True, text=True, timeout=30))
    assert text.returncode == 0, text.stderr
    assert text.stdout.startswith("Packet ") and "rx" in text.stdout and text.stdout.rstrip().endswith(
        "1 packet(s) traced"), text.stdout
    bad = subprocess.run([str(CTL), "--socket", str(n1.api_socket), "trace", "--port", "nosuch"],
                         capture_output=True, text=True, timeout=30)
    assert bad.returncode == 1 and "port: no port named nosuch" in bad.stderr, bad
    usage = subprocess.run([str(CTL), "--socket", str(n1.api_socket), "trace", "-c", "0"], capture_output=True,
                           text=True, timeout=30)
    assert usage.returncode == 2, usage
    # Nothing to trace within the wait: an empty answer, not an error.
    quiet = trace(n1, "-c", "1", "--port", "pods", "--wait", "0.3")
    assert quiet.get("packets", []) == [] or all("rx" == s["step"] for p in quiet["packets"] for s in p["steps"][:1])
