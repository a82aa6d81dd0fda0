#!/usr/bin/python3
"""Turns a meshwire_perf results JSON into a Markdown report and PNG plots.

    load(path)                -> dict   (the results document, version checked)
    markdown(results)         -> str    (GitHub-flavoured Markdown)
    plots(results, outdir)    -> [Path] (throughput_<suite>.png, latency.png,
                                         scenario_<name>.png)
    write_all(results, outdir)-> {"json": Path, "markdown": Path, "plots": [Path]}

Command line:  report.py results.json [--out DIR]
regenerates report.md and the plots (and a pretty results.json) in DIR,
which defaults to the folder holding results.json.

Conventions used in the report:
  * Mpps = pps / 1e6, Gbit/s = bps / 1e9 with bps exactly as the harness
    reported it; latency is shown in µs (the JSON holds ns).
  * Frame sizes sort numerically, "imix" (and any other named mix) last.
  * A missing measurement (null ndr/pdr, absent field) renders as "—".
  * matplotlib is only imported by plots(), so markdown() works without it.
"""

import argparse
import json
import math
import os
import re
import sys
import tempfile
import textwrap
from pathlib import Path

FORMAT_VERSION = 1
DASH = "—"
GEN_MARK = "†"
GEN_FOOTNOTE = f"{GEN_MARK} generator-bound: the generator could not offer more."

SUITE_ORDER = ("encrypt", "decrypt", "local")
SUITE_TITLES = {
    "encrypt": "pod → ESP",
    "decrypt": "ESP → pod",
    "local": "same-node pod → pod",
}
SYSTEM_ORDER = ("meshwire", "ipsec-secgw", "testpmd")
TRAFFIC_ORDER = ("ipv4-udp", "ipv6-udp", "ipv4-tcp", "ipv6-tcp")
# Baseline a suite's ratio column compares against: another system in the
# same suite, or (decrypt) meshwire's own encrypt result at the same point.
BASELINES = {
    "encrypt": {"suite": "encrypt", "system": "ipsec-secgw"},
    "local": {"suite": "local", "system": "testpmd"},
    "decrypt": {"suite": "encrypt", "system": "meshwire"},
}
PERCENTILES = ("p50", "p90", "p99", "p99.9")
LATENCY_SIZES = (64, 1400)
TRAFFIC_MARKERS = ("o", "^", "v", "D", "P", "X")
DPI = 110


# --------------------------------------------------------------------------
# Loading and indexing


def load(path):
    """Reads a results file; raises ValueError if it is not one we know."""
    with open(path, encoding="utf-8") as f:
        data = json.load(f)
    if not isinstance(data, dict) or "meshwire_perf" not in data:
        raise ValueError(f"{path}: not a meshwire_perf results file "
                         "(no \"meshwire_perf\" key)")
    if data["meshwire_perf"] != FORMAT_VERSION:
        raise ValueError(f"{path}: meshwire_perf format {data['meshwire_perf']!r}"
                         f" is not supported (this report knows {FORMAT_VERSION})")
    return data


def _size_norm(size):
    """64, "64" and 64.0 are the same frame size; names stay strings."""
    if isinstance(size, bool):
        return str(size)
    if isinstance(size, int):
        return size
    if isinstance(size, float) and size.is_integer():
        return int(size)
    if isinstance(size, str) and size.strip().isdigit():
        return int(size.strip())
    return str(size)


def size_key(size):
    """Sort key: numbers ascending, then other names, "imix" last."""
    size = _size_norm(size)
    if isinstance(size, int):
        return (0, size, "")
    name = size.lower()
    return (2 if name == "imix" else 1, 0, name)


def _size_label(size):
    return str(_size_norm(size))


def _ordered(values, preferred):
    """Known names in their preferred order, then the rest alphabetically."""
    values = set(values)
    head = [v for v in preferred if v in values]
    return head + sorted(values - set(head), key=str)


def _index(results):
    """{(suite, system, traffic, size): result}; a later duplicate wins."""
    idx = {}
    for r in results.get("results") or []:
        key = (r.get("suite"), r.get("system"), r.get("traffic"),
               _size_norm(r.get("frame_size")))
        idx[key] = r
    return idx


def _suites(idx):
    return _ordered({k[0] for k in idx}, SUITE_ORDER)


def _num(x):
    """A finite float, or None."""
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _get(result, point, field):
    """result[point][field] as a number, None when any part is missing."""
    if not result:
        return None
    p = result.get(point)
    if not isinstance(p, dict):
        return None
    return _num(p.get(field))


def _latency(result, point, pct):
    if not result or not isinstance(result.get(point), dict):
        return None
    lat = result[point].get("latency_ns")
    if not isinstance(lat, dict):
        return None
    return _num(lat.get(pct))


