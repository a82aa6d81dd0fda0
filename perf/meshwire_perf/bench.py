"""`make bench`: the whole benchmark suite, with its baselines measured in
the same run, written as JSON, Markdown and PNG plots under perf/results/.

    /usr/bin/python3 -m meshwire_perf [--quick] [--out DIR] [--trial-s S] ...

Suites (every frame size is the pod-side Ethernet frame, FCS included):
  encrypt  pod frames in, ESP-in-UDP out      meshwire vs ipsec-secgw, vs the crypto bound
  decrypt  ESP-in-UDP in, pod frames out      meshwire (vs its own encrypt path)
  local    pod to pod on the same node        meshwire vs testpmd io forwarding
Each point is an RFC 2544 search (NDR: no loss; PDR: <= 0.5 % loss) with
fixed-length trials; scenarios follow. --quick is the smoke version that
`make test` runs: one size, short trials, same code.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from . import report, scaling, scenarios as scen, services, stages, telemetry
from .processes import Generator
from .search import search
from .systems import MeshwireDut, SecgwDut, TestpmdDut, Topology, generator_config

ROOT = Path(__file__).resolve().parents[2]
SIZES = [64, 128, 256, 512, 1024, 1400, "imix"]
EDGE_SIZES = [64, 1400]
# The targets against another system, measured by turns (Bench.paired).
PAIRS = [("encrypt/ipv4-udp", 64, "ipsec-secgw"), ("local/ipv4-udp", 64, "testpmd")]
PAIRED_TRIALS = 2      # flat-out trials per turn, the best kept
TELEMETRY_TRAFFIC = "encrypt/ipv4-udp"   # issue 7's pair, at 64 B (Bench.telemetry_paired)
# Services through the ports (Bench.services_paired): client flows, 1 and the
# generator's most (65,536: it keeps a frame template per flow).
SERVICE_FLOWS = (1, 65_536)
SERVICE_COST_GOAL = 1.15   # issue 6: service lookup + conntrack within 15 % of plain encrypted forwarding


def full_plan() -> dict:
    return {
        "meshwire": [("encrypt/ipv4-udp", SIZES), ("encrypt/ipv6-udp", EDGE_SIZES), ("encrypt/ipv4-tcp", EDGE_SIZES),
                     ("decrypt/ipv4-udp", SIZES), ("decrypt/ipv6-udp", EDGE_SIZES),
                     ("local/ipv4-udp", SIZES)],
        "ipsec-secgw": [("encrypt/ipv4-udp", SIZES)],
        "testpmd": [("local/ipv4-udp", SIZES)],
    }


def quick_plan() -> dict:
    return {
        "meshwire": [("encrypt/ipv4-udp", [64]), ("decrypt/ipv4-udp", [64]), ("local/ipv6-tcp", [64])],
        "testpmd": [("local/ipv4-udp", [64])],
    }


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def summary(trial: Optional[dict]) -> Optional[dict]:
    """A trial as the report shows it: rates, loss, latency."""
    if trial is None:
        return None
    avg_frame = trial["sent_bytes"] / max(trial["attempted"], 1)
    return {"pps": trial["offered_pps"], "bps": trial["offered_pps"] * avg_frame * 8, "loss": trial["loss"],
            "offered_pps": trial["offered_pps"], "received_pps": trial["received_pps"],
            "avg_frame_bytes": round(avg_frame, 1), "latency_ns": trial["latency_ns"]}


def overload(trial: Optional[dict]) -> Optional[dict]:
    """The flat-out trial: the rate the system forwards while overloaded.
    Unlike NDR it does not hinge on a zero-loss trial, so it shrugs off the
    millisecond stalls of a shared VM; the report shows it beside NDR/PDR."""
    if trial is None:
        return None
    avg_frame = trial["sent_bytes"] / max(trial["attempted"], 1)
    return {"pps": trial["received_pps"], "bps": trial["received_pps"] * avg_frame * 8,
            "offered_pps": trial["offered_pps"], "loss": trial["loss"]}


def compact(trial: dict) -> dict:
    return {k: trial[k] for k in ("rate_pps", "offered_pps", "received_pps", "loss", "attempted", "received",
                                  "alloc_failed", "skipped", "stalls", "max_stall_ns", "unexpected", "stale",
                                  "bad_icv")}


@dataclass
class Turn:
    """One side of a measurement by turns (Bench.by_turns)."""
    label: str                              # in the log, the rows and the run's folder
    system: str = "meshwire"                # Bench.system's name
    make_system: Optional[Callable] = None  # topo -> another system under test than `system`'s usual one
    alongside: Optional[Callable] = None    # run -> a context manager running around the trials


class Bench:
    def __init__(self, args):
        self.args = args
        self.build = Path(args.build).resolve()
        self.dataplane = self.build / "dataplane" / "meshwire-dataplane"
        self.generator = self.build / "perf" / "gen" / "meshwire-perf"
        for b in (self.dataplane, self.generator):
            if not b.exists():
                raise SystemExit(f"meshwire-perf: {b} is missing: build first (make build)")
        self.workdir = Path(tempfile.mkdtemp(prefix="meshwire-bench-"))
        self.results: dict = {}

    def system(self, name: str, topo: Topology):
        if name == "meshwire":
            return MeshwireDut(topo, self.dataplane, workers=self.args.workers)
        if name == "testpmd":
            return TestpmdDut(topo)
        if name == "ipsec-secgw":
            return SecgwDut(topo, Path(self.args.secgw_build))
        raise ValueError(name)

    class Running:
        """A started generator and system under test."""

        def __init__(self, bench: "Bench", topo: Topology, system):
            self.bench, self.topo, self.system, self.gen = bench, topo, system, None

        def start(self) -> None:
            # The generator is the memif server: it first, then the system.
            self.topo.clear_sockets()
            self.gen = Generator(self.bench.generator, generator_config(self.topo, self.system), self.topo.workdir)
            self.system.start()
            if hasattr(self.system, "wait_ready"):  # systems that wait for their links first
                self.system.wait_ready()

        def stop(self) -> None:
            if self.gen is not None:
                self.gen.stop()
                self.gen = None
            self.system.stop()

        def restart(self) -> None:
            """Both again (a DPDK 22.11 memif client does not survive its
            server going away, so the system restarts too)."""
            self.stop()
            self.start()

    @contextlib.contextmanager
    def running(self, name: str, folder: str, make_system=None):
        """The generator (memif server) and then the system under test,
        both stopped on the way out whatever happens. make_system(topo):
        another system than `name`'s usual one (a scenario's own)."""
        topo = Topology(self.workdir / folder)
        run = Bench.Running(self, topo, make_system(topo) if make_system else self.system(name, topo))
        try:
            run.start()
            self.results["host"].setdefault("crypto_arch", run.gen.ready.get("crypto_arch"))
            yield run
        finally:
            run.stop()
            topo.remove_runtime_dirs()

    def run_system(self, name: str, items: list, with_scenarios: bool) -> None:
        log(f"{name}: starting")
        scenarios = [self.scenario(n) for n in self.args.scenarios] if with_scenarios else []
        with self.running(name, name) as run:
            for traffic, sizes in items:
                self.warm_up(run.gen, traffic, name)
                for size in sizes:
                    self.point(run.gen, name, traffic, size)
            shared = [s for s in scenarios if not s.own_system]
            if shared:
                self.run_scenarios(run, shared)
        # Scenarios on a system of their own, each alone on the machine.
        for s in scenarios:
            if s.own_system:
                self.run_own_system_scenario(name, s)

    def scenario(self, name: str) -> scen.Scenario:
        s = scen.SCENARIOS[name]()
        if self.args.quick:
            s.duration_s, s.at_s = min(s.duration_s, 2.5), 0.5
        return s

    def run_own_system_scenario(self, name: str, s: scen.Scenario) -> None:
        log(f"scenario {s.name}: starting its own {name}")
        try:
            with self.running(name, f"scenario-{s.name}",
                              lambda topo: s.system(topo, self.dataplane, self.args.workers)) as run:
                self.warm_up(run.gen, s.warm_up_traffic or s.traffic, name, lead_s=s.lead_s)
                self.run_scenarios(run, [s])
        except RuntimeError as e:  # starting or warming up failed: reported, the bench goes on
            log(f"scenario {s.name}: FAILED: {e}")
            self.results["errors"].append(f"scenario {s.name}: {e}")

    def by_turns(self, traffic: str, size, rounds: int, first: "Turn", second: "Turn", what: str,
                 trial_s: Optional[float] = None) -> list[dict]:
        """Two systems measured flat out by turns, `rounds` times (each
        started afresh with its generator, the order swapped every round,
        the best of PAIRED_TRIALS trials of trial_s (--trial-s) kept), so
        that slow drifts of a shared VM hit both alike. Rows of
        {"meshwire_pps": first's, "baseline_pps": second's}, for
        paired_summary."""
        trial_s = trial_s or self.args.trial_s
        rows = []
        for r in range(rounds):
            got = {}
            for turn in (first, second) if r % 2 == 0 else (second, first):
                with self.running(turn.system, f"paired-{turn.label}", turn.make_system) as run:
                    self.warm_up(run.gen, traffic, turn.label)
                    with turn.alongside(run) if turn.alongside else contextlib.nullcontext():
                        got[turn.label] = max(run.gen.trial(traffic, size, 0.0, trial_s,
                                                            drain_s=self.args.drain_s)["received_pps"]
                                              for _ in range(PAIRED_TRIALS))
            rows.append({"meshwire_pps": got[first.label], "baseline_pps": got[second.label]})
            log(f"{what} {traffic} {size} B round {r + 1}/{rounds}: {first.label} {fmt(got[first.label])}, "
                f"{second.label} {fmt(got[second.label])}")
        return rows

    def paired(self, traffic: str, size, baseline: str, rounds: int) -> None:
        """meshwire and a baseline measured flat out by turns: the ratio of
        each round, and their median, are what the targets read."""
        rows = self.by_turns(traffic, size, rounds, Turn("meshwire"), Turn(baseline, baseline), "paired")
        entry = {"suite": traffic.split("/")[0], "traffic": traffic.split("/")[1], "frame_size": size,
                 "baseline": baseline, "rounds": rows, **paired_summary(rows)}
        self.results["paired"].append(entry)

    def telemetry_paired(self, rounds: int) -> None:
        """Issue 7: the encrypt path at 64 B with telemetry on (metrics
        scraped, flow logs, an idle capture: telemetry.py) and plain, by
        turns; the target reads the median round's on ÷ plain rate."""
        scraper = self.build / "perf" / "scrape" / "meshwire-perf-scrape"
        if not scraper.exists():
            raise RuntimeError(f"{scraper} is missing: build first")
        on_facts: list = []
        off_facts: list = []
        dataplane, workers = self.dataplane, self.args.workers
        on = Turn("telemetry-on", make_system=lambda topo: telemetry.TelemetryDut(topo, dataplane, workers),
                  alongside=lambda run: telemetry.on(run.system, scraper, run.topo.cpus.generator, on_facts))
        off = Turn("plain", alongside=lambda run: telemetry.control_cpu(run.system, off_facts))
        trial_s = telemetry.trial_s(self.args.trial_s, self.args.quick)
        rows = self.by_turns(TELEMETRY_TRAFFIC, 64, rounds, on, off, "telemetry", trial_s)
        suite, kind = TELEMETRY_TRAFFIC.split("/")
        self.results["paired"].append({"suite": suite, "traffic": f"{kind}, telemetry on", "frame_size": 64,
                                       "baseline": "telemetry off", "rounds": rows, **paired_summary(rows),
                                       "telemetry": {**telemetry.settings(self.build / "control" / "meshwirectl"),
                                                     "trial_s": trial_s, "turns": on_facts,
                                                     "off_turns": off_facts}})

    def services_paired(self, rounds: int) -> None:
        """Services through the memif ports: one data plane (node1 of
        MeshwireServiceDut, liveness on) sends the same clients' 64-byte UDP
        flat out to a ClusterIP whose backends are on node2 and node3 (lookup,
        conntrack, DNAT, encryption) and, by turns, straight to one of those
        backends (plain encrypted forwarding), `rounds` times with the order
        swapped every round. The rate ratio of each round (services ÷ plain)
        is in `ratios`; its inverse is the cost ratio the target reads."""
        from .systems import MeshwireServiceDut
        svc, plain = "services/ipv4-udp", "pod-to-pod/ipv4-udp"
        for flows in SERVICE_FLOWS:
            make = lambda topo, n=flows: MeshwireServiceDut(topo, self.dataplane, self.args.workers, client_flows=n)
            with self.running("meshwire", f"services-paired-{flows}", make) as run:
                for t in (svc, plain):
                    self.warm_up(run.gen, t, "meshwire", lead_s=0.3)
                rows = []
                for r in range(rounds):
                    got = {}
                    for t in ((svc, plain) if r % 2 == 0 else (plain, svc)):
                        # lead_s: the peers' keepalives start first (a peer
                        # left silent between trials is down by now).
                        got[t] = max(run.gen.trial(t, 64, 0.0, self.args.trial_s, drain_s=self.args.drain_s,
                                                   lead_s=0.3)["received_pps"] for _ in range(PAIRED_TRIALS))
                    rows.append({"meshwire_pps": got[svc], "baseline_pps": got[plain]})
                    log(f"services paired, {flows:,} flows, round {r + 1}/{rounds}: to the ClusterIP "
                        f"{fmt(got[svc])}, to the pod {fmt(got[plain])}")
            self.results["paired"].append({"suite": "services", "traffic": f"ipv4-udp, {flows:,} flows",
                                           "flows": flows, "frame_size": 64, "baseline": "pod-to-pod",
                                           "rounds": rows, **paired_summary(rows)})

    def warm_up(self, gen: Generator, traffic: str, system: str, lead_s: float = 0.0) -> None:
        """A slow trial first: the system under test resolves every pod's
        and the peer's MAC (it holds or drops the first packets meanwhile)."""
        for _ in range(3):
            r = gen.trial(traffic, 64, 20_000, 0.3, drain_s=0.2, **({"lead_s": lead_s} if lead_s else {}))
            if r["received"] > 0 and r["loss"] < 0.01:
                return
        raise RuntimeError(f"{system} {traffic}: warm-up lost {r['loss']:.1%} of {r['attempted']} frames "
                           f"(received {r['received']}, unexpected {r['unexpected']}, bad ICV {r['bad_icv']})")

    def point(self, gen: Generator, system: str, traffic: str, size) -> None:
        suite, kind = traffic.split("/")
        a = self.args
        res = search(lambda rate: gen.trial(traffic, size, rate, a.trial_s, drain_s=a.drain_s),
                     resolution=a.resolution, pdr_loss=a.pdr_loss, max_trials=a.max_trials,
                     flat_repeats=1 if a.quick else 3)
        entry = {"suite": suite, "system": system, "traffic": kind, "frame_size": size,
                 "ndr": summary(res.ndr), "pdr": summary(res.pdr), "overload": overload(res.flat),
                 "max_offered_pps": res.max_offered_pps,
                 "generator_bound": res.generator_bound, "trials": [compact(t) for t in res.trials]}
        self.results["results"].append(entry)
        ndr = entry["ndr"]["pps"] / 1e6 if entry["ndr"] else 0.0
        pdr = entry["pdr"]["pps"] / 1e6 if entry["pdr"] else 0.0
        over = entry["overload"]["pps"] / 1e6 if entry["overload"] else 0.0
        log(f"{system:12s} {traffic:18s} {str(size):>5s} B  NDR {ndr:6.3f}  PDR {pdr:6.3f}  overload {over:6.3f} Mpps"
            f"  ({len(res.trials)} trials{', generator-bound' if res.generator_bound else ''})")

    def run_scenarios(self, run: "Bench.Running", scenarios: Optional[list] = None) -> None:
        """Runs scenarios (default: those of --scenarios) on a running pair."""
        for s in scenarios if scenarios is not None else [self.scenario(n) for n in self.args.scenarios]:
            name = s.name
            ndr = self.ndr_of("meshwire", *s.traffic.split("/"), s.frame_size)
            for attempt in (1, 2):
                try:
                    out = s.run(scen.Context(system=run.system, generator=run.gen, ndr_pps=ndr))
                except RuntimeError as e:
                    generator_died = not run.gen.alive()
                    if generator_died and attempt == 1:
                        # DPDK 22.11's memif server (the generator) sometimes
                        # crashes when its client is SIGKILLed mid-traffic (about
                        # one run in five of dataplane-restart here): said, and
                        # the scenario run once more on a fresh pair.
                        log(f"scenario {name}: the generator died ({e}); once more")
                        self.results["warnings"].append(f"scenario {name}: the generator died, run again: {e}")
                        run.restart()
                        self.warm_up(run.gen, s.warm_up_traffic or s.traffic, "meshwire", lead_s=s.lead_s)
                        continue
                    log(f"scenario {name}: FAILED: {e}")
                    self.results["errors"].append(f"scenario {name}: {e}")
                    if generator_died or not run.system.proc.alive():
                        run.restart()  # leave a running pair for the next scenario
                    break
                self.results["scenarios"].append(out)
                r = out["result"]
                log(f"scenario {name}: loss {r['loss']:.2%}, longest gap {r['longest_gap_ms']} ms"
                    + (f", recovered after {r['recovered_after_ms']} ms" if "recovered_after_ms" in r else ""))
                break

    def ndr_of(self, system: str, suite: str, traffic: str, size) -> Optional[float]:
        for e in self.results["results"]:
            if (e["system"], e["suite"], e["traffic"], e["frame_size"]) == (system, suite, traffic, size) and e["ndr"]:
                return e["ndr"]["pps"]
        return None

    def measure(self, what: str, fn) -> None:
        """Runs one microbenchmark part; a failure is reported and the
        bench goes on with the rest."""
        try:
            fn()
        except (RuntimeError, subprocess.TimeoutExpired, ValueError) as e:
            log(f"{what}: FAILED: {e}")
            self.results["errors"].append(f"{what}: {e}")

    def crypto_bound(self, sizes: list[int]) -> None:
        from .baselines import cryptoperf
        log(f"crypto bound: dpdk-test-crypto-perf, sizes {sizes}")
        got = cryptoperf.run(sizes, repeats=1 if self.args.quick else 3)
        self.results["crypto_bound"] = {str(s): {"mops": r.mops, "gbps": r.gbps, "cycles_per_op": r.cycles_per_op}
                                        for s, r in got.items()}

    def run(self) -> dict:
        a = self.args
        started = time.time()
        self.results = {"meshwire_perf": 1,
                        "started": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
                        "host": host_info(),
                        "settings": {"trial_s": a.trial_s, "drain_s": a.drain_s, "resolution": a.resolution,
                                     "pdr_loss": a.pdr_loss, "quick": a.quick, "workers": a.workers,
                                     "paired_rounds": a.paired},
                        "crypto_bound": {}, "results": [], "paired": [], "targets": [], "scenarios": [],
                        "errors": [], "warnings": []}
        # --only telemetry: the telemetry pair alone (it needs no plan).
        plan = {} if a.only == "telemetry" else quick_plan() if a.quick else full_plan()
        topo = Topology(self.workdir / "probe")
        self.results["settings"].update({"generator_cpu": topo.cpus.generator, "dut_worker_cpu": topo.cpus.worker,
                                         "dut_main_cpu": topo.cpus.main, "port": "net_memif (copy mode, no hugepages)"})
        try:
            if not a.no_crypto:
                sizes = sorted({s for items in plan.values() for _, ss in items for s in ss if isinstance(s, int)})
                try:
                    self.crypto_bound(sizes)
                except RuntimeError as e:
                    log(f"crypto bound: FAILED: {e}")
                    self.results["errors"].append(f"crypto bound: {e}")
            micro = self.build / "perf" / "micro" / "dp_micro_bench"
            if not a.no_stages:
                def fast_path_stages():
                    log("fast-path stages: dp_micro_bench (no ports)")
                    self.results["stages"] = stages.run(micro, repetitions=1 if a.quick else 3,
                                                        min_time=0.05 if a.quick else 0.3)
                    log("fast-path stages: instructions per packet (callgrind)")
                    for size in ((64,) if a.quick else stages.SIZES):
                        self.results["stages"].setdefault(str(size), {}).update(stages.instructions(micro, size))
                    log("fast-path stages: the encrypt stage with an idle capture (callgrind)")
                    self.results["idle_capture"] = stages.idle_capture_instructions(micro)
                    if not a.quick:
                        # The code path of CPUs without VAES, where AES-GCM
                        # costs several times more per byte than here.
                        log("fast-path stages: ipsec-mb's AVX2 code path (no VAES), 1400 B")
                        self.results["stages_avx2"] = stages.run(micro, repetitions=3, min_time=0.3, arch="avx2",
                                                                 sizes=(1400,))

                def two_workers():
                    log("two workers: dp_micro_bench BM_WorkerScaling (threads pinned one per CPU)")
                    self.results["scaling"] = scaling.run(micro, repetitions=3 if a.quick else 9,
                                                          min_time=0.02 if a.quick else 0.2)

                def service_stages():
                    log("services at 64 B: dp_micro_bench, DNAT and reverse NAT vs plain stages (no ports)")
                    self.results["services"] = services.run(micro, repetitions=3 if a.quick else 5,
                                                            min_time=0.02 if a.quick else 0.2)

                self.measure("stages", fast_path_stages)
                self.measure("two workers", two_workers)
                if not a.no_services:
                    self.measure("services", service_stages)
            for name in ("meshwire", "ipsec-secgw", "testpmd"):
                if name in plan and name not in a.skip:
                    try:
                        self.run_system(name, plan[name], with_scenarios=(name == "meshwire"))
                    except RuntimeError as e:  # reported, and the other systems still run
                        log(f"{name}: FAILED: {e}")
                        self.results["errors"].append(f"{name}: {e}")
            for traffic, size, baseline in PAIRS:
                if a.paired > 0 and baseline in plan and not {"meshwire", baseline} & set(a.skip):
                    try:
                        self.paired(traffic, size, baseline, a.paired)
                    except RuntimeError as e:
                        log(f"paired {traffic} vs {baseline}: FAILED: {e}")
                        self.results["errors"].append(f"paired {traffic} vs {baseline}: {e}")
            if a.paired > 0 and not a.no_telemetry and "meshwire" not in a.skip:
                try:
                    self.telemetry_paired(a.paired)
                except RuntimeError as e:
                    log(f"telemetry paired: FAILED: {e}")
                    self.results["errors"].append(f"telemetry paired: {e}")
            if a.paired > 0 and not a.no_services and "meshwire" in plan and "meshwire" not in a.skip:
                try:
                    self.services_paired(a.paired)
                except RuntimeError as e:
                    log(f"services paired: FAILED: {e}")
                    self.results["errors"].append(f"services paired: {e}")
        finally:
            self.results["duration_s"] = round(time.time() - started, 1)
            self.results["targets"] = targets(self.results)
            if not a.keep:
                shutil.rmtree(self.workdir, ignore_errors=True)
        return self.results


