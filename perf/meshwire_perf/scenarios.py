"""Scenarios: a trial during which something happens to the system under
test, measured from the generator's timeline of received frames.

A scenario names its system, traffic, frame size and rate, and a `change`
that runs in a thread `at_s` seconds into the trial while the generator
keeps sending. The result is the loss, the longest stretch without a
received frame (time to recover), and the per-bin timeline for a plot.

New ones subclass Scenario and implement change(); register them in
SCENARIOS. Most share the suite's running meshwire; one that needs another
setup (peer-down: two peers, liveness on, a Service) says so with
`own_system` and builds it in system(), which the bench starts for it alone.
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional


@dataclass
class Context:
    """What a scenario may act on: the running system and generator."""
    system: object            # a systems.*Dut, started
    generator: object         # processes.Generator, connected
    ndr_pps: Optional[float]  # a measured NDR for the same traffic, if the caller has one


class Scenario:
    name = "scenario"
    description = ""
    traffic = "encrypt/ipv4-udp"
    frame_size = 64
    at_s = 1.0          # when the change happens, from the start of the trial
    duration_s = 3.0
    bin_s = 0.01
    rate_pps = 50_000.0           # used without an NDR
    ndr_fraction: Optional[float] = None  # else this fraction of the NDR
    lead_s = 0.0        # the traffic's background streams alone before the trial's clock starts
    # Runs on a system of its own (system()), not on the suite's meshwire;
    # the bench warms it up with warm_up_traffic first.
    own_system = False
    warm_up_traffic: Optional[str] = None

    def system(self, topo, binary: Path, workers: int):
        """The system under test of an own_system scenario, not started."""
        raise NotImplementedError

    def rate(self, ctx: Context) -> float:
        if self.ndr_fraction is not None and ctx.ndr_pps:
            return self.ndr_fraction * ctx.ndr_pps
        return self.rate_pps

    def change(self, ctx: Context) -> dict:
        """Acts on the system under test; returns facts worth reporting."""
        raise NotImplementedError

    def run(self, ctx: Context) -> dict:
        rate = self.rate(ctx)
        facts: dict = {}
        errors: list[str] = []

        def act():
            time.sleep(self.lead_s + self.at_s)
            try:
                facts.update(self.change(ctx))
            except Exception as e:  # reported, not raised from a thread
                errors.append(f"{type(e).__name__}: {e}")

        thread = threading.Thread(target=act, name=f"scenario-{self.name}")
        thread.start()
        try:
            r = ctx.generator.trial(self.traffic, self.frame_size, rate, self.duration_s,
                                    drain_s=0.2, bin_s=self.bin_s, lead_s=self.lead_s)
        finally:
            thread.join()
        if errors:
            raise RuntimeError(f"scenario {self.name}: change failed: {errors[0]}")
        return {"name": self.name, "description": self.description, "traffic": self.traffic,
                "frame_size": self.frame_size, "rate_pps": rate, "at_s": self.at_s,
                "result": self.summarize(r), **({"facts": facts} if facts else {})}

    def summarize(self, r: dict) -> dict:
        """The trial's result as the report keeps it."""
        return timeline_summary(r, self.at_s)


def timeline_summary(r: dict, at_s: float = 0.0) -> dict:
    """Loss, and the longest run of empty bins after the first received
    frame within the sending window (the ramp at the start is not a stall;
    a stall that lasts to the end of the window counts, and then
    `recovered` is false), plus the timeline itself."""
    bins = r["rx_bins"]
    bin_s = r["bin_s"]
    sent_bins = min(int(round(r["duration_s"] / bin_s)), len(bins))
    window = bins[:sent_bins]
    first = next((i for i, n in enumerate(window) if n), None)
    longest = run = 0
    if first is not None:
        for n in window[first:]:
            run = run + 1 if n == 0 else 0
            longest = max(longest, run)
    recovered = first is not None and run == 0
    return {"loss": r["loss"], "attempted": r["attempted"], "received": r["received"],
            "lost": max(r["attempted"] - r["received"], 0),
            "longest_gap_ms": round(longest * bin_s * 1000, 3), "recovered": recovered,
            "latency_ns": r.get("latency_ns"), "bins_ms": bin_s * 1000, "rx_per_bin": bins}