def _crypto(results, size):
    """The crypto-bound entry for a frame size (same number), or None."""
    for k, v in (results.get("crypto_bound") or {}).items():
        if _size_norm(k) == _size_norm(size) and isinstance(v, dict):
            return v
    return None


# --------------------------------------------------------------------------
# Formatting


def _fmt(x, digits):
    x = _num(x)
    return DASH if x is None else f"{x:.{digits}f}"


def _mpps(pps):
    pps = _num(pps)
    return DASH if pps is None else f"{pps / 1e6:.2f}"


def _gbps(bps):
    bps = _num(bps)
    return DASH if bps is None else f"{bps / 1e9:.2f}"


def _us(ns):
    ns = _num(ns)
    return DASH if ns is None else f"{ns / 1e3:.1f}"


def _pct(frac, digits=1):
    frac = _num(frac)
    return DASH if frac is None else f"{frac * 100:.{digits}f}%"


def _ratio(a, b):
    a, b = _num(a), _num(b)
    if a is None or b is None or b <= 0:
        return DASH
    return f"{a / b:.2f}×"


def _value(v):
    """A target value or goal: numbers compactly, anything else as text."""
    n = _num(v)
    if n is None:
        return DASH if v is None else _cell(v)
    if n.is_integer() and abs(n) < 1e15:
        return str(int(n))
    return f"{n:.4g}" if abs(n) >= 1e-3 else f"{n:.3g}"


def _cell(text):
    """Text safe inside a Markdown table cell."""
    text = str(text).replace("\r", " ").replace("\n", " ")
    return text.replace("|", "\\|")


def _table(header, rows, align=None):
    """align: one letter per column, "l" or "r"; default first left, rest right."""
    align = align or "l" + "r" * (len(header) - 1)
    lines = ["| " + " | ".join(header) + " |",
             "|" + "|".join("---" if a == "l" else "---:" for a in align) + "|"]
    for row in rows:
        lines.append("| " + " | ".join(row) + " |")
    return lines


OPS = {">=": "≥", "<=": "≤", ">": ">", "<": "<", "==": "=", "=": "="}


def _met(t):
    met = t.get("met")
    if met is True:
        return "✅"
    if met is False:
        return "❌"
    return DASH


def _duration(seconds):
    s = _num(seconds)
    if s is None:
        return DASH
    m, sec = divmod(int(round(s)), 60)
    h, m = divmod(m, 60)
    human = f"{h} h {m} min" if h else (f"{m} min {sec} s" if m else f"{sec} s")
    return f"{s:g} s ({human})" if m or h else f"{s:g} s"


# --------------------------------------------------------------------------
# Markdown


def _header(results):
    host = results.get("host") or {}
    st = results.get("settings") or {}
    out = ["# meshwire benchmark report", ""]
    out.append(f"Started {_cell(results.get('started') or DASH)}, "
               f"took {_duration(results.get('duration_s'))}.")
    out.append("")

    cpu = _cell(host.get("cpu_model") or DASH)
    extra = []
    if host.get("cpus") is not None:
        extra.append(f"{host['cpus']} CPUs")
    tsc = _num(host.get("tsc_hz"))
    if tsc:
        extra.append(f"TSC {tsc / 1e9:.3f} GHz")
    if extra:
        cpu += " (" + ", ".join(extra) + ")"
    known_host = {"cpus", "cpu_model", "tsc_hz", "kernel", "dpdk", "git"}
    rows = [["CPU", cpu],
            ["Kernel", _cell(host.get("kernel") or DASH)],
            ["DPDK", _cell(host.get("dpdk") or DASH)],
            ["meshwire git", _cell(host.get("git") or DASH)]]
    rows += [[_cell(k), _cell(v)] for k, v in host.items() if k not in known_host]
    out += _table_left(["Host", ""], rows)
    out.append("")

    quick = st.get("quick")
    trial = _num(st.get("trial_s"))
    rows = [
        ["Trial length", DASH if trial is None else f"{trial:g} s"],
        ["Search resolution", _value(st.get("resolution"))],
        ["PDR loss allowance", _pct(st.get("pdr_loss"), 2)],
        ["Quick mode", DASH if quick is None else ("yes — indicative numbers only" if quick else "no")],
        ["DUT lcores", _cell(st.get("dut_lcores") if st.get("dut_lcores") is not None else DASH)],
        ["Generator lcore", _cell(st.get("generator_lcore") if st.get("generator_lcore") is not None else DASH)],
    ]
    known_st = {"trial_s", "resolution", "pdr_loss", "quick", "dut_lcores", "generator_lcore"}
    rows += [[_cell(k), _cell(v)] for k, v in st.items() if k not in known_st]
    out += _table_left(["Setting", ""], rows)
    out.append("")
    out.append("NDR: highest rate with no loss. PDR: highest rate with loss at most "
               f"{_pct(st.get('pdr_loss'), 2)}. Mpps and Gbit/s are as the harness "
               "measured them; latency is at the NDR rate, in µs.")
    return out


