"""The telemetry pair (issue 7, bench.telemetry_paired): the DUT's config
with flow logs, the idle capture that starts only when meshwirectl has
`capture`, the scrape and capture clients around a turn, the target and
the report. Fake scripts stand in for meshwirectl and meshwire-perf-scrape;
no DPDK here (the smoke run in test_bench_smoke.py runs the real ones)."""

import os
import sys
import textwrap
import time
from pathlib import Path
from types import SimpleNamespace

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "perf"))

from meshwire_perf import idle_capture, report, telemetry  # noqa: E402
from meshwire_perf.bench import paired_summary, targets  # noqa: E402
from meshwire_perf.systems import MeshwireDut, Topology  # noqa: E402


def script(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + textwrap.dedent(body))
    path.chmod(0o755)
    return path


# meshwirectl without `capture`: CLI11 answers `capture --help` with the
# top-level help and status 0.
CTL_WITHOUT = """\
    echo 'meshwirectl: the operator view'
    echo 'Subcommands: show apply apply-services doctor'
    """
# With it: `capture --help` describes its options; a capture runs until SIGINT.
CTL_WITH = """\
    if [ "$3" = capture ] || [ "$1" = capture ]; then
      if [ "$2" = --help ]; then echo 'capture: --point rx|tx|pre-encrypt|post-decrypt --filter -c -w'; exit 0; fi
      trap 'exit 0' INT TERM
      echo "$@" > "$(dirname "$0")/capture.argv"
      while :; do sleep 0.05; done
    fi
    exit 1
    """
# A scraper that scrapes nothing and says so on SIGINT, as the real one does.
SCRAPER = r"""
trap 'echo "{\"scrapes\": SCRAPES, \"failures\": FAILURES, \"last_error\": \"GetCounters: gone\", \"total_ms\": 6.0, \"max_ms\": 4.0, \"bytes\": 9000}"; exit 0' INT TERM
echo "$@" > "$(dirname "$0")/scrape.argv"
while :; do sleep 0.05; done
"""
CPU = sorted(os.sched_getaffinity(0))[0]


def wait_for(path: Path) -> None:
    deadline = time.monotonic() + 10
    while not path.exists() and time.monotonic() < deadline:
        time.sleep(0.02)


def scraper(tmp_path, scrapes=3, failures=0):
    return script(tmp_path / "scrape", SCRAPER.replace("SCRAPES", str(scrapes)).replace("FAILURES", str(failures)))


def dut(tmp_path, ctl_body):
    d = telemetry.TelemetryDut(Topology(tmp_path / "dut"), tmp_path / "meshwire-dataplane")
    d.ctl = script(tmp_path / "meshwirectl", ctl_body)
    d.proc = SimpleNamespace(proc=SimpleNamespace(pid=os.getpid()))  # "started": this process stands in
    idle_capture.available.cache_clear()
    return d


def test_telemetry_dut_is_the_plain_one_with_flow_logs_at_their_defaults(tmp_path):
    topo = Topology(tmp_path)
    plain, on = MeshwireDut(topo, tmp_path / "dp"), telemetry.TelemetryDut(topo, tmp_path / "dp")
    on.outbound, on.inbound = plain.outbound, plain.inbound
    c = on.config()
    assert c.pop("flow_logs") == {"path": str(tmp_path / "flows.log")}   # sample etc.: the data plane's defaults
    assert c == plain.config()


def test_trials_hold_a_scrape_each_but_in_the_smoke_run():
    assert telemetry.trial_s(0.5, quick=False) == telemetry.SCRAPE_INTERVAL_S == 1.0
    assert telemetry.trial_s(2.0, quick=False) == 2.0
    assert telemetry.trial_s(0.1, quick=True) == 0.1


def test_capture_probe_reads_the_help_not_the_status(tmp_path):
    assert not idle_capture.available(script(tmp_path / "without", CTL_WITHOUT))
    assert idle_capture.available(script(tmp_path / "with", CTL_WITH))
    assert not idle_capture.available(tmp_path / "missing")
    assert idle_capture.describe(tmp_path / "without") == "not available in this build"
    assert idle_capture.describe(tmp_path / "with") == \
        "meshwirectl capture --point pre-encrypt --filter 'udp port 9' -c 1000000"


def test_turn_without_capture_scrapes_and_counts_flow_logs(tmp_path):
    d = dut(tmp_path, CTL_WITHOUT)
    facts = []
    with telemetry.on(d, scraper(tmp_path), CPU, facts):
        d.flow_log.write_text("{}\n")
        wait_for(tmp_path / "scrape.argv")
    assert facts[0].pop("control_cpu_ms_per_s") >= 0
    assert facts == [{"scrapes": 3, "scrape_mean_ms": 2.0, "scrape_max_ms": 4.0, "exposition_bytes": 9000,
                      "flow_log_lines": 1, "capture": "not available in this build"}]
    assert (tmp_path / "scrape.argv").read_text().split() == ["--socket", str(d.api_socket), "--interval-ms", "1000"]


