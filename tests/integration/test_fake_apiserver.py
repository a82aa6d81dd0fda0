"""Tests of fake_apiserver.FakeApiServer, the fake Kubernetes API server the
controller's list/watch tests run against: each semantics it claims, seen by
a plain HTTPS client (http.client, raw TLS sockets where the bytes on the
wire matter, and curl when installed, for libcurl's view). Needs no network
namespaces and not the session's `cluster` fixture."""

from __future__ import annotations

import base64
import http.client
import json
import shutil
import socket
import ssl
import subprocess
import threading
import time

import pytest
import yaml
from cryptography import x509

from fake_apiserver import EXPIRED_CONTINUE, FakeApiServer, has_ipv6_loopback

MERGE = "application/merge-patch+json"


@pytest.fixture
def api(tmp_path):
    with FakeApiServer(tmp_path / "api") as server:
        yield server


def connect(api, timeout: float = 5) -> http.client.HTTPSConnection:
    ctx = ssl.create_default_context(cafile=str(api.ca_file))
    return http.client.HTTPSConnection(api.host, api.port, context=ctx, timeout=timeout)


def call(api, method: str, path: str, *, token="current", body=None, headers=None, conn=None):
    """One request: (status, decoded JSON body)."""
    token = api.token if token == "current" else token
    h = dict(headers or {})
    if token is not None:
        h["Authorization"] = f"Bearer {token}"
    c = conn or connect(api)
    c.request(method, path, body=body, headers=h)
    r = c.getresponse()
    data = r.read()
    if conn is None:
        c.close()
    return r.status, (json.loads(data) if data else None)


class Watch:
    """A watch stream read line by line through http.client."""

    def __init__(self, api, path: str, timeout: float = 5, conn=None):
        self.conn = conn or connect(api, timeout)
        self.conn.request("GET", path, headers={"Authorization": f"Bearer {api.token}"})
        self.resp = self.conn.getresponse()

    def line(self) -> bytes:
        return self.resp.readline()

    def event(self) -> dict:
        line = self.line()
        assert line.endswith(b"\n"), line
        return json.loads(line)

    def close(self):
        self.conn.close()


def node(name: str, **annotations) -> dict:
    return {"metadata": {"name": name, "annotations": annotations}, "spec": {"podCIDRs": ["10.0.0.0/24"]}}


def service(name: str, namespace: str) -> dict:
    return {"metadata": {"name": name, "namespace": namespace}, "spec": {"clusterIP": "10.96.0.10"}}


# -- TLS, authentication, basics


def test_certificate_and_hostname_verification(api):
    cert = x509.load_pem_x509_certificate((api.workdir / "server.crt").read_bytes())
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {str(ip) for ip in sans.get_values_for_type(x509.IPAddress)} == {"127.0.0.1", "::1"}
    assert sans.get_values_for_type(x509.DNSName) == ["localhost"]
    assert api.url == f"https://127.0.0.1:{api.port}"
    ctx = ssl.create_default_context(cafile=str(api.ca_file))
    c = http.client.HTTPSConnection("localhost", api.port, context=ctx, timeout=5)
    assert call(api, "GET", "/api/v1/nodes", conn=c)[0] == 200
    assert c.sock.version() in ("TLSv1.2", "TLSv1.3")
    c.close()


def test_unauthorized(api):
    unauthorized = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                    "message": "Unauthorized", "reason": "Unauthorized", "code": 401}
    assert call(api, "GET", "/api/v1/nodes", token=None) == (401, unauthorized)
    assert call(api, "GET", "/api/v1/nodes", token="not-the-token") == (401, unauthorized)
    status, _ = call(api, "GET", "/api/v1/nodes", token=None, headers={"Authorization": f"Basic {api.token}"})
    assert status == 401
    assert api.token_file.read_text() == api.token
    assert call(api, "GET", "/api/v1/nodes")[0] == 200
    assert [r["status"] for r in api.requests] == [401, 401, 401, 200]
    assert api.requests[-1]["auth"] == f"Bearer {api.token}" and api.requests[0]["auth"] is None


def test_token_rotation_rejects_old_token_at_once(api):
    old = api.token
    new = api.rotate_token()
    assert new != old and api.token == new and api.token_file.read_text() == new
    assert call(api, "GET", "/api/v1/nodes", token=old)[0] == 401
    assert call(api, "GET", "/api/v1/nodes", token=new)[0] == 200


