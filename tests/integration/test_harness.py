"""The test harness itself (meshwire_topology), without data planes: the
topology is built as described, frames injected on the fabric reach a node's
uplink, teardown leaves nothing behind, and cleanup_stale() removes what a
killed run left but never a run that is still alive."""
import ctypes
import fcntl
import json
import os
import socket
import subprocess
import time

from scapy.layers.inet import IP, UDP
from scapy.layers.l2 import Ether
from scapy.utils import rdpcap

import meshwire_topology as topo


def netns_names() -> set[str]:
    return set(os.listdir(topo.NETNS_DIR)) if topo.NETNS_DIR.is_dir() else set()


def tx_checksum_offload(ns: str, ifname: str) -> int:
    with topo.in_netns(ns):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with sock:
        value = topo._EthtoolValue(0x16, 0xFF)   # ETHTOOL_GTXCSUM
        fcntl.ioctl(sock.fileno(), 0x8946, topo._Ifreq(b"eth0" if not ifname else ifname.encode(),
                                                       ctypes.addressof(value), b""))
        return value.data


def test_topology_is_built_and_removed_completely():
    cluster = topo.Cluster(topo.find_dataplane(), nodes=2, pods_per_node=2)
    try:
        cluster.create()
        assert set(cluster.namespaces) <= netns_names()
        assert len(cluster.namespaces) == 1 + 2 + 4
        pod = cluster.nodes[0].pods[0]
        addrs = json.loads(topo.run(["ip", "-j", "-n", pod.ns, "addr", "show", "eth0"]).stdout)[0]
        have = {(a["local"], a["prefixlen"]) for a in addrs["addr_info"]}
        assert {(pod.ipv4, 32), (pod.ipv6, 128)} <= have
        routes = topo.run(["ip", "-n", pod.ns, "route"]).stdout
        assert f"default via {topo.GATEWAY_V4} dev eth0" in routes
        assert f"default via {topo.GATEWAY_V6} dev eth0" in topo.run(["ip", "-n", pod.ns, "-6", "route"]).stdout
        assert tx_checksum_offload(pod.ns, "eth0") == 0
        cfg = cluster.nodes[0].config_path.read_text()
        assert cluster.nodes[1].outbound["node1"][0].key.hex() in cfg   # node1's inbound = node2's outbound

        node = cluster.nodes[0]
        mac = json.loads(topo.run(["ip", "-j", "-n", node.ns, "link", "show", node.uplink_if]).stdout)[0]["address"]
        with cluster.capture(node.ns, node.uplink_if, "udp port 4500") as at_node, \
                cluster.fabric_capture() as on_fabric, cluster.injector() as inj:
            frame = Ether(src=inj.mac, dst=mac) / IP(src="192.0.2.2", dst=node.tunnel_address) / \
                UDP(sport=4500, dport=4500) / (b"\x00" * 12)
            assert inj.send([frame] * 3) == 3
        assert len(rdpcap(str(at_node))) == 3
        assert len(rdpcap(str(on_fabric))) == 3
        tmpdir = cluster.tmpdir
    finally:
        cluster.teardown()
    assert not any(n.startswith(cluster.prefix) for n in netns_names())
    assert not tmpdir.exists()
    assert not (topo.STATE_DIR / f"{cluster.prefix}.json").exists()


def test_cleanup_stale_removes_dead_runs_only():
    dead_pid = subprocess.Popen(["true"])
    dead_pid.wait()
    dead, live = "mw" + os.urandom(2).hex(), "mw" + os.urandom(2).hex()
    topo.STATE_DIR.mkdir(parents=True, exist_ok=True)
    sleeper = None
    try:
        for prefix, pid in ((dead, dead_pid.pid), (live, os.getpid())):
            (topo.STATE_DIR / f"{prefix}.json").write_text(json.dumps(
                {"pid": pid, "start_time": topo._pid_start_time(pid) or "gone",
                 "namespaces": [f"{prefix}-fab"], "tmpdir": None}))
            topo.run(["ip", "netns", "add", f"{prefix}-fab"])
        # A leftover process inside the dead run's namespace (like an orphaned data plane).
        sleeper = topo.popen(["sleep", "60"], ns=f"{dead}-fab")
        topo.wait_for(lambda: topo._netns_pids(f"{dead}-fab"), timeout=5, what="sleep in netns")
        removed = topo.cleanup_stale()
        assert dead in removed and live not in removed
        assert f"{dead}-fab" not in netns_names()
        assert f"{live}-fab" in netns_names()
        sleeper.wait(timeout=5)
    finally:
        if sleeper and sleeper.poll() is None:
            sleeper.kill()
        topo._remove_run(live, [f"{live}-fab"], None)
        topo._remove_run(dead, [f"{dead}-fab"], None)
    assert f"{live}-fab" not in netns_names()
    time.sleep(0)
