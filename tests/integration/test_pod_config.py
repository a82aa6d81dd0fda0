"""The data plane as the DaemonSet runs it, and its probes.

node1 runs from a config like the DaemonSet's ConfigMap: its name and its
uplink device from environment variables (${VAR}), its tunnel address from
Multus's network-status in a downward API annotations file
(network:NAME, with --pod-annotations), and no pod CIDRs (the controller
applies the Node's). `meshwirectl health` then goes through its states:
not ready before a controller applied a state, ready once it did and the
peer's keepalives arrive, not ready naming the peer when the peer's data
plane stops, ready again when it is back; `health --live` holds throughout.
(sriov: and network: devices need PCI devices: the unit tests cover them.)
Last, a node started without pod CIDRs still refuses IPv6 ones in an Apply
when its uplink cannot carry 1280 bytes for them.
"""

import json
import subprocess

import pytest
import yaml

import meshwire_topology as topo
from meshwire_control import CONTROLLER, CTL, Controllers, ctl_json, nodes_yaml, write_atomic

FABRIC_NETWORK = "meshwire-system/fabric"


def go_quote(text: str) -> str:
    """strconv.Quote for the ASCII text written here (the kubelet writes each
    annotation of a downward API file as key=%q)."""
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20 or ord(ch) == 0x7f:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def write_annotations(path, fabric_ip: str) -> None:
    # As Multus writes network-status: the default network first, then the
    # attachments named namespace/name, indented JSON.
    status = [
        {"name": "cbr0", "interface": "eth0", "ips": ["10.244.1.5"], "mac": "0a:58:0a:f4:01:05",
         "default": True, "dns": {}},
        {"name": FABRIC_NETWORK, "interface": "net1", "ips": [fabric_ip], "mac": "ce:4f:10:22:33:44",
         "dns": {}},
    ]
    annotations = {
        "k8s.v1.cni.cncf.io/network-status": json.dumps(status, indent=4),
        "kubernetes.io/config.source": "api",
    }
    path.write_text("\n".join(f"{k}={go_quote(v)}" for k, v in sorted(annotations.items())))


def podify(node) -> dict:
    """Rewrites node's config as a DaemonSet's ConfigMap would have it;
    returns the environment the data plane needs for it."""
    config = yaml.safe_load(node.config_path.read_text())
    uplink = config["ports"][1]
    env = {"NODE_NAME": node.name, "MW_UPLINK_DEVICE": uplink["device"]}
    uplink["device"] = "${MW_UPLINK_DEVICE}"
    config["node"] = {"name": "${NODE_NAME}", "tunnel_address": "network:fabric"}
    node.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    return env


def health(node, *args, socket=None):
    return subprocess.run([str(CTL), "--socket", str(socket or node.api_socket), "health", *args],
                          capture_output=True, text=True, timeout=10)


@pytest.fixture(scope="module")
def pod(cluster):
    if not CONTROLLER.exists():
        pytest.fail(f"{CONTROLLER} is not built")
    c = topo.Cluster(cluster.binary, nodes=2, pods_per_node=1, workers=1, static_peers=False)
    ctls = None
    try:
        c.create()
        n1 = c.nodes[0]
        annotations = c.tmpdir / "podinfo-annotations"
        write_annotations(annotations, n1.tunnel_address)
        env = podify(n1)
        c.node_env[n1.name] = env
        c.node_args[n1.name] = ["--pod-annotations", str(annotations)]
        c.start()
        folder = c.tmpdir / "objects"
        folder.mkdir()
        write_atomic(folder / "nodes.yaml", nodes_yaml(c))
        ctls = Controllers(c, folder)
        yield c, ctls, env, annotations
    finally:
        if ctls is not None:
            ctls.stop_all()
        c.teardown()


def test_check_reads_the_pod_forms(pod):
    c, _, env, annotations = pod
    n1 = c.nodes[0]
    base = [str(c.binary), "--config", str(n1.config_path), "--check"]
    ok = subprocess.run(base + ["--pod-annotations", str(annotations)], env=env,
                        capture_output=True, text=True, timeout=30)
    assert ok.returncode == 0 and "valid" in ok.stdout, ok.stdout + ok.stderr
    # Without NODE_NAME: exit 2, naming the field and the variable.
    unset = subprocess.run(base + ["--pod-annotations", str(annotations)],
                           env={k: v for k, v in env.items() if k != "NODE_NAME"},
                           capture_output=True, text=True, timeout=30)
    assert unset.returncode == 2, unset.stdout + unset.stderr
    assert "node.name: environment variable NODE_NAME is not set" in unset.stderr, unset.stderr
    # Without the annotations file: the tunnel address cannot be found.
    blind = subprocess.run(base, env=env, capture_output=True, text=True, timeout=30)
    assert blind.returncode == 2
    assert "node.tunnel_address: network:fabric needs the pod's annotations" in blind.stderr, blind.stderr