def test_turn_with_capture_runs_it_idle_and_stops_it(tmp_path):
    d = dut(tmp_path, CTL_WITH)
    facts = []
    with telemetry.on(d, scraper(tmp_path), CPU, facts):
        wait_for(tmp_path / "capture.argv")
        wait_for(tmp_path / "scrape.argv")
    argv = (tmp_path / "capture.argv").read_text().split()
    assert argv[:3] == ["--socket", str(d.api_socket), "capture"]
    assert argv[3:] == ["--point", "pre-encrypt", "--filter", "udp", "port", "9", "-c", "1000000",
                        "-w", str(tmp_path / "dut" / "idle.pcapng")]
    assert facts[0]["capture"] == "idle" and facts[0]["flow_log_lines"] == 0


def test_control_cpu_leaves_the_workers_out():
    """A thread named as DPDK names its workers spins; the rest sleeps."""
    import threading
    tick_ms = 1000 / os.sysconf("SC_CLK_TCK")
    named, stop = threading.Event(), threading.Event()

    def worker():
        Path(f"/proc/self/task/{threading.get_native_id()}/comm").write_text("rte-worker-1")
        named.set()
        while not stop.is_set():
            pass

    t = threading.Thread(target=worker)
    t.start()
    named.wait(5)
    facts = []
    try:
        with telemetry.control_cpu(SimpleNamespace(proc=SimpleNamespace(proc=SimpleNamespace(pid=os.getpid()))),
                                   facts):
            time.sleep(0.5)
    finally:
        stop.set()
        t.join()
    # The spinning thread's 500 ms a second are not counted; this one's
    # sleep and the GIL's hand-overs are a few ticks at most. The kernel
    # rounds the process's time and each thread's to ticks on its own, so
    # the difference may come out a tick under the truth.
    assert -tick_ms / 0.5 <= facts[0]["control_cpu_ms_per_s"] <= 10 * tick_ms / 0.5


def test_failed_scrapes_or_a_capture_that_died_fail_the_turn(tmp_path):
    d = dut(tmp_path, CTL_WITHOUT)
    with pytest.raises(RuntimeError, match="1 of 3 scrapes failed: GetCounters: gone"):
        with telemetry.on(d, scraper(tmp_path, failures=1), CPU, []):
            wait_for(tmp_path / "scrape.argv")
    d = dut(tmp_path, CTL_WITH.replace("while :; do sleep 0.05; done", "exit 3"))
    with pytest.raises(RuntimeError, match="meshwirectl capture exited with 3"):
        with telemetry.on(d, scraper(tmp_path), CPU, []):
                time.sleep(0.5)


def telemetry_entry(pairs, capture="not available in this build"):
    rows = [{"meshwire_pps": on, "baseline_pps": off} for on, off in pairs]
    return {"suite": "encrypt", "traffic": "ipv4-udp, telemetry on", "frame_size": 64, "baseline": "telemetry off",
            "rounds": rows, **paired_summary(rows),
            "telemetry": {"scrape_interval_s": 1.0, "flow_logs": {"sample": 1, "max_per_second": 1000,
                                                                   "interval_s": 60},
                          "capture": capture,
                          "off_turns": [{"control_cpu_ms_per_s": 3.0}],
                          "turns": [{"control_cpu_ms_per_s": 21.0, "scrapes": 9, "scrape_mean_ms": 2.5, "scrape_max_ms": 4.1,
                                     "exposition_bytes": 9000, "flow_log_lines": 0, "capture": capture}]}}


def test_target_reads_the_median_round_against_95_percent():
    # Rounds' ratios 0.90, 0.96, 1.00: the median, 0.96, meets 0.95.
    (t,) = targets({"results": [], "paired": [telemetry_entry([(3.6e6, 4e6), (4.8e6, 5e6), (3e6, 3e6)])]})
    assert t["name"] == "encrypt 64 B with telemetry on vs off (overload, by turns)"
    assert t["value"] == 0.96 and t["goal"] == 0.95 and t["op"] == ">=" and t["met"]
    assert t["metric"] == "on ÷ off rate, median of 3 rounds"
    assert "rounds' ratios 0.90–1.00" in t["detail"] and "every 1 s" in t["detail"]
    assert "idle capture: not available in this build" in t["detail"]
    (t,) = targets({"results": [], "paired": [telemetry_entry([(3.6e6, 4e6), (4.7e6, 5e6), (3e6, 3e6)])]})
    assert t["value"] == 0.94 and not t["met"]
    assert targets({"results": [], "paired": [telemetry_entry([(3e6, 0.0)])]}) == []


def test_report_shows_the_rounds_and_how_telemetry_was_on():
    md = report.markdown({"meshwire_perf": 1, "results": [], "paired": [telemetry_entry([(3.8e6, 4e6)])]})
    row = next(line for line in md.splitlines() if line.startswith("| encrypt ipv4-udp, telemetry on"))
    assert "| telemetry off |" in row and "| 3.80 |" in row and "| 4.00 |" in row and "0.95–0.95" in row
    note = next(line for line in md.splitlines() if line.startswith("Telemetry on:"))
    assert "every 1 s" in note and "sample 1" in note and "not available in this build" in note
    assert "9 scrapes of 2.5 ms (longest 4.1 ms), 0 flow log lines" in note
    assert "(ms a second, each turn): on 21; off 3." in note
