"""An in-process fake Kubernetes API server, for testing a real client's
list/watch code against the behaviour it must survive.

It serves HTTPS from a background thread of the test process and mirrors
what kube-apiserver does for the few resources meshwire reads (nodes,
namespaces, services, endpointslices): one global resourceVersion, LIST with
limit/continue paging from a consistent snapshot, WATCH as a chunked stream
of JSON lines with bookmarks and timeoutSeconds, "410 Gone" after
compaction (as an HTTP status or as an ERROR event inside a 200 stream),
bearer tokens that rotate like a projected service-account token, and JSON
merge PATCH of nodes. Tests change objects and inject faults through the
Python API (create/update/delete, compact, drop_watches, slow_s, fail_next).

Not implemented: label and field selectors (rejected with 400 rather than
ignored), single-object GET other than nodes, writes over HTTP other than
PATCH of nodes, JSON patch and server-side apply.
"""

from __future__ import annotations

import base64
import bisect
import copy
import datetime
import http.server
import ipaddress
import json
import os
import secrets
import socket
import socketserver
import ssl
import sys
import threading
import time
import uuid
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

# resource -> (kind, apiVersion, namespaced)
RESOURCES = {
    "nodes": ("Node", "v1", False),
    "namespaces": ("Namespace", "v1", False),
    "services": ("Service", "v1", True),
    "endpointslices": ("EndpointSlice", "discovery.k8s.io/v1", True),
}

# The URL forms the real server has for these resources (core group under
# /api/v1, discovery.k8s.io under /apis/<group>/<version>). Each route maps
# a path to (resource, namespace or None, object name or None).
_GROUP_PREFIX = {"nodes": "/api/v1", "namespaces": "/api/v1", "services": "/api/v1",
                 "endpointslices": "/apis/discovery.k8s.io/v1"}


def _route(path: str):
    for res, prefix in _GROUP_PREFIX.items():
        if path == f"{prefix}/{res}":
            return res, None, None                      # all namespaces
        if RESOURCES[res][2] and path.startswith(prefix + "/namespaces/"):
            parts = path[len(prefix) + 1:].split("/")   # namespaces, ns, res
            if len(parts) == 3 and parts[1] and parts[2] == res:
                return res, parts[1], None
    parts = path.split("/")
    if len(parts) == 5 and path.startswith("/api/v1/nodes/") and parts[4]:
        return "nodes", None, parts[4]
    return None


# Status reasons by code, as metav1.StatusReason spells them.
_REASONS = {400: "BadRequest", 401: "Unauthorized", 403: "Forbidden", 404: "NotFound",
            405: "MethodNotAllowed", 409: "Conflict", 410: "Expired", 415: "UnsupportedMediaType",
            422: "Invalid", 429: "TooManyRequests", 500: "InternalError",
            503: "ServiceUnavailable", 504: "Timeout"}

EXPIRED_CONTINUE = ("The provided continue parameter is too old to display a consistent list result. "
                    "You can start a new list without the continue parameter.")
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"


def has_ipv6_loopback() -> bool:
    """Whether this machine can listen on ::1 (the IPv6 tests need it)."""
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def status_body(code: int, message: str, reason: str | None = None, details: dict | None = None) -> dict:
    """A metav1.Status of a failure, the body of every error response."""
    body = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": message, "reason": reason or _REASONS.get(code, "Unknown"), "code": code}
    if details:
        body["details"] = details
    return body