class SteadyControl(Scenario):
    """Nothing happens: the control run for the others (its longest gap is
    the noise floor of this machine at this rate)."""
    name = "steady"
    description = "no change: the noise floor for the scenarios below"

    def change(self, ctx: Context) -> dict:
        return {}


class DataplaneRestart(Scenario):
    """meshwire-dataplane killed (SIGKILL) and started again in the middle
    of traffic: the time until frames flow again is the longest gap."""
    name = "dataplane-restart"
    description = "SIGKILL the data plane mid-trial and start it again; longest gap = time to recover"
    duration_s = 4.0

    def change(self, ctx: Context) -> dict:
        t = time.monotonic()
        ctx.system.proc.kill()
        killed = time.monotonic()
        ctx.system.start()
        return {"restart_s": round(time.monotonic() - killed, 3), "kill_s": round(killed - t, 3)}


class KeyChange(Scenario):
    """The outbound SA replaced by one with another key (an Apply through the
    control API, as the controller does when it rotates) at half the NDR:
    nothing should be lost (the old SA's packets in flight are already
    encrypted, and the sink knows both)."""
    name = "key-change"
    description = "the outbound SA changes key mid-trial (Apply, new generation) at 50 % of NDR; target: no loss"
    ndr_fraction = 0.5

    def change(self, ctx: Context) -> dict:
        took = ctx.system.change_keys()
        time.sleep(0.2)  # traffic goes on under the new SA
        return {"apply_s": round(took, 4), "outbound_after": ctx.system.outbound_sas()}


class ApplyUnchanged(KeyChange):
    """The same state applied again as a new generation, at the key change's
    rate: what any Apply costs the traffic on this machine, without a key
    change (the SA and its sequence numbers stay). Key-change's control."""
    name = "apply-unchanged"
    description = "the same state applied again (new generation, no key change) at 50 % of NDR: key-change's control"

    def change(self, ctx: Context) -> dict:
        before = ctx.system.outbound_sas()
        took = ctx.system.change_keys(same=True)
        time.sleep(0.2)
        return {"apply_s": round(took, 4), "outbound_before": before, "outbound_after": ctx.system.outbound_sas()}


class PeerDown(Scenario):
    """Routing around a dead node under load: node1 balances a UDP Service
    over two backends on node2 and two on node3 (MeshwireServiceDut); at_s
    into the trial node2 dies: the generator stops its keepalives and
    ignores what is still sent to it (a dead node receives nothing). node1
    should find node2 down 300-400 ms later (3 missed 100 ms keepalives),
    close the connections to its backends, and their next packets should
    pick node3's: the received rate falls to about node3's share at at_s
    and is back to all of the offered rate once node2's flows have moved.
    recovered_after_ms is that time from at_s (target: below 1 s).

    The rate is fixed, one the data plane sustains without loss here
    (about a third of what it forwards on this path flat out)."""
    name = "peer-down"
    description = ("a Service's backends on two nodes; one node dies under load; "
                   "time until the whole rate is received again (target < 1 s)")
    traffic = "peer-down/ipv4-udp"
    warm_up_traffic = "services/ipv4-udp"
    own_system = True
    rate_pps = 300_000.0
    duration_s = 3.0
    lead_s = 0.3            # both peers heard from (up) before the flows start
    recovered_share = 0.95  # of the frames sent in a bin, received ...
    hold_bins = 5           # ... in this many bins in a row
    DEAD, ALIVE = "node2", "node3"
    TARGET_MS = 1000

    def system(self, topo, binary: Path, workers: int):
        from .systems import MeshwireServiceDut
        return MeshwireServiceDut(topo, binary, workers, node2_dies_at_s=self.at_s)

    def run(self, ctx: Context) -> dict:
        before, log_mark = ctx.system.counters(), ctx.system.log_size()
        out = super().run(ctx)
        after = ctx.system.counters()
        facts = out.setdefault("facts", {})
        facts["counters"] = {k: after.get(k, 0) - before.get(k, 0)
                             for k in ("service_new_flows", "service_dnat_packets", "peer_down", "no_backend",
                                       "keepalives_sent", "conntrack_full")}
        # The dead node's first down line since the trial began (the other
        # node goes down too once the trial's background stops).
        logged = [e for e in ctx.system.peer_down_logs(log_mark) if e["peer"] == self.DEAD]
        facts["dead_node_down_logged_silent_ms"] = logged[0]["silent_ms"] if logged else None
        return out

    def change(self, ctx: Context) -> dict:
        # The generator itself killed node2 at at_s (its trial clock); here
        # the data plane is asked what it made of it once it should know.
        time.sleep(0.7)
        return {"peers_at_700_ms": ctx.system.peers()}

    def summarize(self, r: dict) -> dict:
        return {**timeline_summary(r, self.at_s),
                **recovery(r, self.at_s, self.DEAD, self.ALIVE, self.recovered_share, self.hold_bins)}