def test_token_rotation_overlap(api):
    old = api.token
    new = api.rotate_token(overlap_s=0.5)
    assert call(api, "GET", "/api/v1/nodes", token=old)[0] == 200
    assert call(api, "GET", "/api/v1/nodes", token=new)[0] == 200
    time.sleep(0.6)
    assert call(api, "GET", "/api/v1/nodes", token=old)[0] == 401
    assert call(api, "GET", "/api/v1/nodes", token=new)[0] == 200


def test_kubeconfig(api, tmp_path):
    api.write_kubeconfig(tmp_path / "a.yaml")
    cfg = yaml.safe_load((tmp_path / "a.yaml").read_text())
    assert cfg["current-context"] == "fake"
    ctx = next(c["context"] for c in cfg["contexts"] if c["name"] == cfg["current-context"])
    cluster = next(c["cluster"] for c in cfg["clusters"] if c["name"] == ctx["cluster"])
    user = next(u["user"] for u in cfg["users"] if u["name"] == ctx["user"])
    assert cluster == {"server": api.url, "certificate-authority": str(api.ca_file)}
    assert user == {"tokenFile": str(api.token_file)}

    api.write_kubeconfig(tmp_path / "b.yaml", token_in_file=False, embed_ca=True)
    cfg = yaml.safe_load((tmp_path / "b.yaml").read_text())
    assert base64.b64decode(cfg["clusters"][0]["cluster"]["certificate-authority-data"]) == api.ca_file.read_bytes()
    assert cfg["users"][0]["user"] == {"token": api.token}


def test_python_object_api(api):
    assert api.resource_version() == 0
    created = api.create("nodes", node("n1"))
    assert created["kind"] == "Node" and created["apiVersion"] == "v1"
    assert created["metadata"]["resourceVersion"] == "1" and created["metadata"]["uid"]
    assert created["metadata"]["creationTimestamp"].endswith("Z")
    with pytest.raises(ValueError):
        api.create("nodes", node("n1"))
    with pytest.raises(KeyError):
        api.update("nodes", node("absent"))
    with pytest.raises(KeyError):
        api.delete("nodes", "absent")
    updated = api.update("nodes", node("n1", a="1"))
    assert updated["metadata"]["uid"] == created["metadata"]["uid"]
    assert updated["metadata"]["resourceVersion"] == "2" and api.resource_version() == 2
    got = api.get("nodes", "n1")
    got["metadata"]["annotations"]["a"] = "changed"      # a copy: the store is unaffected
    assert api.get("nodes", "n1")["metadata"]["annotations"] == {"a": "1"}
    slice_ = api.create("endpointslices", {"metadata": {"name": "s1", "namespace": "kube-system"}})
    assert slice_["apiVersion"] == "discovery.k8s.io/v1" and slice_["kind"] == "EndpointSlice"
    assert api.get("endpointslices", "s1", "kube-system") is not None
    assert api.get("endpointslices", "s1") is None                   # the default namespace
    api.delete("nodes", "n1")
    assert api.get("nodes", "n1") is None and api.resource_version() == 4


def test_unknown_path_and_single_node_get(api):
    status, body = call(api, "GET", "/api/v1/pods")
    assert status == 404 and body["kind"] == "Status" and body["reason"] == "NotFound"
    assert call(api, "GET", "/api/v1/nodes/absent")[0] == 404
    api.create("nodes", node("n1"))
    status, body = call(api, "GET", "/api/v1/nodes/n1")
    assert status == 200 and body["kind"] == "Node" and body["metadata"]["name"] == "n1"
    assert call(api, "DELETE", "/api/v1/nodes/n1")[0] == 405
    assert call(api, "GET", "/api/v1/nodes?labelSelector=a%3Db")[0] == 400


# -- LIST and paging


