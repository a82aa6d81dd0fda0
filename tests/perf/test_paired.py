"""meshwire and a baseline measured by turns (bench.paired): the summary of
the rounds, the targets read from it, and the report's section."""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "perf"))

from meshwire_perf import report  # noqa: E402
from meshwire_perf.bench import paired_summary, targets  # noqa: E402


def rounds(*pairs):
    return [{"meshwire_pps": m, "baseline_pps": b} for m, b in pairs]


def test_median_of_odd_rounds():
    s = paired_summary(rounds((4e6, 2e6), (3e6, 3e6), (1e6, 4e6)))
    assert s["ratios"] == [0.25, 1.0, 2.0]
    assert (s["median_ratio"], s["min_ratio"], s["max_ratio"]) == (1.0, 0.25, 2.0)


def test_median_of_even_rounds_is_the_mean_of_the_middle_two():
    s = paired_summary(rounds((1e6, 1e6), (3e6, 2e6), (2e6, 1e6), (1e6, 2e6)))
    assert s["median_ratio"] == pytest.approx((1.0 + 1.5) / 2)


def test_rounds_where_the_baseline_moved_nothing_are_left_out():
    s = paired_summary(rounds((1e6, 0.0), (2e6, 1e6)))
    assert s["ratios"] == [2.0]
    assert paired_summary(rounds((1e6, 0.0)))["median_ratio"] is None


def paired_entry(baseline, suite, traffic, pairs):
    return {"suite": suite, "traffic": traffic, "frame_size": 64, "baseline": baseline,
            "rounds": rounds(*pairs), **paired_summary(rounds(*pairs))}


def test_targets_read_the_median_with_each_baselines_goal():
    results = {"results": [], "paired": [
        paired_entry("ipsec-secgw", "encrypt", "ipv4-udp", [(4e6, 3e6), (4e6, 2.9e6), (2e6, 3e6)]),
        paired_entry("testpmd", "local", "ipv4-udp", [(5e6, 5e6), (4.6e6, 5e6), (5e6, 6e6)])]}
    got = {t["name"]: t for t in targets(results)}
    secgw = got["encrypt 64 B vs ipsec-secgw (overload, by turns)"]
    assert secgw["value"] == pytest.approx(4 / 3, abs=1e-3) and secgw["goal"] == 1.3 and secgw["met"]
    assert secgw["metric"] == "median of 3 rounds"
    testpmd = got["same-node 64 B vs testpmd (overload, by turns)"]
    assert testpmd["value"] == pytest.approx(0.92) and testpmd["goal"] == 0.9 and testpmd["met"]


def test_services_by_turns_are_read_as_a_cost_against_plain_forwarding():
    results = {"results": [], "paired": [
        {**paired_entry("pod-to-pod", "services", "ipv4-udp, 65,536 flows", [(3e6, 4e6), (3.6e6, 4e6), (2e6, 4e6)]),
         "flows": 65_536},
        {**paired_entry("pod-to-pod", "services", "ipv4-udp, 1 flow", [(3.8e6, 4e6)]), "flows": 1}]}
    got = {t["name"]: t for t in targets(results)}
    many = got["service DNAT 64 B vs plain encrypted forwarding, 65,536 flows (through the ports, by turns)"]
    # Rate ratios 0.5, 0.75, 0.9: the median's inverse is the cost.
    assert many["value"] == pytest.approx(4 / 3, abs=1e-3) and many["goal"] == 1.15 and many["op"] == "<="
    assert not many["met"] and "1.11–2.00" in many["detail"]
    one = got["service DNAT 64 B vs plain encrypted forwarding, 1 flow (through the ports, by turns)"]
    assert one["value"] == pytest.approx(4 / 3.8, abs=1e-3) and one["met"]


def test_a_target_below_its_goal_is_not_met():
    results = {"results": [], "paired": [
        paired_entry("ipsec-secgw", "encrypt", "ipv4-udp", [(3e6, 3e6)])]}
    (t,) = targets(results)
    assert t["value"] == 1.0 and not t["met"]


def test_report_shows_every_round():
    results = {"meshwire_perf": 1, "results": [], "paired": [
        paired_entry("testpmd", "local", "ipv4-udp", [(5e6, 4e6), (4.5e6, 5e6)])]}
    md = report.markdown(results)
    assert "## meshwire and its baselines by turns" in md
    row = next(line for line in md.splitlines() if line.startswith("| local ipv4-udp"))
    assert "| 5.00, 4.50 |" in row and "| 4.00, 5.00 |" in row and "0.90–1.25" in row
