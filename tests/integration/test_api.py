"""The control API on running data planes, through meshwirectl: every read
call, Apply (idempotent, validated whole, generations in order) and a key
change done by hand with traffic flowing. The tests change what the data
planes route by, so they run on a cluster of their own."""

import base64
import json
import subprocess
from pathlib import Path

import pytest

import meshwire_topology as topo

CTL = topo.find_dataplane().parents[1] / "control" / "meshwirectl"


def ctl(node, *args, check=True, socket=None):
    proc = subprocess.run([str(CTL), "--socket", str(socket or node.api_socket), *map(str, args)],
                          capture_output=True, text=True, timeout=30)
    if check and proc.returncode != 0:
        raise AssertionError(f"meshwirectl {' '.join(map(str, args))}: exit {proc.returncode}\n"
                             f"{proc.stdout}{proc.stderr}")
    return proc


def show_json(node, what):
    return json.loads(ctl(node, "--json", "show", what).stdout)


def sa_json(sa):
    return {"spi": sa.spi, "algorithm": "AES_128_GCM" if sa.algorithm == "aes-128-gcm" else "AES_256_GCM",
            "key": base64.b64encode(sa.key).decode(), "salt": base64.b64encode(sa.salt).decode()}


def state_of(cluster, node, outbound=None, inbound=None, extra_cidrs=()):
    """node's routing state as its startup config has it (ApplyRequest.state),
    with SAs or pod CIDRs replaced/added where given."""
    peers = []
    for other in cluster.nodes:
        if other is node:
            continue
        peers.append({"name": other.name, "tunnel_address": other.tunnel_address,
                      "pod_cidrs": [other.pod_cidr_v4, other.pod_cidr_v6] + list(extra_cidrs),
                      "outbound": [sa_json(s) for s in (outbound or node.outbound)[other.name]],
                      "inbound": [sa_json(s) for s in (inbound or node.inbound)[other.name]]})
    return {"pod_cidrs": [node.pod_cidr_v4, node.pod_cidr_v6], "peers": peers}


def apply(node, tmp_path, generation, state, *extra, check=True):
    f = tmp_path / f"apply-{node.name}-{generation}.json"
    f.write_text(json.dumps({"generation": generation, "state": state}))
    f.chmod(0o600)
    return ctl(node, "apply", "-f", f, *extra, check=check)


@pytest.fixture(scope="module")
def api(cluster):
    """A 2-node cluster of its own (`cluster` first: the environment checks ran)."""
    with topo.running_cluster(cluster.binary, nodes=2, pods_per_node=1, workers=1) as c:
        yield c


def test_reads_show_the_startup_state(api):
    node1, node2 = api.nodes
    gen = show_json(node1, "generation")
    assert gen["source"] in ("config", "api") and gen["workers"] == 1
    assert gen["tunnel_address"] == node1.tunnel_address
    peers = show_json(node1, "peers")["peers"]
    assert [p["name"] for p in peers] == ["node2"]
    assert peers[0]["tunnel_address"] == node2.tunnel_address and peers[0]["mac"] != ""
    routes = {r["prefix"]: r["next_hop"] for r in show_json(node1, "routes")["routes"]}
    assert routes[node1.pod_cidr_v4] == "local" and routes[node2.pod_cidr_v4] == "node2"
    names = {i["name"]: i for i in show_json(node1, "interfaces")["interfaces"]}
    assert set(names) == {"pods", "fabric"} and names["fabric"]["role"] == "uplink"
    # The devices' own statistics: the driver's xstats, by name.
    assert int(names["fabric"]["xstats"]["rx_good_packets"]) > 0
    counters = show_json(node1, "counters")["blocks"]
    assert counters[0]["name"] == "total" and "encrypted_packets" in counters[0]["counters"]
    drops = show_json(node1, "drops")["reasons"]
    assert {"replay", "auth_failed", "no_route"} <= {d["name"] for d in drops}
    # Human tables: SAs by SPI, never key bytes.
    table = ctl(node1, "show", "sas").stdout
    assert "0x00001201" in table and "outbound" in table
    for sa in node1.outbound["node2"] + node1.inbound["node2"]:
        assert sa.key.hex() not in table
    assert sa.key.hex() not in ctl(node1, "--json", "show", "sas").stdout
    per_worker = ctl(node1, "show", "counters", "--per-worker").stdout
    assert "worker0" in per_worker and "control" in per_worker