def test_paging_is_one_consistent_snapshot(api):
    for i in range(5):
        api.create("nodes", node(f"n{i}"))
    status, page = call(api, "GET", "/api/v1/nodes?limit=2")
    assert status == 200 and page["kind"] == "NodeList" and page["apiVersion"] == "v1"
    snapshot_rv = page["metadata"]["resourceVersion"]
    assert snapshot_rv == "5" and page["metadata"]["remainingItemCount"] == 3
    assert "kind" not in page["items"][0]                   # as in the real server's typed lists
    names = [o["metadata"]["name"] for o in page["items"]]
    api.create("nodes", node("n2a"))                        # lands between pages, in the middle
    api.delete("nodes", "n4")
    while "continue" in page["metadata"]:
        status, page = call(api, "GET", f"/api/v1/nodes?limit=2&continue={page['metadata']['continue']}")
        assert status == 200 and page["metadata"]["resourceVersion"] == snapshot_rv
        names += [o["metadata"]["name"] for o in page["items"]]
    assert names == ["n0", "n1", "n2", "n3", "n4"]
    assert "remainingItemCount" not in page["metadata"]
    status, fresh = call(api, "GET", "/api/v1/nodes")
    assert fresh["metadata"]["resourceVersion"] == "7" and "continue" not in fresh["metadata"]
    assert [o["metadata"]["name"] for o in fresh["items"]] == ["n0", "n1", "n2", "n2a", "n3"]


def test_expired_continue_token(api):
    for i in range(3):
        api.create("nodes", node(f"n{i}"))
    _, page = call(api, "GET", "/api/v1/nodes?limit=1")
    token = page["metadata"]["continue"]
    assert call(api, "GET", f"/api/v1/nodes?limit=1&continue={token}")[0] == 200
    api.expire_continue_tokens()
    status, body = call(api, "GET", f"/api/v1/nodes?limit=1&continue={token}")
    assert status == 410 and body["reason"] == "Expired" and body["code"] == 410
    assert body["message"] == EXPIRED_CONTINUE
    _, page = call(api, "GET", "/api/v1/nodes?limit=1")     # a new list gets new, valid tokens
    assert call(api, "GET", f"/api/v1/nodes?limit=1&continue={page['metadata']['continue']}")[0] == 200


def test_namespaced_paths_filter(api):
    api.create("services", service("a", "ns1"))
    api.create("services", service("b", "ns2"))
    api.create("services", service("c", "ns1"))
    _, lst = call(api, "GET", "/api/v1/namespaces/ns1/services")
    assert lst["kind"] == "ServiceList" and [o["metadata"]["name"] for o in lst["items"]] == ["a", "c"]
    _, lst = call(api, "GET", "/api/v1/services")
    assert [(o["metadata"]["namespace"], o["metadata"]["name"]) for o in lst["items"]] == \
        [("ns1", "a"), ("ns1", "c"), ("ns2", "b")]
    w = Watch(api, f"/api/v1/namespaces/ns2/services?watch=1&resourceVersion={lst['metadata']['resourceVersion']}")
    api.wait_for_watchers("services")
    api.create("services", service("d", "ns1"))
    api.create("services", service("e", "ns2"))
    ev = w.event()
    assert ev["type"] == "ADDED" and ev["object"]["metadata"]["name"] == "e"
    w.close()
    api.create("endpointslices", {"metadata": {"name": "s", "namespace": "ns1"}})
    _, lst = call(api, "GET", "/apis/discovery.k8s.io/v1/namespaces/ns1/endpointslices")
    assert lst["kind"] == "EndpointSliceList" and lst["apiVersion"] == "discovery.k8s.io/v1"
    assert len(lst["items"]) == 1
    assert call(api, "GET", "/apis/discovery.k8s.io/v1/namespaces/ns2/endpointslices")[1]["items"] == []


# -- WATCH


def test_watch_from_list_rv_sees_changes_in_order(api):
    api.create("nodes", node("n0"))
    api.create("namespaces", {"metadata": {"name": "other"}})
    _, lst = call(api, "GET", "/api/v1/nodes")
    list_rv = int(lst["metadata"]["resourceVersion"])
    w = Watch(api, f"/api/v1/nodes?watch=1&resourceVersion={list_rv}")
    assert w.resp.status == 200 and w.resp.getheader("Content-Type") == "application/json"
    assert w.resp.getheader("Transfer-Encoding") == "chunked"
    api.wait_for_watchers("nodes")
    api.create("nodes", node("n1"))
    api.create("namespaces", {"metadata": {"name": "ignored"}})        # another resource: filtered out
    status, patched = call(api, "PATCH", "/api/v1/nodes/n1", body=json.dumps({"metadata": {"labels": {"x": "y"}}}),
                           headers={"Content-Type": MERGE})
    assert status == 200
    api.delete("nodes", "n1")
    events = [w.event() for _ in range(3)]
    assert [e["type"] for e in events] == ["ADDED", "MODIFIED", "DELETED"]
    rvs = [int(e["object"]["metadata"]["resourceVersion"]) for e in events]
    assert list_rv < rvs[0] < rvs[1] < rvs[2] == api.resource_version()
    assert events[1]["object"] == patched
    assert events[2]["object"]["metadata"]["labels"] == {"x": "y"}        # as it was, with the new rv
    assert all(e["object"]["kind"] == "Node" for e in events)
    w.close()


