"""The node's Prometheus metrics (meshwire-controller --metrics-listen): two
data planes programmed by their controllers from a folder, a Service with
backends on both nodes, real traffic; the text is checked by `promtool check
metrics`, and a real Prometheus (Debian's) scrapes both nodes on loopback and
is queried for what the traffic did."""

import json
import socket
import subprocess
import time
import urllib.parse
import urllib.request

import pytest

import meshwire_topology as topo

from meshwire_control import CONTROLLER, service_folder, serving

VIP = "10.96.0.40"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def fetch(url: str, timeout: float = 5) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as r:
        return r.read().decode()


def samples(text: str) -> dict[str, float]:
    """'name{labels}' -> value of every sample line."""
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            out[key] = float(value)
    return out


@pytest.fixture(scope="module")
def mesh(cluster):
    if not CONTROLLER.exists():
        pytest.fail(f"{CONTROLLER} is not built")
    with topo.running_cluster(cluster.binary, nodes=2, pods_per_node=2, workers=1, static_peers=False) as c:
        n1, n2 = c.nodes
        backends = [n1.pods[1], n2.pods[0], n2.pods[1]]
        folder = service_folder(c, {"web": (VIP, backends)})
        ports = {n.name: free_port() for n in c.nodes}
        with serving(c, folder, backends, lambda n: ("--metrics-listen", f"127.0.0.1:{ports[n.name]}")) as (ctls, _):
            # Traffic: connections to the ClusterIP from node1's client.
            for _ in range(12):
                topo.run(["curl", "-sS", "--max-time", "3", f"http://{VIP}/"], ns=n1.pods[0].ns, check=False,
                         timeout=10)
            yield c, ctls, ports


def test_the_metrics_are_valid_prometheus_text(mesh):
    c, _, ports = mesh
    text = fetch(f"http://127.0.0.1:{ports['node1']}/metrics")
    check = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, f"promtool: {check.stdout}{check.stderr}"
    got = samples(text)
    assert got["meshwire_dataplane_up"] == 1
    assert got['meshwire_peer_up{peer="node2"}'] == 1
    assert got["meshwire_dataplane_encrypted_packets_total"] > 0
    # Per peer: the curl traffic and the keepalives, both ways; the round
    # trip and clock offset from the keepalives (one machine: one clock).
    for way in ("transmit", "receive"):
        assert got[f'meshwire_peer_{way}_packets_total{{peer="node2"}}'] >= 12
        assert got[f'meshwire_peer_{way}_bytes_total{{peer="node2"}}'] >= 12 * 80
    assert 0 < got['meshwire_peer_keepalive_rtt_seconds{peer="node2"}'] < 1
    assert abs(got['meshwire_peer_clock_offset_seconds{peer="node2"}']) < 0.1
    assert got['meshwire_service_connections_total{service="default/web:http"}'] >= 12
    # Connect latency: a histogram per service (and per busy backend).
    count = got['meshwire_service_connect_duration_seconds_count{service="default/web:http"}']
    assert count >= 12
    assert got['meshwire_service_connect_duration_seconds_bucket{service="default/web:http",le="+Inf"}'] == count
    assert got['meshwire_service_connect_duration_seconds_bucket{service="default/web:http",le="5"}'] == count
    assert 0 < got['meshwire_service_connect_duration_seconds_sum{service="default/web:http"}'] < count
    assert got["meshwire_controller_applies_total"] >= 1
    assert got["meshwire_dataplane_generation"] == got["meshwire_controller_applied_generation"]
    # Every SA says when it was set up: since the controller keyed the node.
    created = [v for k, v in got.items() if k.startswith("meshwire_sa_created_timestamp_seconds{")]
    assert created and all(time.time() - 600 < v <= time.time() for v in created), created
    # node1 accepts from node2 the epoch node2 says it sends.
    theirs = samples(fetch(f"http://127.0.0.1:{ports['node2']}/metrics"))
    assert got['meshwire_controller_peer_key_epoch{peer="node2"}'] == theirs["meshwire_controller_key_epoch"] >= 1


def test_every_metric_the_alerts_and_dashboard_use_is_served(mesh):
    c, _, ports = mesh
    served = {key.split("{")[0] for key in samples(fetch(f"http://127.0.0.1:{ports['node1']}/metrics"))}
    from test_monitoring import dashboard_queries, metric_names, rule_exprs
    used = metric_names(rule_exprs() + dashboard_queries())
    assert used and not used - served, f"not served: {sorted(used - served)}"