def test_apply_is_idempotent_and_keeps_traffic(api, tmp_path):
    cluster = api
    node1, node2 = api.nodes
    live = int(show_json(node1, "generation")["live_generation"])
    same = state_of(cluster, node1)
    out = apply(node1, tmp_path, live + 1, same).stdout
    assert f"generation {live + 1} is live (already live;" in out
    out = apply(node1, tmp_path, live + 1, same).stdout  # again: a no-op
    assert "already live" in out
    assert show_json(node1, "generation")["source"] == "api"
    done = cluster.ping(node1.pods[0], node2.pods[0], 4, count=3)
    assert done.returncode == 0, done.stdout + done.stderr


def test_invalid_state_is_refused_whole_naming_the_field(api, tmp_path):
    cluster = api
    node1 = api.nodes[0]
    before = show_json(node1, "routes")
    live = int(show_json(node1, "generation")["live_generation"])
    bad = state_of(cluster, node1)
    bad["peers"][0]["pod_cidrs"].append(node1.pod_cidr_v4)  # overlaps this node's own pods
    bad["pod_cidrs"].append("10.250.0.0/16")                 # a change that must not land either
    proc = apply(node1, tmp_path, live + 1, bad, check=False)
    assert proc.returncode == 1
    assert "state.peers[0].pod_cidrs[2]" in proc.stderr and "overlaps" in proc.stderr, proc.stderr
    bad = state_of(cluster, node1)
    bad["peers"][0]["outbound"][0]["key"] = base64.b64encode(b"short").decode()
    proc = apply(node1, tmp_path, live + 1, bad, check=False)
    assert "state.peers[0].outbound[0].key: must be 16 bytes" in proc.stderr, proc.stderr
    assert int(show_json(node1, "generation")["live_generation"]) == live
    assert show_json(node1, "routes") == before


def test_generations_only_move_forward(api, tmp_path):
    cluster = api
    node1 = api.nodes[0]
    live = int(show_json(node1, "generation")["live_generation"])
    apply(node1, tmp_path, live + 5, state_of(cluster, node1))
    proc = apply(node1, tmp_path, live + 4, state_of(cluster, node1), check=False)
    assert proc.returncode == 1 and "older than the live" in proc.stderr, proc.stderr
    changed = state_of(cluster, node1, extra_cidrs=["10.77.0.0/24"])
    proc = apply(node1, tmp_path, live + 5, changed, check=False)
    assert proc.returncode == 1 and "other contents" in proc.stderr, proc.stderr
    out = apply(node1, tmp_path, live + 4, changed, "--force").stdout
    assert f"generation {live + 4} is live (changed; built in" in out
    routes = {r["prefix"]: r["next_hop"] for r in show_json(node1, "routes")["routes"]}
    assert routes["10.77.0.0/24"] == "node2"


def apply_delta(node, tmp_path, generation, delta, check=True):
    f = tmp_path / f"delta-{node.name}-{generation}.json"
    f.write_text(json.dumps({"generation": generation, "delta": delta}))
    f.chmod(0o600)
    return ctl(node, "apply", "-f", f, check=check)