def test_watch_without_rv_starts_with_current_objects(api):
    api.create("nodes", node("b"))
    api.create("nodes", node("a"))
    w = Watch(api, "/api/v1/nodes?watch=true&resourceVersion=0")
    first = [w.event() for _ in range(2)]
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in first] == [("ADDED", "a"), ("ADDED", "b")]
    api.create("nodes", node("c"))
    ev = w.event()
    assert ev["type"] == "ADDED" and ev["object"]["metadata"]["resourceVersion"] == "3"
    w.close()


def test_bookmarks_only_when_asked(api):
    api.bookmark_interval_s = 0.2
    api.create("nodes", node("n1"))
    rv = api.resource_version()
    w = Watch(api, f"/api/v1/nodes?watch=1&resourceVersion={rv}&allowWatchBookmarks=true")
    ev = w.event()
    assert ev == {"type": "BOOKMARK", "object": {"kind": "Node", "apiVersion": "v1",
                                                 "metadata": {"resourceVersion": str(rv)}}}
    api.create("nodes", node("n2"))
    assert w.event()["type"] == "ADDED"
    ev = w.event()
    assert ev["type"] == "BOOKMARK" and ev["object"]["metadata"]["resourceVersion"] == str(rv + 1)
    w.close()
    w = Watch(api, f"/api/v1/nodes?watch=1&resourceVersion={rv}&timeoutSeconds=1")
    lines = [json.loads(line) for line in w.resp.read().splitlines()]
    assert [e["type"] for e in lines] == ["ADDED"]          # n2, and no bookmark in a second
    w.close()


def test_compacted_rv_gives_410_status(api):
    api.create("nodes", node("n1"))
    old = api.resource_version()
    api.create("nodes", node("n2"))
    api.compact()
    status, body = call(api, "GET", f"/api/v1/nodes?watch=1&resourceVersion={old}")
    assert status == 410
    assert body == {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                    "message": f"too old resource version: {old} (2)", "reason": "Expired", "code": 410}
    # From the compaction point on is still served.
    w = Watch(api, f"/api/v1/nodes?watch=1&resourceVersion={api.resource_version()}&timeoutSeconds=1")
    assert w.resp.status == 200 and w.resp.read() == b""
    w.close()


def test_compacted_rv_gives_error_event_in_event_mode(api):
    api.gone_mode = "event"
    api.create("nodes", node("n1"))
    api.create("nodes", node("n2"))
    api.compact()
    conn = connect(api)
    w = Watch(api, "/api/v1/nodes?watch=1&resourceVersion=1", conn=conn)
    assert w.resp.status == 200
    ev = w.event()
    assert ev["type"] == "ERROR" and ev["object"]["kind"] == "Status"
    assert ev["object"]["code"] == 410 and ev["object"]["reason"] == "Expired"
    assert ev["object"]["message"] == "too old resource version: 1 (2)"
    assert w.resp.read() == b""                             # a clean end of the stream ...
    assert call(api, "GET", "/api/v1/nodes", conn=conn)[0] == 200  # ... on a connection still usable
    conn.close()


def test_timeout_seconds_ends_stream_cleanly(api):
    conn = connect(api)
    start = time.monotonic()
    conn.request("GET", "/api/v1/nodes?watch=1&timeoutSeconds=1", headers={"Authorization": f"Bearer {api.token}"})
    resp = conn.getresponse()
    assert resp.status == 200 and resp.read() == b""          # no IncompleteRead: the last chunk came
    assert 0.9 < time.monotonic() - start < 2.5
    assert call(api, "GET", "/api/v1/nodes", conn=conn)[0] == 200
    conn.close()


