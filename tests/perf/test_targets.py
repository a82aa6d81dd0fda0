"""The targets and report sections read from the no-port measurements: the
AVX2-path stage at 1400 B and the two-worker scaling run."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "perf"))

from meshwire_perf import report  # noqa: E402
from meshwire_perf.bench import targets  # noqa: E402

SCALING = {"per_worker": {"1": 5e6, "2": 4.75e6, "scaling": 1.9, "cpu_scaling": 1.95},
           "per_worker_burst1": {"1": 3e6, "2": 2.4e6, "scaling": 1.6, "cpu_scaling": 1.6},
           "shared_line": {"1": 2.8e6, "2": 1.8e6, "scaling": 1.29, "cpu_scaling": 1.3}}


def by_name(results):
    return {t["name"]: t for t in targets(results)}


def test_avx2_stage_target():
    got = by_name({"results": [], "stages_avx2": {"1400": {"raw_gcm_pps": 3e6, "encrypt_pps": 2.4e6}}})
    t = got["encrypt stage 1400 B vs raw AES-GCM, AVX2 path (no VAES; no port)"]
    assert t["value"] == 0.8 and t["goal"] == 0.85 and not t["met"]


def test_scaling_target_names_the_control():
    t = by_name({"results": [], "scaling": SCALING})["two workers, per-worker state (no port)"]
    assert t["value"] == 1.9 and t["met"] and "1.29" in t["detail"]
    low = dict(SCALING, per_worker=dict(SCALING["per_worker"], scaling=1.5))
    assert not by_name({"results": [], "scaling": low})["two workers, per-worker state (no port)"]["met"]


def test_missing_measurements_make_no_target():
    assert targets({"results": []}) == []


def test_report_sections():
    md = report.markdown({"meshwire_perf": 1, "results": [], "scaling": SCALING,
                          "stages": {"1400": {"raw_gcm_pps": 6e6, "encrypt_pps": 3e6}},
                          "stages_avx2": {"1400": {"raw_gcm_pps": 3e6, "encrypt_pps": 2.4e6}}})
    assert "## Two workers (no ports)" in md
    row = next(line for line in md.splitlines() if line.startswith("| control"))
    assert "| 2.80 | 1.80 | 1.29 | 1.30 |" in row
    avx2 = next(line for line in md.splitlines() if line.startswith("| 1400 (AVX2 path)"))
    assert "| 3.00 | 2.40 | 80.0% |" in avx2


def test_idle_capture_target_reads_the_stage_with_and_without_it():
    t = by_name({"results": [], "idle_capture": {"none": 1000.0, "native": 1040.0, "libpcap": 1130.0}})[
        "encrypt stage 64 B with an idle capture vs none (callgrind)"]
    assert t["value"] == 1.04 and t["met"] and t["informative"]
    assert "1000 → 1040" in t["detail"] and "1130 as libpcap's program" in t["detail"]
    worse = {"none": 1000.0, "native": 1100.0, "libpcap": 1130.0}
    assert not by_name({"results": [], "idle_capture": worse})[
        "encrypt stage 64 B with an idle capture vs none (callgrind)"]["met"]