def merge_patch(target, patch):
    """RFC 7386 JSON merge patch: objects merge key by key, null deletes a
    key, anything else (lists included) replaces. Returns a new value and
    never modifies `target` (unpatched subtrees are shared, not copied)."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


class _HttpError(Exception):
    def __init__(self, code: int, message: str, reason: str | None = None, details: dict | None = None):
        super().__init__(message)
        self.body = status_body(code, message, reason, details)


class _Abort(Exception):
    """A watch stream cut by drop_watches() or by shutdown: end without a word."""


class _Watcher:
    def __init__(self, resource: str, namespace: str | None, conn, pos: int):
        self.resource, self.namespace, self.conn = resource, namespace, conn
        self.pos = pos                  # every event with rv <= pos was sent (or skipped)
        self.cut = threading.Event()    # set by drop_watches() and shutdown


def _make_certs(workdir: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate it signs (EC P-256), with the extensions
    OpenSSL's strict verification wants (key usages, SKI/AKI)."""
    now = datetime.datetime.now(datetime.timezone.utc)

    def build(cn: str, key, issuer: x509.Name, signer, ca: bool, extensions: list):
        b = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
             .issuer_name(issuer).public_key(key.public_key()).serial_number(x509.random_serial_number())
             .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=2))
             .add_extension(x509.BasicConstraints(ca=ca, path_length=0 if ca else None), critical=True)
             .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=ca, crl_sign=ca,
                                          content_commitment=False, key_encipherment=False,
                                          data_encipherment=False, key_agreement=False,
                                          encipher_only=False, decipher_only=False), critical=True)
             .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False))
        for ext in extensions:
            b = b.add_extension(ext, critical=False)
        return b.sign(signer, hashes.SHA256())

    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fake-apiserver-ca")])
    ca_cert = build("fake-apiserver-ca", ca_key, ca_name, ca_key, True, [])
    sans = [x509.IPAddress(ipaddress.ip_address("127.0.0.1")), x509.IPAddress(ipaddress.ip_address("::1")),
            x509.DNSName("localhost")]
    cert = build("kube-apiserver", key, ca_name, ca_key, False, [
        x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), x509.SubjectAlternativeName(sans),
        x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key())])
    ca_file, cert_file, key_file = workdir / "ca.crt", workdir / "server.crt", workdir / "server.key"
    ca_file.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    key_file.chmod(0o600)
    return ca_file, cert_file, key_file


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"   # keep-alive and chunked streams, as clients expect
    server_version = "fake-kube-apiserver"
    _entry = None                   # this request's record in FakeApiServer.requests

    def log_message(self, format, *args):  # noqa: A002 (http.server's name)
        pass

    def send_response(self, code, message=None):
        if self._entry is not None:
            self._entry["status"] = code
        super().send_response(code, message)

    def do_GET(self):
        try:
            self._dispatch()
        finally:
            self._entry = None      # http.server's own errors on this connection are not ours

    do_PATCH = do_POST = do_PUT = do_DELETE = do_GET

    # -- plumbing

    def _send_json(self, code: int, body: dict, headers: dict | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def _status(self, code: int, message: str, reason: str | None = None, details: dict | None = None):
        # The API server asks throttled clients to come back (Retry-After on 429).
        headers = {"Retry-After": "1"} if code == 429 else None
        self._send_json(code, status_body(code, message, reason, details), headers)

    def _chunk(self, data: bytes) -> None:
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))

    def _line(self, event: dict, cut: threading.Event) -> None:
        """One watch event, one JSON line. With slow_s the line goes out as
        three chunks split mid-JSON, slow_s apart (a congested link)."""
        data = (json.dumps(event, separators=(",", ":")) + "\n").encode()
        slow = self.server.fake.slow_s
        if slow <= 0:
            self._chunk(data)
            return
        n = len(data)
        pieces = [data[:n // 3], data[n // 3:2 * n // 3], data[2 * n // 3:]]
        for i, piece in enumerate(pieces):
            self._chunk(piece)
            if i < 2 and cut.wait(slow):
                raise _Abort()

    # -- requests

    def _dispatch(self) -> None:
        fake = self.server.fake
        url = urlsplit(self.path)
        query = dict(parse_qsl(url.query, keep_blank_values=True))
        auth = self.headers.get("Authorization")
        self._entry = {"method": self.command, "path": url.path, "query": query, "auth": auth,
                       "time": time.time(), "status": None}
        fake.requests.append(self._entry)
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.close_connection = True
            return self._status(400, "chunked request bodies are not supported by the fake API server")
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        # Authentication comes first, as in the real filter chain: an
        # unauthenticated request never reaches (or consumes) anything else.
        if not fake._authorized(auth):
            return self._status(401, "Unauthorized")
        injected = fake._take_failure(url.path)
        if injected is not None:
            return self._status(injected, f"injected failure (HTTP {injected}) by the fake API server")
        route = _route(url.path)
        if route is None:
            return self._status(404, "the server could not find the requested resource")
        resource, namespace, name = route
        try:
            if name is None and self.command == "GET":
                if query.get("labelSelector") or query.get("fieldSelector"):
                    raise _HttpError(400, "label and field selectors are not implemented by the fake API server")
                if query.get("watch") in ("1", "true"):
                    return self._watch(resource, namespace, query)
                return self._list(resource, namespace, query)
            if name is not None and self.command == "GET":
                obj = fake.get("nodes", name)
                if obj is None:
                    raise _HttpError(404, f'nodes "{name}" not found', details={"name": name, "kind": "nodes"})
                return self._send_json(200, obj)
            if name is not None and self.command == "PATCH":
                return self._send_json(200, self._patch(name, body))
            raise _HttpError(405, f"the server does not allow this method on {url.path}")
        except _HttpError as e:
            self._send_json(e.body["code"], e.body)

    def _list(self, resource: str, namespace: str | None, query: dict) -> None:
        try:
            limit = int(query.get("limit") or 0)
            if limit < 0:
                raise ValueError
        except ValueError:
            raise _HttpError(400, f"invalid limit: {query.get('limit')!r}") from None
        self._send_json(200, self.server.fake._list_page(resource, namespace, limit, query.get("continue", "")))

    def _patch(self, name: str, body: bytes) -> dict:
        # kube-apiserver accepts merge and strategic merge patches of a Node;
        # strategic merge on maps is the same as a merge patch (lists differ,
        # and this fake replaces them as a merge patch does).
        ctype = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if ctype not in (MERGE_PATCH, STRATEGIC_PATCH):
            raise _HttpError(415, f"the body of the request was in an unknown format - accepted media types "
                                  f"include: {MERGE_PATCH}, {STRATEGIC_PATCH}")
        try:
            patch = json.loads(body)
        except ValueError as e:
            raise _HttpError(400, f"error decoding patch: {e}") from None
        if not isinstance(patch, dict):
            raise _HttpError(400, "a merge patch of an object must be a JSON object")
        return self.server.fake._patch_node(name, patch)

    def _watch(self, resource: str, namespace: str | None, query: dict) -> None:
        fake = self.server.fake
        try:
            timeout = int(query.get("timeoutSeconds") or 0) or 1800     # 0: the server's default
        except ValueError:
            raise _HttpError(400, f"invalid timeoutSeconds: {query.get('timeoutSeconds')!r}") from None
        bookmarks = query.get("allowWatchBookmarks") == "true"
        watcher, initial, gone = fake._open_watch(resource, namespace, query.get("resourceVersion", ""),
                                                  self.connection)
        if gone is not None and fake.gone_mode == "status":
            return self._send_json(410, gone)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            if gone is not None:
                # The watch cache's way: a 200 stream whose only event is ERROR.
                self._line({"type": "ERROR", "object": gone}, fake._stopping)
                self._chunk(b"")
                return
            for event in initial:
                self._line(event, watcher.cut)
            deadline = time.monotonic() + timeout
            next_bookmark = time.monotonic() + fake.bookmark_interval_s if bookmarks else None
            while True:
                events, bookmark_rv, done = fake._next_events(watcher, deadline, next_bookmark)
                for event in events:
                    self._line(event, watcher.cut)
                if bookmark_rv is not None:
                    kind, api_version, _ = RESOURCES[resource]
                    self._line({"type": "BOOKMARK", "object": {
                        "kind": kind, "apiVersion": api_version,
                        "metadata": {"resourceVersion": str(bookmark_rv)}}}, watcher.cut)
                    next_bookmark = time.monotonic() + fake.bookmark_interval_s
                if done:
                    break
            self._chunk(b"")    # timeoutSeconds: a clean end, the connection stays usable
        except (_Abort, OSError):
            self.close_connection = True
        finally:
            if watcher is not None:
                fake._close_watch(watcher)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address, fake: "FakeApiServer"):
        self.fake = fake
        super().__init__(address, _Handler)

    def server_bind(self):
        # HTTPServer.server_bind would call getfqdn(): a DNS lookup, slow or
        # hanging on machines without a resolver.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    def finish_request(self, request, client_address):
        # The TLS handshake runs here, in the connection's own thread, so a
        # client stuck in it cannot stall accept().
        request.settimeout(10)
        try:
            conn = self.fake._tls.wrap_socket(request, server_side=True)
        except OSError:
            return
        conn.settimeout(None)
        try:
            if self.fake._track(conn, True):
                super().finish_request(conn, client_address)
        finally:
            self.fake._track(conn, False)
            conn.close()

    def handle_error(self, request, client_address):
        if not isinstance(sys.exc_info()[1], (OSError, _Abort)):  # a client gone is no error
            super().handle_error(request, client_address)


class _Server6(_Server):
    address_family = socket.AF_INET6


def _shutdown_socket(sock) -> None:
    """Cut a TLS connection at the TCP level: FIN, no close_notify, no final
    chunk; the peer sees a truncated response. socket.socket.shutdown skips
    SSLSocket's override, which would drop the TLS state under a writer."""
    try:
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        pass


class FakeApiServer:
    """See the module docstring. Use as a context manager."""

    def __init__(self, workdir: Path, host: str = "127.0.0.1"):
        self.workdir, self.host = Path(workdir), host
        self.ca_file = self.workdir / "ca.crt"
        self.token_file = self.workdir / "token"
        self.url, self.port = "", 0
        self.token = secrets.token_urlsafe(32)      # the current bearer token
        self.requests: list = []
        # knobs, read at each use
        self.gone_mode = "status"
        self.bookmark_interval_s = 1.0
        self.slow_s = 0.0
        self._cond = threading.Condition()          # guards all state below; notified on every change
        self._tokens: dict[str, float | None] = {self.token: None}  # token -> expiry (monotonic) or None
        self._projected: dict[Path, str] = {}       # service-account volumes kept current: folder -> namespace
        self._rv = 0                                # the global resourceVersion (etcd's revision)
        self._compacted = 0                         # watches from an rv below this get 410
        self._store = {r: {} for r in RESOURCES}    # resource -> {(namespace, name): object}
        self._events: list = []                     # (rv, type, resource, object), rv ascending
        self._event_rvs: list[int] = []
        self._snapshots: dict[int, tuple] = {}      # paging: id -> (resource, namespace, rv, items)
        self._next_snapshot = 1
        self._failures: list[list] = []             # [remaining, status, path_prefix]
        self._watchers: set[_Watcher] = set()
        self._conns: set = set()
        self._stopping = threading.Event()
        self._httpd = self._thread = self._tls = None

    # -- lifecycle

    def __enter__(self) -> "FakeApiServer":
        self.workdir.mkdir(parents=True, exist_ok=True)
        _, cert_file, key_file = _make_certs(self.workdir)
        self._tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._tls.minimum_version = ssl.TLSVersion.TLSv1_2
        self._tls.load_cert_chain(cert_file, key_file)
        self._write_token()
        server_class = _Server6 if ":" in self.host else _Server
        self._httpd = server_class((self.host, 0), self)
        self.port = self._httpd.server_address[1]
        self.url = f"https://[{self.host}]:{self.port}" if ":" in self.host else f"https://{self.host}:{self.port}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"fake-apiserver:{self.port}", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stopping.set()
        with self._cond:
            for w in self._watchers:
                w.cut.set()
            self._cond.notify_all()
        if self._httpd is None:         # not started, or already stopped
            return
        self._httpd.shutdown()          # serve_forever returns within poll_interval
        self._thread.join(2)
        with self._cond:                # idle keep-alive connections block in a read: cut them
            for conn in self._conns:
                _shutdown_socket(conn)
        self._httpd.server_close()
        deadline = time.monotonic() + 2
        with self._cond:
            while self._conns and time.monotonic() < deadline:
                self._cond.wait(0.05)
        self._httpd = None

    def _track(self, conn, add: bool) -> bool:
        # Connections are shut down only under the lock and while tracked, so
        # never after their close (when the fd number could be reused).
        with self._cond:
            if add:
                if self._stopping.is_set():
                    return False
                self._conns.add(conn)
            else:
                self._conns.discard(conn)
                self._cond.notify_all()
            return True

    # -- credentials

    def _write_token(self) -> None:
        # Atomic like the kubelet's projected token: a reader sees old or new, never half.
        tmp = self.token_file.with_name("." + self.token_file.name + ".tmp")
        tmp.write_text(self.token)
        os.replace(tmp, self.token_file)
        for folder in self._projected:
            self._write_projected(folder)

    def service_account_volume(self, folder, namespace: str = "meshwire-system") -> dict:
        """Lays out `folder` as the kubelet lays out a pod's projected
        service-account volume (/var/run/secrets/kubernetes.io/serviceaccount)
        and keeps it current when the token rotates. Returns the environment
        the kubelet gives the pod's containers to find the API server."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        with self._cond:
            self._projected[folder] = namespace
            self._write_projected(folder)
        return {"KUBERNETES_SERVICE_HOST": self.host, "KUBERNETES_SERVICE_PORT": str(self.port),
                "KUBERNETES_SERVICE_PORT_HTTPS": str(self.port),
                "KUBERNETES_PORT": f"tcp://{self.url.split('://')[1]}"}

    def _write_projected(self, folder: Path) -> None:
        # The kubelet's atomic writer: the files go into a new timestamped
        # folder, the "..data" symlink is swapped to it by rename, and the
        # old folder is removed. "token", "ca.crt" and "namespace" are
        # symlinks through "..data", so a reader that opens one by name sees
        # the old or the new version whole.
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("..%Y_%m_%d_%H_%M_%S.") + \
            f"{time.monotonic_ns() % 1_000_000_000:09d}"
        new = folder / stamp
        new.mkdir(mode=0o755)
        (new / "token").write_text(self.token)
        (new / "ca.crt").write_bytes(self.ca_file.read_bytes())
        (new / "namespace").write_text(self._projected[folder])
        for name in ("token", "ca.crt", "namespace"):
            (new / name).chmod(0o644)
        data = folder / "..data"
        old = os.readlink(data) if data.is_symlink() else None
        tmp = folder / "..data_tmp"
        if tmp.is_symlink():
            tmp.unlink()
        os.symlink(stamp, tmp)
        os.replace(tmp, data)
        for name in ("token", "ca.crt", "namespace"):
            if not (folder / name).is_symlink():
                os.symlink(f"..data/{name}", folder / name)
        if old and old != stamp:
            for f in (folder / old).iterdir():
                f.unlink()
            (folder / old).rmdir()

    def rotate_token(self, overlap_s: float = 0.0) -> str:
        new = secrets.token_urlsafe(32)
        with self._cond:
            if overlap_s > 0:
                self._tokens[self.token] = time.monotonic() + overlap_s
            else:
                self._tokens.pop(self.token, None)
            self._tokens[new] = None
            self.token = new
            self._write_token()
        return new

    def _authorized(self, header: str | None) -> bool:
        if not header or not header.startswith("Bearer "):
            return False
        with self._cond:
            if header[7:].strip() not in self._tokens:
                return False
            expiry = self._tokens[header[7:].strip()]
        return expiry is None or time.monotonic() < expiry

    def write_kubeconfig(self, path, *, token_in_file: bool = True, embed_ca: bool = False) -> None:
        """A kubeconfig laid out as kubectl lays one out. Values are YAML
        double-quoted scalars (JSON strings are valid ones)."""
        q = json.dumps
        if embed_ca:
            ca = f"certificate-authority-data: {q(base64.b64encode(self.ca_file.read_bytes()).decode())}"
        else:
            ca = f"certificate-authority: {q(str(self.ca_file))}"
        user = f"tokenFile: {q(str(self.token_file))}" if token_in_file else f"token: {q(self.token)}"
        Path(path).write_text(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n"
            f"    server: {q(self.url)}\n    {ca}\nusers:\n- name: fake\n  user:\n    {user}\n"
            "contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n"
            "current-context: fake\npreferences: {}\n")

    # -- objects

    def _key(self, resource: str, obj: dict) -> tuple[str, str]:
        if resource not in RESOURCES:
            raise ValueError(f"unknown resource {resource!r} (one of {', '.join(RESOURCES)})")
        meta = obj.setdefault("metadata", {})
        if not meta.get("name"):
            raise ValueError("metadata.name is required")
        kind, api_version, namespaced = RESOURCES[resource]
        obj.setdefault("kind", kind)
        obj.setdefault("apiVersion", api_version)
        if namespaced:
            meta.setdefault("namespace", "default")     # as kubectl's default namespace
        else:
            meta.pop("namespace", None)
        return meta.get("namespace", ""), meta["name"]

    def _commit(self, resource: str, key, obj: dict, event_type: str) -> dict:
        """Bump the global rv, store `obj` with it (or remove it, for
        DELETED) and record the event. Stored objects are never modified in
        place (list snapshots and events share them). Lock held."""
        self._rv += 1
        obj = {**obj, "metadata": {**obj["metadata"], "resourceVersion": str(self._rv)}}
        if event_type == "DELETED":
            del self._store[resource][key]
        else:
            self._store[resource][key] = obj
        self._events.append((self._rv, event_type, resource, obj))
        self._event_rvs.append(self._rv)
        self._cond.notify_all()
        return copy.deepcopy(obj)

    def create(self, resource: str, obj: dict) -> dict:
        obj = copy.deepcopy(obj)
        key = self._key(resource, obj)
        with self._cond:
            if key in self._store[resource]:
                raise ValueError(f'{resource} "{key[1]}" already exists')   # the API's 409 AlreadyExists
            obj["metadata"]["uid"] = str(uuid.uuid4())
            obj["metadata"]["creationTimestamp"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
            return self._commit(resource, key, obj, "ADDED")

    def update(self, resource: str, obj: dict) -> dict:
        obj = copy.deepcopy(obj)
        key = self._key(resource, obj)
        with self._cond:
            old = self._store[resource].get(key)
            if old is None:
                raise KeyError(f'{resource} "{key[1]}" not found')
            for field in ("uid", "creationTimestamp"):      # the server keeps an object's identity
                obj["metadata"][field] = old["metadata"][field]
            return self._commit(resource, key, obj, "MODIFIED")

    def delete(self, resource: str, name: str, namespace: str | None = None) -> None:
        """Raises KeyError if absent. The DELETED event carries the object as
        it was, with the deletion's resourceVersion."""
        key = self._key(resource, {"metadata": {"name": name, "namespace": namespace or "default"}})
        with self._cond:
            old = self._store[resource].get(key)
            if old is None:
                raise KeyError(f'{resource} "{name}" not found')
            self._commit(resource, key, old, "DELETED")

    def get(self, resource: str, name: str, namespace: str | None = None) -> dict | None:
        key = self._key(resource, {"metadata": {"name": name, "namespace": namespace or "default"}})
        with self._cond:
            return copy.deepcopy(self._store[resource].get(key))

    def resource_version(self) -> int:
        with self._cond:
            return self._rv

    def _matching(self, resource: str, namespace: str | None) -> list:
        """Current objects of `resource` (in `namespace`), sorted by namespace/name. Lock held."""
        return [o for k, o in sorted(self._store[resource].items()) if namespace is None or k[0] == namespace]

    def _patch_node(self, name: str, patch: dict) -> dict:
        with self._cond:
            old = self._store["nodes"].get(("", name))
            if old is None:
                raise _HttpError(404, f'nodes "{name}" not found', details={"name": name, "kind": "nodes"})
            # A resourceVersion in the patch is a precondition (optimistic concurrency).
            patch_meta = patch.get("metadata")
            want = patch_meta.get("resourceVersion") if isinstance(patch_meta, dict) else None
            if want is not None and str(want) != old["metadata"]["resourceVersion"]:
                raise _HttpError(409, f'Operation cannot be fulfilled on nodes "{name}": the object has been '
                                      f'modified; please apply your changes to the latest version and try again')
            new = merge_patch(old, patch)
            meta = new.get("metadata") if isinstance(new.get("metadata"), dict) else {}
            new["metadata"] = {**meta, **{f: old["metadata"][f] for f in ("name", "uid", "creationTimestamp")}}
            new["kind"], new["apiVersion"] = old["kind"], old["apiVersion"]
            return self._commit("nodes", ("", name), new, "MODIFIED")

    # -- LIST: pages of one consistent snapshot

    def _list_page(self, resource: str, namespace: str | None, limit: int, token: str) -> dict:
        """Like the API server with etcd: the first page fixes a snapshot (the
        rv of its read) and every continue token reads that same snapshot at
        its offset. Tokens are base64 JSON, opaque to clients."""
        with self._cond:
            if token:
                try:
                    t = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
                    snap_id, start = int(t["snapshot"]), int(t["start"])
                except (ValueError, KeyError, TypeError):
                    raise _HttpError(400, "continue key is not valid") from None
                if snap_id not in self._snapshots:      # expired (or never issued)
                    raise _HttpError(410, EXPIRED_CONTINUE, "Expired")
                snap_resource, snap_ns, rv, items = self._snapshots[snap_id]
                if (snap_resource, snap_ns) != (resource, namespace):
                    raise _HttpError(400, "continue key is not valid: it belongs to another list")
            else:
                snap_id, start, rv, items = None, 0, self._rv, self._matching(resource, namespace)
            end = min(len(items), start + limit) if limit else len(items)
            metadata = {"resourceVersion": str(rv)}
            if end < len(items):
                if snap_id is None:
                    snap_id, self._next_snapshot = self._next_snapshot, self._next_snapshot + 1
                    self._snapshots[snap_id] = (resource, namespace, rv, items)
                raw = json.dumps({"v": "meta.k8s.io/v1", "rv": rv, "snapshot": snap_id, "start": end})
                metadata["continue"] = base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")
                metadata["remainingItemCount"] = len(items) - end
            page = items[start:end]
        kind, api_version, _ = RESOURCES[resource]
        # Items of a typed list carry no kind/apiVersion on the real server either.
        return {"kind": kind + "List", "apiVersion": api_version, "metadata": metadata,
                "items": [{k: v for k, v in o.items() if k not in ("kind", "apiVersion")} for o in page]}

    def expire_continue_tokens(self) -> None:
        """Every continue token issued so far answers 410 Expired (etcd
        compacted the snapshot's revision)."""
        with self._cond:
            self._snapshots.clear()

    # -- WATCH

    def _open_watch(self, resource: str, namespace: str | None, rv_param: str, conn):
        """(watcher, initial events, None) or (None, [], 410 Status)."""
        with self._cond:
            if rv_param in ("", "0"):
                # No rv (or "any"): the current state as synthetic ADDED events first.
                initial = [{"type": "ADDED", "object": o} for o in self._matching(resource, namespace)]
                pos = self._rv
            else:
                try:
                    pos = int(rv_param)
                    if pos < 0:
                        raise ValueError
                except ValueError:
                    raise _HttpError(400, f"invalid resource version: {rv_param!r}") from None
                if pos < self._compacted:
                    return None, [], status_body(
                        410, f"too old resource version: {pos} ({self._compacted})", "Expired")
                initial = []    # an rv newer than the current one is fine: wait for it
            watcher = _Watcher(resource, namespace, conn, pos)
            self._watchers.add(watcher)
            self._cond.notify_all()
            return watcher, initial, None

    def _next_events(self, w: _Watcher, deadline: float, next_bookmark: float | None):
        """Block until there is something to send: (events, None, False), or a
        bookmark is due: ([], rv, False), or timeoutSeconds passed: ([], None, True).
        Raises _Abort when the watch is cut."""
        with self._cond:
            while True:
                if w.cut.is_set():
                    raise _Abort()
                i = bisect.bisect_right(self._event_rvs, w.pos)
                events = [{"type": t, "object": o} for (_, t, r, o) in self._events[i:] if r == w.resource
                          and (w.namespace is None or o["metadata"].get("namespace") == w.namespace)]
                w.pos = max(w.pos, self._rv)
                if events:
                    return events, None, False
                now = time.monotonic()
                if now >= deadline:
                    return [], None, True
                if next_bookmark is not None and now >= next_bookmark:
                    return [], w.pos, False     # "everything up to here was sent"
                self._cond.wait(min(deadline, next_bookmark or deadline) - now)

    def _close_watch(self, w: _Watcher) -> None:
        with self._cond:
            self._watchers.discard(w)
            self._cond.notify_all()

    def compact(self) -> None:
        """Like etcd compaction: history up to now is forgotten, so a watch
        from an older rv gets 410. Open watches go on (they hold their place)."""
        with self._cond:
            self._compacted = self._rv

    def drop_watches(self) -> int:
        """Cut every open watch stream as a dying server or a broken link
        would: TCP FIN with no terminating chunk. Returns how many."""
        with self._cond:
            victims = [w for w in self._watchers if not w.cut.is_set()]
            for w in victims:
                w.cut.set()
                _shutdown_socket(w.conn)
            self._cond.notify_all()
        return len(victims)

    def wait_for_watchers(self, resource: str, n: int = 1, timeout: float = 10) -> None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while sum(1 for w in self._watchers if w.resource == resource and not w.cut.is_set()) < n:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"fewer than {n} watch streams on {resource} after {timeout} s")
                self._cond.wait(left)

    # -- injected failures

    def fail_next(self, n: int, status: int = 500, path_prefix: str = "") -> None:
        """The next n authenticated requests whose path starts with
        path_prefix get `status` with a Status body."""
        with self._cond:
            self._failures.append([n, status, path_prefix])

    def clear_failures(self) -> None:
        """Forgets every failure still to come (the server is back)."""
        with self._cond:
            self._failures.clear()

    def _take_failure(self, path: str) -> int | None:
        with self._cond:
            for rule in self._failures:
                if rule[0] > 0 and path.startswith(rule[2]):
                    rule[0] -= 1
                    return rule[1]
        return None
