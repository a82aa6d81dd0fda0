"""meshwire-controller in a pod's shoes: no kubeconfig, only what the
kubelet gives a DaemonSet's container — KUBERNETES_SERVICE_HOST/PORT and a
projected service-account volume (token, ca.crt, namespace as symlinks
through "..data", swapped atomically when the token rotates) — against the
fake HTTPS API server.

The Nodes' InternalIPs here are not where their data planes listen (as on
an SR-IOV node, whose VF has its own address on a data network): each
controller publishes its data plane's tunnel address as the annotation
meshwire.io/tunnel-address, and its peers send there."""

import os

import pytest

import meshwire_topology as topo

from fake_apiserver import FakeApiServer
from meshwire_control import CONTROLLER, Controllers, node_objects, pinging, show, wait_keyed_from_the_api_server

KERNEL_ADDRESS = "203.0.113.{}"  # each Node's InternalIP: the host's own address, not the fabric's


@pytest.fixture(scope="module")
def pod_like(cluster):
    if not CONTROLLER.exists():
        pytest.fail(f"{CONTROLLER} is not built")
    with topo.running_cluster(cluster.binary, nodes=2, pods_per_node=1, workers=1, static_peers=False) as c:
        with FakeApiServer(c.tmpdir / "apiserver") as api:
            for i, obj in enumerate(node_objects(c), start=1):
                for a in obj["status"]["addresses"]:
                    if a["type"] == "InternalIP":
                        a["address"] = KERNEL_ADDRESS.format(i)
                api.create("nodes", obj)
            ctls = Controllers(c, None, api=api, in_cluster=True)
            try:
                for n in c.nodes:
                    ctls.start(n)
                yield c, ctls, api
            finally:
                ctls.stop_all()


def test_the_service_account_volume_is_laid_out_as_the_kubelets(pod_like):
    c, ctls, api = pod_like
    volume = c.tmpdir / "serviceaccount"
    data = volume / "..data"
    assert data.is_symlink() and os.readlink(data).startswith("..20"), os.listdir(volume)
    for name in ("token", "ca.crt", "namespace"):
        assert os.readlink(volume / name) == f"..data/{name}"
    assert (volume / "namespace").read_text() == "meshwire-system"
    assert "KUBECONFIG" not in ctls.env and ctls.env["KUBERNETES_SERVICE_HOST"] == "127.0.0.1"


def test_in_cluster_controllers_publish_their_tunnel_address_and_traffic_flows(pod_like):
    c, ctls, api = pod_like
    n1, n2 = c.nodes
    wait_keyed_from_the_api_server(c)
    for n in c.nodes:
        assert ctls.annotations(n)["meshwire.io/tunnel-address"] == n.tunnel_address
    # Each sends to the other's published address, not its InternalIP.
    assert show(n1, "peers")["peers"][0]["tunnel_address"] == n2.tunnel_address
    assert show(n2, "peers")["peers"][0]["tunnel_address"] == n1.tunnel_address
    # Every request carried the projected token; none was refused.
    assert api.requests and all(r["auth"] == f"Bearer {api.token}" for r in api.requests), \
        {r["auth"] for r in api.requests}
    for n in c.nodes:
        assert "in-cluster" in ctls.log(n), ctls.log(n)


def test_a_rotated_token_is_read_from_the_swapped_volume(pod_like):
    c, ctls, api = pod_like
    n1, n2 = c.nodes
    topo.wait_for(lambda: pinging(c, n1, n2), timeout=20, what="ping before the rotation")
    old = api.token
    old_target = os.readlink(c.tmpdir / "serviceaccount" / "..data")
    new = api.rotate_token()  # the old token is refused from now on
    assert os.readlink(c.tmpdir / "serviceaccount" / "..data") != old_target
    assert not (c.tmpdir / "serviceaccount" / old_target).exists()
    seen = len(api.requests)
    # Cut the watches: the controllers must list and watch again, with the new token.
    api.drop_watches()
    obj = api.get("nodes", "node2")
    obj["spec"]["podCIDRs"] = obj["spec"]["podCIDRs"] + ["10.97.0.0/24"]
    api.update("nodes", obj)
    topo.wait_for(lambda: any(r["prefix"] == "10.97.0.0/24" and r["next_hop"] == "node2"
                              for r in show(n1, "routes")["routes"]), timeout=20,
                  what="node1 routes node2's new pod CIDR after the token rotated")
    after = api.requests[seen:]
    assert any(r["auth"] == f"Bearer {new}" for r in after), after
    assert all(r["auth"] != f"Bearer {old}" for r in after), [r for r in after if r["auth"] == f"Bearer {old}"]
    assert pinging(c, n1, n2)


def _verb(request: dict) -> str:
    """The RBAC verb of an API request, as the API server's request info
    names it."""
    if request["method"] == "PATCH":
        return "patch"
    if request["method"] != "GET":
        return request["method"].lower()
    if request["query"].get("watch") in ("1", "true"):
        return "watch"
    parts = request["path"].strip("/").split("/")
    # /api/v1/nodes (collection) vs /api/v1/nodes/NAME (object)
    collection = len(parts) == (3 if parts[0] == "api" else 4)
    return "list" if collection else "get"


def _resource(request: dict) -> tuple[str, str]:
    parts = request["path"].strip("/").split("/")
    if parts[0] == "api":
        return "", parts[2]
    return parts[1], parts[3]


def test_every_request_the_controller_makes_is_granted_by_the_clusterrole(pod_like):
    """k8s/base/rbac.yaml against what the controllers really asked the API
    server in this module: a verb RBAC would refuse is a controller that
    cannot work in a cluster; a verb granted but never used is a grant that
    least privilege says to drop (namespaces: kept for NetworkPolicy
    namespace selectors, which the issue asks for)."""
    import yaml
    c, ctls, api = pod_like
    role = next(d for d in yaml.safe_load_all((topo.REPO_ROOT / "k8s" / "base" / "rbac.yaml").read_text())
                if d and d["kind"] == "ClusterRole")
    granted = {(group, resource, verb) for rule in role["rules"] for group in rule["apiGroups"]
               for resource in rule["resources"] for verb in rule["verbs"]}
    topo.wait_for(lambda: all("meshwire.io/tunnel-address" in ctls.annotations(n) for n in c.nodes), timeout=20,
                  what="both controllers published their annotations")
    used = {(*_resource(r), _verb(r)) for r in api.requests}
    assert used, api.requests
    assert used <= granted, sorted(used - granted)
    # Patches went to each controller's own Node only (the admission policy
    # enforces it in a real cluster).
    assert {r["path"] for r in api.requests if r["method"] == "PATCH"} == {f"/api/v1/nodes/{n.name}" for n in c.nodes}
    unused = {(g, res, v) for g, res, v in granted - used if res != "namespaces"}
    assert unused <= {("", "nodes", "get"), ("", "services", "get"), ("discovery.k8s.io", "endpointslices", "get")}, \
        sorted(unused)
