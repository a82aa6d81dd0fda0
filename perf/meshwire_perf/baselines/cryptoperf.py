"""The raw AES-GCM bound on one core: ``dpdk-test-crypto-perf``.

What is measured
================
``dpdk-test-crypto-perf --ptest throughput`` with one worker lcore (the
second lcore of ``lcores``; the first is EAL's main lcore, which only waits
for the worker, spinning) on the software cryptodev ``crypto_aesni_mb``
(Intel ipsec-mb; ``crypto_aesni_gcm`` works too): AEAD AES-GCM **encrypt**,
key ``algo_key_len`` bytes (16: AES-128-GCM), 12-byte IV (ESP's 4-byte salt
and 8-byte IV), **12 bytes of AAD** (ESP with extended sequence numbers:
SPI, ESN high 32 bits, sequence number low 32 bits; the tool and the PMD
accept 12, no need to round up to 16), 16-byte tag, bursts of 32 ops, in
place, one session, crypto ops enqueued/dequeued through one queue pair.

A *size* is the buffer size of the tool, i.e. the number of bytes that the
AEAD encrypts and authenticates as ciphertext: in ESP terms, the encrypted
payload (inner packet + padding + pad length + next header). So "1400" is a
1400-byte ESP payload; the 12-byte AAD and the 16-byte tag come on top (the
tag is written after the buffer, the AAD lives in the op) and are not
counted in the Gbps, which the tool computes as ``mops * size * 8``.

``cycles_per_op`` is the tool's "Cycles/Buf": TSC cycles of the worker per
operation, including enqueue/dequeue overhead of the cryptodev API.

Output is read in the tool's ``--csv-friendly`` mode (``--silent`` drops
the options dump); ``parse()`` also reads the default human table.

Run time: ``total_ops`` (2M) per size, e.g. ~2 s for 64..1400 in six sizes
on an idle core; ``run()`` starts the tool ``repeats`` times (one process
each, a fresh ``--file-prefix`` each) and keeps the best Mops per size.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
from dataclasses import dataclass, field

TOOL = "dpdk-test-crypto-perf"
IV_LEN = 12
AAD_LEN = 12          # ESP with ESN: SPI(4) + seq hi(4) + seq lo(4)
DIGEST_LEN = 16
BURST = 32
MEM_MB = 256          # -m with --no-huge: the 8192-mbuf pools of 1400 B take ~40 MB


@dataclass
class CryptoResult:
    size: int                       # buffer size in bytes (the AEAD-encrypted ESP payload)
    mops: float                     # million operations per second (best of the repeats)
    gbps: float                     # of the best run: mops * size * 8 / 1000
    cycles_per_op: float            # of the best run: worker TSC cycles per op
    runs: list[float] = field(default_factory=list)   # mops of each repeat


def command(sizes: list[int], algo_key_len: int = 16, pmd: str = "crypto_aesni_mb", total_ops: int = 2_000_000,
            file_prefix: str = "mwcp", lcores: str = "0,1", *, aad_len: int = AAD_LEN, burst: int = BURST,
            mem_mb: int = MEM_MB, pool_sz: int | None = None) -> list[str]:
    """The argv of one dpdk-test-crypto-perf throughput run over all `sizes`
    (AES-GCM encrypt, see the module docstring)."""
    if not sizes:
        raise ValueError("no buffer sizes")
    cmd = [TOOL, "--no-huge", "-m", str(mem_mb), "--no-pci", "--no-telemetry", "-l", lcores,
           "--file-prefix", file_prefix, "--vdev", pmd,
           "--",
           "--ptest", "throughput", "--devtype", pmd, "--optype", "aead",
           "--aead-algo", "aes-gcm", "--aead-op", "encrypt", "--aead-key-sz", str(algo_key_len),
           "--aead-iv-sz", str(IV_LEN), "--aead-aad-sz", str(aad_len), "--digest-sz", str(DIGEST_LEN),
           "--buffer-sz", ",".join(str(int(s)) for s in sizes), "--burst-sz", str(burst),
           "--total-ops", str(total_ops)]
    if pool_sz is not None:
        cmd += ["--pool-sz", str(pool_sz)]   # the help text says --pool_sz; the parser wants --pool-sz
    return cmd + ["--silent", "--csv-friendly"]


# csv-friendly:  1,64,32,2000000,2000000,0,0,9.106,4.662,306.398
# human table:            1          64          32     2000000 ... 10.4726      5.3620      266.41
_NUM = r"(\d+(?:\.\d+)?)"
_CSV = re.compile(r"^\s*(\d+),(\d+),(\d+),(\d+),(\d+),(\d+),(\d+)," + _NUM + "," + _NUM + "," + _NUM + r"\s*$")
_TABLE = re.compile(r"^\s*(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+" + _NUM + r"\s+" + _NUM +
                    r"\s+" + _NUM + r"\s*$")


def parse(output: str) -> dict[int, CryptoResult]:
    """Results per buffer size from the throughput table of
    dpdk-test-crypto-perf (CSV-friendly or the default table). With several
    worker lcores, their Mops and Gbps add up and cycles/op are averaged."""
    rows: dict[int, list[tuple[float, float, float]]] = {}
    for line in output.splitlines():
        m = _CSV.match(line) or _TABLE.match(line)
        if not m:
            continue
        size = int(m.group(2))
        rows.setdefault(size, []).append((float(m.group(8)), float(m.group(9)), float(m.group(10))))
    out = {}
    for size, rs in rows.items():
        mops = sum(r[0] for r in rs)
        out[size] = CryptoResult(size=size, mops=mops, gbps=sum(r[1] for r in rs),
                                 cycles_per_op=sum(r[2] for r in rs) / len(rs), runs=[mops])
    return out


def _tail(text: str, lines: int = 25) -> str:
    return "\n".join(text.splitlines()[-lines:])


def run(sizes: list[int], repeats: int = 3, timeout: float = 120, **kw) -> dict[int, CryptoResult]:
    """Runs dpdk-test-crypto-perf (throughput ptest, AEAD aes-gcm encrypt,
    16-byte tag, 12-byte IV, 12-byte AAD as ESP with ESN, burst 32, --no-huge
    -m 256 --no-pci, a unique --file-prefix per run, vdev crypto_aesni_mb)
    `repeats` times and keeps the best Mops per size (``runs`` lists every
    repeat's Mops). A size is the ESP payload that the AEAD encrypts (inner
    packet and ESP trailer), not a frame size. `kw` goes to ``command()``
    (algo_key_len, pmd, total_ops, lcores, aad_len, burst, mem_mb, pool_sz,
    file_prefix). `timeout` is per repeat. Raises RuntimeError naming the
    command and the output's tail when the tool fails, times out or reports
    no result for a size."""
    sizes = [int(s) for s in sizes]
    base = kw.pop("file_prefix", "mwcp")
    best: dict[int, CryptoResult] = {}
    for i in range(max(1, repeats)):
        prefix = f"{base}{os.getpid()}{secrets.token_hex(2)}r{i}"
        cmd = command(sizes, file_prefix=prefix, **kw)
        try:
            try:
                proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                      errors="replace", timeout=timeout)
            except subprocess.TimeoutExpired as e:   # subprocess.run has killed it
                out = (e.stdout or "") + (e.stderr or "")
                if isinstance(out, bytes):
                    out = out.decode(errors="replace")
                raise RuntimeError(f"{TOOL} timed out after {timeout:.0f}s: {' '.join(cmd)}\n{_tail(out)}") from None
            except OSError as e:
                raise RuntimeError(f"cannot run {TOOL} ({e}): {' '.join(cmd)}") from None
        finally:
            shutil.rmtree(f"/var/run/dpdk/{prefix}", ignore_errors=True)
        text = proc.stdout + "\n" + proc.stderr
        got = parse(proc.stdout)
        missing = [s for s in sizes if s not in got]
        if proc.returncode != 0 or missing:
            why = f"exit code {proc.returncode}" if proc.returncode != 0 else f"no result for sizes {missing}"
            raise RuntimeError(f"{TOOL} failed ({why}): {' '.join(cmd)}\n{_tail(text)}")
        for s in sizes:
            r = got[s]
            if s not in best:
                best[s] = CryptoResult(s, r.mops, r.gbps, r.cycles_per_op, [r.mops])
            else:
                b = best[s]
                b.runs.append(r.mops)
                if r.mops > b.mops:
                    b.mops, b.gbps, b.cycles_per_op = r.mops, r.gbps, r.cycles_per_op
    return best
