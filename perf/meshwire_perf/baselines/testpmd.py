"""The forwarding bound: ``dpdk-testpmd`` in io forwarding mode.

testpmd receives a burst on a port and transmits it unchanged (``io``: no
header is read or written) on the port its topology names:

* ``loop``: a port forwards what it receives back out of itself (checked on
  net_memif: a flowgen peer receives everything it sent), the shape of
  meshwire forwarding between two pods behind one port;
* ``paired``: port 0 <-> port 1, 2 <-> 3, ...;
* ``chained``: port i -> port i+1.

One forwarding core (``--nb-cores=1``) on ``fwd_lcore``; the main lcore is
separate and sleeps (testpmd's non-interactive loop wakes once a second to
check for SIGINT). testpmd runs non-interactively (``--auto-start``) with
stdin = /dev/null until SIGINT: that needs ``--stats-period`` > 0 (with 0 it
waits for a key on stdin and exits at once on EOF). The period defaults to
an hour, so the log stays quiet; on SIGINT testpmd prints its forward
statistics (per port and accumulated), and with ``--record-core-cycles``
(on by default here) "CPU cycles/packet", the forwarding core's busy cycles
per packet, which ``parse_stats()`` returns too.

``command()`` puts ``stdbuf -oL`` in front: testpmd's stdout to a file is
block-buffered, so READY_MARKER would otherwise show up only at exit.
"""

from __future__ import annotations

import atexit
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path
from typing import Optional

TOOL = "dpdk-testpmd"

# Printed by start_packet_forwarding() right before it launches the
# forwarding lcore, e.g. "io packet forwarding - ports=1 - cores=1 - streams=1 - ..."
READY_MARKER = "packet forwarding - ports="

_live: list[subprocess.Popen] = []


def default_eal(file_prefix: str, mem_mb: int = 512) -> list[str]:
    """EAL options for a testpmd without hugepages or PCI devices."""
    return ["--no-huge", "-m", str(mem_mb), "--no-pci", "--no-telemetry", "--file-prefix", file_prefix]


def _has_lcore_option(eal: list[str]) -> bool:
    for a in eal:
        if a in ("-l", "-c", "--lcores") or a.startswith("--lcores="):
            return True
        if a[:2] in ("-l", "-c") and not a.startswith("--"):    # -l0,1
            return True
    return False


def command(port_devices: list[str], eal: list[str], fwd_lcore: int = 1, main_lcore: int = 0,
            topology: str = "loop", nb_mbufs: int = 16384, burst: int = 32, queues: int = 1, *,
            stats_period: int = 3600, record_cycles: bool = True, line_buffered: bool = True,
            forward_mode: str = "io", extra: tuple = ()) -> list[str]:
    """dpdk-testpmd in io forwarding mode, non-interactive (--auto-start),
    one forwarding core (--nb-cores=1) on fwd_lcore, the main lcore separate
    (-l main,fwd --main-lcore main; when both are the same CPU, two lcores
    are mapped onto it with --lcores), --port-topology=loop|paired|chained,
    --total-num-mbufs (needed with --no-huge), --rxq/--txq=queues,
    --burst, --forward-mode=io, --stats-period `stats_period` (keeps it
    running until SIGINT with stdin=/dev/null, quiet until then).

    port_devices: vdev strings, one port each in this order, e.g.
    'net_memif0,role=server,socket=/tmp/x.sock,socket-abstract=no,id=0'.
    eal: the other EAL options (see default_eal(): --no-huge -m, --no-pci,
    a unique --file-prefix); lcore options in it win over fwd/main_lcore.
    forward_mode and extra (more testpmd options) are for tests, e.g. a
    flowgen peer as traffic source."""
    if topology not in ("loop", "paired", "chained"):
        raise ValueError(f"unknown port topology {topology!r}")
    if not port_devices:
        raise ValueError("testpmd needs at least one port")
    cmd = ["stdbuf", "-oL", "-eL"] if line_buffered else []
    cmd += [TOOL, *[str(a) for a in eal]]
    if not _has_lcore_option(eal):
        if fwd_lcore == main_lcore:
            cmd += ["--lcores", f"0@{main_lcore},1@{fwd_lcore}", "--main-lcore", "0"]
        else:
            cmd += ["-l", f"{main_lcore},{fwd_lcore}", "--main-lcore", str(main_lcore)]
    for dev in port_devices:
        cmd += ["--vdev", dev]
    cmd += ["--",
            "--auto-start", f"--forward-mode={forward_mode}", f"--port-topology={topology}", "--nb-cores=1",
            f"--total-num-mbufs={nb_mbufs}", f"--burst={burst}", f"--rxq={queues}", f"--txq={queues}",
            f"--stats-period={stats_period}", "--no-mlockall"]
    if record_cycles:
        cmd.append("--record-core-cycles")
    return cmd + [str(a) for a in extra]


