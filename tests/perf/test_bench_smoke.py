"""The benchmark harness end to end, in seconds: `python -m meshwire_perf
--quick` brings up meshwire-dataplane and testpmd on memif, searches NDR/PDR
at 64 B, runs the scenarios and writes JSON, Markdown and plots. No timing
thresholds: it checks that every part measured something real."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BUILD = Path(os.environ.get("BUILD", ROOT / "build"))
if not BUILD.is_absolute():
    BUILD = ROOT / BUILD


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    if not (BUILD / "perf" / "gen" / "meshwire-perf").exists():
        pytest.fail(f"{BUILD}/perf/gen/meshwire-perf is not built")
    out = tmp_path_factory.mktemp("bench")
    proc = subprocess.run([sys.executable, "-m", "meshwire_perf", "--quick", "--build", str(BUILD),
                           "--out", str(out)], cwd=ROOT / "perf", capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out, json.loads((out / "results.json").read_text()), proc.stdout


def test_every_point_moved_traffic(quick_run):
    _, results, _ = quick_run
    got = {(e["system"], e["suite"], e["traffic"]) for e in results["results"]}
    assert got == {("meshwire", "encrypt", "ipv4-udp"), ("meshwire", "decrypt", "ipv4-udp"),
                   ("meshwire", "local", "ipv6-tcp"), ("testpmd", "local", "ipv4-udp")}
    for e in results["results"]:
        assert e["trials"], e
        best = max(t["received_pps"] for t in e["trials"])
        assert best > 0, e
        assert all(t["unexpected"] == 0 and t["bad_icv"] == 0 for t in e["trials"]), e
        assert e["pdr"] is not None, f"{e['system']} {e['suite']}: no rate passed PDR"
        lat = e["pdr"]["latency_ns"]
        assert lat["samples"] > 0 and 0 < lat["p50"] <= lat["p99"] <= lat["max"]


def test_baselines_and_stages_measured(quick_run):
    _, results, _ = quick_run
    assert results["crypto_bound"]["64"]["mops"] > 0
    st = results["stages"]["64"]
    assert st["raw_gcm_pps"] > 0 and st["enc_cyc_pkt"] > 0 and st["dec_cyc_pkt"] > 0
    # callgrind: each stage costs more than the AES-GCM inside it
    assert st["local_instr_pkt"] > st["gcm_enc_instr_pkt"] > 0
    assert st["uplink_instr_pkt"] > st["gcm_dec_instr_pkt"] > 0
    # The idle capture costs the stage something, natively less than as
    # libpcap's program.
    ic = results["idle_capture"]
    assert ic["none"] < ic["native"] < ic["libpcap"], ic
    assert results["errors"] == []


def test_scenarios_ran(quick_run):
    _, results, _ = quick_run
    by_name = {s["name"]: s for s in results["scenarios"]}
    assert set(by_name) == {"steady", "dataplane-restart", "key-change", "apply-unchanged", "peer-down"}
    steady = by_name["steady"]["result"]
    assert steady["received"] > 0 and steady["recovered"]
    restart = by_name["dataplane-restart"]
    # The data plane really went away and came back: a gap, then traffic again.
    assert restart["result"]["longest_gap_ms"] > 0
    assert restart["result"]["recovered"], restart["result"]
    assert restart["facts"]["restart_s"] > 0
    keys = by_name["key-change"]
    assert keys["facts"]["apply_s"] > 0 and keys["result"]["received"] > 0
    (after,) = keys["facts"]["outbound_after"]
    assert after["spi"] == 0x1301 and after["seq"] > 0  # the new SA carries the traffic
    assert keys["result"]["recovered"], keys["result"]
    same = by_name["apply-unchanged"]
    (was,), (kept,) = same["facts"]["outbound_before"], same["facts"]["outbound_after"]
    # A new generation with the same SA object: its sequence numbers went on
    # (a new SA would have started over from 0).
    assert kept["spi"] == was["spi"] and kept["seq"] >= was["seq"] > 0 and same["result"]["received"] > 0
    # On its own data plane (two peers, liveness on, a Service): node2 died,
    # was found down, and its flows moved to node3 (test_peer_down.py has more).
    down = by_name["peer-down"]
    assert down["facts"]["peers_at_700_ms"]["node2"]["liveness"] == "down"
    assert down["result"]["recovered_after_ms"] is not None, down["result"]["watched_after_ms"]


def test_report_written(quick_run):
    out, results, stdout = quick_run
    md = (out / "report.md").read_text()
    assert "encrypt" in md and "testpmd" in md
    pngs = sorted(p.name for p in out.glob("*.png"))
    assert "throughput_encrypt.png" in pngs and "scenario_dataplane-restart.png" in pngs
    assert "scenario_peer-down.png" in pngs
    for p in out.glob("*.png"):
        assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "targets met" in stdout


def test_paired_rounds_measured_both(quick_run):
    _, results, _ = quick_run
    (p, _telemetry, *services) = results["paired"]
    assert (p["suite"], p["baseline"], p["frame_size"]) == ("local", "testpmd", 64)
    (r,) = p["rounds"]
    assert r["meshwire_pps"] > 0 and r["baseline_pps"] > 0
    assert p["median_ratio"] == pytest.approx(r["meshwire_pps"] / r["baseline_pps"], rel=1e-3)
    # Services through the ports: the ClusterIP and plain, 1 and 65,536 client flows.
    assert [(s["suite"], s["baseline"], s["flows"]) for s in services] == [("services", "pod-to-pod", 1),
                                                                         ("services", "pod-to-pod", 65_536)]
    for s in services:
        (r,) = s["rounds"]
        assert r["meshwire_pps"] > 0 and r["baseline_pps"] > 0
    names = [t["name"] for t in results["targets"]]
    assert "service DNAT 64 B vs plain encrypted forwarding, 65,536 flows (through the ports, by turns)" in names


def test_telemetry_turns_ran_with_telemetry_on(quick_run):
    _, results, _ = quick_run
    (tel,) = [p for p in results["paired"] if "telemetry" in p]
    (r,) = tel["rounds"]
    assert r["meshwire_pps"] > 0 and r["baseline_pps"] > 0
    (turn,) = tel["telemetry"]["turns"]
    # The controller's scrape of the real data plane ran (and none failed, or
    # the turn would be an error), and plain pod traffic made no flow record.
    assert turn["scrapes"] >= 1 and turn["exposition_bytes"] > 1000
    assert turn["flow_log_lines"] == 0
    assert turn["capture"] in ("idle", "not available in this build")
    names = [t["name"] for t in results["targets"]]
    assert "encrypt 64 B with telemetry on vs off (overload, by turns)" in names
