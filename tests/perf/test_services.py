"""The service-path benchmarks' JSON read into cycles per packet and ratios to
the plain stage with the same flows, the targets and the report's table.
Canned Google Benchmark output only: dp_micro_bench is not run here (a fake
binary stands in for it where run() is tested)."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "perf"))

from meshwire_perf import report, services  # noqa: E402
from meshwire_perf.bench import targets  # noqa: E402


def name_of(bench, flows, frontend=None):
    return f"{bench}/64/flows:{flows}" + ("" if frontend is None else f"/frontend:{frontend}")


def rep(bench, flows, cyc, frontend=None, index=0, **fields):
    """One repetition as --benchmark_format=json writes it."""
    name = name_of(bench, flows, frontend)
    return {"name": name, "run_name": name, "run_type": "iteration", "repetitions": 3, "repetition_index": index,
            "threads": 1, "iterations": 1000, "cyc_pkt": cyc, "ns_pkt": cyc / 2.8, "cyc_pkt_mean": cyc * 1.2,
            "items_per_second": 5e6, **fields}


def aggregate(bench, flows, which, cyc, frontend=None):
    name = name_of(bench, flows, frontend)
    return {"name": f"{name}_{which}", "run_name": name, "run_type": "aggregate", "aggregate_name": which,
            "aggregate_unit": "time", "repetitions": 3, "threads": 1, "iterations": 3, "cyc_pkt": cyc,
            "ns_pkt": cyc / 2.8, "cyc_pkt_mean": cyc}


def reps(bench, flows, cycles, frontend=None):
    return [rep(bench, flows, c, frontend, i) for i, c in enumerate(cycles)]


def complete_doc():
    """Every run the filter selects, 3 repetitions each, interleaved order
    does not matter to parse."""
    out = []
    for flows, plain, miss, rev in ((1, 280, 322, 330), (100_000, 300, 360, 340)):
        out += reps("BM_EncryptPlain", flows, [plain, plain - 5, plain + 50])
        out += reps("BM_EncryptWithServicesNotMatching", flows, [miss, miss, miss])
        out += reps("BM_EncryptWithServicesOnTheirPort", flows, [miss + 5] * 3)
        out += reps("BM_ReverseDecryptPlain", flows, [rev, rev, rev])
        for frontend, extra in ((0, 1.0), (500, 1.1)):
            out += reps("BM_ServiceDnat", flows, [plain * 1.5 * extra] * 3, frontend)
            out += reps("BM_ServiceReverse", flows, [rev * 1.4 * extra] * 3, frontend)
    return {"context": {"num_cpus": 2}, "benchmarks": out}


def test_medians_and_ratios_to_the_baseline_with_the_same_flows():
    doc = {"benchmarks": [
        *reps("BM_EncryptPlain", 1, [300, 280, 600]),              # one slow repetition: the median drops it
        *reps("BM_ServiceDnat", 1, [420, 440, 430], frontend=0),
        *reps("BM_ServiceDnat", 1, [900, 1000, 800], frontend=500),
        *reps("BM_EncryptPlain", 100_000, [400, 400, 400]),
        *reps("BM_EncryptWithServicesNotMatching", 100_000, [420, 430, 410]),
        *reps("BM_ReverseDecryptPlain", 1, [330, 330, 330]),
        *reps("BM_ServiceReverse", 1, [495, 495, 495], frontend=0),
        # Google Benchmark's aggregates are not repetitions of their own.
        aggregate("BM_EncryptPlain", 1, "mean", 393.3), aggregate("BM_EncryptPlain", 1, "stddev", 170.0),
        aggregate("BM_EncryptPlain", 1, "median", 300),
        # Other benchmarks in the same output are none of ours.
        {"name": "BM_EncryptPlainFixed/64/flows:1/iterations:512", "run_type": "iteration", "cyc_pkt": 1.0},
        {"name": "BM_EncryptStage/64", "run_type": "iteration", "items_per_second": 9e6},
    ]}
    got = services.parse(json.dumps(doc))
    keys = [(r["benchmark"], r["flows"], r.get("frontend")) for r in got]
    assert keys == [("BM_EncryptPlain", 1, None), ("BM_EncryptPlain", 100_000, None),
                    ("BM_EncryptWithServicesNotMatching", 100_000, None),
                    ("BM_ServiceDnat", 1, 0), ("BM_ServiceDnat", 1, 500),
                    ("BM_ReverseDecryptPlain", 1, None), ("BM_ServiceReverse", 1, 0)]
    plain1 = services.find({"rows": got}, "BM_EncryptPlain", 1)
    assert plain1 == {"benchmark": "BM_EncryptPlain", "frame_size": 64, "flows": 1, "cyc_pkt": 300,
                      "ns_pkt": pytest.approx(300 / 2.8)}
    dnat0 = services.find({"rows": got}, "BM_ServiceDnat", 1, 0)
    assert dnat0["cyc_pkt"] == 430 and dnat0["baseline"] == "BM_EncryptPlain"
    assert dnat0["ratio"] == pytest.approx(430 / 300, abs=1e-4)
    assert services.find({"rows": got}, "BM_ServiceDnat", 1, 500)["ratio"] == pytest.approx(3.0)
    # The baseline is the one with the same flows, not the other.
    miss = services.find({"rows": got}, "BM_EncryptWithServicesNotMatching", 100_000)
    assert miss["ratio"] == pytest.approx(420 / 400)
    rev = services.find({"rows": got}, "BM_ServiceReverse", 1, 0)
    assert rev["baseline"] == "BM_ReverseDecryptPlain" and rev["ratio"] == pytest.approx(1.5)


def test_aggregates_only_output_is_read_from_the_medians():
    doc = {"benchmarks": [
        aggregate("BM_EncryptPlain", 1, "mean", 999), aggregate("BM_EncryptPlain", 1, "median", 280),
        aggregate("BM_ServiceDnat", 1, "median", 420, frontend=0),
    ]}
    got = services.parse(json.dumps(doc))
    assert [(r["benchmark"], r["cyc_pkt"], r.get("ratio")) for r in got] == [
        ("BM_EncryptPlain", 280, None), ("BM_ServiceDnat", 420, 1.5)]


def test_a_failed_baseline_leaves_no_ratio_behind():
    failed = {"name": "BM_EncryptPlain/64/flows:1", "run_name": "BM_EncryptPlain/64/flows:1",
              "run_type": "iteration", "error_occurred": True, "error_message": "3 packets were dropped"}
    text = json.dumps({"benchmarks": [failed, *reps("BM_ServiceDnat", 1, [420], frontend=0)]})
    (dnat,) = services.parse(text)
    assert dnat["baseline"] == "BM_EncryptPlain" and "ratio" not in dnat
    assert services.worst({"rows": [dnat]}, "BM_ServiceDnat", 1) is None
    assert services.errors(text) == ["BM_EncryptPlain/64/flows:1: 3 packets were dropped"]


def test_the_command_selects_the_runs_parse_reads():
    cmd = services.command(Path("/x/dp_micro_bench"), 5, 0.2)
    assert cmd[0] == "/x/dp_micro_bench"
    assert {"--benchmark_repetitions=5", "--benchmark_min_time=0.2", "--benchmark_enable_random_interleaving=true",
            "--benchmark_format=json"} <= set(cmd)
    assert ("--benchmark_filter=^BM_(EncryptPlain|EncryptWithServicesNotMatching|EncryptWithServicesOnTheirPort|"
            "ServiceDnat|ReverseDecryptPlain|ServiceReverse)/") in cmd
    # Every run it selects is one parse keeps, in the order of the report.
    got = services.parse(json.dumps(complete_doc()))
    assert [(r["benchmark"], r["flows"], r.get("frontend")) for r in got] == services.expected()
    assert len(got) == 16


def fake_binary(tmp_path, doc, code=0):
    out = tmp_path / "out.json"
    out.write_text(json.dumps(doc))
    binary = tmp_path / "dp_micro_bench"
    binary.write_text(f"#!/bin/sh\ncat {out}\nexit {code}\n")
    binary.chmod(0o755)
    return binary


def test_run_returns_every_row(tmp_path):
    got = services.run(fake_binary(tmp_path, complete_doc()), repetitions=3, min_time=0.01)
    assert got["repetitions"] == 3 and got["min_time"] == 0.01 and len(got["rows"]) == 16
    assert services.worst(got, "BM_ServiceDnat", 100_000)["frontend"] == 500


def test_run_names_what_is_missing_and_why(tmp_path):
    doc = complete_doc()
    doc["benchmarks"] = [b for b in doc["benchmarks"] if b["name"] != "BM_ReverseDecryptPlain/64/flows:1"]
    doc["benchmarks"].append({"name": "BM_ReverseDecryptPlain/64/flows:1", "run_type": "iteration",
                              "error_occurred": True, "error_message": "a reply was punted"})
    with pytest.raises(RuntimeError) as e:
        services.run(fake_binary(tmp_path, doc), repetitions=3, min_time=0.01)
    # The baseline is missing, and so are the ratios that needed it.
    assert ("no measurement for BM_ReverseDecryptPlain/flows:1, BM_ServiceReverse/flows:1/frontend:0, "
            "BM_ServiceReverse/flows:1/frontend:500;") in str(e.value)
    assert "a reply was punted" in str(e.value)
    with pytest.raises(RuntimeError, match="exited with 1"):
        services.run(fake_binary(tmp_path, complete_doc(), code=1), repetitions=3, min_time=0.01)


def results_with(doc):
    return {"meshwire_perf": 1, "results": [],
            "services": {"repetitions": 3, "min_time": 0.2, "rows": services.parse(json.dumps(doc))}}


def test_targets_read_the_worst_frontend_and_the_worst_flows():
    got = {t["name"]: t for t in targets(results_with(complete_doc()))}
    one = got["service DNAT 64 B vs plain encrypt, 1 flow"]
    # frontend 500 is 1.1 times frontend 0's 1.5: the worst counts.
    assert one["value"] == pytest.approx(1.65, abs=1e-3) and one["goal"] == 1.15 and one["op"] == "<="
    assert not one["met"]
    assert "frontend 0 1.50×, frontend 500 1.65×" in one["detail"] and "plain 280 TSC cycles" in one["detail"]
    assert got["service DNAT 64 B vs plain encrypt, 100,000 flows"]["value"] == pytest.approx(1.65, abs=1e-3)
    miss = got["traffic not for a service vs plain encrypt"]
    assert miss["value"] == pytest.approx(1.2) and miss["goal"] == 1.05 and not miss["met"]
    assert miss["informative"] and "1 flow 1.15×, 100,000 flows 1.20×" in miss["detail"]
    port = got["traffic to a service's port, not to a VIP, vs plain encrypt"]
    assert port["value"] == pytest.approx(365 / 300, abs=1e-3) and port["informative"] and not port["met"]
    assert "1 flow 1.17×, 100,000 flows 1.22×" in port["detail"]


def test_a_ratio_under_the_goal_is_met():
    doc = {"benchmarks": [*reps("BM_EncryptPlain", 1, [300]), *reps("BM_ServiceDnat", 1, [330], frontend=0),
                          *reps("BM_ServiceDnat", 1, [345], frontend=500)]}
    (t,) = targets(results_with(doc))
    assert t["name"] == "service DNAT 64 B vs plain encrypt, 1 flow"
    assert t["value"] == 1.15 and t["met"]


def test_missing_measurements_make_no_target():
    assert targets({"results": [], "services": {"rows": []}}) == []
    doc = {"benchmarks": reps("BM_ServiceDnat", 1, [420], frontend=0)}   # no baseline
    assert targets(results_with(doc)) == []


def test_report_table():
    md = report.markdown(results_with(complete_doc()))
    assert "## Services at 64 B (no ports)" in md and "medians of 3 interleaved repetitions" in md
    lines = md.splitlines()
    head = lines.index("| Run | Flows | cycles/pkt | ns/pkt | ÷ plain, same flows |")
    table = lines[head + 2:head + 18]
    assert table[0] == "| `BM_EncryptPlain` (baseline) | 1 | 280 | 100 | 1 |"
    assert "| `BM_ServiceDnat`, frontend 500 of 1,000 | 100,000 | 495 | 177 | 1.65× |" in table
    assert "| `BM_EncryptWithServicesNotMatching` | 1 | 322 | 115 | 1.15× |" in table
    assert table[-1].startswith("| `BM_ServiceReverse`, frontend 500 of 1,000 | 100,000 |")
    assert report.markdown({"meshwire_perf": 1, "results": []}).find("Services") < 0
