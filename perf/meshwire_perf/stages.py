"""The fast-path stages without any port: dp_micro_bench's Google Benchmarks
run in the same `make bench`, so each stage is read as a ratio to raw
ipsec-mb AES-GCM measured seconds apart on the same core.

  raw_gcm_pps       ipsec-mb's direct API on the bytes the stage encrypts
  encrypt_pps       a pod frame through the local stage (parse, FIB, TTL,
                    encapsulation, encryption), mbuf allocation and copy included
  enc_cyc_pkt       TSC cycles per packet of the local (encrypt) stage
  dec_cyc_pkt       TSC cycles per packet of the uplink (decrypt) stage
  *_instr_pkt       instructions per packet under callgrind (valgrind), which
                    do not depend on the machine's load: local and uplink
                    stages, and the AES-GCM bursts inside them
  idle_capture      the local stage at 64 B with no capture, with issue 7's
                    idle capture (`udp port 9` at pre-encrypt) matched
                    natively, and the same as libpcap's program: instructions
                    per packet (idle_capture_instructions)
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from collections import Counter
from pathlib import Path

SIZES = (64, 1400)
FIXED_ITERATIONS = 512  # BM_EncryptDecryptFixed: bursts of 32
PROFILED = {"process_local_burst(": "local_instr_pkt", "process_uplink_burst(": "uplink_instr_pkt",
            "gcm_encrypt_burst(": "gcm_enc_instr_pkt", "gcm_decrypt_burst(": "gcm_dec_instr_pkt"}


def command(binary: Path, repetitions: int, min_time: float, sizes: tuple = SIZES) -> list[str]:
    return [str(binary), f"--benchmark_filter={filter_for(sizes)}", f"--benchmark_repetitions={repetitions}",
            f"--benchmark_min_time={min_time}", "--benchmark_format=json"]


def filter_for(sizes: tuple) -> str:
    return f"BM_(RawGcm|EncryptStage|EncryptDecrypt)/({'|'.join(str(s) for s in sizes)})$"


def parse(text: str) -> dict:
    """{"64": {"raw_gcm_pps":..., "encrypt_pps":..., "enc_cyc_pkt":..., "dec_cyc_pkt":...}, ...}
    from the medians of Google Benchmark's JSON (or the single run)."""
    doc = json.loads(text)
    runs: dict[tuple[str, str], list[dict]] = {}
    medians: dict[tuple[str, str], dict] = {}
    for b in doc["benchmarks"]:
        if b.get("error_occurred"):  # SkipWithError: no valid measurement
            continue
        base, _, rest = b["name"].partition("/")
        size = rest.split("_")[0]
        if b.get("run_type") == "aggregate":
            if b.get("aggregate_name") == "median":
                medians[(base, size)] = b
        else:
            runs.setdefault((base, size), []).append(b)
    pick = {k: medians.get(k) or v[len(v) // 2] for k, v in runs.items()}
    out: dict = {}
    for (base, size), b in pick.items():
        entry = out.setdefault(size, {})
        if base == "BM_RawGcm":
            entry["raw_gcm_pps"] = b.get("items_per_second")
        elif base == "BM_EncryptStage":
            entry["encrypt_pps"] = b.get("items_per_second")
        elif base == "BM_EncryptDecrypt":
            entry["enc_cyc_pkt"] = b.get("enc_cyc_pkt")
            entry["dec_cyc_pkt"] = b.get("dec_cyc_pkt")
    return out


def run(binary: Path, repetitions: int = 3, min_time: float = 0.3, timeout: float = 300,
        arch: str | None = None, sizes: tuple = SIZES) -> dict:
    """arch: ipsec-mb's code path for every engine of the run ("sse", "avx2",
    "avx512"; None: the best the CPU has), through MESHWIRE_IPSEC_MB_ARCH."""
    env = dict(os.environ)
    if arch:
        env["MESHWIRE_IPSEC_MB_ARCH"] = arch
    proc = subprocess.run(command(binary, repetitions, min_time, sizes), capture_output=True, text=True,
                          timeout=timeout, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"{binary} exited with {proc.returncode}: {proc.stderr[-2000:]}")
    return parse(proc.stdout)


def parse_callgrind(text: str, packets: int) -> dict:
    """Inclusive instructions per packet of the PROFILED functions, from a
    callgrind output file: every call edge to a function is a "cfn=" line,
    then "calls=N ...", then the edge's inclusive cost."""
    names: dict[str, str] = {}
    calls: Counter = Counter()
    cost: Counter = Counter()
    target = None
    want_cost = False
    for line in text.splitlines():
        m = re.match(r"(c?fn)=\((\d+)\)(?: (.*))?$", line)
        if m:
            if m.group(3):
                names[m.group(2)] = m.group(3)
            target = m.group(2) if m.group(1) == "cfn" else None
            continue
        if line.startswith("calls=") and target is not None:
            calls[target] += int(line.split("=", 1)[1].split()[0])
            want_cost = True
            continue
        if want_cost:
            parts = line.split()
            if len(parts) >= 2:
                cost[target] += int(parts[1])
            want_cost = False
            target = None
    out = {}
    for fid, total in cost.items():
        name = names.get(fid, "")
        for needle, key in PROFILED.items():
            at = name.find(needle)
            # Not a lambda the compiler moved out of the function
            # ("f(...)::{lambda(...)#1}::operator()"): f's inclusive cost
            # already holds it.
            if at >= 0 and ")::" not in name[at:]:
                out[key] = out.get(key, 0) + total / packets
    return {k: round(v, 1) for k, v in out.items()}


def callgrind(binary: Path, bench_filter: str, timeout: float = 300) -> dict:
    """Instructions per packet of the PROFILED functions over the Fixed
    benchmarks that bench_filter selects (FIXED_ITERATIONS bursts of 32)."""
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "callgrind.out"
        proc = subprocess.run(["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", str(binary),
                               f"--benchmark_filter={bench_filter}"],
                              capture_output=True, text=True, timeout=timeout)
        if proc.returncode != 0 or not out.exists():
            raise RuntimeError(f"callgrind on {binary}: exit {proc.returncode}: {proc.stderr[-1500:]}")
        return parse_callgrind(out.read_text(errors="replace"), FIXED_ITERATIONS * 32)


def instructions(binary: Path, size: int, timeout: float = 300) -> dict:
    """Runs BM_EncryptDecryptFixed/size under callgrind; {} without valgrind."""
    if shutil.which("valgrind") is None:
        return {}
    got = callgrind(binary, f"^BM_EncryptDecryptFixed/{size}/", timeout)
    if set(got) != set(PROFILED.values()):
        raise RuntimeError(f"callgrind on {binary}: found {sorted(got)} of the profiled functions")
    return got


IDLE_CAPTURE = {"none": 0, "native": 1, "libpcap": 2}  # BM_EncryptStageIdleCaptureFixed's argument


def idle_capture_instructions(binary: Path, timeout: float = 300) -> dict:
    """{"none": N, "native": N, "libpcap": N}: the local stage's instructions
    per 64-byte packet with no capture, with the idle capture matched
    natively, and as libpcap's program; {} without valgrind."""
    if shutil.which("valgrind") is None:
        return {}
    out = {}
    for name, arg in IDLE_CAPTURE.items():
        got = callgrind(binary, f"^BM_EncryptStageIdleCaptureFixed/{arg}/", timeout)
        if "local_instr_pkt" not in got:
            raise RuntimeError(f"callgrind on {binary}: BM_EncryptStageIdleCaptureFixed/{arg}: no local stage")
        out[name] = got["local_instr_pkt"]
    return out
