"""meshwirectl doctor on a real node: two data planes keyed by their
controllers from a folder of Node objects (each controller in its node's
network namespace, serving /metrics on that node's loopback, as in a pod).
A healthy node has no error; then each broken state is made for real, one
at a time, and doctor must report exactly that error, in text and in
--json, and exit 1:

* a pod whose interface MTU is above the data plane's local port;
* a Node without meshwire.io/public-key in the folder;
* Node objects whose key epochs disagree with the data plane's SAs (a copy
  of the folder with the epochs moved, as a peer that rotated twice while
  this node's controller was away would publish them);
* a bypass route in a pod's netns, and a host route to a remote pod CIDR
  through the fabric's interface;
* a fake sysroot: no hugepages, workers on CPUs that are not isolated, the
  uplink's VF bound to a kernel driver (with a config naming a PCI device);
* last, the data plane restarted without its controller.

Clock skew is not here: the data plane does not fill PeerStatus.clock_*
yet; its rule is pinned by the unit tests."""

import json
import shutil
import subprocess

import pytest
import yaml

import meshwire_topology as topo
from meshwire_control import CONTROLLER, CTL, Controllers, nodes_yaml, pinging, show, write_atomic

METRICS_PORT = 9464  # on each node's own loopback: no clash between namespaces


@pytest.fixture(scope="module")
def mesh():
    binary = topo.find_dataplane()
    for path in (binary, CONTROLLER, CTL):
        if not path.exists():
            pytest.fail(f"{path} is not built")
    topo.cleanup_stale()
    with topo.running_cluster(binary, nodes=2, pods_per_node=1, workers=1, static_peers=False) as c:
        folder = c.tmpdir / "objects"
        folder.mkdir()
        write_atomic(folder / "nodes.yaml", nodes_yaml(c))
        ctls = Controllers(c, folder, in_node_netns=True)
        try:
            for n in c.nodes:
                ctls.start(n, "--metrics-listen", f"127.0.0.1:{METRICS_PORT}")
            topo.wait_for(lambda: all(show(n, "generation")["source"] == "api" for n in c.nodes), timeout=20,
                          what="both data planes programmed")
            topo.wait_for(lambda: pinging(c, c.nodes[0], c.nodes[1]), timeout=20, what="ping node1 -> node2")
            yield c, ctls
        finally:
            ctls.stop_all()


def doctor(c, node, *args, source=None, json_out=False, config=None, pods=True):
    """meshwirectl doctor in node's network namespace with every input: its
    config, the folder (or `source`), its controller's /metrics, its pods'
    netns. Returns (exit status, stdout)."""
    cmd = [CTL, "--socket", node.api_socket] + (["--json"] if json_out else []) + [
        "doctor", "--config", config or node.config_path,
        "--source", f"dir:{source or c.tmpdir / 'objects'}",
        "--controller", f"http://127.0.0.1:{METRICS_PORT}/metrics"]
    if pods:
        for pod in node.pods:
            cmd += ["--pod-netns", pod.ns]
    done = topo.run(cmd + list(args), ns=node.ns, check=False)
    assert done.returncode in (0, 1), f"doctor exited {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.returncode, done.stdout


def findings(c, node, *args, **kwargs) -> list[dict]:
    rc, out = doctor(c, node, *args, json_out=True, **kwargs)
    doc = json.loads(out)
    assert set(doc) == {"findings", "errors", "warnings"}, doc
    for f in doc["findings"]:
        assert set(f) == {"severity", "check", "found", "fix"}, f
        assert f["severity"] in ("ok", "skipped", "warning", "error"), f
    assert rc == (1 if doc["errors"] else 0), (rc, doc)
    return doc["findings"]


def errors(fs: list[dict]) -> list[dict]:
    return [f for f in fs if f["severity"] == "error"]


def expect_only(c, node, check: str, *needles: str, args=(), **kwargs) -> dict:
    """doctor (with further `args`) reports errors of `check` only, one of
    them holding every needle, in JSON and in text, and exits 1."""
    fs = findings(c, node, *args, **kwargs)
    errs = errors(fs)
    assert {f["check"] for f in errs} == {check}, json.dumps(fs, indent=1)
    hit = [f for f in errs if all(n in f["found"] + " " + f["fix"] for n in needles)]
    assert hit, json.dumps(errs, indent=1)
    rc, text = doctor(c, node, *args, **kwargs)
    assert rc == 1, text
    line = next(ln for ln in text.splitlines() if ln.startswith("error") and needles[0] in ln)
    assert f" {check} " in line, text
    assert text.rstrip().splitlines()[-1].startswith(f"{len(errs)} error(s)"), text
    return hit[0]


