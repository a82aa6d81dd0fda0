"""meshwire-controller's Kubernetes source (libcurl list/watch client and its
local copy of the Nodes), run on its own as tests/control/kube/kube_probe
against fake_apiserver.py: paged lists, watches from the list's
resourceVersion, bookmarks, 410 Gone as a status and as an event, dropped
and slow streams, token rotation, injected errors and backoff, PATCH of
annotations, in-cluster config with an IPv6 service host."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path

import pytest

from fake_apiserver import FakeApiServer, has_ipv6_loopback
from meshwire_control import BUILD

PROBE = BUILD / "tests" / "kube_probe"


def node(name: str, cidr: str, **annotations) -> dict:
    return {"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "annotations": dict(annotations)},
            "spec": {"podCIDRs": [cidr]},
            "status": {"addresses": [{"type": "InternalIP", "address": "192.0.2." + cidr.split(".")[1]}]}}


class Probe:
    """kube_probe as a child process; its JSON lines collected as they come."""

    def __init__(self, args: list[str], log: Path, env: dict | None = None):
        if not PROBE.exists():
            pytest.fail(f"{PROBE} is not built")
        self.log = log
        self.proc = subprocess.Popen([str(PROBE), *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=open(log, "wb"), text=True, env=env)
        self.lines: list[dict] = []
        self._cond = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            with self._cond:
                self.lines.append(json.loads(line))
                self._cond.notify_all()

    def wait_for(self, predicate, timeout: float = 10, what: str = "condition", latest: bool = True) -> dict:
        """The first line (the latest only, when `latest`) that satisfies predicate."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for line in (self.lines[-1:] if latest else self.lines):
                    if predicate(line):
                        return line
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"kube_probe: {what} not seen in {timeout} s; last lines "
                                         f"{self.lines[-3:]}; log:\n{self.log.read_text()}")
                self._cond.wait(left)

    def nodes(self, *names: str, what: str = "", timeout: float = 10) -> dict:
        want = set(names)
        return self.wait_for(lambda l: set(l.get("nodes", {})) == want, timeout, what or f"nodes {sorted(want)}")

    def close(self):
        try:
            self.proc.stdin.close()
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise AssertionError("kube_probe did not stop within 5 s of its stdin closing")


@pytest.fixture
def api(tmp_path):
    with FakeApiServer(tmp_path / "api") as server:
        for i in range(1, 6):
            server.create("nodes", node(f"node{i}", f"10.{i}.0.0/24"))
        yield server


@pytest.fixture
def probe(api, tmp_path):
    started = []

    def start(*args: str, kubeconfig: bool = True, env=None, **kw) -> Probe:
        extra = []
        if kubeconfig:
            api.write_kubeconfig(tmp_path / "kubeconfig", **kw)
            extra = ["--kubeconfig", str(tmp_path / "kubeconfig")]
        p = Probe([*extra, *args], tmp_path / f"probe{len(started)}.log", env)
        started.append(p)
        return p

    yield start
    for p in started:
        p.close()


def requests(api, *, watch: bool | None = None, path: str = "/api/v1/nodes") -> list[dict]:
    out = [r for r in list(api.requests) if r["path"] == path]
    if watch is not None:
        out = [r for r in out if (r["query"].get("watch") in ("1", "true")) == watch]
    return out


def all_names():
    return [f"node{i}" for i in range(1, 6)]


