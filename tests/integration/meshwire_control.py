"""The control side in the integration tests and the demo: a folder of Node
objects, meshwire-controller processes on it, meshwirectl, and the README's
key derivation written again in Python (cryptography's X25519 and HKDF), so
that Scapy and tshark can decrypt what controller-keyed data planes send
with keys derived independently of the C++ code."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import struct
import subprocess
import time
from pathlib import Path

import meshwire_topology as topo

BUILD = topo.find_dataplane().parents[1]
CONTROLLER = BUILD / "control" / "meshwire-controller"
CTL = BUILD / "control" / "meshwirectl"
CLUSTER_ID = "it"


def nodes_yaml(cluster, extra_cidrs=None) -> str:
    """The cluster's nodes as Node objects (kubectl's YAML, one document each)."""
    extra_cidrs = extra_cidrs or {}
    docs = []
    for n in cluster.nodes:
        cidrs = [n.pod_cidr_v4, n.pod_cidr_v6] + extra_cidrs.get(n.name, [])
        docs.append("\n".join([
            "apiVersion: v1", "kind: Node", "metadata:", f"  name: {n.name}",
            "spec:", "  podCIDRs: [" + ", ".join(f'"{c}"' for c in cidrs) + "]",
            "status:", "  addresses:", f"  - {{type: InternalIP, address: {n.tunnel_address}}}",
            f"  - {{type: Hostname, address: {n.name}}}"]))
    return "---\n".join(d + "\n" for d in docs)


def service_folder(cluster, services: dict) -> Path:
    """The cluster's folder of objects for `--source dir:`: its Node objects
    and, for each name -> (ClusterIP, backend pods), a Service and its
    EndpointSlice."""
    folder = cluster.tmpdir / "objects"
    folder.mkdir()
    write_atomic(folder / "nodes.yaml", nodes_yaml(cluster))
    for name, (vip, backends) in services.items():
        write_atomic(folder / f"{name}.yaml", service_yaml(name, vip))
        write_atomic(folder / f"{name}-slice.yaml", slice_yaml(name, backends))
    return folder


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name("." + path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)


def ctl_json(node, *args) -> dict:
    out = subprocess.run([str(CTL), "--socket", str(node.api_socket), "--json", *map(str, args)],
                         capture_output=True, text=True, timeout=10, check=True).stdout
    return json.loads(out)


def show(node, what) -> dict:
    """meshwirectl --json show `what` on node."""
    return ctl_json(node, "show", what)


def pinging(cluster, a, b) -> bool:
    """a's first pod pings b's first pod (IPv4, two echoes)."""
    return cluster.ping(a.pods[0], b.pods[0], 4, count=2, deadline=3).returncode == 0


def node_objects(cluster, extra_cidrs=None) -> list[dict]:
    """The cluster's nodes as Node objects (dicts), for an API server."""
    import yaml
    return list(yaml.safe_load_all(nodes_yaml(cluster, extra_cidrs)))


def wait_keyed_from_the_api_server(cluster) -> None:
    """Waits until every data plane of a two-node cluster is programmed by
    its controller from the API server, with peers, and pods ping both ways."""
    n1, n2 = cluster.nodes
    topo.wait_for(lambda: all(show(n, "generation")["source"] == "api" and show(n, "peers")["peers"]
                              for n in cluster.nodes), timeout=20, what="both data planes keyed from the API server")
    topo.wait_for(lambda: pinging(cluster, n1, n2) and pinging(cluster, n2, n1), timeout=20, what="ping both ways")