def test_a_healthy_node_has_no_error(mesh):
    c, _ = mesh
    n1 = c.nodes[0]
    fs = findings(c, n1)
    assert not errors(fs), json.dumps(fs, indent=1)
    by_check = {}
    for f in fs:
        by_check.setdefault(f["check"], []).append(f)
    # Every check ran on real inputs.
    for check in ("dataplane", "hugepages", "devices", "mtu", "public-keys", "key-epochs", "controller", "bypass",
                  "clock-skew"):
        assert any(f["severity"] in ("ok", "warning") for f in by_check.get(check, [])), (check, fs)
    assert any("--no-huge" in f["found"] for f in by_check["hugepages"]), fs
    assert any("interface " + n1.local_if + ", present" in f["found"] for f in by_check["devices"]), fs
    # 1500-byte pods over a 1500-byte IPv4 fabric: works, at a cost (the README's 1438).
    assert any(f["severity"] == "warning" and "leaves 1438 for pods" in f["found"] for f in by_check["mtu"]), fs
    assert any("2 Node(s) publish a public key" in f["found"] for f in by_check["public-keys"]), fs
    assert any(f["severity"] == "ok" and "127.0.0.1" in f["found"] for f in by_check["controller"]), fs
    assert any(f["severity"] == "ok" and n1.pods[0].ns in f["found"] for f in by_check["bypass"]), fs
    # One machine, one clock: the offset the keepalives measure is near 0.
    assert all(f["severity"] == "ok" for f in by_check["clock-skew"]), fs
    rc, text = doctor(c, n1)
    print(text)  # the README's example comes from here (pytest -s)
    assert rc == 0 and text.rstrip().splitlines()[-1].startswith("0 error(s)"), text


def test_a_pod_mtu_above_the_local_port(mesh):
    c, _ = mesh
    n1 = c.nodes[0]
    pod = n1.pods[0]
    topo.run(["ip", "-n", pod.ns, "link", "set", "eth0", "mtu", "9000"])
    try:
        expect_only(c, n1, "mtu", f"pod netns {pod.ns} eth0 MTU 9000 is above the data plane's local port MTU 1500",
                    f"ip -n {pod.ns} link set eth0 mtu 1438")
    finally:
        topo.run(["ip", "-n", pod.ns, "link", "set", "eth0", "mtu", "1500"])
    assert not errors(findings(c, n1))


def test_a_node_without_public_key(mesh):
    c, _ = mesh
    n1 = c.nodes[0]
    extra = c.tmpdir / "objects" / "node3.yaml"
    write_atomic(extra, "\n".join([
        "apiVersion: v1", "kind: Node", "metadata:", "  name: node3", "spec:", "  podCIDRs: [10.13.0.0/24]",
        "status:", "  addresses:", "  - {type: InternalIP, address: 192.0.2.3}"]) + "\n")
    try:
        expect_only(c, n1, "public-keys", "Node node3 has no meshwire.io/public-key",
                    "meshwire-controller on node3")
    finally:
        extra.unlink()
    assert not errors(findings(c, n1))


def _epochs_moved(c, ctls, node_name: str, by: int):
    """A copy of the folder in which node_name publishes its epoch + by."""
    copy = c.tmpdir / f"objects-{node_name}-{by}"
    shutil.copytree(c.tmpdir / "objects", copy)
    patch = copy / f"meshwire-node-{node_name}.yaml"
    doc = yaml.safe_load(patch.read_text())
    epoch = int(doc["metadata"]["annotations"]["meshwire.io/key-epoch"])
    doc["metadata"]["annotations"]["meshwire.io/key-epoch"] = str(epoch + by)
    patch.write_text(yaml.safe_dump(doc))
    return copy, epoch