def test_drop_watches_cuts_streams(api):
    api.create("nodes", node("n1"))
    w = Watch(api, "/api/v1/nodes?watch=1")
    assert w.event()["type"] == "ADDED"
    api.wait_for_watchers("nodes")
    assert api.drop_watches() == 1
    # read(), not readline(): http.client's readline() reports a truncated
    # chunked body as a plain end (b""), read() raises IncompleteRead.
    with pytest.raises((http.client.HTTPException, OSError)):
        w.resp.read()
    w.close()
    assert api.drop_watches() == 0
    assert call(api, "GET", "/api/v1/nodes")[0] == 200            # the server goes on


class RawStream:
    """A watch read off a TLS socket chunk by chunk, to see the wire framing."""

    def __init__(self, api, path: str):
        ctx = ssl.create_default_context(cafile=str(api.ca_file))
        self.sock = ctx.wrap_socket(socket.create_connection((api.host, api.port), timeout=5),
                                    server_hostname=api.host)
        self.sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {api.host}\r\n"
                          f"Authorization: Bearer {api.token}\r\n\r\n".encode())
        self.f = self.sock.makefile("rb")
        self.status = self.f.readline()
        while self.f.readline() not in (b"\r\n", b""):
            pass

    def chunk(self) -> bytes:
        size = int(self.f.readline().strip(), 16)
        data = self.f.read(size)
        assert self.f.read(2) == b"\r\n"
        return data

    def close(self):
        self.f.close()
        self.sock.close()


def test_slow_stream_splits_lines(api):
    api.slow_s = 0.15
    api.create("nodes", node("n1"))
    s = RawStream(api, "/api/v1/nodes?watch=1")
    assert b" 200 " in s.status
    start = time.monotonic()
    pieces = [s.chunk() for _ in range(3)]
    assert time.monotonic() - start >= 0.25                       # two sleeps between three pieces
    for piece in pieces[:2]:
        assert not piece.endswith(b"\n")
        with pytest.raises(ValueError):
            json.loads(piece)
    line = b"".join(pieces)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert json.loads(line)["object"]["metadata"]["name"] == "n1"
    api.create("nodes", node("n2"))
    line = b"".join(s.chunk() for _ in range(3))
    assert json.loads(line)["object"]["metadata"]["name"] == "n2"
    s.close()


def test_fail_next(api):
    api.fail_next(2, 503, "/api/v1/nodes")
    assert call(api, "GET", "/api/v1/namespaces")[0] == 200       # another path: not consumed
    assert call(api, "GET", "/api/v1/nodes", token="bad")[0] == 401  # unauthenticated: not consumed
    for _ in range(2):
        status, body = call(api, "GET", "/api/v1/nodes?watch=1")
        assert status == 503 and body["kind"] == "Status" and body["code"] == 503
        assert body["reason"] == "ServiceUnavailable"
    assert call(api, "GET", "/api/v1/nodes")[0] == 200
    api.fail_next(1)
    assert call(api, "GET", "/api/v1/namespaces")[0] == 500
    assert [r["status"] for r in api.requests] == [200, 401, 503, 503, 200, 500]
    assert api.requests[2]["query"] == {"watch": "1"} and api.requests[2]["method"] == "GET"


def test_merge_patch_of_annotations(api):
    api.create("nodes", node("n1", keep="1", drop="2"))
    rv = api.resource_version()
    patch = {"metadata": {"annotations": {"drop": None, "new": "3"}}}
    status, obj = call(api, "PATCH", "/api/v1/nodes/n1", body=json.dumps(patch), headers={"Content-Type": MERGE})
    assert status == 200 and obj["metadata"]["annotations"] == {"keep": "1", "new": "3"}
    assert obj["metadata"]["resourceVersion"] == str(rv + 1) and obj["spec"] == {"podCIDRs": ["10.0.0.0/24"]}
    assert api.get("nodes", "n1") == obj
    patch = {"metadata": {"annotations": {"keep": None}}}
    status, obj = call(api, "PATCH", "/api/v1/nodes/n1", body=json.dumps(patch),
                       headers={"Content-Type": "application/strategic-merge-patch+json; charset=utf-8"})
    assert status == 200 and obj["metadata"]["annotations"] == {"new": "3"}
    assert call(api, "PATCH", "/api/v1/nodes/n1", body="{}", headers={"Content-Type": "application/json"})[0] == 415
    assert call(api, "PATCH", "/api/v1/nodes/absent", body="{}", headers={"Content-Type": MERGE})[0] == 404
    assert call(api, "PATCH", "/api/v1/nodes/n1", body="{not json", headers={"Content-Type": MERGE})[0] == 400
    stale = {"metadata": {"resourceVersion": str(rv), "annotations": {"x": "y"}}}
    assert call(api, "PATCH", "/api/v1/nodes/n1", body=json.dumps(stale), headers={"Content-Type": MERGE})[0] == 409
    assert api.resource_version() == rv + 2