def test_paged_list_then_watch_from_its_resource_version(api, probe):
    p = probe("--page-size", "2")
    p.nodes(*all_names())
    lists = requests(api, watch=False)
    assert [r["query"].get("limit") for r in lists] == ["2", "2", "2"], lists
    assert "continue" not in lists[0]["query"] and all("continue" in r["query"] for r in lists[1:])
    api.wait_for_watchers("nodes")
    w = requests(api, watch=True)[0]["query"]
    assert w["resourceVersion"] == str(api.resource_version()) and w["allowWatchBookmarks"] == "true", w
    assert 300 <= int(w["timeoutSeconds"]) < 600, w
    # Changes arrive through the watch: create, patch, delete.
    api.create("nodes", node("node6", "10.6.0.0/24"))
    p.nodes(*all_names(), "node6")
    n2 = api.get("nodes", "node2")
    n2["spec"]["podCIDRs"] = ["10.22.0.0/24"]
    api.update("nodes", n2)
    p.wait_for(lambda l: l.get("nodes", {}).get("node2", {}).get("pod_cidrs") == ["10.22.0.0/24"],
               what="node2's new pod CIDR")
    api.delete("nodes", "node3")
    p.nodes("node1", "node2", "node4", "node5", "node6")
    assert len(requests(api, watch=False)) == 3, "no relist was needed"


def test_a_dropped_watch_resumes_from_the_last_bookmark_without_relisting(api, probe):
    api.bookmark_interval_s = 0.2
    p = probe()
    p.nodes(*all_names())
    api.wait_for_watchers("nodes")
    listed_rv = int(requests(api, watch=True)[0]["query"]["resourceVersion"])
    api.create("namespaces", {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}})  # rv moves
    time.sleep(0.6)  # a bookmark carries the new rv
    assert api.drop_watches() == 3  # nodes, services, endpoint slices
    api.wait_for_watchers("nodes")
    second = requests(api, watch=True)[-1]["query"]
    assert int(second["resourceVersion"]) > listed_rv, (listed_rv, second)
    api.create("nodes", node("node7", "10.7.0.0/24"))
    p.nodes(*all_names(), "node7")
    assert len(requests(api, watch=False)) == 1, "resumed without a relist"


@pytest.mark.parametrize("mode", ["status", "event"])
def test_410_gone_relists_and_misses_nothing(api, probe, mode):
    api.gone_mode = mode
    p = probe()
    p.nodes(*all_names())
    api.wait_for_watchers("nodes")
    # While the client is away, history moves on and is compacted.
    api.bookmark_interval_s = 3600
    api.drop_watches()
    api.delete("nodes", "node1")
    api.create("nodes", node("node8", "10.8.0.0/24"))
    api.compact()
    p.nodes("node2", "node3", "node4", "node5", "node8", what=f"the state after a 410 ({mode})")
    assert len(requests(api, watch=False)) == 2, "one relist after the 410"
    api.wait_for_watchers("nodes")


def test_an_expired_continue_token_starts_the_list_over(api, probe):
    # The snapshot behind the continue tokens is compacted right after the
    # first page is served: the second page answers 410 Expired, and the
    # client lists again from the start (a consistent list, not a spliced one).
    original = api._list_page
    expired = []

    def first_page_then_expire(resource, namespace, limit, token):
        page = original(resource, namespace, limit, token)
        if not expired and resource == "nodes":
            expired.append(True)
            api.expire_continue_tokens()
        return page

    api._list_page = first_page_then_expire
    p = probe("--page-size", "2")
    p.nodes(*all_names())
    lists = requests(api, watch=False)
    assert [r["status"] for r in lists] == [200, 410, 200, 200, 200], lists
    assert "continue" not in lists[2]["query"], "the list started over"


def test_a_list_answered_410_starts_over(api, probe):
    api.fail_next(1, status=410, path_prefix="/api/v1/nodes")
    p = probe("--page-size", "2")
    p.nodes(*all_names())
    lists = requests(api, watch=False)
    assert lists[0]["status"] == 410 and lists[1]["status"] == 200 and "continue" not in lists[1]["query"], lists


def test_slow_streams_and_split_lines(api, probe):
    p = probe()
    p.nodes(*all_names())
    api.wait_for_watchers("nodes")
    api.slow_s = 0.2
    api.create("nodes", node("node9", "10.9.0.0/24"))
    api.create("nodes", node("node10", "10.10.0.0/24"))
    p.nodes(*all_names(), "node9", "node10", timeout=15)
    assert len(requests(api, watch=False)) == 1


