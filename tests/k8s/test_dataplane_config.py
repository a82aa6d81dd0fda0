"""The data plane config each overlay ships, checked by meshwire-dataplane
--check itself in the environment a pod gives it: the container's variables
(fieldRefs filled in as the kubelet would), the SR-IOV device plugin's
PCIDEVICE_<RESOURCE> variables, and a downward-API annotations file holding
Multus's network-status for the pod's attachments."""
import json
import os
import re
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import OVERLAYS, ROOT, container, examples, find

NODE = {"spec.nodeName": "node-a", "status.hostIP": "192.0.2.11", "status.podIP": "10.244.1.7"}
FABRIC_IP = "192.0.2.71"


def binary() -> Path:
    explicit = os.environ.get("MESHWIRE_DATAPLANE")
    if explicit:
        return Path(explicit)
    build = Path(os.environ.get("BUILD", ROOT / "build"))
    return (build if build.is_absolute() else ROOT / build) / "dataplane" / "meshwire-dataplane"


@pytest.fixture(scope="module")
def dataplane() -> Path:
    path = binary()
    if not path.exists():
        pytest.fail(f"{path} not found: build it first (make build, or set BUILD / MESHWIRE_DATAPLANE)",
                    pytrace=False)
    return path


@pytest.fixture(scope="module")
def pod_forms(dataplane) -> bool:
    """Whether this data plane reads the pod's environment (${VAR}, sriov:,
    network:), as its --help says."""
    out = subprocess.run([str(dataplane), "--help"], capture_output=True, text=True, timeout=30)
    return "--pod-annotations" in out.stdout


def resource_variable(resource: str) -> str:
    return "PCIDEVICE_" + re.sub(r"[./-]", "_", resource.upper())


class Pod:
    """What one node's meshwire pod would see, built from the rendered objects."""

    def __init__(self, objects, overlay):
        ds = find(objects, "DaemonSet", "meshwire")
        self.dataplane = container(ds, "dataplane")
        self.config_text = find(objects, "ConfigMap", "meshwire-config")["data"]["dataplane.yaml"]
        self.env = {}
        for e in self.dataplane.get("env", []):
            if "value" in e:
                self.env[e["name"]] = e["value"]
            else:
                self.env[e["name"]] = NODE[e["valueFrom"]["fieldRef"]["fieldPath"]]
        # The device plugin's allocation: distinct fake VFs per resource.
        self.allocated = {}
        bus = 0x3b
        for resource, count in self.dataplane["resources"].get("limits", {}).items():
            if "/" not in resource:
                continue
            self.allocated[resource] = [f"0000:{bus:02x}:02.{i}" for i in range(int(count))]
            self.env[resource_variable(resource)] = ",".join(self.allocated[resource])
            bus += 1
        # Multus: each attachment takes the next free VF of its resource.
        annotations = ds["spec"]["template"]["metadata"].get("annotations", {})
        networks = annotations.get("k8s.v1.cni.cncf.io/networks", "")
        nads = {f"meshwire-system/{o['metadata']['name']}": o
                for f, objs in examples().items() if overlay.split("-")[-1] in f
                for o in objs if o["kind"] == "NetworkAttachmentDefinition"}
        taken = {r: 0 for r in self.allocated}
        status = [{"name": "k8s-pod-network", "interface": "eth0", "ips": [NODE["status.podIP"]],
                   "default": True, "dns": {}}]
        self.attachment_pci = {}
        for i, item in enumerate(n.strip() for n in networks.split(",") if n.strip()):
            name, _, iface = item.partition("@")
            nad = nads[name]
            config = json.loads(nad["spec"]["config"])
            entry = {"name": name, "interface": iface or f"net{i + 1}",
                     "mac": f"02:00:00:00:00:{i + 1:02x}", "dns": {}}
            if config.get("ipam", {}).get("type"):
                entry["ips"] = [FABRIC_IP]
            resource = nad["metadata"].get("annotations", {}).get("k8s.v1.cni.cncf.io/resourceName")
            if resource:
                # Multus takes a VF the device plugin allocated the pod, and
                # not one of those that sriov: ports take first.
                pci = self.allocated[resource][-1 - taken[resource]]
                taken[resource] += 1
                entry["device-info"] = {"type": "pci", "version": "1.1.0", "pci": {"pci-address": pci}}
                self.attachment_pci[name] = pci
            status.append(entry)
        self.annotations = dict(annotations)
        self.annotations["k8s.v1.cni.cncf.io/network-status"] = json.dumps(status, indent=4)

    def write(self, folder: Path) -> tuple[Path, Path]:
        config = folder / "dataplane.yaml"
        config.write_text(self.config_text)
        podinfo = folder / "annotations"
        # The downward API's format: key="Go-quoted value", one per line.
        podinfo.write_text("\n".join(f"{k}={json.dumps(v)}" for k, v in sorted(self.annotations.items())))
        return config, podinfo


