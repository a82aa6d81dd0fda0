"""The fast-path stages without any port: dp_micro_bench's Google Benchmarks
run in the same `make bench`, so each stage is read as a ratio to raw
ipsec-mb AES-GCM measured seconds apart on the same core.

  raw_gcm_pps       ipsec-mb's direct API on the bytes the stage encrypts
  encrypt_pps       a pod frame through the local stage (parse, FIB, TTL,
                    encapsulation, encryption), mbuf allocation and copy included
  enc_cyc_pkt       TSC cycles per packet of the local (encrypt) stage
  dec_cyc_pkt       TSC cycles per packet of the uplink (decrypt) stage
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

SIZES = (64, 1400)
FILTER = "BM_(RawGcm|EncryptStage|EncryptDecrypt)/(64|1400)$"


def command(binary: Path, repetitions: int, min_time: float) -> list[str]:
    return [str(binary), f"--benchmark_filter={FILTER}", f"--benchmark_repetitions={repetitions}",
            f"--benchmark_min_time={min_time}", "--benchmark_format=json"]


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


def run(binary: Path, repetitions: int = 3, min_time: float = 0.3, timeout: float = 300) -> dict:
    proc = subprocess.run(command(binary, repetitions, min_time), capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{binary} exited with {proc.returncode}: {proc.stderr[-2000:]}")
    return parse(proc.stdout)