def _table_left(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|---|---|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return lines


def _targets(results):
    targets = results.get("targets") or []
    if not targets:
        return []
    met = sum(1 for t in targets if t.get("met") is True)
    out = ["## Targets", "", f"{met} of {len(targets)} met.", ""]
    rows = []
    for t in targets:
        op = t.get("op")
        goal = _value(t.get("goal"))
        goal = f"{OPS.get(op, _cell(op))} {goal}" if op else goal
        rows.append([_met(t), _cell(t.get("name") or DASH), _cell(t.get("metric") or DASH),
                     _value(t.get("value")), goal, _cell(t.get("detail") or "")])
    out += _table(["Met", "Target", "Metric", "Value", "Goal", "Detail"], rows, "lllrrl")
    return out


def _baseline_pps(idx, suite, traffic, size, point="ndr"):
    b = BASELINES.get(suite)
    if not b:
        return None
    return _get(idx.get((b["suite"], b["system"], traffic, size)), point, "pps")


def _suite_section(results, idx, suite):
    keys = [k for k in idx if k[0] == suite]
    systems = _ordered({k[1] for k in keys}, SYSTEM_ORDER)
    points = sorted({(k[2], k[3]) for k in keys},
                    key=lambda p: (_ordered({k[2] for k in keys}, TRAFFIC_ORDER).index(p[0]),
                                   size_key(p[1])))
    b = BASELINES.get(suite)
    ratio_systems = []
    if b:
        has_base = any(k[0] == b["suite"] and k[1] == b["system"] for k in idx)
        if has_base:
            ratio_systems = [s for s in systems if (suite, s) != (b["suite"], b["system"])]
    crypto_col = suite == "encrypt" and "meshwire" in systems and bool(results.get("crypto_bound"))

    title = SUITE_TITLES.get(suite)
    out = [f"## {suite}" + (f" ({title})" if title else ""), ""]
    header = ["Traffic", "Frame (B)"]
    for s in systems:
        header += [f"{s} NDR Mpps", f"{s} NDR Gbit/s", f"{s} PDR Mpps", f"{s} overload Mpps",
                   f"{s} p50 / p99 / p99.9 µs"]
    if b:
        base = b["system"] if b["suite"] == suite else f"{b['system']} {b['suite']}"
        header += [f"{s} ÷ {base} (NDR / PDR / overload)" for s in ratio_systems]
    if crypto_col:
        header.append("meshwire % of crypto bound")

    rows, gen_bound, notes = [], False, []
    for traffic, size in points:
        row = [_cell(traffic), _size_label(size)]
        for s in systems:
            r = idx.get((suite, s, traffic, size))
            ndr = _mpps(_get(r, "ndr", "pps"))
            if r and r.get("generator_bound"):
                ndr += f" {GEN_MARK}"
                gen_bound = True
            lat = [_latency(r, "ndr", p) for p in ("p50", "p99", "p99.9")]
            row += [ndr, _gbps(_get(r, "ndr", "bps")), _mpps(_get(r, "pdr", "pps")),
                    _mpps(_get(r, "overload", "pps")),
                    DASH if all(v is None for v in lat) else " / ".join(_us(v) for v in lat)]
            if r and r.get("note"):
                notes.append(f"- {_cell(traffic)} {_size_label(size)} B, {_cell(s)}: {_cell(r['note'])}")
        for s in ratio_systems:
            row.append(" / ".join(
                _ratio(_get(idx.get((suite, s, traffic, size)), point, "pps"),
                       _baseline_pps(idx, suite, traffic, size, point))
                for point in ("ndr", "pdr", "overload")))
        if crypto_col:
            c = _crypto(results, size)
            mops = _num(c.get("mops")) if c else None
            pps = _get(idx.get((suite, "meshwire", traffic, size)), "ndr", "pps")
            row.append(DASH if mops is None or pps is None or mops <= 0
                       else _pct(pps / (mops * 1e6)))
        rows.append(row)
    out += _table(header, rows, "lr" + "r" * (len(header) - 2))
    foot = []
    if gen_bound:
        foot.append(GEN_FOOTNOTE)
    if crypto_col:
        foot.append("% of crypto bound: meshwire NDR pps ÷ the crypto bound's ops/s at the "
                    "same number of bytes; crypto sizes are AEAD payload bytes, not frame bytes.")
    if foot:
        out.append("")
        out += [f + "  " if i < len(foot) - 1 else f for i, f in enumerate(foot)]
    if notes:
        out += ["", "Notes:", ""] + notes
    return out


def _crypto_section(results):
    cb = results.get("crypto_bound") or {}
    if not cb:
        return []
    out = ["## Crypto bound", "",
           "AEAD throughput of the crypto code alone, without packet I/O: a ceiling for the encrypt path.",
           ""]
    rows = []
    for size in sorted(cb, key=size_key):
        c = cb[size] if isinstance(cb[size], dict) else {}
        rows.append([_size_label(size), _fmt(c.get("mops"), 2), _fmt(c.get("gbps"), 2),
                     _fmt(c.get("cycles_per_op"), 1)])
    out += _table(["Size (B)", "Mops", "Gbit/s", "cycles/op"], rows)
    out += ["", "Crypto sizes are AEAD payload bytes."]
    return out


def _stages_section(results):
    st = results.get("stages") or {}
    if not st:
        return []
    out = ["## Fast-path stages (no ports)", "",
           "dp_micro_bench in the same run: bursts of 32 real mbufs through meshwire's stages, beside "
           "ipsec-mb's direct AES-128-GCM on the same bytes (medians).", ""]
    rows = []
    entries = [(_size_label(size), st[size]) for size in sorted(st, key=size_key)]
    entries += [(f"{_size_label(size)} (AVX2 path)", e)
                for size, e in sorted((results.get("stages_avx2") or {}).items(), key=lambda kv: size_key(kv[0]))]
    for label, e in entries:
        raw, enc = _num(e.get("raw_gcm_pps")), _num(e.get("encrypt_pps"))
        ec, dc = _num(e.get("enc_cyc_pkt")), _num(e.get("dec_cyc_pkt"))
        ei, di = _num(e.get("local_instr_pkt")), _num(e.get("uplink_instr_pkt"))
        gi, gd = _num(e.get("gcm_enc_instr_pkt")), _num(e.get("gcm_dec_instr_pkt"))
        rows.append([label, _mpps(raw), _mpps(enc),
                     DASH if raw is None or enc is None or raw <= 0 else _pct(enc / raw),
                     _fmt(ec, 0), _fmt(dc, 0), DASH if ec is None or dc is None or ec <= 0 else f"{dc / ec:.2f}",
                     DASH if ei is None else f"{ei:.0f} ({_fmt(gi, 0)} GCM)",
                     DASH if di is None else f"{di:.0f} ({_fmt(gd, 0)} GCM)",
                     DASH if ei is None or di is None or ei <= 0 else f"{di / ei:.2f}"])
    out += _table(["Frame (B)", "raw GCM Mpps", "encrypt stage Mpps", "stage ÷ raw", "encrypt cycles/pkt",
                   "decrypt cycles/pkt", "decrypt ÷ encrypt", "encrypt instr/pkt", "decrypt instr/pkt",
                   "decrypt ÷ encrypt (instr)"], rows)
    out += ["", "Instructions per packet are counted by callgrind (valgrind), so they do not depend on the "
            "machine's load; under valgrind ipsec-mb takes its AVX2 path (valgrind has no AVX-512)."]
    if results.get("stages_avx2"):
        out += ["", "\"AVX2 path\": the same run with MESHWIRE_IPSEC_MB_ARCH=avx2, ipsec-mb's code for CPUs "
                "without VAES (AES-GCM costs several times more per byte there)."]
    return out


def _scaling_section(results):
    sc = results.get("scaling") or {}
    if not sc:
        return []
    out = ["## Two workers (no ports)", "",
           "dp_micro_bench BM_WorkerScaling: the encrypt stage on one thread and on two, each pinned to its own "
           "CPU with a worker's own state over the node's shared tables. Scaling is the 2-thread aggregate "
           "over the 1-thread rate (2.00: the workers don't slow each other down); the control writes one "
           "shared cache line per packet. Medians.", ""]
    titles = {"per_worker": "per-worker state, bursts of 32", "per_worker_burst1": "per-worker state, 1 packet/burst",
              "shared_line": "control: one shared line written per packet"}
    rows = []
    for variant in ("per_worker", "per_worker_burst1", "shared_line"):
        v = sc.get(variant) or {}
        if not v:
            continue
        rows.append([titles[variant], _mpps(v.get("1")), _mpps(v.get("2")), _fmt(_num(v.get("scaling")), 2),
                     _fmt(_num(v.get("cpu_scaling")), 2)])
    out += _table(["Variant", "Mpps/thread, 1 thread", "Mpps/thread, 2 threads", "scaling",
                   "scaling (CPU time)"], rows, "lrrrr")
    return out


def _services_section(results):
    sv = results.get("services") or {}
    rows_in = [r for r in sv.get("rows") or [] if isinstance(r, dict)]
    if not rows_in:
        return []
    reps = sv.get("repetitions")
    out = ["## Services at 64 B (no ports)", "",
           "dp_micro_bench's service-path runs (perf/micro/service_path_bench.cc), on 1 or 100,000 established "
           "flows: the local stage on pod frames to a pod on the other node without services (`BM_EncryptPlain`), "
           "the same frames with 1,000 UDP frontends applied that they do not match (on another port, and on the "
           "frontends' port, `BM_EncryptWithServicesOnTheirPort`), frames to a VIP whose 4 "
           "backends are on that node (`BM_ServiceDnat`: lookup, DNAT, encrypt); the backends' replies through "
           "the uplink stage, plain (`BM_ReverseDecryptPlain`) and with the VIP put back (`BM_ServiceReverse`). "
           "TSC cycles per packet of the stage alone in its median burst, medians of "
           + (f"{_cell(reps)} interleaved repetitions" if reps else "the repetitions")
           + "; the ratio is to the baseline with the same flows, in the same run.", ""]
    rows = []
    for r in rows_in:
        label = f"`{_cell(r.get('benchmark') or DASH)}`"
        if not r.get("baseline"):
            label += " (baseline)"
        if r.get("frontend") is not None:
            label += f", frontend {_cell(r['frontend'])} of 1,000"
        flows = _num(r.get("flows"))
        ratio = _num(r.get("ratio"))
        rows.append([label, DASH if flows is None else f"{flows:,.0f}", _fmt(r.get("cyc_pkt"), 0),
                     _fmt(r.get("ns_pkt"), 0), "1" if not r.get("baseline") else
                     (DASH if ratio is None else f"{ratio:.2f}×")])
    out += _table(["Run", "Flows", "cycles/pkt", "ns/pkt", "÷ plain, same flows"], rows)
    return out


def _paired_section(results):
    paired = results.get("paired") or []
    if not paired:
        return []
    out = ["## meshwire and its baselines by turns", "",
           "Each round starts meshwire and the baseline afresh, one after the other (the order swapped every "
           "round), and keeps the best of their flat-out trials: a shared VM's slow drifts then hit both "
           "alike, and the median of the rounds' ratios is what the targets read. Services are the exception: "
           "one data plane, the same clients' frames to a ClusterIP (meshwire) and straight to one of its "
           "backends (`pod-to-pod`, plain encrypted forwarding) by turns. Telemetry: the same meshwire with "
           "telemetry on (the meshwire column) and off (the baseline's), each started afresh.", ""]
    rows = []
    for p in paired:
        rounds = p.get("rounds") or []
        mw = [_num(r.get("meshwire_pps")) for r in rounds]
        bl = [_num(r.get("baseline_pps")) for r in rounds]
        rows.append([f"{_cell(p.get('suite') or DASH)} {_cell(p.get('traffic') or '')}",
                     _size_label(p.get("frame_size")), _cell(p.get("baseline") or DASH), str(len(rounds)),
                     ", ".join(_mpps(x) for x in mw) or DASH, ", ".join(_mpps(x) for x in bl) or DASH,
                     _value(p.get("median_ratio")),
                     DASH if p.get("min_ratio") is None else f"{p['min_ratio']:.2f}–{p['max_ratio']:.2f}"])
    out += _table(["Traffic", "Frame (B)", "Baseline", "Rounds", "meshwire Mpps", "baseline Mpps",
                   "median ratio", "range"], rows, "lrlrllrr")
    for p in paired:
        if "telemetry" in p:
            out += [""] + _telemetry_note(p["telemetry"])
    return out


def _telemetry_note(t):
    """How telemetry was on, and what it did in each turn."""
    turns = t.get("turns") or []
    fl = t.get("flow_logs") or {}
    each = "; ".join(f"{_value(x.get('scrapes'))} scrapes of {_fmt(x.get('scrape_mean_ms'), 1)} ms "
                     f"(longest {_fmt(x.get('scrape_max_ms'), 1)} ms), {_value(x.get('flow_log_lines'))} flow log lines"
                     for x in turns)
    cpu = {side: ", ".join(_fmt(x.get("control_cpu_ms_per_s"), 0) for x in t.get(key) or [])
           for side, key in (("on", "turns"), ("off", "off_turns"))}
    return [f"Telemetry on: metrics scraped every {_value(t.get('scrape_interval_s'))} s (the controller's "
            f"scrape of the data plane, seven API calls), flow logs (sample {_value(fl.get('sample'))}, "
            f"max_per_second {_value(fl.get('max_per_second'))}, interval_s {_value(fl.get('interval_s'))}), "
            f"idle capture: {_cell(t.get('capture') or DASH)}." + (f" Turns: {each}." if each else "")
            + (f" CPU of the data plane's threads other than its worker, on the worker's CPU (ms a second, each "
               f"turn): on {cpu['on'] or DASH}; off {cpu['off'] or DASH}." if cpu["on"] or cpu["off"] else "")]


def _scenarios(results):
    sc = results.get("scenarios") or []
    if not sc:
        return []
    out = ["## Scenarios", ""]
    # Scenarios that measure a recovery (peer-down) have a column of their own.
    recovery = any(isinstance(s.get("result"), dict) and "recovered_after_ms" in s["result"] for s in sc)
    rows = []
    for s in sc:
        res = s.get("result") if isinstance(s.get("result"), dict) else {}
        rate = _num(s.get("rate_pps"))
        gap = _num(res.get("longest_gap_ms"))
        row = [_cell(s.get("name") or DASH), _cell(s.get("description") or ""),
               DASH if rate is None else f"{rate:,.0f} pps",
               _pct(res.get("loss"), 3),
               DASH if gap is None else f"{gap:g} ms"]
        if recovery:
            row.append(_recovered(res))
        rows.append(row)
    header = ["Scenario", "Description", "Rate", "Loss", "Longest gap"] + (["Recovered after"] if recovery else [])
    out += _table(header, rows, "llrrr" + ("r" if recovery else ""))
    return out


def _recovered(res):
    """A recovery time: "310 ms", "not within 2000 ms", or a dash."""
    if "recovered_after_ms" not in res:
        return DASH
    after = _num(res.get("recovered_after_ms"))
    if after is not None:
        return f"{after:g} ms"
    watched = _num(res.get("watched_after_ms"))
    return "not recovered" if watched is None else f"not within {watched:g} ms"


def _errors(results):
    errors = results.get("errors") or []
    if not errors:
        return []
    return ["## Errors", "", "Parts of this run failed; their results are missing below.", ""] + \
        [f"- {_cell(e.splitlines()[0])}" for e in errors]


def markdown(results, plot_files=None):
    """The report as GitHub-flavoured Markdown.

    plot_files: optional paths (relative to the report) to embed at the end.
    """
    idx = _index(results)
    out = _header(results)
    for section in [_errors(results), _targets(results)] + [_suite_section(results, idx, s) for s in _suites(idx)] \
            + [_paired_section(results), _crypto_section(results), _stages_section(results),
               _scaling_section(results), _services_section(results), _scenarios(results)]:
        if section:
            out += [""] + section
    if plot_files:
        out += ["", "## Plots", ""]
        for p in plot_files:
            p = Path(p)
            out += [f"![{p.stem}]({p.as_posix()})", ""]
        out.pop()
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------
# Plots


def _safe(name):
    return re.sub(r"[^A-Za-z0-9._-]+", "_", str(name)).strip("_") or "unnamed"


def _figure(w, h):
    # Figure() with its own Agg canvas: no pyplot, no global backend state.
    from matplotlib.figure import Figure
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    fig = Figure(figsize=(w, h), dpi=DPI)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path):
    fig.savefig(path, dpi=DPI, bbox_inches="tight", metadata={"Software": None})
    return path


