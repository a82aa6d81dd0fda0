"""meshwire-controller with --source kube: two data planes that start
without peers, their controllers on a (fake, HTTPS) Kubernetes API server.
Each controller PATCHes its node's public key and epoch onto its Node
object, reads its peer's from the watch, and keys the data plane; a Node
edited in the API server is followed; an API server that goes away leaves
forwarding alone, and the controller catches up when it comes back."""

import socket
import time
import urllib.request

import pytest

import meshwire_topology as topo

from fake_apiserver import FakeApiServer
from meshwire_control import (CONTROLLER, Controllers, ServiceBackends, ctl_json, node_objects, pinging, service_yaml,
                              show, slice_yaml, wait_keyed_from_the_api_server)


@pytest.fixture(scope="module")
def kube(cluster):
    if not CONTROLLER.exists():
        pytest.fail(f"{CONTROLLER} is not built")
    with topo.running_cluster(cluster.binary, nodes=2, pods_per_node=1, workers=1, static_peers=False) as c:
        with FakeApiServer(c.tmpdir / "apiserver") as api:
            for obj in node_objects(c):
                api.create("nodes", obj)
            ctls = Controllers(c, None, api=api)
            with socket.socket() as sk:  # a free port for node1's /metrics
                sk.bind(("127.0.0.1", 0))
                ctls.metrics_port = sk.getsockname()[1]
            try:
                for n in c.nodes:
                    extra = ["--metrics-listen", f"127.0.0.1:{ctls.metrics_port}"] if n is c.nodes[0] else []
                    ctls.start(n, *extra)
                yield c, ctls, api
            finally:
                ctls.stop_all()


def test_keys_are_published_by_patch_and_traffic_flows(kube):
    c, ctls, api = kube
    n1, n2 = c.nodes
    wait_keyed_from_the_api_server(c)
    for n in c.nodes:
        a = ctls.annotations(n)
        assert {"meshwire.io/public-key", "meshwire.io/key-epoch", "meshwire.io/workers",
                "meshwire.io/boot-epoch"} <= set(a), a
    patches = [r for r in api.requests if r["method"] == "PATCH"]
    assert {r["path"] for r in patches} == {"/api/v1/nodes/node1", "/api/v1/nodes/node2"}, patches
    # The SPI node1 sends with is the README's derivation from the annotations.
    out = [s for s in show(n1, "sas")["sas"] if s["direction"] == "outbound"]
    assert out[0]["spi"] == ctls.derived_sa(n1, n2).spi
    # Lists and watches, no polling: a handful of requests per collection,
    # however long it ran.
    for collection in ("/api/v1/nodes", "/api/v1/services", "/apis/discovery.k8s.io/v1/endpointslices"):
        gets = [r for r in api.requests if r["method"] == "GET" and r["path"] == collection]
        assert 2 <= len(gets) <= 8, (collection, gets)


def test_a_node_edited_in_the_api_server_is_followed(kube):
    c, ctls, api = kube
    n1, n2 = c.nodes
    obj = api.get("nodes", "node2")
    obj["spec"]["podCIDRs"] = obj["spec"]["podCIDRs"] + ["10.98.0.0/24"]
    api.update("nodes", obj)
    topo.wait_for(lambda: any(r["prefix"] == "10.98.0.0/24" and r["next_hop"] == "node2"
                              for r in show(n1, "routes")["routes"]), timeout=10,
                  what="node1 routes node2's new pod CIDR")


def test_services_and_endpointslices_from_the_api_server_are_balanced(kube):
    """The same Service and EndpointSlice objects as the folder tests use,
    created in the API server: both data planes balance the ClusterIP, a
    client reaches the backend through it, and an endpoint that stops being
    ready in the API server is drained."""
    import yaml
    c, ctls, api = kube
    n1, n2 = c.nodes
    client, backend = n1.pods[0], n2.pods[0]
    api.create("services", yaml.safe_load(service_yaml("web", "10.96.0.50")))
    api.create("endpointslices", yaml.safe_load(slice_yaml("web", [backend])))
    servers = ServiceBackends()
    try:
        servers.start(backend)
        def backends_on(node):
            got = ctl_json(node, "show", "services", "default/web:http").get("services", [])
            return got[0]["backends"] if got else []
        for n in c.nodes:
            topo.wait_for(lambda: [b["state"] for b in backends_on(n)] == ["active"], timeout=20,
                          what=f"{n.name} balancing default/web from the API server")
        answer = topo.run(["curl", "-sS", "--max-time", "3", "http://10.96.0.50/"], ns=client.ns, check=False)
        assert answer.stdout.strip() == backend.name, answer.stderr
        api.update("endpointslices", yaml.safe_load(slice_yaml("web", [backend], not_ready={backend.name})))
        topo.wait_for(lambda: [b["state"] for b in backends_on(n1)] == ["draining: not ready"], timeout=20,
                      what="the endpoint drained on node1")
    finally:
        servers.stop_all()
        api.delete("endpointslices", "web-1")
        api.delete("services", "web")


def test_the_watches_of_the_api_server_are_in_the_metrics(kube):
    c, ctls, api = kube
    url = f"http://127.0.0.1:{ctls.metrics_port}/metrics"

    def series():
        with urllib.request.urlopen(url, timeout=5) as r:
            text = r.read().decode()
        return {line.rpartition(" ")[0]: float(line.rpartition(" ")[2])
                for line in text.splitlines() if line and not line.startswith("#")}

    topo.wait_for(lambda: series().get('meshwire_controller_kube_lists_total{resource="nodes"}', 0) >= 1,
                  timeout=20, what="node1's controller listed the nodes")
    got = series()
    for resource in ("nodes", "services", "endpointslices"):
        assert got[f'meshwire_controller_kube_lists_total{{resource="{resource}"}}'] >= 1
        assert got[f'meshwire_controller_kube_watches_total{{resource="{resource}"}}'] >= 1
    # The tests before this one edited a Node and created a Service and an
    # EndpointSlice while the watches ran.
    for resource in ("nodes", "services", "endpointslices"):
        assert got[f'meshwire_controller_kube_events_total{{resource="{resource}"}}'] >= 1, resource


def test_an_absent_api_server_leaves_forwarding_alone_and_is_caught_up_with(kube):
    c, ctls, api = kube
    n1, n2 = c.nodes
    before = show(n1, "generation")["live_generation"]
    api.fail_next(10**6, status=503, path_prefix="/api/v1/nodes")  # every list and watch refused
    api.drop_watches()
    time.sleep(2)
    assert pinging(c, n1, n2) and pinging(c, n2, n1)
    assert show(n1, "generation")["live_generation"] == before
    assert "API server: /api/v1/nodes: watch: HTTP 503" in ctls.log(n1), ctls.log(n1)[-1500:]
    # Meanwhile node2 gains a pod CIDR; once the server answers again, node1 follows.
    obj = api.get("nodes", "node2")
    obj["spec"]["podCIDRs"] = obj["spec"]["podCIDRs"] + ["10.97.0.0/24"]
    api.update("nodes", obj)
    api.clear_failures()
    topo.wait_for(lambda: any(r["prefix"] == "10.97.0.0/24" for r in show(n1, "routes")["routes"]),
                  timeout=40, what="node1 catches up after the API server came back")
    assert pinging(c, n1, n2)