_RX = re.compile(r"RX-packets:\s*(\d+)\s+RX-dropped:\s*(\d+)\s+RX-total:\s*(\d+)")
_TX = re.compile(r"TX-packets:\s*(\d+)\s+TX-dropped:\s*(\d+)\s+TX-total:\s*(\d+)")
_RX_ERR = re.compile(r"RX-error:\s*(\d+)")
_RX_NOMBUF = re.compile(r"RX-nombufs:\s*(\d+)")
_PORT_HDR = re.compile(r"-+\s*Forward statistics for port\s+(\d+)\s*-+")
_ACCUM_HDR = re.compile(r"\+\+\+\s*Accumulated forward statistics for all ports")
_CYCLES = re.compile(r"CPU cycles/packet=([\d.]+).*?at\s+(\d+)\s+MHz")
# periodic (--stats-period) "NIC statistics for port N" blocks
_NIC_HDR = re.compile(r"NIC statistics for port\s+(\d+)")
_NIC_RX = re.compile(r"RX-packets:\s*(\d+)\s+RX-missed:\s*(\d+)\s+RX-bytes:\s*(\d+)")
_NIC_TX = re.compile(r"TX-packets:\s*(\d+)\s+TX-errors:\s*(\d+)\s+TX-bytes:\s*(\d+)")
_NIC_RX_ERR = re.compile(r"RX-errors:\s*(\d+)")
_NIC_NOMBUF = re.compile(r"RX-nombuf:\s*(\d+)")
_PPS = re.compile(r"(Rx|Tx)-pps:\s*(\d+)")


def parse_stats(output: str) -> dict:
    """testpmd's exit summary (printed on SIGINT), as
    {"ports": {port: counters}, "total": counters,
     "cycles_per_packet": float | None, "tsc_mhz": int | None,
     "nic": {port: {...}}, "pps": {port: {"rx": pps, "tx": pps}}}.

    counters = {"rx_packets", "rx_dropped", "rx_total", "tx_packets",
    "tx_dropped", "tx_total", "rx_errors", "rx_nombufs"}, counted from the
    start of forwarding: RX-dropped is the port's imissed, TX-dropped what the
    TX burst did not take (testpmd freed it). "total" is the accumulated
    section (the ports' sum if that is missing). cycles_per_packet: the
    forwarding core's busy TSC cycles per packet (--record-core-cycles).

    "nic" and "pps" come from the last periodic "NIC statistics for port N"
    block (--stats-period; {} when none was printed): nic = {"rx_packets",
    "rx_missed", "rx_bytes", "rx_errors", "rx_nombuf", "tx_packets",
    "tx_errors", "tx_bytes"} since the port started, pps = the last
    "Rx-pps"/"Tx-pps". On net_memif they are the counters to trust when the
    peer disconnected before testpmd stopped: memif zeroes its port counters
    on disconnect, and the exit summary then shows 0 packets.

    Raises ValueError when the output has no exit summary (testpmd crashed,
    e.g. on a memif peer's teardown, or never stopped)."""
    ports: dict[int, dict] = {}
    total: Optional[dict] = None
    nic: dict[int, dict] = {}
    pps: dict[int, dict] = {}
    current: Optional[dict] = None      # the exit-summary section being read
    block: Optional[int] = None         # the periodic NIC block being read
    cycles = mhz = None
    for line in output.splitlines():
        m = _PORT_HDR.search(line)
        if m:
            current, block = ports.setdefault(int(m.group(1)), _zero()), None
            continue
        if _ACCUM_HDR.search(line):
            total = current = _zero()
            block = None
            continue
        m = _NIC_HDR.search(line)
        if m:
            block, current = int(m.group(1)), None
            nic[block] = {}
            continue
        m = _CYCLES.search(line)
        if m:
            cycles, mhz = float(m.group(1)), int(m.group(2))
            continue
        stripped = line.strip()
        if block is not None:
            if stripped and set(stripped) == {"#"}:
                block = None
                continue
            n = nic[block]
            m = _NIC_RX.search(line)
            if m:
                n["rx_packets"], n["rx_missed"], n["rx_bytes"] = map(int, m.groups())
            m = _NIC_TX.search(line)
            if m:
                n["tx_packets"], n["tx_errors"], n["tx_bytes"] = map(int, m.groups())
            m = _NIC_RX_ERR.search(line)
            if m:
                n["rx_errors"] = int(m.group(1))
            m = _NIC_NOMBUF.search(line)
            if m:
                n["rx_nombuf"] = int(m.group(1))
            for kind, value in _PPS.findall(line):
                pps.setdefault(block, {})[kind.lower()] = int(value)
            continue
        if current is None:
            continue
        if stripped.startswith(("----", "++++")):      # a section's closing line
            current = None
            continue
        m = _RX.search(line)
        if m:
            current["rx_packets"], current["rx_dropped"], current["rx_total"] = map(int, m.groups())
        m = _TX.search(line)
        if m:
            current["tx_packets"], current["tx_dropped"], current["tx_total"] = map(int, m.groups())
        m = _RX_ERR.search(line)
        if m:
            current["rx_errors"] = int(m.group(1))
        m = _RX_NOMBUF.search(line)
        if m:
            current["rx_nombufs"] = int(m.group(1))
    if not ports:
        raise ValueError("no 'Forward statistics for port' in testpmd's output:\n" + _tail(output))
    if total is None:
        total = _zero()
        for c in ports.values():
            for k in total:
                total[k] += c[k]
    return {"ports": ports, "total": total, "cycles_per_packet": cycles, "tsc_mhz": mhz, "nic": nic, "pps": pps}