# -- hosts, shutdown, libcurl



@pytest.mark.skipif(not has_ipv6_loopback(), reason="no IPv6 loopback on this machine")
def test_ipv6_loopback(tmp_path):
    with FakeApiServer(tmp_path / "api6", host="::1") as api:
        assert api.url == f"https://[::1]:{api.port}"
        api.create("nodes", node("n1"))
        status, lst = call(api, "GET", "/api/v1/nodes")
        assert status == 200 and lst["items"][0]["metadata"]["name"] == "n1"
        w = Watch(api, "/api/v1/nodes?watch=1")
        assert w.event()["object"]["metadata"]["name"] == "n1"
        w.close()


def test_exit_is_prompt_with_open_streams(tmp_path):
    api = FakeApiServer(tmp_path / "api").__enter__()
    try:
        api.create("nodes", node("n1"))
        api.slow_s = 5
        slow = RawStream(api, "/api/v1/nodes?watch=1")
        slow.chunk()                                      # now sleeping before the next piece
        idle = connect(api)
        assert call(api, "GET", "/api/v1/nodes", conn=idle)[0] == 200   # a keep-alive connection
        plain = Watch(api, "/api/v1/nodes?watch=1&resourceVersion=1")
        api.wait_for_watchers("nodes", 2)
    finally:
        start = time.monotonic()
        api.__exit__(None, None, None)
        elapsed = time.monotonic() - start
    assert elapsed < 1.5
    with pytest.raises((http.client.HTTPException, OSError, ValueError)):
        slow.chunk()
    with pytest.raises((http.client.HTTPException, OSError)):
        plain.resp.read()
    slow.close(), idle.close(), plain.close()


def test_wait_for_watchers_times_out(api):
    start = time.monotonic()
    with pytest.raises(TimeoutError):
        api.wait_for_watchers("nodes", timeout=0.2)
    assert time.monotonic() - start < 1


def test_concurrent_watchers_all_get_every_event(api):
    watches = [Watch(api, "/api/v1/nodes?watch=1&resourceVersion=0") for _ in range(4)]
    api.wait_for_watchers("nodes", 4)

    def writer():
        for i in range(20):
            api.create("nodes", node(f"n{i:02}"))
    t = threading.Thread(target=writer)
    t.start()
    t.join()
    for w in watches:
        rvs = [int(w.event()["object"]["metadata"]["resourceVersion"]) for _ in range(20)]
        assert rvs == list(range(1, 21))
        w.close()


@pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")
def test_curl_lists_and_watches(api, tmp_path):
    """libcurl (what the controller uses) verifies the CA, sends the token and
    sees a watch that ends at timeoutSeconds as a complete response."""
    api.create("nodes", node("n1"))
    base = ["curl", "-sS", "--fail", "--cacert", str(api.ca_file), "-H", f"Authorization: Bearer {api.token}"]
    out = subprocess.run(base + [f"{api.url}/api/v1/nodes?limit=1"], capture_output=True, text=True, timeout=10)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["items"][0]["metadata"]["name"] == "n1"
    out = subprocess.run(base + ["-N", f"{api.url}/api/v1/nodes?watch=1&timeoutSeconds=1"],
                         capture_output=True, text=True, timeout=10)
    assert out.returncode == 0, out.stderr
    assert [json.loads(line)["type"] for line in out.stdout.splitlines()] == ["ADDED"]
    out = subprocess.run(base[:-2] + ["-H", "Authorization: Bearer wrong", f"{api.url}/api/v1/nodes"],
                         capture_output=True, text=True, timeout=10)
    assert out.returncode == 22                              # --fail: HTTP 401
