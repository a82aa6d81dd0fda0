"""Bench.run_scenarios when the generator dies under a scenario (DPDK
22.11's memif server sometimes crashes when its client is SIGKILLed): the
scenario runs once more on a fresh pair and the crash is kept as a warning;
a second death, or a failure with the generator alive, is an error."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "perf"))

from meshwire_perf import bench, scenarios  # noqa: E402


class FakeProc:
    def __init__(self):
        self.up = True

    def alive(self):
        return self.up


class FakeRun:
    def __init__(self):
        self.gen = FakeProc()
        self.system = type("System", (), {"proc": FakeProc()})()
        self.restarts = 0

    def restart(self):
        self.restarts += 1
        self.gen = FakeProc()


def make_bench(monkeypatch, behaviour):
    """A Bench whose only scenario calls behaviour(attempt, run)."""
    calls = {"n": 0}

    class Flaky(scenarios.Scenario):
        name = "flaky"

        def run(self, ctx):
            calls["n"] += 1
            behaviour(calls["n"], ctx)
            return {"name": self.name, "result": {"loss": 0.0, "longest_gap_ms": 0.0}}

    monkeypatch.setitem(scenarios.SCENARIOS, "flaky", Flaky)
    b = bench.Bench.__new__(bench.Bench)
    b.args = bench.parse_args(["--quick", "--scenarios", "flaky"])
    b.results = {"results": [], "scenarios": [], "errors": [], "warnings": []}
    monkeypatch.setattr(b, "warm_up", lambda gen, traffic, system, lead_s=0.0: None)
    return b, calls


def test_a_generator_crash_is_retried_once_and_kept_as_a_warning(monkeypatch):
    run = FakeRun()

    def crash_first(n, ctx):
        if n == 1:
            ctx.generator.up = False
            raise RuntimeError("meshwire-perf exited with -11")

    b, calls = make_bench(monkeypatch, crash_first)
    b.run_scenarios(run)
    assert calls["n"] == 2 and run.restarts == 1
    assert [s["name"] for s in b.results["scenarios"]] == ["flaky"]
    assert b.results["errors"] == [] and len(b.results["warnings"]) == 1


def test_a_second_crash_is_an_error(monkeypatch):
    run = FakeRun()

    def always_crash(n, ctx):
        ctx.generator.up = False
        raise RuntimeError("meshwire-perf exited with -11")

    b, calls = make_bench(monkeypatch, always_crash)
    b.run_scenarios(run)
    assert calls["n"] == 2
    assert b.results["scenarios"] == [] and len(b.results["errors"]) == 1
    assert run.restarts == 2  # the second restart leaves a running pair behind


def test_a_failure_with_the_generator_alive_is_not_retried(monkeypatch):
    run = FakeRun()

    def fail(n, ctx):
        raise RuntimeError("the change failed")

    b, calls = make_bench(monkeypatch, fail)
    b.run_scenarios(run)
    assert calls["n"] == 1 and run.restarts == 0
    assert len(b.results["errors"]) == 1 and b.results["warnings"] == []