def _plot_throughput(results, idx, suite, path):
    from matplotlib.lines import Line2D
    keys = [k for k in idx if k[0] == suite]
    sizes = sorted({k[3] for k in keys}, key=size_key)
    x = list(range(len(sizes)))
    series = [(s, t) for s in _ordered({k[1] for k in keys}, SYSTEM_ORDER)
              for t in _ordered({k[2] for k in keys}, TRAFFIC_ORDER)
              if any(k[1] == s and k[2] == t for k in keys)]

    fig = _figure(10, 5.5)
    ax = fig.add_subplot()
    traffics = _ordered({k[2] for k in keys}, TRAFFIC_ORDER)
    handles = []
    gx, gy = [], []
    for n, (system, traffic) in enumerate(series):
        c = f"C{n % 10}"
        marker = TRAFFIC_MARKERS[traffics.index(traffic) % len(TRAFFIC_MARKERS)]
        rs = [idx.get((suite, system, traffic, sz)) for sz in sizes]
        # Only the points that exist, so a series is still a line when it
        # skips a size (the axis is categorical anyway).
        first = None
        for point, ls, lw, ms, face in (("ndr", "-", 2, 7, None), ("pdr", "--", 1.5, 6, "white")):
            pts = [(i, _get(r, point, "pps")) for i, r in enumerate(rs)]
            pts = [(i, v / 1e6) for i, v in pts if v is not None]
            if pts:
                h, = ax.plot([p[0] for p in pts], [p[1] for p in pts], ls=ls, marker=marker,
                             color=c, lw=lw, ms=ms, mfc=face, label=f"{system} {traffic}")
                first = first or h
        if first is not None:
            handles.append(first)
        for i, r in enumerate(rs):
            v = _get(r, "ndr", "pps")
            if r and r.get("generator_bound") and v is not None:
                gx.append(i)
                gy.append(v / 1e6)
    if suite == "encrypt":
        cb = [_num((_crypto(results, sz) or {}).get("mops")) for sz in sizes]
        if any(v is not None for v in cb):
            pts = [(i, v) for i, v in enumerate(cb) if v is not None]
            h, = ax.plot([p[0] for p in pts], [p[1] for p in pts], "-s", color="grey",
                         lw=2.5, ms=6, alpha=0.8, label="crypto bound (Mops, AEAD payload size)")
            handles.append(h)
    if gx:
        h = ax.scatter(gx, gy, marker="x", s=110, color="black", zorder=5, linewidths=2,
                       label="generator-bound")
        handles.append(h)
    handles += [Line2D([], [], color="black", lw=2, ls="-", label="NDR"),
                Line2D([], [], color="black", lw=1.5, ls="--", label="PDR")]
    ax.set_xticks(x)
    ax.set_xticklabels([_size_label(s) for s in sizes])
    ax.set_xlim(-0.4, len(sizes) - 0.6)
    ax.set_ylim(bottom=0)
    ax.set_xlabel("frame size (bytes)")
    ax.set_ylabel("throughput (Mpps)")
    title = SUITE_TITLES.get(suite)
    ax.set_title(f"{suite}" + (f" ({title})" if title else "") + ": NDR (solid) and PDR (dashed)")
    ax.grid(True, alpha=0.3)
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9,
              frameon=False)
    return _save(fig, path)


