"""BM_WorkerScaling's JSON read into per-thread rates and scaling ratios, and
one real run of dp_micro_bench that checks the structure of what it measures
(never its timing: these machines are shared)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "perf"))

from meshwire_perf import scaling  # noqa: E402

BUILD = Path(os.environ.get("BUILD", ROOT / "build"))
if not BUILD.is_absolute():
    BUILD = ROOT / BUILD
BINARY = BUILD / "perf" / "micro" / "dp_micro_bench"


def bench(variant, threads, items, cpu, **fields):
    name = f"BM_WorkerScaling/{variant}/real_time/threads:{threads}"
    return {"name": name, "run_name": name, "run_type": "iteration", "threads": threads,
            "items_per_second": items, "pps_per_thread": items / threads, "cpu_pps_per_thread": cpu, **fields}


def median_of(variant, threads, items):
    name = f"BM_WorkerScaling/{variant}/real_time/threads:{threads}"
    return {"name": name + "_median", "run_name": name, "run_type": "aggregate", "aggregate_name": "median",
            "threads": threads, "items_per_second": items, "pps_per_thread": items / threads,
            "cpu_pps_per_thread": items / threads}


def test_medians_per_thread_rates_and_scaling():
    doc = {"benchmarks": [
        # Three repetitions each, interleaved as --benchmark_enable_random_interleaving leaves them.
        bench("per_worker", 1, 6e6, 6.1e6), bench("per_worker", 2, 11e6, 5.9e6),
        bench("per_worker", 1, 5e6, 6.0e6), bench("per_worker", 2, 12e6, 6.0e6),
        bench("per_worker", 1, 7e6, 6.2e6), bench("per_worker", 2, 4e6, 5.8e6),
        bench("shared_line", 1, 6e6, 6e6), bench("shared_line", 2, 6e6, 3e6),
        bench("shared_line", 1, 6e6, 6e6), bench("shared_line", 2, 7e6, 3.5e6),
        bench("shared_line", 1, 6e6, 6e6), bench("shared_line", 2, 8e6, 4e6),
        # Google Benchmark's own aggregates are not measurements of their own.
        {"name": "BM_WorkerScaling/per_worker/real_time/threads:1_mean", "run_type": "aggregate",
         "aggregate_name": "mean", "threads": 1, "items_per_second": 1.0},
        # Other benchmarks in the same output are none of ours.
        {"name": "BM_EncryptStage/64", "run_type": "iteration", "threads": 1, "items_per_second": 9e6},
    ]}
    got = scaling.parse(json.dumps(doc))
    assert set(got) == {"per_worker", "shared_line"}
    pw = got["per_worker"]
    assert pw["1"] == 6e6 and pw["2"] == 5.5e6          # medians of the per-thread rates
    assert pw["scaling"] == pytest.approx(11e6 / 6e6)   # aggregate at 2 over aggregate at 1
    assert pw["cpu_1"] == 6.1e6 and pw["cpu_2"] == 5.9e6
    assert pw["cpu_scaling"] == pytest.approx(2 * 5.9e6 / 6.1e6)
    sl = got["shared_line"]
    assert sl["2"] == 3.5e6 and sl["scaling"] == pytest.approx(7 / 6)
    assert sl["cpu_scaling"] == pytest.approx(2 * 3.5e6 / 6e6)


def test_aggregates_only_output_is_read_from_the_medians():
    doc = {"benchmarks": [median_of("per_worker", 1, 6e6), median_of("per_worker", 2, 12e6)]}
    got = scaling.parse(json.dumps(doc))
    assert got == {"per_worker": {"1": 6e6, "2": 6e6, "scaling": 2.0, "cpu_1": 6e6, "cpu_2": 6e6,
                                  "cpu_scaling": 2.0}}


def test_a_skipped_run_leaves_no_ratio_behind():
    doc = {"benchmarks": [
        bench("per_worker", 1, 6e6, 6e6),
        {"name": "BM_WorkerScaling/per_worker/real_time/threads:2", "run_type": "iteration", "threads": 2,
         "error_occurred": True, "error_message": "fewer CPUs in this process's affinity than threads"},
    ]}
    text = json.dumps(doc)
    assert scaling.parse(text) == {"per_worker": {"1": 6e6, "cpu_1": 6e6}}
    assert scaling.errors(text) == ["BM_WorkerScaling/per_worker/real_time/threads:2: "
                                    "fewer CPUs in this process's affinity than threads"]


def test_run_refuses_a_single_cpu(monkeypatch):
    monkeypatch.setattr(scaling.os, "sched_getaffinity", lambda pid: {0})
    with pytest.raises(RuntimeError, match="needs 2 CPUs"):
        scaling.run(Path("/nonexistent/dp_micro_bench"), 1, 0.01)


def built():
    if not BINARY.exists():
        pytest.fail(f"{BINARY} is not built (set BUILD to the build directory)")
    return BINARY


def test_the_benchmark_skips_two_threads_on_one_cpu():
    # Started on one CPU, the binary must say so rather than measure two
    # threads sharing it.
    cmd = scaling.command(built(), 1, 0.01)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120,
                          preexec_fn=lambda: os.sched_setaffinity(0, {min(os.sched_getaffinity(0))}))
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = scaling.parse(proc.stdout)
    assert set(got) == set(scaling.VARIANTS)
    for variant in scaling.VARIANTS:
        assert set(got[variant]) == {"1", "cpu_1"}, got
        assert got[variant]["1"] > 0
    assert sorted(scaling.errors(proc.stdout)) == sorted(
        f"BM_WorkerScaling/{v}/real_time/threads:2: fewer CPUs in this process's affinity than threads"
        for v in scaling.VARIANTS)


def test_a_real_run_measures_every_variant_at_one_and_two_threads():
    if len(os.sched_getaffinity(0)) < 2:
        pytest.fail("this test needs 2 CPUs in its affinity; run() refuses fewer (tested above)")
    got = scaling.run(built(), repetitions=2, min_time=0.01)
    assert set(got) == set(scaling.VARIANTS)
    for variant, entry in got.items():
        assert set(entry) == {"1", "2", "scaling", "cpu_1", "cpu_2", "cpu_scaling"}, variant
        assert all(isinstance(v, float) and v > 0 for v in entry.values()), entry
