"""What telemetry costs the encrypt path (issue 7: "enabling metrics, flow
logs at the default sampling and an idle capture costs at most 5 % of the
encrypt path's NDR at 64 B in the same run").

The same meshwire DUT (systems.MeshwireDut) on encrypt/ipv4-udp at 64 B,
plain and with telemetry on, by turns (Bench.telemetry_paired). Telemetry
on is what an operator runs:

  metrics    meshwire-perf-scrape: the controller's /metrics scrape of the
             data plane (scrape_dataplane: seven control API calls, then
             render_dataplane) every SCRAPE_INTERVAL_S, for the whole turn
  flow logs  the data plane's `flow_logs:` section with its defaults
             (sample 1, max_per_second 1000, interval_s 60), to a file
  capture    an idle `meshwirectl capture` for the whole turn, when this
             build has it (idle_capture.py)

The scrape and capture clients run on the generator's CPU: on a node they
are the controller's and the operator's, not on the data plane's cores. What
they ask of the data plane is served by its control thread, which shares the
worker's CPU here (systems.MeshwireDut), so that cost falls on the worker.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path
from typing import Optional

from . import idle_capture
from .processes import Process
from .systems import MeshwireDut, Topology

GOAL = 0.95   # telemetry on ÷ plain, the median round
# Prometheus scrapes every 15 s by default; every second is pessimistic
# already. The pair's trials last as long (trial_s()), so that each holds
# one scrape wherever it starts: with 0.5 s trials, the best of two would be
# one without any.
SCRAPE_INTERVAL_S = 1.0
FLOW_LOGS: dict = {}   # the defaults; the path is the DUT's
# How EAL names the lcore threads it starts: rte-worker-N in DPDK 22.11 as
# seen here (lcore-worker-N in some earlier releases).
WORKER_THREADS = ("rte-worker-", "lcore-worker-")


def trial_s(bench_trial_s: float, quick: bool) -> float:
    """The pair's trial length, on and off alike: at least a scrape
    interval (--quick, the smoke run, keeps its short trials)."""
    return bench_trial_s if quick else max(bench_trial_s, SCRAPE_INTERVAL_S)


class TelemetryDut(MeshwireDut):
    """MeshwireDut with flow logs on (FLOW_LOGS, to flows.log in its folder)."""

    def __init__(self, topo: Topology, binary: Path, workers: int = 1):
        super().__init__(topo, binary, workers)
        self.flow_log = topo.workdir / "flows.log"

    def config(self) -> dict:
        return {**super().config(), "flow_logs": {"path": str(self.flow_log), **FLOW_LOGS}}

    def start(self) -> None:
        self.flow_log.unlink(missing_ok=True)  # each turn counts its own lines (the folder is reused)
        super().start()


def settings(ctl: Path) -> dict:
    """How telemetry is on, for results.json and the report."""
    return {"scrape_interval_s": SCRAPE_INTERVAL_S,
            "flow_logs": {"sample": 1, "max_per_second": 1000, "interval_s": 60, **FLOW_LOGS},
            "capture": idle_capture.describe(ctl)}


def _cpu_ticks(stat: Path) -> int:
    """utime + stime of a /proc stat file, in clock ticks."""
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])


def control_cpu_ticks(pid: int) -> int:
    """CPU time so far of a data plane's threads other than its workers
    (WORKER_THREADS): its control thread and the API server's, which
    here share the worker's CPU. The whole process's time (threads that
    ended included) less the workers'; clock ticks, as precise as the
    kernel's tick sampling."""
    def workers() -> int:
        total = 0
        for task in Path(f"/proc/{pid}/task").iterdir():
            try:
                if (task / "comm").read_text().startswith(WORKER_THREADS):
                    total += _cpu_ticks(task / "stat")
            except (OSError, ValueError, IndexError):
                continue  # a thread that ended meanwhile
        return total

    # The workers' ticks read just before and just after the process's: a
    # tick charged to a worker between the two reads would otherwise be
    # taken from the control threads (a negative rate seen in CI). Ticks
    # come every few ms and the reads take microseconds: a retry or two.
    for _ in range(20):
        before = workers()
        process = _cpu_ticks(Path(f"/proc/{pid}/stat"))
        if workers() == before:
            break
    return process - before


@contextlib.contextmanager
def control_cpu(dut: MeshwireDut, facts: list):
    """Appends to `facts` the CPU milliseconds a second the running DUT's
    non-worker threads took while the block ran: what telemetry takes from
    the worker's CPU, without the throughput's noise."""
    tick_ms = 1000 / os.sysconf("SC_CLK_TCK")
    pid = dut.proc.proc.pid
    t0, c0 = time.monotonic(), control_cpu_ticks(pid)
    yield
    c1, t1 = control_cpu_ticks(pid), time.monotonic()
    facts.append({"control_cpu_ms_per_s": round((c1 - c0) * tick_ms / (t1 - t0), 1)})


def _scrape_summary(proc: Process) -> dict:
    """The scraper's last line (it prints one JSON line when stopped)."""
    for line in reversed(proc.log_text().splitlines()):
        try:
            return json.loads(line)
        except ValueError:
            continue
    raise RuntimeError(f"meshwire-perf-scrape said nothing\n{proc.log_tail()}")


@contextlib.contextmanager
def on(dut: TelemetryDut, scraper: Path, cpu: int, facts: list):
    """Metrics scraped and an idle capture running against a started
    TelemetryDut while the block runs; appends what they did to `facts`.
    A client that failed or exited early is an error: the turn was not the
    telemetry it claims."""
    pin = ["taskset", "-c", str(cpu)]
    workdir = dut.topo.workdir
    scrape = Process("meshwire-perf-scrape", [*pin, scraper, "--socket", dut.api_socket,
                                              "--interval-ms", round(SCRAPE_INTERVAL_S * 1000)],
                     workdir / "scrape.log")
    capture: Optional[Process] = None
    used: list = []
    try:
        capture = idle_capture.start(dut.ctl, dut.api_socket, workdir, pin)
        with control_cpu(dut, used):
            yield
        for p in (scrape, capture):
            if p is not None and not p.alive():
                raise RuntimeError(f"{p.name} exited with {p.proc.returncode} during the turn\n{p.log_tail()}")
    finally:
        if capture is not None:
            capture.stop()
        scrape.stop()
    got = _scrape_summary(scrape)
    if got["failures"]:
        raise RuntimeError(f"meshwire-perf-scrape: {got['failures']} of {got['scrapes']} scrapes failed: "
                           f"{got['last_error']}")
    lines = dut.flow_log.read_text().count("\n") if dut.flow_log.exists() else 0
    facts.append({**used[0], "scrapes": got["scrapes"],
                  "scrape_mean_ms": round(got["total_ms"] / max(got["scrapes"], 1), 2), "scrape_max_ms": round(got["max_ms"], 2), "exposition_bytes": got["bytes"],
                  "flow_log_lines": lines, "capture": "idle" if capture is not None else idle_capture.NOT_AVAILABLE})