def _latency_groups(idx, size):
    groups = []
    for suite in _suites(idx):
        keys = [k for k in idx if k[0] == suite and k[3] == size]
        for system in _ordered({k[1] for k in keys}, SYSTEM_ORDER):
            for traffic in _ordered({k[2] for k in keys if k[1] == system}, TRAFFIC_ORDER):
                r = idx.get((suite, system, traffic, size))
                vals = [_latency(r, "ndr", p) for p in PERCENTILES]
                if any(v is not None and v > 0 for v in vals):
                    groups.append((f"{suite}\n{system}\n{traffic}", vals))
    return groups


def _nice_floor(x):
    """The largest 1, 2 or 5 times a power of ten that is at most x."""
    e = math.floor(math.log10(x))
    for m in (5, 2, 1):
        if m * 10 ** e <= x:
            return m * 10 ** e
    return 10 ** e


def _plot_latency(idx, path):
    from matplotlib.ticker import FuncFormatter, LogLocator, NullFormatter
    per_size = [(sz, _latency_groups(idx, sz)) for sz in LATENCY_SIZES]
    if not any(g for _, g in per_size):
        return None
    widest = max(len(g) for _, g in per_size)
    fig = _figure(max(8.0, 1.1 * widest + 2.5), 9)
    axes = fig.subplots(len(per_size), 1)
    colours = ["#9ecae1", "#4292c6", "#08519c", "#08306b"]
    width = 0.8 / len(PERCENTILES)
    for ax, (size, groups) in zip(axes, per_size):
        ax.set_title(f"latency percentiles at NDR, {size} B frames")
        if not groups:
            ax.text(0.5, 0.5, f"no latency data at {size} B", ha="center", va="center",
                    transform=ax.transAxes)
            ax.set_xticks([])
            ax.set_yticks([])
            continue
        for j, (pct, c) in enumerate(zip(PERCENTILES, colours)):
            xs, ys = [], []
            for i, (_, vals) in enumerate(groups):
                if vals[j] is not None and vals[j] > 0:
                    xs.append(i + (j - (len(PERCENTILES) - 1) / 2) * width)
                    ys.append(vals[j] / 1e3)
            ax.bar(xs, ys, width=width, color=c, label=pct, edgecolor="white", linewidth=0.5)
        ax.set_yscale("log")
        ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
        ax.yaxis.set_minor_formatter(NullFormatter())
        ax.set_xticks(range(len(groups)))
        ax.set_xticklabels([g[0] for g in groups], fontsize=8.5)
        ax.set_xlim(-0.6, len(groups) - 0.4)
        lowest = min(v for _, vals in groups for v in vals if v is not None and v > 0) / 1e3
        ax.set_ylim(bottom=_nice_floor(lowest * 0.8))
        ax.set_ylabel("latency (µs, log scale)")
        ax.grid(True, axis="y", which="both", alpha=0.3)
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=9, frameon=False)
    fig.tight_layout()
    return _save(fig, path)