def test_a_rotated_token_is_read_from_its_file(api, probe):
    p = probe()
    p.nodes(*all_names())
    api.wait_for_watchers("nodes")
    api.rotate_token(overlap_s=0)  # the old token is refused from now on
    api.drop_watches()
    api.wait_for_watchers("nodes")
    api.create("nodes", node("node11", "10.11.0.0/24"))
    p.nodes(*all_names(), "node11")
    after = [r for r in requests(api) if r["auth"] == f"Bearer {api.token}"]
    assert after and not any(r["status"] == 401 for r in requests(api)), requests(api)


def test_errors_back_off_with_jitter_and_recover(api, probe):
    p = probe()
    p.nodes(*all_names())
    api.wait_for_watchers("nodes")
    api.fail_next(4, status=500, path_prefix="/api/v1/nodes")
    t0 = time.monotonic()
    api.drop_watches()
    api.wait_for_watchers("nodes", timeout=30)
    took = time.monotonic() - t0
    failed = [r for r in requests(api) if r["status"] == 500]
    assert len(failed) == 4, failed
    gaps = [b["time"] - a["time"] for a, b in zip(failed, failed[1:])]
    # Delays double from 250 ms (the cut stream's retry is the first), each
    # drawn from [d/2, d]: 0.5, 1, 2 s at most between these, growing, and
    # never a busy loop. Then the successful watch after at most 4 s more.
    assert all(g >= 0.2 for g in gaps), gaps
    assert gaps[-1] > gaps[0], gaps
    assert took < 0.25 + 0.5 + 1 + 2 + 4 + 2, took
    api.create("nodes", node("node12", "10.12.0.0/24"))
    p.nodes(*all_names(), "node12")
    assert len(requests(api, watch=False)) == 1, "watch errors re-watch from the last rv, no relist"


def test_a_server_that_closes_every_watch_at_once_is_not_hammered(api, probe):
    p = probe()
    p.nodes(*all_names())
    api.wait_for_watchers("nodes")
    before = len(requests(api))
    for _ in range(15):  # cut every stream as soon as it opens, for ~3 s
        api.drop_watches()
        time.sleep(0.2)
    # Per collection (the nodes' here): at most one request per cut.
    assert len(requests(api)) - before <= 16, len(requests(api)) - before


def test_services_and_endpoint_slices_are_listed_and_watched_too(api, probe):
    api.create("services", {"apiVersion": "v1", "kind": "Service",
                            "metadata": {"name": "web", "namespace": "shop"},
                            "spec": {"clusterIPs": ["10.96.0.10"], "ports": [{"name": "http", "port": 80}]}})
    p = probe()
    p.wait_for(lambda l: l.get("services") == {"shop/web": ["10.96.0.10"]}, what="the Service")
    for collection in ("/api/v1/services", "/apis/discovery.k8s.io/v1/endpointslices"):
        api.wait_for_watchers(collection.rsplit("/", 1)[1])
        assert requests(api, watch=True, path=collection), collection
    api.create("endpointslices", {
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": "web-a", "namespace": "shop", "labels": {"kubernetes.io/service-name": "web"}},
        "addressType": "IPv4", "ports": [{"name": "http", "port": 8080}],
        "endpoints": [{"addresses": ["10.1.0.5"]}, {"addresses": ["10.2.0.7"]}]})
    p.wait_for(lambda l: l.get("endpoint_slices") == {"shop/web-a": ["10.1.0.5", "10.2.0.7"]}, what="the slice")
    s = api.get("endpointslices", "web-a", "shop")
    s["endpoints"] = s["endpoints"][1:]
    api.update("endpointslices", s)
    p.wait_for(lambda l: l.get("endpoint_slices") == {"shop/web-a": ["10.2.0.7"]}, what="the slice's change")
    api.delete("services", "web", "shop")
    p.wait_for(lambda l: l.get("services") == {}, what="the Service gone")