def test_key_epochs_that_disagree(mesh):
    c, ctls = mesh
    n1 = c.nodes[0]
    # node2 publishes an epoch node1 has no inbound SAs for.
    copy, e2 = _epochs_moved(c, ctls, "node2", 5)
    try:
        expect_only(c, n1, "key-epochs", f"node2 publishes epoch {e2 + 5} (its Node) but node1 accepts from it",
                    f"{e2}, {e2 + 1} only", source=copy)
    finally:
        shutil.rmtree(copy)
    # node1's own Node publishes another epoch than its outbound SAs carry.
    copy, e1 = _epochs_moved(c, ctls, "node1", 3)
    try:
        expect_only(c, n1, "key-epochs", f"node1 sends to node2 under epoch {e1} but publishes epoch {e1 + 3}",
                    source=copy)
    finally:
        shutil.rmtree(copy)


def test_a_bypass_route_in_a_pod(mesh):
    c, _ = mesh
    n1, n2 = c.nodes
    pod = n1.pods[0]
    # A second interface, as another CNI (Multus) would give the pod.
    topo.run(["ip", "-n", pod.ns, "link", "add", "byp0", "type", "veth", "peer", "name", "byp0p"])
    try:
        topo.run(["ip", "-n", pod.ns, "link", "set", "byp0", "up"])
        topo.run(["ip", "-n", pod.ns, "route", "add", n2.pod_cidr_v4, "dev", "byp0"])
        expect_only(c, n1, "bypass", f"pod netns {pod.ns}: 10.12.0.1 (node2's pod CIDR {n2.pod_cidr_v4}) leaves "
                    "through byp0, not the data plane's eth0")
    finally:
        topo.run(["ip", "-n", pod.ns, "link", "del", "byp0"], check=False)
    assert not errors(findings(c, n1))


def test_a_pod_netns_that_does_not_exist(mesh):
    c, _ = mesh
    n1 = c.nodes[0]
    expect_only(c, n1, "bypass", f"cannot inspect pod netns {c.prefix}-nope", args=("--pod-netns", f"{c.prefix}-nope"))


def test_a_host_route_through_the_fabric(mesh):
    c, _ = mesh
    n1, n2 = c.nodes
    topo.run(["ip", "-n", n1.ns, "route", "add", n2.pod_cidr_v4, "dev", n1.uplink_if])
    try:
        expect_only(c, n1, "bypass", f"host route to 10.12.0.1 (node2's pod CIDR {n2.pod_cidr_v4}) leaves through "
                    f"{n1.uplink_if}, the fabric's interface")
    finally:
        topo.run(["ip", "-n", n1.ns, "route", "del", n2.pod_cidr_v4, "dev", n1.uplink_if], check=False)
    assert not errors(findings(c, n1))


def _fake_node(c, node, *, isolated: str, driver: str, hugepages: int):
    """A sysroot and a config as a production node would have them: the
    uplink on a VF (0000:03:00.1, a VF of 0000:03:00.0) bound to `driver`,
    `hugepages` 2 MB pages, `isolated` CPUs, busy polling, -m 1024."""
    root = c.tmpdir / f"sysroot-{isolated or 'none'}-{driver}-{hugepages}"
    hp = root / "sys/kernel/mm/hugepages/hugepages-2048kB"
    hp.mkdir(parents=True)
    (hp / "nr_hugepages").write_text(f"{hugepages}\n")
    (hp / "free_hugepages").write_text(f"{hugepages}\n")
    (root / "proc").mkdir()
    (root / "proc/mounts").write_text("nodev /dev/hugepages hugetlbfs rw,relatime,pagesize=2M 0 0\n")
    cpu = root / "sys/devices/system/cpu"
    cpu.mkdir(parents=True)
    (cpu / "isolated").write_text(isolated + "\n")
    (root / f"sys/bus/pci/drivers/{driver}").mkdir(parents=True)
    for addr in ("0000:03:00.0", "0000:03:00.1"):
        (root / f"sys/bus/pci/devices/{addr}/iommu_group").mkdir(parents=True)
    vf = root / "sys/bus/pci/devices/0000:03:00.1"
    (vf / "driver").symlink_to(root / f"sys/bus/pci/drivers/{driver}")
    (vf / "physfn").symlink_to(root / "sys/bus/pci/devices/0000:03:00.0")
    # The interface the pods' port opens stays as it is in the node's netns.
    (root / f"sys/class/net/{node.local_if}").mkdir(parents=True)
    config = yaml.safe_load(node.config_path.read_text())
    config["eal"] = ["-l", "0-1", "-m", "1024", "--file-prefix", node.file_prefix]
    config["idle"] = "busy"
    config["ports"][1]["device"] = "0000:03:00.1"
    path = c.tmpdir / f"{root.name}.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return root, path