def _plot_scenario(s, path):
    res = s.get("result") or {}
    rx = [_num(v) for v in res.get("rx_per_bin") or []]
    bins_ms = _num(res.get("bins_ms"))
    rate = _num(s.get("rate_pps"))
    fig = _figure(10, 4.5)
    ax = fig.add_subplot()
    if bins_ms:
        t = [i * bins_ms / 1e3 for i in range(len(rx) + 1)]
        ax.set_xlabel("time (s)")
        ax.set_ylabel(f"packets received per {bins_ms:g} ms bin")
    else:
        t = list(range(len(rx) + 1))
        ax.set_xlabel("bin")
        ax.set_ylabel("packets received per bin")
    y = [float("nan") if v is None else v for v in rx]
    tx = [_num(v) for v in res.get("tx_per_bin") or []]
    by_node = res.get("rx_per_bin_by_node") or {}
    if tx and bins_ms and len(tx) == len(rx):
        # Sent per bin: the offered rate as the generator managed it.
        ax.stairs([float("nan") if v is None else v for v in tx], t, baseline=None, color="grey", ls="--",
                  lw=1.2, zorder=3, label=f"sent ({rate:,.0f} pps offered)" if rate else "sent")
    elif rate and bins_ms:
        ax.axhline(rate * bins_ms / 1e3, color="grey", ls="--", lw=1.5, zorder=3,
                   label=f"offered ({rate:,.0f} pps)")
    ax.stairs(y, t, baseline=None, color="C0", lw=1.8, label="received", zorder=2)
    for k, (node, bins) in enumerate(sorted(by_node.items())):
        if isinstance(bins, list) and len(bins) == len(rx):
            ax.stairs([_num(v) or 0 for v in bins], t, baseline=None, color=f"C{k + 1}", lw=1.1, zorder=2,
                      label=f"received from {node}")
    for k, (node, bins) in enumerate(sorted((res.get("ignored_per_bin_by_node") or {}).items())):
        if isinstance(bins, list) and len(bins) == len(rx):
            ax.stairs([_num(v) or 0 for v in bins], t, baseline=None, color="C3", ls=":", lw=1.4, zorder=2,
                      label=f"sent to {node} after it died (lost)")
    at_s = _num(s.get("at_s"))
    after = _num(res.get("recovered_after_ms"))
    if "recovered_after_ms" in res and at_s is not None:
        ax.axvline(at_s, color="C3", lw=1, zorder=1)
        if after is not None:
            ax.axvline(at_s + after / 1e3, color="C2", lw=1, zorder=1)
    ax.set_xlim(t[0], t[-1])
    ax.set_ylim(bottom=0, top=max([v for v in rx + tx if v is not None] + [rate * bins_ms / 1e3 if rate and bins_ms else 1]) * 1.12)
    facts = []
    if _num(res.get("loss")) is not None:
        facts.append(f"loss {_pct(res.get('loss'), 3)}")
    if "recovered_after_ms" in res:
        facts.append(f"recovered after {_recovered(res)}" if after is not None else _recovered(res))
    elif _num(res.get("longest_gap_ms")) is not None:
        facts.append(f"longest gap {_num(res.get('longest_gap_ms')):g} ms")
    title = f"scenario {s.get('name')}"
    if s.get("description"):
        title += ": " + str(s["description"])
    title = "\n".join(textwrap.wrap(title, 90))
    if facts:
        title += "\n" + ", ".join(facts)
    ax.set_title(title, fontsize=11)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="lower right", fontsize=9)
    return _save(fig, path)