def test_patch_merges_annotations_into_the_node(api, probe):
    n = api.get("nodes", "node1")
    n["metadata"]["annotations"]["other/keep"] = "yes"
    api.update("nodes", n)
    p = probe("--patch-node", "node1", "--annotation", "meshwire.io/key-epoch=7",
              "--annotation", "meshwire.io/public-key=abc=")
    line = p.wait_for(lambda l: "patched" in l or "patch_error" in l, what="the PATCH", latest=False)
    assert line == {"patched": "node1"}, line
    got = api.get("nodes", "node1")["metadata"]["annotations"]
    assert got == {"other/keep": "yes", "meshwire.io/key-epoch": "7", "meshwire.io/public-key": "abc="}, got
    patch = [r for r in api.requests if r["method"] == "PATCH"]
    assert len(patch) == 1 and patch[0]["path"] == "/api/v1/nodes/node1", patch
    # ... and the watch brings the change back.
    p.wait_for(lambda l: l.get("nodes", {}).get("node1", {}).get("annotations", {}).get(
        "meshwire.io/key-epoch") == "7", what="the patched node through the watch")


def test_patch_of_a_missing_node_says_why(api, probe):
    p = probe("--patch-node", "ghost", "--annotation", "a=b")
    line = p.wait_for(lambda l: "patched" in l or "patch_error" in l, what="the PATCH", latest=False)
    assert "patch_error" in line and "404" in line["patch_error"] and "/api/v1/nodes/ghost" in line["patch_error"]


def test_a_bad_node_object_is_named_until_it_is_fixed(api, probe):
    p = probe()
    p.nodes(*all_names())
    bad = api.get("nodes", "node4")
    bad["status"]["addresses"][0]["address"] = "not-an-ip"
    api.update("nodes", bad)
    line = p.wait_for(lambda l: "error" in l, what="the error")
    assert "node4" in line["error"] and "not-an-ip" in line["error"], line
    api.delete("nodes", "node4")
    p.nodes("node1", "node2", "node3", "node5")


def test_kubeconfig_with_embedded_ca_and_inline_token(api, probe):
    p = probe(embed_ca=True, token_in_file=False)
    p.nodes(*all_names())



@pytest.mark.skipif(not has_ipv6_loopback(), reason="no IPv6 loopback on this machine")
def test_in_cluster_with_an_ipv6_service_host(tmp_path):
    with FakeApiServer(tmp_path / "api6", host="::1") as api6:
        api6.create("nodes", node("v6node", "10.60.0.0/24"))
        sa = tmp_path / "serviceaccount"
        sa.mkdir()
        (sa / "ca.crt").symlink_to(api6.ca_file)
        (sa / "token").symlink_to(api6.token_file)
        env = {"KUBERNETES_SERVICE_HOST": "::1", "KUBERNETES_SERVICE_PORT": str(api6.port)}
        p = Probe(["--in-cluster", "--service-account-dir", str(sa)], tmp_path / "probe6.log", env)
        try:
            p.nodes("v6node")
            api6.rotate_token()
            api6.drop_watches()
            api6.create("nodes", node("v6node2", "10.61.0.0/24"))
            p.nodes("v6node", "v6node2")
        finally:
            p.close()


def test_a_wrong_ca_is_a_clear_error_and_no_list(api, probe, tmp_path):
    other = tmp_path / "other"
    with FakeApiServer(other) as stranger:
        api.write_kubeconfig(tmp_path / "kc")
        text = (tmp_path / "kc").read_text().replace(str(api.ca_file), str(stranger.ca_file))
        (tmp_path / "kc").write_text(text)
        p = probe("--kubeconfig", str(tmp_path / "kc"), kubeconfig=False)
        line = p.wait_for(lambda l: "error" in l, what="waiting for the first list")
        time.sleep(1.5)
        assert "waiting for the first list of nodes" in line["error"]
        assert not api.requests, "no request got through TLS"
        assert "certificate" in p.log.read_text().lower(), p.log.read_text()