class Controllers:
    """One meshwire-controller per node of `cluster`: on `folder`
    (--source dir:), or on an API server when `api` (a FakeApiServer) is
    given (--source kube, with a kubeconfig written for it)."""

    def __init__(self, cluster, folder: Path | None, grace_s: float = 5, api=None, in_node_netns: bool = False,
                 in_cluster: bool = False):
        """in_node_netns: run each controller in its node's network namespace
        (its --metrics-listen on that node's loopback, as in a pod).
        in_cluster: with `api`, no kubeconfig: each controller finds the API
        server as in a pod, from KUBERNETES_SERVICE_HOST/PORT and a projected
        service-account volume laid out (and rotated) as the kubelet does."""
        self.cluster, self.folder, self.grace_s, self.api = cluster, folder, grace_s, api
        self.in_node_netns = in_node_netns
        self.in_cluster = in_cluster
        self.procs: dict[str, subprocess.Popen] = {}
        self.source = ["--source", f"dir:{folder}"]
        self.env: dict[str, str] | None = None
        if api is not None and in_cluster:
            volume = cluster.tmpdir / "serviceaccount"
            self.env = {k: v for k, v in os.environ.items() if k not in ("KUBECONFIG",)}
            self.env.update(api.service_account_volume(volume))
            self.env["HOME"] = str(cluster.tmpdir)  # no ~/.kube/config to fall back on
            self.source = ["--source", "kube", "--service-account-dir", str(volume)]
        elif api is not None:
            kubeconfig = cluster.tmpdir / "kubeconfig"
            api.write_kubeconfig(kubeconfig)
            self.source = ["--source", "kube", "--kubeconfig", str(kubeconfig)]

    def state_dir(self, node) -> Path:
        return self.cluster.tmpdir / f"state-{node.name}"

    def start(self, node, *extra: str) -> None:
        log = open(self.cluster.tmpdir / f"controller-{node.name}.log", "ab")
        args = [str(CONTROLLER), "--node", node.name, *self.source, "--api-socket",
                str(node.api_socket), "--state-dir", str(self.state_dir(node)), "--cluster-id", CLUSTER_ID,
                "--grace", str(self.grace_s), *extra]
        if self.in_node_netns:
            self.procs[node.name] = topo.popen(args, ns=node.ns, stdout=log, stderr=log, env=self.env)
        else:
            self.procs[node.name] = subprocess.Popen(args, stdout=log, stderr=log, env=self.env)

    def stop(self, node) -> None:
        p = self.procs.pop(node.name)
        p.terminate()
        p.wait(timeout=10)

    def log(self, node) -> str:
        return (self.cluster.tmpdir / f"controller-{node.name}.log").read_text(errors="replace")

    def stop_all(self) -> None:
        for p in self.procs.values():
            p.terminate()
        for p in self.procs.values():
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
        self.procs.clear()

    def annotations(self, node) -> dict:
        """What node's controller published (its Node's annotations, or its patch file)."""
        if self.api is not None:
            return self.api.get("nodes", node.name)["metadata"].get("annotations", {})
        import yaml
        doc = yaml.safe_load((self.folder / f"meshwire-node-{node.name}.yaml").read_text())
        return doc["metadata"]["annotations"]

    def derived_sa(self, sender, receiver, worker: int = 0) -> topo.Sa:
        """The SA sender uses towards receiver now, derived as the README says
        from sender's private key file and receiver's published public key."""
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey
        from cryptography.hazmat.primitives.kdf.hkdf import HKDF
        private = serialization.load_pem_private_key((self.state_dir(sender) / "node.key").read_bytes(), None)
        peer = X25519PublicKey.from_public_bytes(
            base64.b64decode(self.annotations(receiver)["meshwire.io/public-key"]))
        shared = private.exchange(peer)
        epoch = int(self.annotations(sender)["meshwire.io/key-epoch"])
        info = (b"meshwire/v1/sa\0" + sender.name.encode() + b"\0" + receiver.name.encode() + b"\0" +
                struct.pack(">QHB", epoch, worker, 16))
        okm = HKDF(hashes.SHA256(), 20, b"meshwire/v1/cluster/" + CLUSTER_ID.encode(), info).derive(shared)
        spi = 0x80000000 | ((epoch & 0xFFFFFF) << 6) | worker
        return topo.Sa(spi, okm[:16], okm[16:20])