def host_info() -> dict:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    def cmd(*argv) -> str:
        try:
            return subprocess.run(argv, capture_output=True, text=True, cwd=ROOT, timeout=10).stdout.strip()
        except (OSError, subprocess.TimeoutExpired):
            return ""
    return {"cpus": len(os.sched_getaffinity(0)), "cpu_model": model, "kernel": platform.release(),
            "dpdk": cmd("pkg-config", "--modversion", "libdpdk"), "git": cmd("git", "rev-parse", "--short", "HEAD")}


def paired_summary(rows: list[dict]) -> dict:
    """The median, lowest and highest of the rounds' meshwire/baseline
    ratios (rounds where the baseline moved nothing are left out)."""
    ratios = sorted(r["meshwire_pps"] / r["baseline_pps"] for r in rows if r["baseline_pps"] > 0)
    if not ratios:
        return {"ratios": [], "median_ratio": None, "min_ratio": None, "max_ratio": None}
    mid = len(ratios) // 2
    median = ratios[mid] if len(ratios) % 2 else (ratios[mid - 1] + ratios[mid]) / 2
    return {"ratios": [round(x, 3) for x in ratios], "median_ratio": round(median, 3),
            "min_ratio": round(ratios[0], 3), "max_ratio": round(ratios[-1], 3)}