def _zero() -> dict:
    return {k: 0 for k in ("rx_packets", "rx_dropped", "rx_total", "tx_packets", "tx_dropped", "tx_total",
                           "rx_errors", "rx_nombufs")}


def _tail(text: str, lines: int = 30) -> str:
    return "\n".join(text.splitlines()[-lines:])


def _file_prefix(cmd: list[str]) -> Optional[str]:
    for i, a in enumerate(cmd):
        if a == "--":
            break
        if a == "--file-prefix" and i + 1 < len(cmd):
            return cmd[i + 1]
        if a.startswith("--file-prefix="):
            return a.split("=", 1)[1]
    return None


def _read(path: Path) -> str:
    try:
        return Path(path).read_text(errors="replace")
    except FileNotFoundError:
        return ""


def start(cmd: list[str], log_path, timeout: float = 30) -> subprocess.Popen:
    """Starts testpmd with stdin=/dev/null, stdout and stderr to log_path,
    and waits until READY_MARKER is in the log. If testpmd exits first or
    the marker does not come within `timeout` s, it is stopped and
    RuntimeError names the command and the log's tail. The returned Popen
    carries .log_path and .file_prefix for stop(); it is also stopped at
    interpreter exit if nobody did."""
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = open(log_path, "wb")
    try:
        proc = subprocess.Popen([str(a) for a in cmd], stdin=subprocess.DEVNULL, stdout=log,
                                stderr=subprocess.STDOUT)
    except OSError as e:
        log.close()
        raise RuntimeError(f"cannot start {TOOL} ({e}): {' '.join(map(str, cmd))}") from None
    proc.log_path = log_path
    proc.log_file = log
    proc.file_prefix = _file_prefix([str(a) for a in cmd])
    proc.cmdline = " ".join(str(a) for a in cmd)
    _live.append(proc)
    deadline = time.monotonic() + timeout
    while True:
        text = _read(log_path)
        if READY_MARKER in text:
            return proc
        if proc.poll() is not None:
            stop(proc)
            raise RuntimeError(f"{TOOL} exited with {proc.returncode} before forwarding started: "
                               f"{proc.cmdline}\n{_tail(text)}")
        if time.monotonic() > deadline:
            text = stop(proc)
            raise RuntimeError(f"{TOOL}: no '{READY_MARKER}' within {timeout:.0f}s: {proc.cmdline}\n{_tail(text)}")
        time.sleep(0.05)


def stop(proc: subprocess.Popen, timeout: float = 10) -> str:
    """SIGINT (testpmd then stops forwarding, prints its statistics and
    closes its ports; it checks for the signal once a second), wait up to
    `timeout` s, SIGKILL if still running; removes its /var/run/dpdk/<prefix>
    folder and returns the log text."""
    if proc.poll() is None:
        try:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    log = getattr(proc, "log_file", None)
    if log is not None and not log.closed:
        log.close()
    if proc in _live:
        _live.remove(proc)
    prefix = getattr(proc, "file_prefix", None)
    if prefix and "/" not in prefix:
        shutil.rmtree(f"/var/run/dpdk/{prefix}", ignore_errors=True)
    path = getattr(proc, "log_path", None)
    return _read(path) if path else ""


@atexit.register
def _stop_all() -> None:
    for p in list(_live):
        stop(p, timeout=5)
