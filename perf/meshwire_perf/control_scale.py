"""Controller scale on synthetic objects (`python3 -m meshwire_perf.control_scale`).

A data plane on two `net_null` ports (no traffic: the control path alone)
and its meshwire-controller on N synthetic Nodes, each with an InternalIP, a
pod CIDR and the annotations its own controller would have published
(X25519 keys made here). The Nodes are files in a folder (`--source dir`,
written as YAML or JSON) or objects in the tests' HTTPS fake API server
(`--source kube`: listed in pages and watched, as in a cluster). Measured:

  full_apply_s     controller start -> the data plane runs generation 1 with
                   every peer (keys derived, state checked, tables built)
  change_ms        one Node's pod CIDR edited (a file renamed in, or the
                   object updated in the API server) -> the data plane runs
                   the generation that routes it (p50/p99 over --changes edits)
  phases_ms        where a change's time went, medians from the controller's
                   log: reading the objects, computing the state, the Apply
                   round trip, and the data plane's build within it
  rss_mb           resident memory of both processes afterwards

Services and EndpointSlices are not read by this release's controller, so
the issue's 10,000 services / 100,000 endpoints are not part of it yet.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import shutil
import statistics
import sys
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def node_doc(i: int, pub: str, epoch: int = 1, extra_cidr: str | None = None) -> str:
    cidrs = [f"10.{i // 256}.{i % 256}.0/24"] + ([extra_cidr] if extra_cidr else [])
    return (f"apiVersion: v1\nkind: Node\nmetadata:\n  name: node-{i}\n  annotations:\n"
            f"    meshwire.io/public-key: \"{pub}\"\n    meshwire.io/key-epoch: \"{epoch}\"\n"
            f"    meshwire.io/workers: \"1\"\n"
            f"spec:\n  podCIDRs: [{', '.join(repr(c) for c in cidrs)}]\n"
            f"status:\n  addresses:\n  - {{type: InternalIP, address: 172.16.{i // 256}.{i % 256}}}\n")


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of a process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def routes(ctl: Path, sock: Path) -> set[str]:
    out = subprocess.run([str(ctl), "--socket", str(sock), "--json", "--timeout", "30", "show", "routes"],
                         capture_output=True, text=True, check=True).stdout
    return {r["prefix"] for r in json.loads(out)["routes"]}


def generation(ctl: Path, sock: Path) -> dict:
    out = subprocess.run([str(ctl), "--socket", str(sock), "--json", "show", "generation"],
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nodes", type=int, default=5000)
    p.add_argument("--changes", type=int, default=20)
    p.add_argument("--services", type=int, default=0,
                   help="with --source kube: this many Services, each with one EndpointSlice")
    p.add_argument("--endpoints", type=int, default=0,
                   help="endpoints in all, spread over the Services' slices (the issue: 10,000 and 100,000)")
    p.add_argument("--build", default=str(ROOT / "build"))
    p.add_argument("--keep", action="store_true", help="keep the work folder (logs) in /tmp")
    p.add_argument("--source", choices=["dir", "kube"], default="kube",
                   help="where the controller reads the Nodes: files, or the fake API server")
    p.add_argument("--format", choices=["yaml", "json"], default="json",
                   help="with --source dir: how the Node objects are written")
    a = p.parse_args(argv)
    from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    build = Path(a.build)
    dataplane = build / "dataplane" / "meshwire-dataplane"
    controller = build / "control" / "meshwire-controller"
    ctl = build / "control" / "meshwirectl"
    work = Path(tempfile.mkdtemp(prefix="mw-cscale-"))
    folder = work / "objects"
    folder.mkdir()
    pubs = []
    for _ in range(a.nodes):
        k = X25519PrivateKey.generate().public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
        pubs.append(base64.b64encode(k).decode())
    # node-0 is ours (its controller publishes its own key); the others as their controllers would have.
    docs = [("apiVersion: v1\nkind: Node\nmetadata:\n  name: node-0\nspec:\n  podCIDRs: ['10.0.0.0/24']\n"
             "status:\n  addresses:\n  - {type: InternalIP, address: 172.16.0.0}\n")]
    docs += [node_doc(i, pubs[i]) for i in range(1, a.nodes)]
    import yaml

    parsed = [yaml.safe_load(d) for d in docs] if a.format == "json" else []

    def stage_nodes(docs_now: list[str]) -> tuple[Path, Path]:
        """Writes the next version aside; renaming it in is the change."""
        if a.format == "json":
            items = list(parsed)
            items[1] = yaml.safe_load(docs_now[1])
            text, name = json.dumps({"apiVersion": "v1", "kind": "NodeList", "items": items}), "nodes.json"
        else:
            text, name = "---\n".join(docs_now), "nodes.yaml"
        tmp = folder / f".{name}.tmp"
        tmp.write_text(text)
        return tmp, folder / name

    api = None
    if a.source == "kube":
        sys.path.insert(0, str(ROOT / "tests" / "integration"))
        from fake_apiserver import FakeApiServer
        api = FakeApiServer(work / "apiserver").__enter__()
        for d in docs:
            api.create("nodes", yaml.safe_load(d))
        per = a.endpoints // a.services if a.services else 0
        for k in range(a.services):
            ns = f"ns{k % 50}"
            api.create("services", {"apiVersion": "v1", "kind": "Service",
                                    "metadata": {"name": f"svc{k}", "namespace": ns},
                                    "spec": {"clusterIP": f"10.96.{k // 256}.{k % 256}",
                                             "ports": [{"name": "http", "port": 80}]}})
            api.create("endpointslices", {
                "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"name": f"svc{k}-a", "namespace": ns,
                             "labels": {"kubernetes.io/service-name": f"svc{k}"}},
                "addressType": "IPv4", "ports": [{"name": "http", "port": 8080}],
                "endpoints": [{"addresses": [f"10.{(k * per + e) // 65536 % 200 + 1}.{(k * per + e) // 256 % 256}."
                                             f"{(k * per + e) % 256}"],
                               "nodeName": f"node-{(k * per + e) % a.nodes}"} for e in range(per)]})
        api.write_kubeconfig(work / "kubeconfig")
        source = ["--source", "kube", "--kubeconfig", str(work / "kubeconfig")]
    else:
        tmp, target = stage_nodes(docs)
        tmp.replace(target)
        source = ["--source", f"dir:{folder}"]

    config = {"eal": ["--no-huge", "-m", "2048", "--no-pci", "--file-prefix", f"cscale{os.getpid()}",
                      "-l", "0,1", "--log-level", "lib.eal:notice"],
              "workers": 1, "idle": "adaptive",
              "node": {"tunnel_address": "172.16.0.0", "pod_cidrs": ["10.0.0.0/24"]},
              "ports": [{"name": "pods", "device": "net_null0,no-rx=1", "role": "local"},
                        {"name": "fabric", "device": "net_null1,no-rx=1", "role": "uplink"}]}
    (work / "dp.yaml").write_text(yaml.safe_dump(config))
    sock = work / "api.sock"
    # Its output to a file: a pipe nobody reads after "ready" could fill and stall it.
    dp_log = work / "dataplane.log"
    dp = subprocess.Popen([str(dataplane), "--config", str(work / "dp.yaml"), "--api-socket", str(sock)],
                          stdout=open(dp_log, "w"), stderr=subprocess.STDOUT)
    ctrl = None
    try:
        deadline = time.monotonic() + 60
        while "ready" not in dp_log.read_text(errors="replace"):
            if dp.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the data plane did not come up: {dp_log.read_text(errors='replace')[-2000:]}")
            time.sleep(0.05)
        t0 = time.monotonic()
        ctrl = subprocess.Popen([str(controller), "--node", "node-0", *source,
                                 "--api-socket", str(sock), "--state-dir", str(work / "state"),
                                 "--cluster-id", "scale"], stderr=open(work / "controller.log", "w"))
        while True:
            g = generation(ctl, sock)
            if g["source"] == "api" and len(routes(ctl, sock)) >= a.nodes:
                break
            time.sleep(0.05)
        full = time.monotonic() - t0
        lat = []
        log = work / "controller.log"
        for c in range(a.changes):
            prefix = f"10.250.{c}.0/24"
            docs_c = list(docs)
            docs_c[1] = node_doc(1, pubs[1], extra_cidr=prefix)
            if api is None:
                tmp, target = stage_nodes(docs_c)
            before = int(generation(ctl, sock)["live_generation"])
            t = time.monotonic()
            if api is None:
                tmp.replace(target)
            else:
                obj = api.get("nodes", "node-1")
                obj["spec"]["podCIDRs"] = ["10.0.1.0/24", prefix]
                api.update("nodes", obj)
            # The controller logs "applied generation N" when the data plane
            # answered its Apply, which is after the generation went live.
            # Reading that log every millisecond costs the two processes
            # under test far less than asking the data plane (a meshwirectl
            # process each time) would; the routes are checked after.
            want = f"applied generation {before + 1}:"
            while want not in log.read_text(errors="replace"):
                if time.monotonic() - t > 30:
                    raise RuntimeError(f"no {want!r} in the controller's log after 30 s")
                time.sleep(0.001)
            lat.append((time.monotonic() - t) * 1000)
            if int(generation(ctl, sock)["live_generation"]) != before + 1:
                raise RuntimeError("the controller applied a generation the data plane does not run")
            if prefix not in routes(ctl, sock):
                raise RuntimeError(f"generation moved but {prefix} is not routed")
        lat.sort()
        time.sleep(0.2)  # the controller's log line of the last apply
        phases = {k: [] for k in ("read", "computed", "applied", "built")}
        for m in re.finditer(r"\(read (\d+) ms, computed (\d+) ms, applied (\d+) ms, of which the data plane "
                             r"built (\d+) ms\)", (work / "controller.log").read_text()):
            for k, v in zip(phases, m.groups()):
                phases[k].append(int(v))
        slice_ms = None
        if api is not None and a.services:
            # One EndpointSlice changes: the controller reads it (nothing is
            # programmed from services yet, so there is no Apply to time;
            # what it costs the controller shows in its CPU time).
            cpu0 = cpu_s(ctrl.pid)
            for c in range(a.changes):
                obj = api.get("endpointslices", "svc1-a", "ns1")
                obj["endpoints"] = obj["endpoints"][1:] + obj["endpoints"][:1]
                api.update("endpointslices", obj)
                time.sleep(0.05)
            time.sleep(0.5)
            slice_ms = round((cpu_s(ctrl.pid) - cpu0) * 1000 / a.changes, 1)
        result = {"nodes": a.nodes, "source": a.source if api else f"dir ({a.format})",
                  "services": a.services, "endpoints": per * a.services,
                  "controller_cpu_ms_per_slice_change": slice_ms,
                  "full_apply_s": round(full, 3),
                  "change_ms_p50": round(statistics.median(lat), 1),
                  "change_ms_p99": round(lat[min(len(lat) - 1, int(len(lat) * 0.99))], 1),
                  "change_ms_max": round(lat[-1], 1), "change_ms_top5": [round(x) for x in lat[-5:]],
                  "phases_ms": {k: statistics.median(v[1:]) if len(v) > 1 else None for k, v in phases.items()},
                  "rss_mb": {"dataplane": round(rss_mb(dp.pid)), "controller": round(rss_mb(ctrl.pid))}}
        print(json.dumps(result))
    finally:
        if ctrl:
            ctrl.terminate()
            ctrl.wait(timeout=10)
        dp.terminate()
        dp.wait(timeout=20)
        if api is not None:
            api.__exit__(None, None, None)
        if not a.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