def _find(results: dict, system: str, suite: str, traffic: str, size) -> Optional[dict]:
    for e in results["results"]:
        if (e["system"], e["suite"], e["traffic"], e["frame_size"]) == (system, suite, traffic, size):
            return e
    return None


def _rate(e: Optional[dict], which: str = "ndr") -> Optional[float]:
    return e[which]["pps"] if e and e.get(which) else None


def targets(results: dict) -> list[dict]:
    """The issue's targets as ratios of rates measured in this run. A target
    whose inputs are missing is left out (never reported as met)."""
    out = []

    def add(name, metric, num, den, goal, op, detail, **extra):
        if num is None or den is None or den <= 0:
            return
        value = num / den
        met = value >= goal if op == ">=" else value <= goal
        out.append({"name": name, "metric": metric, "value": round(value, 3), "goal": goal, "op": op,
                    "met": met, "detail": detail, **extra})

    for which in ("pdr", "ndr", "overload"):
        label = which.upper()
        mw = _rate(_find(results, "meshwire", "encrypt", "ipv4-udp", 64), which)
        sg = _rate(_find(results, "ipsec-secgw", "encrypt", "ipv4-udp", 64), which)
        add(f"encrypt 64 B vs ipsec-secgw ({label})", f"{label} ratio", mw, sg, 1.3, ">=",
            f"meshwire {fmt(mw)} / ipsec-secgw {fmt(sg)}")
        mw14 = _rate(_find(results, "meshwire", "encrypt", "ipv4-udp", 1400), which)
        cb = results.get("crypto_bound", {}).get("1400")
        add(f"encrypt 1400 B vs raw AES-GCM ({label})", f"{label} / crypto Mops", mw14,
            cb["mops"] * 1e6 if cb else None, 0.85, ">=",
            f"meshwire {fmt(mw14)} / dpdk-test-crypto-perf {cb['mops']:.2f} Mops" if cb else "")
        for size in (64, 1400):
            enc = _rate(_find(results, "meshwire", "encrypt", "ipv4-udp", size), which)
            dec = _rate(_find(results, "meshwire", "decrypt", "ipv4-udp", size), which)
            add(f"decrypt vs encrypt {size} B ({label})", f"{label} ratio", dec, enc, 0.9, ">=",
                f"decrypt {fmt(dec)} / encrypt {fmt(enc)}")
        loc = _rate(_find(results, "meshwire", "local", "ipv4-udp", 64), which)
        tp = _rate(_find(results, "testpmd", "local", "ipv4-udp", 64), which)
        add(f"same-node 64 B vs testpmd io ({label})", f"{label} ratio", loc, tp, 0.9, ">=",
            f"meshwire {fmt(loc)} / testpmd {fmt(tp)}")
    for p in results.get("paired") or []:
        if p["baseline"] == "pod-to-pod" and p.get("median_ratio"):
            # Rates by turns; the target is a cost: plain's rate ÷ the services'.
            n = len(p["ratios"])
            cost = 1 / p["median_ratio"]
            out.append({"name": f"service DNAT 64 B vs plain encrypted forwarding, {p['flows']:,} "
                                f"flow{'s' if p['flows'] != 1 else ''} (through the ports, by turns)",
                        "metric": f"plain ÷ services rate, median of {n} rounds", "value": round(cost, 3),
                        "goal": SERVICE_COST_GOAL, "op": "<=", "met": cost <= SERVICE_COST_GOAL,
                        "detail": f"rounds' cost ratios {1 / p['max_ratio']:.2f}–{1 / p['min_ratio']:.2f}"})
            continue
        if "telemetry" in p:
            if p.get("median_ratio") is not None:
                out.append(telemetry_target(p))
            continue
        goal = {"ipsec-secgw": 1.3, "testpmd": 0.9}.get(p["baseline"])
        if goal is None or p.get("median_ratio") is None:
            continue
        what = "encrypt" if p["suite"] == "encrypt" else "same-node"
        n = len(p["ratios"])
        out.append({"name": f"{what} {p['frame_size']} B vs {p['baseline']} (overload, by turns)",
                    "metric": f"median of {n} rounds", "value": p["median_ratio"], "goal": goal, "op": ">=",
                    "met": p["median_ratio"] >= goal,
                    "detail": f"rounds' ratios {p['min_ratio']:.2f}–{p['max_ratio']:.2f}"})
    avx2 = (results.get("stages_avx2") or {}).get("1400", {})
    add("encrypt stage 1400 B vs raw AES-GCM, AVX2 path (no VAES; no port)", "pkt/s ratio",
        avx2.get("encrypt_pps"), avx2.get("raw_gcm_pps"), 0.85, ">=",
        f"stage {fmt(avx2.get('encrypt_pps'))} / ipsec-mb {fmt(avx2.get('raw_gcm_pps'))}")
    sc = (results.get("scaling") or {})
    pw, ctl = sc.get("per_worker") or {}, sc.get("shared_line") or {}
    if pw.get("scaling") is not None:
        out.append({"name": "two workers, per-worker state (no port)", "metric": "2-thread ÷ 1-thread rate",
                    "value": round(pw["scaling"], 3), "goal": 1.8, "op": ">=", "met": pw["scaling"] >= 1.8,
                    "detail": f"control with one shared line per packet: {ctl['scaling']:.2f}"
                    if ctl.get("scaling") is not None else ""})
    st = results.get("stages") or {}
    for size in ("64", "1400"):
        e = st.get(size, {})
        add(f"encrypt stage {size} B vs raw AES-GCM (no port)", "pkt/s ratio", e.get("encrypt_pps"),
            e.get("raw_gcm_pps"), 0.85, ">=",
            f"stage {fmt(e.get('encrypt_pps'))} / ipsec-mb {fmt(e.get('raw_gcm_pps'))}")
        enc, dec = e.get("enc_cyc_pkt"), e.get("dec_cyc_pkt")
        add(f"decrypt stage vs encrypt stage {size} B (no port)", "encrypt ÷ decrypt cycles", enc, dec, 0.9, ">=",
            f"encrypt {enc:.0f} / decrypt {dec:.0f} TSC cycles per packet" if enc and dec else "")
        enc_i, dec_i = e.get("local_instr_pkt"), e.get("uplink_instr_pkt")
        add(f"decrypt stage vs encrypt stage {size} B (callgrind)", "encrypt ÷ decrypt instructions", enc_i, dec_i,
            0.9, ">=", f"encrypt {enc_i:.0f} / decrypt {dec_i:.0f} instructions per packet" if enc_i and dec_i else "")
    ic = results.get("idle_capture") or {}
    add("encrypt stage 64 B with an idle capture vs none (callgrind)", "capture ÷ none instructions",
        ic.get("native"), ic.get("none"), 1.05, "<=",
        f"informative (issue 7's capture, `udp port 9` at pre-encrypt, as the worker pays it without the port): "
        f"{ic.get('none', 0):.0f} → {ic.get('native', 0):.0f} instructions per packet matched natively, "
        f"{ic.get('libpcap', 0):.0f} as libpcap's program", informative=True)
    sv = results.get("services")

    def flows_text(n):
        return f"{n:,} flow" + ("s" if n > 1 else "")

    for flows in services.FLOWS:
        # Wherever the frontend is among the 1,000: the worst of them counts.
        dnat, plain = services.worst(sv, "BM_ServiceDnat", flows), services.find(sv, "BM_EncryptPlain", flows)
        each = [f"frontend {r['frontend']} {r['ratio']:.2f}×" for r in services.rows(sv, "BM_ServiceDnat", flows)
                if "ratio" in r]
        add(f"service DNAT 64 B vs plain encrypt, {flows_text(flows)}", "DNAT ÷ plain cycles/pkt (no port)",
            dnat and dnat["cyc_pkt"], plain and plain["cyc_pkt"], 1.15, "<=",
            f"{', '.join(each)} (of 1,000); plain {plain['cyc_pkt']:.0f} TSC cycles per packet" if plain else "")
    for sc in results.get("scenarios") or []:
        r = sc.get("result") or {}
        if sc.get("name") != "peer-down" or "recovered_after_ms" not in r:
            continue
        after = r["recovered_after_ms"]
        until = r.get("dead_node_traffic_until_ms")
        detail = (f"{r.get('offered_pps', sc['rate_pps']):,.0f} pps offered; "
                  f"{r['lost_after']:,} frames lost after the death"
                  + (f"; the last frames to the dead node {until:g} ms after it" if until is not None else ""))
        # Not recovered within the trial: reported as a target missed, never left out.
        out.append({"name": "dead node routed around under load (peer-down)", "metric": "ms to ≥ "
                    f"{r['recovered_share']:.0%} received again", "value": after if after is not None else
                    f"not within {r['watched_after_ms']:g} ms",
                    "goal": scen.PeerDown.TARGET_MS, "op": "<=",
                    "met": after is not None and after <= scen.PeerDown.TARGET_MS, "detail": detail})
    miss = services.worst(sv, "BM_EncryptWithServicesNotMatching")
    plain = miss and services.find(sv, "BM_EncryptPlain", miss["flows"])
    each = [f"{flows_text(r['flows'])} {r['ratio']:.2f}×"
            for r in services.rows(sv, "BM_EncryptWithServicesNotMatching") if "ratio" in r]
    add("traffic not for a service vs plain encrypt", "÷ plain cycles/pkt (no port)", miss and miss["cyc_pkt"],
        plain and plain["cyc_pkt"], 1.05, "<=", f"informative; 1,000 frontends, none matching: {', '.join(each)}",
        informative=True)
    port = services.worst(sv, "BM_EncryptWithServicesOnTheirPort")
    plain = port and services.find(sv, "BM_EncryptPlain", port["flows"])
    each = [f"{flows_text(r['flows'])} {r['ratio']:.2f}×"
            for r in services.rows(sv, "BM_EncryptWithServicesOnTheirPort") if "ratio" in r]
    add("traffic to a service's port, not to a VIP, vs plain encrypt", "÷ plain cycles/pkt (no port)",
        port and port["cyc_pkt"], plain and plain["cyc_pkt"], 1.05, "<=",
        f"informative; the port bitmap lets it through, the VIP filter stops it: {', '.join(each)}", informative=True)
    return out