def plots(results, outdir):
    """Writes the PNGs into outdir; returns their paths in report order."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    idx = _index(results)
    written = []
    for suite in _suites(idx):
        written.append(_plot_throughput(results, idx, suite,
                                        outdir / f"throughput_{_safe(suite)}.png"))
    p = _plot_latency(idx, outdir / "latency.png")
    if p:
        written.append(p)
    for s in results.get("scenarios") or []:
        res = s.get("result")
        if isinstance(res, dict) and res.get("rx_per_bin"):
            written.append(_plot_scenario(s, outdir / f"scenario_{_safe(s.get('name'))}.png"))
    return written


# --------------------------------------------------------------------------
# All together


def _write_atomic(path, text):
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise
    return path


def write_all(results, outdir):
    """results.json (pretty), the plots, then report.md linking them."""
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    # The data first: if plotting fails, the measurements are already safe.
    js = _write_atomic(outdir / "results.json",
                       json.dumps(results, indent=2, ensure_ascii=False) + "\n")
    pngs = plots(results, outdir)
    md = _write_atomic(outdir / "report.md",
                       markdown(results, [p.relative_to(outdir) for p in pngs]))
    return {"json": js, "markdown": md, "plots": pngs}


def main(argv=None):
    ap = argparse.ArgumentParser(description="Regenerate report.md and plots from a "
                                 "meshwire_perf results.json.")
    ap.add_argument("results", type=Path, help="results JSON written by the harness")
    ap.add_argument("--out", type=Path, default=None,
                    help="output folder (default: the folder holding RESULTS)")
    args = ap.parse_args(argv)
    try:
        data = load(args.results)
    except (OSError, ValueError) as e:
        print(f"report: {e}", file=sys.stderr)
        return 1
    out = write_all(data, args.out if args.out is not None else args.results.parent)
    print(out["markdown"])
    for p in out["plots"]:
        print(p)
    return 0


if __name__ == "__main__":
    sys.exit(main())