def recovery(r: dict, at_s: float, dead: str, alive: str, share: float = 0.95, hold_bins: int = 5) -> dict:
    """How the trial went through the death of `dead` at at_s, from the
    generator's per-bin counts (tx_bins: frames sent; sinks[node].rx_bins:
    frames received from the system for that node, ignored_bins: sent to a
    node after it died).

    recovered_after_ms: from at_s to the start of the first run of
    `hold_bins` bins in which, together, at least `share` of the frames
    sent were received (None if there is none before the sending ends).
    Together, not each: on a shared VM frames are often late by a bin.
    dead_node_traffic_until_ms: from at_s to the end of the last bin in
    which the system still sent frames to the dead node (its down detection
    as seen on the wire)."""
    bin_s = r["bin_s"]
    tx, rx = r["tx_bins"], r["rx_bins"]
    sinks = r.get("sinks") or {}
    sent_bins = min(int(round(r["duration_s"] / bin_s)), len(tx))
    first = max(math.ceil(at_s / bin_s - 1e-9), 0)
    recovered_at = None
    for i in range(first, sent_bins - hold_bins + 1):
        sent, got = sum(tx[i:i + hold_bins]), sum(rx[i:i + hold_bins])
        if sent > 0 and got >= share * sent:
            recovered_at = i
            break
    dead_rx = (sinks.get(dead) or {}).get("ignored_bins") or []
    last_dead = max((i for i in range(first, len(dead_rx)) if dead_rx[i]), default=None)
    alive_rx = (sinks.get(alive) or {}).get("rx_bins") or [0] * len(rx)
    after = range(recovered_at, sent_bins) if recovered_at is not None else range(0)
    return {
        "recovered_after_ms": None if recovered_at is None else round((recovered_at * bin_s - at_s) * 1000, 3),
        "watched_after_ms": round((sent_bins * bin_s - at_s) * 1000, 3),
        # What the generator managed to send (it skips what it owes when its CPU is taken away).
        "offered_pps": round(sum(tx[:sent_bins]) / (sent_bins * bin_s), 1) if sent_bins else 0.0,
        "recovered_share": share, "recovered_hold_bins": hold_bins,
        "lost_before": max(sum(tx[:first]) - sum(rx[:first]), 0),
        "lost_after": max(sum(tx[first:]) - sum(rx[first:]), 0),
        "dead_node_traffic_until_ms": None if last_dead is None else round(((last_dead + 1) * bin_s - at_s) * 1000, 3),
        "ignored": r.get("ignored", 0), "dummies": r.get("dummies", 0), "unexpected": r.get("unexpected", 0),
        "background": r.get("background", []),
        "by_node": {name: {"received": t["received"], "ignored": t["ignored"], "keepalives": t["dummies"]}
                    for name, t in sinks.items()},
        "alive_share_after_recovery": (round(sum(alive_rx[i] for i in after) / max(sum(rx[i] for i in after), 1), 4)
                                       if recovered_at is not None else None),
        "tx_per_bin": tx,
        "rx_per_bin_by_node": {name: t["rx_bins"] for name, t in sinks.items()},
        "ignored_per_bin_by_node": {name: t["ignored_bins"] for name, t in sinks.items() if any(t["ignored_bins"])},
    }


SCENARIOS: dict[str, Callable[[], Scenario]] = {
    "steady": SteadyControl,
    "dataplane-restart": DataplaneRestart,
    "key-change": KeyChange,
    "apply-unchanged": ApplyUnchanged,
    "peer-down": PeerDown,
}
