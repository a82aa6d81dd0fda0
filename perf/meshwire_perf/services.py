"""Services on the fast path at 64 B, without any port: dp_micro_bench's
service-path benchmarks (perf/micro/service_path_bench.cc) and their plain
baselines run in the same process, repetitions interleaved, so each service
run is read as a ratio to the plain stage with the same flows.

  BM_EncryptPlain                    the local stage, no services: the baseline of the next two
  BM_EncryptWithServicesNotMatching  the same frames with 1,000 frontends applied that they do not match
  BM_EncryptWithServicesOnTheirPort  the same to the frontends' port (not to a VIP)
  BM_ServiceDnat                     frames to a frontend's VIP: lookup, DNAT, encrypt
  BM_ReverseDecryptPlain             the uplink stage on the backends' replies, no services
  BM_ServiceReverse                  the same replies: decrypt, reverse lookup, the VIP put back

Each row is one (benchmark, flows, frontend): "cyc_pkt" (TSC cycles per
packet of the stage, median burst) and "ns_pkt", medians over the
repetitions (or the single run), and for a service run "baseline" and
"ratio", its cyc_pkt over the baseline's with the same flows.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

from .scaling import _median, errors, group_runs

FILTER = ("^BM_(EncryptPlain|EncryptWithServicesNotMatching|EncryptWithServicesOnTheirPort|ServiceDnat|"
          "ReverseDecryptPlain|ServiceReverse)/")
# Every run FILTER selects and its baseline (None: it is one), in the report's order.
BASELINES = {"BM_EncryptPlain": None, "BM_EncryptWithServicesNotMatching": "BM_EncryptPlain",
             "BM_EncryptWithServicesOnTheirPort": "BM_EncryptPlain",
             "BM_ServiceDnat": "BM_EncryptPlain", "BM_ReverseDecryptPlain": None,
             "BM_ServiceReverse": "BM_ReverseDecryptPlain"}
FLOWS = (1, 100_000)
FRONTENDS = (0, 500)  # of the 1,000, in config order
WITH_FRONTEND = ("BM_ServiceDnat", "BM_ServiceReverse")


def command(binary: Path, repetitions: int, min_time: float) -> list[str]:
    # Interleaved, so that the machine's changing load falls on the service
    # runs and their baselines alike.
    return [str(binary), f"--benchmark_filter={FILTER}", f"--benchmark_repetitions={repetitions}",
            f"--benchmark_min_time={min_time}", "--benchmark_enable_random_interleaving=true",
            "--benchmark_format=json"]


def _key(name: str) -> tuple[str, int, int, int | None] | None:
    """(benchmark, frame size, flows, frontend) of "BM_ServiceDnat/64/flows:1/frontend:0"."""
    base, *parts = name.split("/")
    if base not in BASELINES or not parts or not parts[0].isdigit():
        return None
    args = dict(p.split(":", 1) for p in parts[1:] if ":" in p)
    if not args.get("flows", "").isdigit():
        return None
    frontend = args.get("frontend")
    return base, int(parts[0]), int(args["flows"]), int(frontend) if frontend is not None else None


def parse(text: str) -> list[dict]:
    """The rows, in BASELINES' order, then by flows and frontend, from
    Google Benchmark's JSON. Runs that failed (SkipWithError) are left out,
    and so is the ratio of a run whose baseline failed."""
    runs = group_runs(text, lambda b: _key(b.get("run_name", b["name"])))
    cycles = {key: _median(rs, "cyc_pkt") for key, rs in runs.items()}
    order = list(BASELINES)
    rows = []
    for key in sorted(runs, key=lambda k: (order.index(k[0]), k[1], k[2], -1 if k[3] is None else k[3])):
        bench, size, flows, frontend = key
        row = {"benchmark": bench, "frame_size": size, "flows": flows}
        if frontend is not None:
            row["frontend"] = frontend
        row.update(cyc_pkt=cycles[key], ns_pkt=_median(runs[key], "ns_pkt"))
        baseline = BASELINES[bench]
        if baseline:
            row["baseline"] = baseline
            base_cycles = cycles.get((baseline, size, flows, None))
            if row["cyc_pkt"] is not None and base_cycles:
                row["ratio"] = round(row["cyc_pkt"] / base_cycles, 4)
        rows.append({k: v for k, v in row.items() if v is not None})
    return rows


def rows(result: dict | None, benchmark: str, flows: int | None = None) -> list[dict]:
    """A benchmark's rows of result["rows"] (with these flows), one per frontend."""
    return [r for r in (result or {}).get("rows") or []
            if r["benchmark"] == benchmark and flows in (None, r["flows"])]


def find(result: dict | None, benchmark: str, flows: int, frontend: int | None = None) -> dict | None:
    """The row of one run, or None."""
    return next((r for r in rows(result, benchmark, flows) if r.get("frontend") == frontend), None)


def worst(result: dict | None, benchmark: str, flows: int | None = None) -> dict | None:
    """Of a benchmark's rows (with these flows), the one with the highest
    ratio to its baseline; None if none has a ratio."""
    return max((r for r in rows(result, benchmark, flows) if r.get("ratio") is not None),
               key=lambda r: r["ratio"], default=None)


def expected() -> list[tuple[str, int, int | None]]:
    """(benchmark, flows, frontend) of every run FILTER selects."""
    return [(b, f, i) for b in BASELINES for f in FLOWS
            for i in (FRONTENDS if b in WITH_FRONTEND else (None,))]


# The stage's cycles are those of the median burst, which a burst that lost
# its vCPU moves little; but on this shared 2-CPU VM a whole repetition
# sometimes runs about 1.6 times slower (on either CPU, for seconds at a
# time): hence repetitions interleaved over the whole run (5 of 0.2 s take
# about 40 s), and their median.
def run(binary: Path, repetitions: int = 5, min_time: float = 0.2, timeout: float = 600) -> dict:
    """{"repetitions":..., "min_time":..., "rows": [...]} for results.json."""
    proc = subprocess.run(command(binary, repetitions, min_time), capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{binary} exited with {proc.returncode}: {proc.stderr[-2000:]}")
    table = parse(proc.stdout)
    got = {(r["benchmark"], r["flows"], r.get("frontend")) for r in table
           if r.get("cyc_pkt") is not None and (r.get("ratio") is not None or "baseline" not in r)}
    missing = [f"{b}/flows:{f}" + ("" if i is None else f"/frontend:{i}") for b, f, i in expected()
               if (b, f, i) not in got]
    if missing:
        raise RuntimeError(f"{binary}: no measurement for {', '.join(missing)}; failed runs: {errors(proc.stdout)}")
    return {"repetitions": repetitions, "min_time": min_time, "rows": table}
