"""The admission policy's CEL, evaluated with @bufbuild/cel (admission.mjs)
on the requests an API server would hand it: only the meshwire service
account is matched; it may change only its own Node's meshwire.io/*
annotations, and only with a pod-bound token that names the node."""
import copy

import pytest

from conftest import find, run_node

SA = "system:serviceaccount:meshwire-system:meshwire"
CLAIM = "authentication.kubernetes.io/node-name"


def node(name="node-a", annotations=None, labels=None):
    obj = {
        "apiVersion": "v1", "kind": "Node",
        "metadata": {
            "name": name, "uid": "2d1c5c2e-0000-4000-8000-000000000001", "resourceVersion": "4711",
            "labels": {"kubernetes.io/hostname": name, "node-role.kubernetes.io/worker": ""},
            "annotations": {"node.alpha.kubernetes.io/ttl": "0", "meshwire.io/key-epoch": "3"},
        },
        "spec": {"podCIDR": "10.1.0.0/24", "podCIDRs": ["10.1.0.0/24"],
                 "taints": [{"key": "dedicated", "value": "telco", "effect": "NoSchedule"}]},
        "status": {"addresses": [{"type": "InternalIP", "address": "192.0.2.11"}],
                   "conditions": [{"type": "Ready", "status": "True"}]},
    }
    if annotations is not None:
        obj["metadata"]["annotations"] = annotations
    if labels is not None:
        obj["metadata"]["labels"] = labels
    return obj


def request(user=SA, node_claim=("node-a",)):
    extra = {"authentication.kubernetes.io/pod-name": ["meshwire-x7k2p"]}
    if node_claim is not None:
        extra[CLAIM] = list(node_claim)
    return {"operation": "UPDATE", "kind": {"group": "", "version": "v1", "kind": "Node"},
            "userInfo": {"username": user, "groups": ["system:serviceaccounts"], "extra": extra}}


def changed(old, edit):
    new = copy.deepcopy(old)
    edit(new)
    return new


def annotate(changes: dict):
    """An edit that sets annotations (None: removes one)."""
    def edit(n):
        for k, v in changes.items():
            if v is None:
                del n["metadata"]["annotations"][k]
            else:
                n["metadata"]["annotations"][k] = v
    return edit


def cases():
    old = node()
    bare = node(annotations=None)
    del bare["metadata"]["annotations"]
    c = []

    def case(name, new, old_=old, req=None, expect=True, matched=True):
        c.append(({"name": name, "request": req or request(), "object": new, "oldObject": old_}, expect, matched))

    case("own node, meshwire annotations changed", changed(old, annotate({"meshwire.io/public-key": "Xx3Pm4vY0o8c6wS6tPjtQmY2lC3o7n8YIYl8ogQsRmE=", "meshwire.io/key-epoch": "4"})))
    case("own node, meshwire.io/tunnel-address added", changed(old, annotate({"meshwire.io/tunnel-address": "192.0.2.71"})))
    case("own node, a meshwire annotation removed", changed(old, annotate({"meshwire.io/key-epoch": None})))
    case("own node without annotations gets its first", changed(bare, lambda n: n["metadata"].__setitem__(
        "annotations", {"meshwire.io/workers": "2"})), old_=bare)
    case("own node, nothing changed", copy.deepcopy(old))
    case("resourceVersion and managedFields move with every update", changed(old, lambda n: n["metadata"].update(
        resourceVersion="4712", managedFields=[{"manager": "meshwire-controller", "operation": "Update"}])))
    case("another node", changed(node("node-b"), annotate({"meshwire.io/key-epoch": "4"})), old_=node("node-b"),
         expect=False)
    case("a label", changed(old, lambda n: n["metadata"]["labels"].__setitem__("meshwire.io/ready", "true")),
         expect=False)
    case("a label removed", changed(old, lambda n: n["metadata"]["labels"].pop("node-role.kubernetes.io/worker")),
         expect=False)
    case("a taint removed", changed(old, lambda n: n["spec"].pop("taints")), expect=False)
    case("the pod CIDR", changed(old, lambda n: n["spec"].update(podCIDRs=["10.9.0.0/24"])), expect=False)
    case("cordon", changed(old, lambda n: n["spec"].__setitem__("unschedulable", True)), expect=False)
    case("status", changed(old, lambda n: n["status"]["addresses"].append(
        {"type": "InternalIP", "address": "192.0.2.99"})), expect=False)
    case("a finalizer", changed(old, lambda n: n["metadata"].__setitem__("finalizers", ["x.io/hold"])),
         expect=False)
    case("a foreign annotation changed", changed(old, annotate({"node.alpha.kubernetes.io/ttl": "30"})), expect=False)
    case("a foreign annotation added", changed(old, annotate({"example.com/owner": "me"})), expect=False)
    case("a foreign annotation removed", changed(old, annotate({"node.alpha.kubernetes.io/ttl": None})), expect=False)
    case("a look-alike prefix", changed(old, lambda n: n["metadata"]["annotations"].__setitem__(
        "meshwire.io.evil.com/x", "1")), expect=False)
    case("no node claim (a token not bound to a pod)", changed(old, annotate({"meshwire.io/key-epoch": "4"})),
         req=request(node_claim=None), expect=False)
    case("an empty node claim", changed(old, annotate({"meshwire.io/key-epoch": "4"})),
         req=request(node_claim=()), expect=False)
    case("another node's token", changed(old, annotate({"meshwire.io/key-epoch": "4"})),
         req=request(node_claim=("node-b",)), expect=False)
    case("the kubelet is not this policy's business", changed(old, lambda n: n["spec"].pop("taints")),
         req=request(user="system:node:node-a", node_claim=None), expect=True, matched=False)
    case("another service account is not either", changed(old, annotate({"example.com/owner": "me"})),
         req=request(user="system:serviceaccount:kube-system:node-controller"), expect=True, matched=False)
    return c


CASES = cases()


@pytest.fixture(scope="module")
def verdicts(rendered, node_tools):
    policy = find(rendered["base"], "ValidatingAdmissionPolicy")
    results = run_node(node_tools, "admission.mjs", {"spec": policy["spec"], "cases": [c for c, _, _ in CASES]})
    return {r["name"]: r for r in results}


@pytest.mark.parametrize("case,allowed,matched", CASES, ids=[c["name"] for c, _, _ in CASES])
def test_policy(verdicts, case, allowed, matched):
    verdict = verdicts[case["name"]]
    assert verdict["matched"] == matched, verdict
    assert verdict["allowed"] == allowed, verdict
    # A denial says why, and no expression failed to evaluate.
    for message in verdict["messages"]:
        assert message.startswith("meshwire "), message


def test_denials_name_the_rule(verdicts):
    assert verdicts["another node"]["messages"] == ["meshwire on node node-a may patch only its own Node, not node-b"]
    assert any("labels" in m for m in verdicts["a label"]["messages"])
    assert any("pod-bound" in m for m in verdicts["no node claim (a token not bound to a pod)"]["messages"])
    assert any("meshwire.io/" in m for m in verdicts["a foreign annotation added"]["messages"])