# ---- Services: objects for the folder source, and backends that say who they are

BACKEND_SCRIPT = Path(__file__).with_name("service_backend.py")


def service_yaml(name: str, vip: str, affinity: bool = False) -> str:
    lines = ["apiVersion: v1", "kind: Service", "metadata:", f"  name: {name}", "  namespace: default", "spec:",
             "  type: ClusterIP", f"  clusterIP: {vip}", f"  clusterIPs: [{vip}]", "  ports:",
             "  - {name: http, port: 80, targetPort: 8080, protocol: TCP}",
             "  - {name: echo, port: 9000, protocol: TCP}",
             "  - {name: dns, port: 53, targetPort: 5353, protocol: UDP}"]
    if affinity:
        lines += ["  sessionAffinity: ClientIP", "  sessionAffinityConfig:", "    clientIP: {timeoutSeconds: 600}"]
    return "\n".join(lines) + "\n"


def slice_yaml(service: str, backends, not_ready=(), ghosts=()) -> str:
    """An EndpointSlice of `service` with these backends (pods), and
    `ghosts`: (address, node name) endpoints where nothing answers."""
    lines = ["apiVersion: discovery.k8s.io/v1", "kind: EndpointSlice", "metadata:", f"  name: {service}-1",
             "  namespace: default", "  labels:", f"    kubernetes.io/service-name: {service}",
             "addressType: IPv4", "ports:", "- {name: http, port: 8080, protocol: TCP}",
             "- {name: echo, port: 9000, protocol: TCP}", "- {name: dns, port: 5353, protocol: UDP}", "endpoints:"]
    for pod in backends:
        ready = "false" if pod.name in not_ready else "true"
        lines += [f"- addresses: [{pod.ipv4}]", f"  conditions: {{ready: {ready}, serving: {ready}}}",
                  f"  nodeName: {pod.node.name}",
                  f"  targetRef: {{kind: Pod, namespace: default, name: {pod.name}}}"]
    for address, node in ghosts:
        lines += [f"- addresses: [{address}]", "  conditions: {ready: true, serving: true}", f"  nodeName: {node}",
                  "  targetRef: {kind: Pod, namespace: default, name: ghost}"]
    return "\n".join(lines) + "\n"


class ServiceBackends:
    """service_backend.py in pods: HTTP on 8080, a line echo on 9000, UDP on
    5353, each answering with the pod's name."""

    def __init__(self):
        self.procs: dict[str, subprocess.Popen] = {}

    def start(self, pod) -> None:
        p = topo.popen(["/usr/bin/python3", BACKEND_SCRIPT, pod.name], ns=pod.ns, stdout=subprocess.PIPE,
                       stderr=subprocess.DEVNULL, text=True)
        self.procs[pod.name] = p
        if p.stdout.readline().strip() != "ready":
            raise RuntimeError(f"the service backend in {pod.name} did not start")

    def stop(self, pod) -> None:
        topo.stop_process(self.procs.pop(pod.name))

    def stop_all(self) -> None:
        for p in self.procs.values():
            topo.stop_process(p)
        self.procs.clear()


@contextlib.contextmanager
def serving(cluster, folder: Path, backends, controller_args=lambda node: ()):
    """The backends' servers in their pods and a controller per node reading
    `folder` (with controller_args(node) more arguments), until every node
    has its services programmed; all stopped when the block ends."""
    servers = ServiceBackends()
    ctls = Controllers(cluster, folder)
    try:
        for pod in backends:
            servers.start(pod)
        for n in cluster.nodes:
            ctls.start(n, *controller_args(n))
        for n in cluster.nodes:
            topo.wait_for(lambda: int(ctl_json(n, "show", "generation").get("services_generation", 0)) > 0,
                          timeout=30, what=f"{n.name}'s services programmed")
        yield ctls, servers
    finally:
        ctls.stop_all()
        servers.stop_all()