def telemetry_target(p: dict) -> dict:
    """Issue 7's target from Bench.telemetry_paired's entry: the median
    round's telemetry-on ÷ plain rate against telemetry.GOAL."""
    t = p["telemetry"]
    fl = t["flow_logs"]
    how = (f"metrics scraped every {t['scrape_interval_s']:g} s, flow logs (sample {fl['sample']}), "
           f"idle capture: {t['capture']}")
    return {"name": f"encrypt {p['frame_size']} B with telemetry on vs off (overload, by turns)",
            "metric": f"on ÷ off rate, median of {len(p['ratios'])} rounds", "value": p["median_ratio"],
            "goal": telemetry.GOAL, "op": ">=", "met": p["median_ratio"] >= telemetry.GOAL,
            "detail": f"rounds' ratios {p['min_ratio']:.2f}–{p['max_ratio']:.2f}; {how}"}


def fmt(pps: Optional[float]) -> str:
    return "—" if pps is None else f"{pps / 1e6:.3f} Mpps"


def parse_args(argv):
    p = argparse.ArgumentParser(prog="meshwire_perf", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--build", default=str(ROOT / "build"), help="meson build folder (default: build)")
    p.add_argument("--out", help="results folder (default: perf/results/<UTC time>)")
    p.add_argument("--quick", action="store_true", help="smoke run: one size, short trials (make test)")
    p.add_argument("--trial-s", type=float, help="trial length in seconds (default 0.5; quick 0.1)")
    p.add_argument("--drain-s", type=float, default=0.05, help="receive time after each trial")
    p.add_argument("--resolution", type=float, default=0.02, help="binary search stops at this fraction of the top rate")
    p.add_argument("--pdr-loss", type=float, default=0.005, help="loss allowed at PDR (default 0.5 %%)")
    p.add_argument("--max-trials", type=int, help="trials per search point at most (default 20; quick 8)")
    p.add_argument("--workers", type=int, default=1, help="meshwire workers")
    p.add_argument("--skip", action="append", default=[], choices=["meshwire", "ipsec-secgw", "testpmd"],
                   help="leave a system out (repeatable)")
    p.add_argument("--no-crypto", action="store_true", help="skip the dpdk-test-crypto-perf bound")
    p.add_argument("--no-stages", action="store_true", help="skip the per-stage microbenchmarks (services too)")
    p.add_argument("--no-services", action="store_true", help="skip the service-path microbenchmarks")
    p.add_argument("--no-telemetry", action="store_true", help="skip the telemetry pair (issue 7)")
    p.add_argument("--only", choices=["telemetry"], help="run this part alone: telemetry, the encrypt path at 64 B "
                   "with telemetry on and off by turns")
    p.add_argument("--scenarios", nargs="*", default=None, help=f"of {sorted(scen.SCENARIOS)} (default: all)")
    p.add_argument("--secgw-build", default="/var/tmp/meshwire-secgw-build",
                   help="where ipsec-secgw is built from dpdk-doc's sources (reused between runs)")
    p.add_argument("--paired", type=int, help="rounds of meshwire and each baseline measured by turns "
                   "(default 5; quick 1)")
    p.add_argument("--keep", action="store_true", help="keep the process logs and configs")
    args = p.parse_args(argv)
    if args.trial_s is None:
        args.trial_s = 0.1 if args.quick else 0.5
    if args.max_trials is None:
        args.max_trials = 8 if args.quick else 20
    if args.paired is None:
        args.paired = 1 if args.quick else 5
    if args.only == "telemetry":
        args.no_crypto = args.no_stages = True
        args.scenarios = []
        if args.no_telemetry:
            p.error("--only telemetry and --no-telemetry contradict each other")
    if args.scenarios is None:
        args.scenarios = list(scen.SCENARIOS)  # steady first: the control
    for s in args.scenarios:
        if s not in scen.SCENARIOS:
            p.error(f"--scenarios: unknown scenario {s!r} (known: {', '.join(sorted(scen.SCENARIOS))})")
    return args


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    out = Path(args.out) if args.out else ROOT / "perf" / "results" / time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    bench = Bench(args)
    log(f"meshwire-perf: {'quick' if args.quick else 'full'} run, results in {out}")
    results = bench.run()
    written = report.write_all(results, out)
    latest = out.parent / "latest"
    if out.parent == ROOT / "perf" / "results":
        if latest.is_symlink() or latest.exists():
            latest.unlink()
        latest.symlink_to(out.name)
    met = sum(1 for t in results["targets"] if t["met"])
    log(f"done in {results['duration_s']} s: {met} of {len(results['targets'])} targets met; "
        f"report {written['markdown']}")
    for e in results["errors"]:
        print(f"meshwire-perf: error: {e}", file=sys.stderr)
    return 1 if results["errors"] else 0
