"""The RFC 2544 search and the scenario timeline, against simulated systems
whose limits are known exactly."""

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "perf"))

from meshwire_perf.scenarios import timeline_summary  # noqa: E402
from meshwire_perf.search import search  # noqa: E402


def simulated(capacity, generator_max, lossy_above=None, tail_loss=0.002):
    """A system that forwards up to `capacity` pps and drops the excess; between
    lossy_above and capacity it loses tail_loss (a PDR-but-not-NDR band)."""
    calls = []

    def trial(rate):
        offered = generator_max if rate == 0 else min(rate, generator_max)
        received = min(offered, capacity)
        if lossy_above is not None and offered > lossy_above:
            received = min(received, offered * (1 - tail_loss))
        calls.append(rate)
        return {"offered_pps": offered, "received_pps": received, "loss": 1 - received / offered}
    trial.calls = calls
    return trial


def test_finds_the_capacity_within_resolution():
    t = simulated(capacity=3.0e6, generator_max=10e6)
    r = search(t, resolution=0.01, retry_failures=False)
    assert not r.generator_bound
    assert 3.0e6 * 0.99 <= r.ndr["offered_pps"] <= 3.0e6
    assert r.pdr["offered_pps"] >= r.ndr["offered_pps"]
    assert r.pdr["offered_pps"] <= 3.0e6 / (1 - 0.005) + 1
    assert len(t.calls) == len(r.trials) <= 16


def test_pdr_above_ndr_when_a_band_loses_a_little():
    t = simulated(capacity=8e6, generator_max=10e6, lossy_above=2e6, tail_loss=0.002)
    r = search(t, resolution=0.01, retry_failures=False, max_trials=30)
    assert r.ndr["offered_pps"] <= 2e6
    assert r.ndr["offered_pps"] >= 2e6 * 0.98
    assert r.pdr["offered_pps"] >= 7.9e6 * 0.98   # 0.2 % loss passes PDR up to capacity/(1-0.005)
    assert r.pdr["loss"] <= 0.005


def test_a_limit_far_below_the_top_is_still_found_precisely():
    t = simulated(capacity=50e3, generator_max=10e6)
    r = search(t, resolution=0.02, max_trials=30, retry_failures=False)
    assert 50e3 * 0.97 <= r.ndr["offered_pps"] <= 50e3


def test_generator_bound_when_nothing_is_lost_flat_out():
    t = simulated(capacity=20e6, generator_max=5e6)
    r = search(t)
    assert r.generator_bound
    assert r.ndr["offered_pps"] == 5e6
    assert len(r.trials) == 1


def test_nothing_passes():
    def trial(rate):
        return {"offered_pps": rate or 1e6, "received_pps": 0, "loss": 1.0}
    r = search(trial, max_trials=6)
    assert r.ndr is None and r.pdr is None
    assert len(r.trials) <= 6


def result(bins, duration_s, bin_s=0.01, attempted=100, received=90):
    return {"rx_bins": bins, "bin_s": bin_s, "duration_s": duration_s, "attempted": attempted,
            "received": received, "loss": 1 - received / attempted}


def test_timeline_longest_gap_ignores_the_start_ramp():
    s = timeline_summary(result([0, 0, 5, 5, 0, 0, 0, 5, 5, 5, 3, 0], duration_s=0.1))
    assert s["longest_gap_ms"] == pytest.approx(30.0)
    assert s["recovered"]
    assert s["lost"] == 10


def test_timeline_stall_to_the_end_is_not_a_recovery():
    s = timeline_summary(result([5, 5, 5, 0, 0, 0, 0, 0, 0, 0], duration_s=0.1))
    assert s["longest_gap_ms"] == pytest.approx(70.0)
    assert not s["recovered"]


def test_timeline_with_nothing_received():
    s = timeline_summary(result([0] * 10, duration_s=0.1, received=0))
    assert s["longest_gap_ms"] == 0 and not s["recovered"]


def test_a_failure_is_retried_once_and_the_better_trial_counts():
    """A host stall makes one trial in two lose a few frames at any rate: with
    the retry the search still finds the real capacity."""
    state = {"n": 0}

    def trial(rate):
        state["n"] += 1
        offered = 10e6 if rate == 0 else rate
        received = min(offered, 3e6)
        if state["n"] % 2 == 0:
            received *= 0.999
        return {"offered_pps": offered, "received_pps": received, "loss": 1 - received / offered}
    r = search(trial, resolution=0.02, max_trials=40)
    assert 3e6 * 0.97 <= r.ndr["offered_pps"] <= 3e6
    rates = [t["rate_pps"] for t in r.trials]
    retried = [x for x in set(rates) if rates.count(x) == 2]
    assert retried, "a failed trial was not run again"
    for x in retried:  # each retried rate: one failed, one passed (or both failed above capacity)
        losses = sorted(t["loss"] for t in r.trials if t["rate_pps"] == x)
        assert losses[1] > 0


def test_overload_is_the_best_of_the_flat_out_trials():
    received = iter([2e6, 3e6, 2.5e6])

    def trial(rate):
        if rate == 0:
            got = next(received)
            return {"offered_pps": 10e6, "received_pps": got, "loss": 1 - got / 10e6}
        return {"offered_pps": rate, "received_pps": min(rate, 3e6), "loss": max(0.0, 1 - 3e6 / rate)}
    r = search(trial, flat_repeats=3, retry_failures=False)
    assert r.flat["received_pps"] == 3e6
    assert sum(1 for t in r.trials if t["offered_pps"] == 10e6) == 3