def test_a_healthy_fake_sysroot(mesh):
    c, _ = mesh
    n1 = c.nodes[0]
    root, config = _fake_node(c, n1, isolated="1", driver="vfio-pci", hugepages=1024)
    fs = findings(c, n1, "--sysroot", str(root), config=config)
    assert not errors(fs), json.dumps(fs, indent=1)
    assert any(f["check"] == "hugepages" and "asks for 1024 MB" in f["found"] for f in fs), fs
    assert any(f["check"] == "isolated-cores" and f["severity"] == "ok" for f in fs), fs
    assert any(f["check"] == "devices" and f["severity"] == "ok" and "a VF of 0000:03:00.0" in f["found"]
               for f in fs), fs


@pytest.mark.parametrize("isolated,driver,hugepages,check,needles", [
    ("1", "vfio-pci", 0, "hugepages", ("no hugepages (0 of 0 2M pages free)", "nr_hugepages")),
    ("", "vfio-pci", 1024, "isolated-cores", ("worker CPU(s) 1; not isolated: 1", "isolcpus=1")),
    ("1", "iavf", 1024, "devices", ("port fabric (0000:03:00.1) (a VF of 0000:03:00.0): bound to iavf",
                                    "dpdk-devbind.py -b vfio-pci 0000:03:00.1")),
], ids=["no-hugepages", "workers-not-isolated", "vf-on-a-kernel-driver"])
def test_a_broken_fake_sysroot(mesh, isolated, driver, hugepages, check, needles):
    c, _ = mesh
    n1 = c.nodes[0]
    root, config = _fake_node(c, n1, isolated=isolated, driver=driver, hugepages=hugepages)
    expect_only(c, n1, check, *needles, args=("--sysroot", str(root)), config=config)


def test_nodes_from_an_api_server(mesh):
    """--source kube, as the controller takes it: the same Node objects
    (with the annotations the controllers published) in the tests' HTTPS API
    server, and node3 without a public key. Run in the root namespace, where
    the API server listens, with the data plane's API alone."""
    from fake_apiserver import FakeApiServer
    c, ctls = mesh
    n1 = c.nodes[0]
    with FakeApiServer(c.tmpdir / "apiserver-doctor") as api:
        for obj in yaml.safe_load_all(nodes_yaml(c)):
            obj["metadata"]["annotations"] = ctls.annotations(c.node(obj["metadata"]["name"]))
            api.create("nodes", obj)
        api.create("nodes", {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node3"},
                             "spec": {"podCIDRs": ["10.13.0.0/24"]},
                             "status": {"addresses": [{"type": "InternalIP", "address": "192.0.2.3"}]}})
        kubeconfig = c.tmpdir / "doctor-kubeconfig"
        api.write_kubeconfig(kubeconfig)
        done = topo.run([CTL, "--socket", n1.api_socket, "--json", "doctor", "--source", "kube",
                         "--kubeconfig", kubeconfig], check=False)
    doc = json.loads(done.stdout)
    errs = errors(doc["findings"])
    assert done.returncode == 1 and {f["check"] for f in errs} == {"public-keys"}, json.dumps(doc, indent=1)
    assert any("Node node3 has no meshwire.io/public-key" in f["found"] for f in errs), errs
    assert any(f["check"] == "key-epochs" and f["severity"] == "ok" and "(its Node)" in f["found"]
               for f in doc["findings"]), doc


def test_a_dataplane_without_controller(mesh):
    """Last: it leaves node1 unprogrammed."""
    c, ctls = mesh
    n1 = c.nodes[0]
    ctls.stop(n1)
    c.stop_node(n1)
    c.start_node(n1)
    assert show(n1, "generation")["live_generation"] == "0"
    hit = expect_only(c, n1, "controller", "runs its startup config only (generation 0, 0 static peer(s))",
                      "start meshwire-controller")
    assert hit["severity"] == "error"
    fs = findings(c, n1)
    assert any(f["check"] == "controller" and f["severity"] == "error" and "cannot read the controller's metrics"
               in f["found"] for f in fs), fs
