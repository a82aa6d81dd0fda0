"""Scenarios: a trial during which something happens to the system under
test, measured from the generator's timeline of received frames.

A scenario names its system, traffic, frame size and rate, and a `change`
that runs in a thread `at_s` seconds into the trial while the generator
keeps sending. The result is the loss, the longest stretch without a
received frame (time to recover), and the per-bin timeline for a plot.

New ones (time to recover from a dead peer) subclass Scenario and
implement change(); register them in SCENARIOS.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
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
            time.sleep(self.at_s)
            try:
                facts.update(self.change(ctx))
            except Exception as e:  # reported, not raised from a thread
                errors.append(f"{type(e).__name__}: {e}")

        thread = threading.Thread(target=act, name=f"scenario-{self.name}")
        thread.start()
        try:
            r = ctx.generator.trial(self.traffic, self.frame_size, rate, self.duration_s,
                                    drain_s=0.2, bin_s=self.bin_s)
        finally:
            thread.join()
        if errors:
            raise RuntimeError(f"scenario {self.name}: change failed: {errors[0]}")
        return {"name": self.name, "description": self.description, "traffic": self.traffic,
                "frame_size": self.frame_size, "rate_pps": rate, "at_s": self.at_s,
                "result": timeline_summary(r, self.at_s), **({"facts": facts} if facts else {})}


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


SCENARIOS: dict[str, Callable[[], Scenario]] = {
    "steady": SteadyControl,
    "dataplane-restart": DataplaneRestart,
    "key-change": KeyChange,
    "apply-unchanged": ApplyUnchanged,
}