def test_health_follows_the_node(pod):
    c, ctls, _, _ = pod
    n1, n2 = c.nodes
    # Started from the pod's config: the name and address came through.
    gen = ctl_json(n1, "show", "generation")
    assert gen["tunnel_address"] == n1.tunnel_address and gen["live_generation"] == "0", gen

    # No controller yet: not ready, and says why; alive all the same.
    r = health(n1)
    assert r.returncode == 1, r.stdout
    assert r.stdout.strip() == "not ready: no state applied yet (live generation 0: is the controller running?)", \
        r.stdout
    live = health(n1, "--live")
    assert live.returncode == 0 and live.stdout.startswith("live: 1 worker(s) polling"), live.stdout + live.stderr

    # The controllers apply the states (node1's pod CIDRs from its Node
    # object) and the keepalives bring the peer(s) up: ready.
    for n in c.nodes:
        ctls.start(n)
    # (It may be ready a moment earlier with no peers: applied before
    # node2's controller published its key.)
    topo.wait_for(lambda: "1/1 peer(s) up" in health(n1).stdout, timeout=30, what="node1 ready with its peer")
    r = health(n1)
    assert r.returncode == 0, r.stdout
    assert r.stdout.startswith("ready: generation ") and r.stdout.rstrip().endswith(
        "2 port(s) up, 1 worker(s) polling, 1/1 peer(s) up"), r.stdout
    routes = ctl_json(n1, "show", "routes")["routes"]
    assert any(rt["prefix"] == n1.pod_cidr_v4 for rt in routes), routes
    doc = ctl_json(n1, "health")  # exits 0 when ready
    assert doc["check"] == "readiness" and doc["ok"] is True and doc["reasons"] == [], doc
    assert [p["liveness"] for p in doc["health"]["peers"]] == ["up"], doc
    assert all(p["link_up"] for p in doc["health"]["ports"]), doc
    assert c.ping(n1.pods[0], n2.pods[0], 4, count=2, deadline=5).returncode == 0

    # node2's data plane stops: node1 has no peer up any more.
    c.stop_node(n2)
    topo.wait_for(lambda: health(n1).returncode == 1, timeout=10, what="node1 not ready")
    r = health(n1)
    assert r.stdout.startswith("not ready: peer node2 down (silent for "), r.stdout
    assert r.stdout.rstrip().endswith("; no peer is up"), r.stdout
    assert len(r.stdout.strip().splitlines()) == 1, r.stdout
    assert health(n1, "--live").returncode == 0

    # Back: node2's controller programs it again, keepalives flow, ready.
    c.start_node(n2)
    topo.wait_for(lambda: "1/1 peer(s) up" in health(n1).stdout, timeout=30, what="node1 ready again")


def test_health_without_a_data_plane(pod):
    c, _, _, _ = pod
    r = health(c.nodes[0], socket=c.tmpdir / "absent.sock")
    assert r.returncode == 1
    assert r.stdout.strip() == f"not ready: no data plane API socket at {c.tmpdir / 'absent.sock'}", r.stdout
    r = health(c.nodes[0], "--live", socket=c.tmpdir / "absent.sock")
    assert r.returncode == 1 and r.stdout.startswith("not live: "), r.stdout


def test_ipv6_pod_cidrs_applied_later_still_need_1280_bytes(cluster, tmp_path):
    """A config without pod CIDRs leaves nothing for the startup's IPv6 MTU
    rule to see; Apply checks the prefixes it brings against the uplink."""
    c = topo.Cluster(cluster.binary, nodes=1, pods_per_node=1, workers=1, static_peers=False)
    try:
        c.create()
        n1 = c.nodes[0]
        config = yaml.safe_load(n1.config_path.read_text())
        del config["node"]["pod_cidrs"]
        config["ports"][1]["mtu"] = 1300   # 1242 bytes for a pod's packet over IPv4 ESP-in-UDP
        n1.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        c.start()

        def apply(generation, cidrs):
            f = tmp_path / f"apply-{generation}.json"
            f.write_text(json.dumps({"generation": generation, "state": {"pod_cidrs": cidrs, "peers": []}}))
            return subprocess.run([str(CTL), "--socket", str(n1.api_socket), "apply", "-f", str(f)],
                                  capture_output=True, text=True, timeout=30)

        refused = apply(1, [n1.pod_cidr_v4, n1.pod_cidr_v6])
        assert refused.returncode == 1, refused.stdout + refused.stderr
        assert (f"pod_cidrs[1]: {n1.pod_cidr_v6} is IPv6, but the uplink (fabric, mtu 1300) leaves "
                in refused.stderr and "IPv6 needs 1280" in refused.stderr), refused.stderr
        assert ctl_json(n1, "show", "generation")["live_generation"] == "0"
        accepted = apply(1, [n1.pod_cidr_v4])
        assert accepted.returncode == 0, accepted.stdout + accepted.stderr
    finally:
        c.teardown()
