"""Fixtures of the Kubernetes manifests suite: kubectl's kustomize renders
k8s/ (base and every overlay), Node.js runs the schema validator and the CEL
evaluator (tests/k8s/*.mjs, their npm packages installed with `npm ci` from
package-lock.json). Nothing is skipped for a missing tool: the suite fails
and says what to install."""
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
K8S = ROOT / "k8s"
OVERLAYS = ("sriov-intel", "sriov-mellanox", "dev")
MIN_KUSTOMIZE = (5, 0)


def _kustomize_version(kubectl: str) -> str:
    out = subprocess.run([kubectl, "version", "--client", "-o", "json"],
                         capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        return ""
    return json.loads(out.stdout).get("kustomizeVersion", "")


@pytest.fixture(scope="session")
def kubectl() -> str:
    path = shutil.which("kubectl")
    if path is None:
        pytest.fail("kubectl is not installed: tests/k8s needs kubectl with kustomize v5 "
                    "(kubectl 1.27 or later; see scripts/bootstrap.sh)", pytrace=False)
    version = _kustomize_version(path)
    m = re.match(r"v(\d+)\.(\d+)", version)
    if not m or (int(m.group(1)), int(m.group(2))) < MIN_KUSTOMIZE:
        pytest.fail(f"{path} has kustomize {version or '(none reported)'}; k8s/ needs kustomize v5 "
                    f"(components, patches:): install kubectl 1.27 or later (Debian's kubernetes-client "
                    f"1.20 is too old)", pytrace=False)
    return path


@pytest.fixture(scope="session")
def node_tools() -> Path:
    """tests/k8s with its node_modules installed as package-lock.json pins them."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.fail("node and npm are needed for tests/k8s (scripts/bootstrap.sh installs them)",
                    pytrace=False)
    stamp = HERE / "node_modules" / ".package-lock.json"
    lock = HERE / "package-lock.json"
    if not stamp.exists() or stamp.stat().st_mtime < lock.stat().st_mtime:
        out = subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=HERE,
                             capture_output=True, text=True, timeout=600)
        if out.returncode != 0:
            pytest.fail(f"npm ci in {HERE} failed:\n{out.stdout}\n{out.stderr}", pytrace=False)
    return HERE


def run_node(tools: Path, script: str, payload) -> list:
    out = subprocess.run(["node", str(tools / script)], input=json.dumps(payload),
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, f"{script} failed: {out.stderr}"
    return json.loads(out.stdout)


def render(kubectl: str, path: Path) -> list[dict]:
    out = subprocess.run([kubectl, "kustomize", str(path)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, f"kubectl kustomize {path} failed:\n{out.stderr}"
    return [d for d in yaml.safe_load_all(out.stdout) if d]


@pytest.fixture(scope="session")
def rendered(kubectl) -> dict[str, list[dict]]:
    """Every overlay's objects, and the base's, by name ("base", "dev", ...)."""
    out = {"base": render(kubectl, K8S / "base")}
    for name in OVERLAYS:
        out[name] = render(kubectl, K8S / "overlays" / name)
    return out


def examples() -> dict[str, list[dict]]:
    return {p.name: [d for d in yaml.safe_load_all(p.read_text()) if d]
            for p in sorted((K8S / "examples").glob("*.yaml"))}


def find(objects: list[dict], kind: str, name: str | None = None) -> dict:
    hits = [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    assert len(hits) == 1, f"expected one {kind} {name or ''}, found {len(hits)}"
    return hits[0]


def container(ds: dict, name: str) -> dict:
    hits = [c for c in ds["spec"]["template"]["spec"]["containers"] if c["name"] == name]
    assert len(hits) == 1, f"expected one container {name}"
    return hits[0]


_SUFFIX = {"": 1, "m": 0.001, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12,
           "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}


def quantity(value) -> float:
    """A Kubernetes resource quantity ("250m", "1Gi", 3) as a number."""
    m = re.fullmatch(r"([0-9.]+)([a-zA-Z]*)", str(value))
    assert m and m.group(2) in _SUFFIX, f"not a quantity: {value!r}"
    return float(m.group(1)) * _SUFFIX[m.group(2)]