def test_prometheus_scrapes_both_nodes_and_answers_queries(mesh, tmp_path):
    c, _, ports = mesh
    web = free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(json.dumps({  # YAML is a superset of JSON
        "global": {"scrape_interval": "1s", "scrape_timeout": "900ms"},
        "scrape_configs": [{"job_name": "meshwire", "static_configs": [
            {"targets": [f"127.0.0.1:{ports[n.name]}"], "labels": {"node": n.name}} for n in c.nodes]}]}))
    check = subprocess.run(["promtool", "check", "config", str(config)], capture_output=True, text=True, timeout=30)
    assert check.returncode == 0, check.stdout + check.stderr
    log = open(tmp_path / "prometheus.log", "wb")
    prom = subprocess.Popen(["prometheus", f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'data'}",
                             f"--web.listen-address=127.0.0.1:{web}"], stdout=log, stderr=log)

    def query(q: str) -> list[dict]:
        url = f"http://127.0.0.1:{web}/api/v1/query?" + urllib.parse.urlencode({"query": q})
        doc = json.loads(fetch(url))
        assert doc["status"] == "success", doc
        return doc["data"]["result"]

    def value(q: str) -> dict[str, float]:
        return {r["metric"].get("node", ""): float(r["value"][1]) for r in query(q)}

    try:
        def both_up():
            try:
                return value("meshwire_dataplane_up") == {"node1": 1.0, "node2": 1.0}
            except OSError:
                return False  # not listening yet
        topo.wait_for(both_up, timeout=30, interval=0.5, what="Prometheus scraping both nodes")
        assert value("meshwire_peer_up") == {"node1": 1.0, "node2": 1.0}
        # Node1's client made the connections; node2's backends got some of them.
        conns = value('sum by (node) (meshwire_service_connections_total{service="default/web:http"})')
        assert conns["node1"] >= 12 and conns.get("node2", 0) == 0, conns
        assert all(v > 0 for v in value("meshwire_dataplane_encrypted_packets_total").values())
        assert all(v > 0 for v in value("meshwire_dataplane_decrypted_packets_total").values())
        # More traffic shows up as a rate.
        n1 = c.nodes[0]
        for _ in range(10):
            topo.run(["curl", "-sS", "--max-time", "3", f"http://{VIP}/"], ns=n1.pods[0].ns, check=False, timeout=10)
        topo.wait_for(lambda: value('sum by (node) (meshwire_service_connections_total)').get("node1", 0) >= 22,
                      timeout=15, interval=0.5, what="the new connections scraped")
        assert value("rate(meshwire_port_receive_packets_total[10s])")["node1"] > 0
        # The connect latency histogram reads as Prometheus's quantiles: on
        # one machine a connect takes well under a second.
        p99 = value('histogram_quantile(0.99, sum by (node, le) '
                    '(meshwire_service_connect_duration_seconds_bucket{service="default/web:http"}))')
        assert 0 < p99["node1"] < 1, p99
    finally:
        topo.stop_process(prom)
        log.close()


def test_a_bad_listen_address_is_refused_naming_the_flag(mesh, tmp_path):
    c, _, _ = mesh
    n1 = c.nodes[0]
    done = subprocess.run([str(CONTROLLER), "--node", "node1", "--source", f"dir:{tmp_path}", "--api-socket",
                           str(n1.api_socket), "--state-dir", str(tmp_path / "state"), "--metrics-listen",
                           "localhost:9464"], capture_output=True, text=True, timeout=30)
    assert done.returncode == 2
    assert "--metrics-listen localhost:9464: localhost is not an IP address" in done.stdout + done.stderr


def test_a_dead_data_plane_reads_as_down_and_comes_back(mesh):
    c, _, ports = mesh
    n2 = c.nodes[1]
    url = f"http://127.0.0.1:{ports['node2']}/metrics"
    n2.process.kill()
    n2.process.wait(timeout=10)
    t0 = time.monotonic()
    got = samples(fetch(url, timeout=10))
    assert got["meshwire_dataplane_up"] == 0
    assert time.monotonic() - t0 < 5  # one call's deadline, not one per call
    assert "meshwire_controller_applies_total" in got  # the controller's own still there
    c.start_node(n2)
    topo.wait_for(lambda: samples(fetch(url)).get("meshwire_dataplane_up") == 1, timeout=30, interval=0.5,
                  what="node2's data plane back in its metrics")
