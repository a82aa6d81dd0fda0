"""The processes of a benchmark: the system under test (meshwire-dataplane,
dpdk-testpmd or ipsec-secgw) and the meshwire-perf generator, each a DPDK
process with its own --file-prefix, joined by net_memif sockets in a
private folder. Every process started here is stopped on exit, on error and
on SIGINT/SIGTERM."""

from __future__ import annotations

import atexit
import json
import os
import selectors
import signal
import subprocess
import time
from pathlib import Path
from typing import Optional

_live: list["Process"] = []


def _stop_all(*_args) -> None:
    for p in list(_live):
        p.stop()


def _on_signal(signum, _frame) -> None:
    _stop_all()
    raise SystemExit(128 + signum)


atexit.register(_stop_all)
for _sig in (signal.SIGTERM, signal.SIGHUP):
    signal.signal(_sig, _on_signal)


class Process:
    """A started program whose stdout and stderr go to one log file."""

    def __init__(self, name: str, argv: list, log: Path, ready: Optional[str] = None,
                 timeout: float = 60, stdin=subprocess.DEVNULL, stdout=None):
        self.name = name
        self.argv = [str(a) for a in argv]
        self.log = log
        self._log_file = open(log, "wb")
        self.proc = subprocess.Popen(self.argv, stdin=stdin, stdout=stdout or self._log_file,
                                     stderr=self._log_file, start_new_session=True)
        _live.append(self)
        if ready is not None:
            self.wait_for(ready, timeout)

    def wait_for(self, marker: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while True:
            if marker in self.log_text():
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode} before '{marker}'\n"
                                   f"{' '.join(self.argv)}\n{self.log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"{self.name}: no '{marker}' within {timeout:.0f}s\n{self.log_tail()}")
            time.sleep(0.05)

    def log_text(self) -> str:
        try:
            return self.log.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, sig: int = signal.SIGINT, timeout: float = 10) -> Optional[int]:
        """SIGINT (DPDK apps exit cleanly on it), then SIGKILL after timeout."""
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, sig)
            except ProcessLookupError:
                pass
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait()
        if self in _live:
            _live.remove(self)
        self._log_file.close()
        return self.proc.returncode

    def kill(self) -> None:
        """SIGKILL at once: a crash, as a scenario wants it."""
        self.stop(signal.SIGKILL, timeout=5)


class Generator(Process):
    """meshwire-perf, driven over its stdin/stdout JSON-lines protocol."""

    def __init__(self, binary: Path, config: dict, workdir: Path, timeout: float = 60):
        self.config_path = workdir / "generator.json"
        self.config_path.write_text(json.dumps(config, indent=1))
        self.config_path.chmod(0o600)
        super().__init__("meshwire-perf", [binary, "--config", self.config_path], workdir / "generator.log",
                         stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self._sel = selectors.DefaultSelector()
        self._sel.register(self.proc.stdout, selectors.EVENT_READ)
        self._buf = b""
        self.ready = self._read_json(timeout)
        if self.ready.get("event") != "ready":
            raise RuntimeError(f"meshwire-perf: unexpected first line {self.ready}\n{self.log_tail()}")

    def _read_json(self, timeout: float) -> dict:
        deadline = time.monotonic() + timeout
        while b"\n" not in self._buf:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RuntimeError(f"meshwire-perf: no answer within {timeout:.0f}s\n{self.log_tail()}")
            if self.proc.poll() is not None and not self._sel.select(0):
                raise RuntimeError(f"meshwire-perf exited with {self.proc.returncode}\n{self.log_tail()}")
            if self._sel.select(min(left, 0.5)):
                chunk = os.read(self.proc.stdout.fileno(), 1 << 20)
                if not chunk and self.proc.poll() is not None:
                    raise RuntimeError(f"meshwire-perf exited with {self.proc.returncode}\n{self.log_tail()}")
                self._buf += chunk
        line, self._buf = self._buf.split(b"\n", 1)
        try:
            return json.loads(line)
        except ValueError:  # DPDK prints some of its errors on stdout: keep them, read on
            with open(self.log, "ab") as f:
                f.write(b"stdout: " + line + b"\n")
            return self._read_json(max(deadline - time.monotonic(), 0.1))

    def command(self, cmd: dict, timeout: float = 60) -> dict:
        self.proc.stdin.write((json.dumps(cmd) + "\n").encode())
        self.proc.stdin.flush()
        reply = self._read_json(timeout)
        if not reply.get("ok"):
            raise RuntimeError(f"meshwire-perf: {cmd.get('cmd')}: {reply.get('error')}")
        return reply

    def trial(self, traffic: str, frame_size, rate_pps: float, duration_s: float,
              drain_s: float = 0.05, bin_s: float = 0.01, lead_s: float = 0.0) -> dict:
        """lead_s: the traffic's background streams alone for this long first."""
        cmd = {"cmd": "trial", "traffic": traffic, "frame_size": frame_size, "rate_pps": rate_pps,
               "duration_s": duration_s, "drain_s": drain_s, "bin_s": bin_s}
        if lead_s:
            cmd["lead_s"] = lead_s
        return self.command(cmd, timeout=lead_s + duration_s + drain_s + 30)

    def info(self) -> dict:
        return self.command({"cmd": "info"})

    def stop(self, sig: int = signal.SIGINT, timeout: float = 10) -> Optional[int]:
        if self.proc.poll() is None and self.proc.stdin and not self.proc.stdin.closed:
            try:
                self.proc.stdin.write(b'{"cmd":"quit"}\n')
                self.proc.stdin.close()
                self.proc.wait(timeout)
            except (BrokenPipeError, OSError, subprocess.TimeoutExpired):
                pass
        return super().stop(sig, timeout)