def test_a_delta_changes_what_it_names_and_keeps_the_rest(api, tmp_path):
    cluster = api
    node1, node2 = api.nodes
    live = int(show_json(node1, "generation")["live_generation"])
    spi_before = next(s for s in show_json(node1, "sas")["sas"] if s["direction"] == "outbound")
    peer = state_of(cluster, node1, extra_cidrs=["10.78.0.0/24"])["peers"][0]
    out = apply_delta(node1, tmp_path, live + 1, {"base_generation": live, "upsert_peers": [peer]}).stdout
    assert f"generation {live + 1} is live" in out, out
    routes = {r["prefix"]: r["next_hop"] for r in show_json(node1, "routes")["routes"]}
    assert routes["10.78.0.0/24"] == "node2" and routes[node1.pod_cidr_v4] == "local"
    kept = next(s for s in show_json(node1, "sas")["sas"] if s["direction"] == "outbound")
    assert kept["spi"] == spi_before["spi"] and int(kept["seq"]) >= int(spi_before["seq"])  # the same SA
    assert cluster.ping(node1.pods[0], node2.pods[0], 4, count=2).returncode == 0
    # Against a generation that is no longer live: refused, the caller sends the whole state.
    proc = apply_delta(node1, tmp_path, live + 2, {"base_generation": live, "remove_peers": ["node2"]}, check=False)
    assert proc.returncode == 1 and f"delta.base_generation: {live} is not the live generation" in proc.stderr
    # Its own errors, and the rules of the state it makes, named; nothing changes.
    proc = apply_delta(node1, tmp_path, live + 2, {"base_generation": live + 1, "remove_peers": ["node9"]},
                       check=False)
    assert "delta.remove_peers[0]: no peer named 'node9' is live" in proc.stderr, proc.stderr
    overlap = dict(peer, name="node7", tunnel_address="192.0.2.77")
    proc = apply_delta(node1, tmp_path, live + 2, {"base_generation": live + 1, "upsert_peers": [overlap]},
                       check=False)
    assert "delta: the state it makes: peers[1].pod_cidrs[0]" in proc.stderr and "overlaps" in proc.stderr, \
        proc.stderr
    assert int(show_json(node1, "generation")["live_generation"]) == live + 1
    # Removing the route again by delta.
    plain = state_of(cluster, node1)["peers"][0]
    apply_delta(node1, tmp_path, live + 2, {"base_generation": live + 1, "upsert_peers": [plain]})
    assert "10.78.0.0/24" not in {r["prefix"] for r in show_json(node1, "routes")["routes"]}


def test_a_key_change_by_hand_loses_nothing(api, tmp_path):
    """Manual rotation of node1 -> node2: node2 accepts the new SA beside the
    old one first, then node1 sends with it, then node2 drops the old one."""
    cluster = api
    node1, node2 = api.nodes
    new = [topo.Sa.fresh(0x12A1)]
    old_in = node2.inbound["node1"]
    g2 = int(show_json(node2, "generation")["live_generation"])
    g1 = int(show_json(node1, "generation")["live_generation"])
    apply(node2, tmp_path, g2 + 1, state_of(cluster, node2, inbound={"node1": old_in + new}))
    # Pings every 10 ms across the whole change (the kernel allows 10 ms
    # intervals to root); every one must come back.
    b = node2.pods[0].address(4)
    flood = topo.popen(["ping", "-4", "-n", "-q", "-c", "300", "-i", "0.01", "-W", "2", b], ns=node1.pods[0].ns,
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        apply(node1, tmp_path, g1 + 1, state_of(cluster, node1, outbound={"node2": new}))
        apply(node2, tmp_path, g2 + 2, state_of(cluster, node2, inbound={"node1": new + old_in[1:]}))
        out, _ = flood.communicate(timeout=60)
    finally:
        if flood.poll() is None:
            flood.kill()
    assert flood.returncode == 0 and " 0% packet loss" in out, out
    sas = show_json(node1, "sas")["sas"]
    out_sa = next(s for s in sas if s["direction"] == "outbound")
    assert out_sa["spi"] == 0x12A1 and int(out_sa["seq"]) > 0
    # What the cluster's model says from now on (no key is ever used twice).
    node1.outbound["node2"] = new
    node2.inbound["node1"] = new + old_in[1:]


def test_meshwirectl_says_what_is_wrong_without_a_data_plane(tmp_path):
    proc = subprocess.run([str(CTL), "--socket", str(tmp_path / "none.sock"), "show", "peers"],
                          capture_output=True, text=True, timeout=10)
    assert proc.returncode == 1
    assert "none.sock: No such file or directory" in proc.stderr and "meshwire-dataplane" in proc.stderr