def check(dataplane, config, podinfo, env) -> subprocess.CompletedProcess:
    return subprocess.run([str(dataplane), "--config", str(config), "--check", "--pod-annotations", str(podinfo)],
                          env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), **env},
                          capture_output=True, text=True, timeout=60)


def require_pod_forms(pod_forms, dataplane):
    if not pod_forms:
        pytest.skip(f"{dataplane} has no --pod-annotations in its --help: it predates the pod forms "
                    f"(${{VAR}}, sriov:, network:), so it cannot check the overlays' configs as a pod runs them")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_config_passes_check_in_a_pod(rendered, dataplane, pod_forms, overlay, tmp_path):
    require_pod_forms(pod_forms, dataplane)
    pod = Pod(rendered[overlay], overlay)
    config, podinfo = pod.write(tmp_path)
    out = check(dataplane, config, podinfo, pod.env)
    assert out.returncode == 0, f"{overlay}: --check said:\n{out.stdout}{out.stderr}"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_check_names_a_missing_node_name(rendered, dataplane, pod_forms, overlay, tmp_path):
    """The same check fails, naming the field and the variable, in a pod
    without NODE_NAME: the check above can fail."""
    require_pod_forms(pod_forms, dataplane)
    pod = Pod(rendered[overlay], overlay)
    config, podinfo = pod.write(tmp_path)
    env = {k: v for k, v in pod.env.items() if k != "NODE_NAME"}
    out = check(dataplane, config, podinfo, env)
    assert out.returncode == 2, out.stdout + out.stderr
    assert "node.name" in out.stderr and "NODE_NAME" in out.stderr, out.stderr


def test_check_names_a_missing_device_plugin_variable(rendered, dataplane, pod_forms, tmp_path):
    require_pod_forms(pod_forms, dataplane)
    pod = Pod(rendered["sriov-intel"], "sriov-intel")
    config, podinfo = pod.write(tmp_path)
    variable = resource_variable(pod.env["MESHWIRE_SRIOV_RESOURCE"])
    env = {k: v for k, v in pod.env.items() if k != variable}
    out = check(dataplane, config, podinfo, env)
    assert out.returncode == 2, out.stdout + out.stderr
    assert "ports[0].device" in out.stderr and variable in out.stderr, out.stderr


def test_check_names_a_missing_attachment(rendered, dataplane, pod_forms, tmp_path):
    require_pod_forms(pod_forms, dataplane)
    pod = Pod(rendered["sriov-mellanox"], "sriov-mellanox")
    status = json.loads(pod.annotations["k8s.v1.cni.cncf.io/network-status"])
    pod.annotations["k8s.v1.cni.cncf.io/network-status"] = json.dumps(
        [s for s in status if s["name"] != "meshwire-system/meshwire-fabric"])
    config, podinfo = pod.write(tmp_path)
    out = check(dataplane, config, podinfo, pod.env)
    assert out.returncode == 2, out.stdout + out.stderr
    assert "meshwire-system/meshwire-fabric" in out.stderr, out.stderr


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_config_resolved_by_hand_passes_check(rendered, dataplane, pod_forms, overlay, tmp_path):
    """Everything else in the config (EAL, workers, ports, MTUs), with the
    pod's values put in by this test as the pod forms would: runs on any
    build of the data plane."""
    pod = Pod(rendered[overlay], overlay)
    def expand(value):
        if isinstance(value, dict):
            return {k: expand(v) for k, v in value.items()}
        if isinstance(value, list):
            return [expand(v) for v in value]
        if isinstance(value, str):
            return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", lambda m: pod.env[m.group(1)], value)
        return value

    config = expand(yaml.safe_load(pod.config_text))
    next_vf = {r: 0 for r in pod.allocated}
    for port in config["ports"]:
        kind, _, name = port["device"].partition(":")
        if kind == "sriov":
            port["device"] = pod.allocated[name][next_vf[name]]
            next_vf[name] += 1
        elif kind == "network":
            port["device"] = pod.attachment_pci[name]
    if config["node"]["tunnel_address"].startswith("network:"):
        config["node"]["tunnel_address"] = FABRIC_IP
    if not pod_forms:
        # Before the pod forms, pod_cidrs were required; the controller
        # applies the Node's in a pod.
        config["node"]["pod_cidrs"] = ["10.244.1.0/24"]
    assert len({p["device"] for p in config["ports"]}) == len(config["ports"]), "two ports on one VF"
    path = tmp_path / "resolved.yaml"
    path.write_text(yaml.safe_dump(config))
    out = subprocess.run([str(dataplane), "--config", str(path), "--check"], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, f"{overlay}: --check said:\n{out.stdout}{out.stderr}"
