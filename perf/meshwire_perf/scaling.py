"""Per-worker state, shown by scaling: dp_micro_bench's BM_WorkerScaling runs
the encrypt (local) stage on one thread and on two, each pinned to its own
CPU as one worker of the same node, so no port and no traffic generator is
needed (two CPUs are enough).

  per_worker          the data plane's layout, the stage on bursts of 32
  per_worker_burst1   the same, one packet per burst: what is written once per
                      burst is written once per packet (ipsec-mb 1.3 stores to
                      a process-wide errno on every call: it shows here)
  shared_line         the control: per_worker_burst1 plus one atomic that every
                      thread writes once per packet, to show that the method
                      sees a shared line

For each variant:
  "1", "2"          packets per second of one thread, with 1 and with 2 threads
  "scaling"         aggregate rate at 2 threads over the rate at 1 (2.0: the
                    workers do not slow each other down)
  "cpu_1", "cpu_2"  the same per-thread rates over each thread's own CPU time:
                    a thread that other processes kept off its CPU (the
                    machine is shared) does not count as slowed down
  "cpu_scaling"     2 * cpu_2 / cpu_1
Medians over the repetitions (or the single run).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
from pathlib import Path

FILTER = "^BM_WorkerScaling/"
VARIANTS = ("per_worker", "per_worker_burst1", "shared_line")
THREADS = (1, 2)


def command(binary: Path, repetitions: int, min_time: float) -> list[str]:
    # Interleaving the repetitions of all the runs spreads the machine's
    # changing load over them instead of over one variant.
    return [str(binary), f"--benchmark_filter={FILTER}", f"--benchmark_repetitions={repetitions}",
            f"--benchmark_min_time={min_time}", "--benchmark_enable_random_interleaving=true",
            "--benchmark_format=json"]


def _median(runs: list[dict], field: str) -> float | None:
    values = [b[field] for b in runs if b.get(field) is not None]
    return statistics.median(values) if values else None


def group_runs(text: str, key_of) -> dict:
    """Google Benchmark's JSON output as {key_of(run): [runs]}: runs that
    failed (SkipWithError) or whose key is None are left out; when only the
    aggregates were reported, a key's median stands for its runs."""
    runs: dict = {}
    medians: dict = {}
    for b in json.loads(text)["benchmarks"]:
        if b.get("error_occurred"):
            continue
        key = key_of(b)
        if key is None:
            continue
        if b.get("run_type") == "aggregate":
            if b.get("aggregate_name") == "median":
                medians[key] = b
        else:
            runs.setdefault(key, []).append(b)
    for key, b in medians.items():
        runs.setdefault(key, [b])
    return runs


def parse(text: str) -> dict:
    """{"per_worker": {"1":..., "2":..., "scaling":..., "cpu_1":..., "cpu_2":...,
    "cpu_scaling":...}, "per_worker_burst1": {...}, "shared_line": {...}} from
    Google Benchmark's JSON.
    Runs that failed (SkipWithError) are left out, and so is every figure
    that needs them."""
    def key_of(b: dict):
        parts = b.get("run_name", b["name"]).split("/")
        if parts[0] != "BM_WorkerScaling" or len(parts) < 2:
            return None
        return (parts[1], int(b.get("threads", 1)))

    runs = group_runs(text, key_of)
    out: dict = {}
    for (variant, threads), rs in runs.items():
        entry = out.setdefault(variant, {})
        entry[f"aggregate_{threads}"] = _median(rs, "items_per_second")
        entry[str(threads)] = _median(rs, "pps_per_thread")
        entry[f"cpu_{threads}"] = _median(rs, "cpu_pps_per_thread")
    for entry in out.values():
        agg1, agg2 = entry.pop("aggregate_1", None), entry.pop("aggregate_2", None)
        if agg1 and agg2:
            entry["scaling"] = agg2 / agg1
        if entry.get("cpu_1") and entry.get("cpu_2"):
            entry["cpu_scaling"] = 2 * entry["cpu_2"] / entry["cpu_1"]
        for k in [k for k, v in entry.items() if v is None]:
            del entry[k]
    return out


def errors(text: str) -> list[str]:
    """The messages of the runs that failed, as "name: message"."""
    return [f"{b['name']}: {b.get('error_message', '')}" for b in json.loads(text)["benchmarks"]
            if b.get("error_occurred")]


# On a shared 2-CPU machine, medians of 3 repetitions of 0.3 s still moved by
# +-15% from one run to the next; 9 interleaved repetitions of 0.2 s agreed
# within a few percent.
def run(binary: Path, repetitions: int = 9, min_time: float = 0.2, timeout: float = 300) -> dict:
    cpus = len(os.sched_getaffinity(0))
    if cpus < max(THREADS):
        raise RuntimeError(f"worker scaling needs {max(THREADS)} CPUs, one per worker thread; this process may "
                           f"run on {cpus} (see its CPU affinity: taskset -p {os.getpid()})")
    proc = subprocess.run(command(binary, repetitions, min_time), capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{binary} exited with {proc.returncode}: {proc.stderr[-2000:]}")
    got = parse(proc.stdout)
    wanted = {"1", "2", "scaling", "cpu_1", "cpu_2", "cpu_scaling"}
    missing = [f"{v}: {sorted(wanted - set(got.get(v, {})))}" for v in VARIANTS if not wanted <= set(got.get(v, {}))]
    if missing:
        raise RuntimeError(f"{binary}: no measurement for {'; '.join(missing)}; failed runs: {errors(proc.stdout)}")
    return got
