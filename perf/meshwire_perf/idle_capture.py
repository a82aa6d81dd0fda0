"""The idle capture of the telemetry benchmark (issue 7): `meshwirectl
capture` running for a whole turn with a filter that none of the
benchmark's frames match, so that what is measured is what a capture
costs while it waits.

`meshwirectl capture` comes from another branch: this is the one place
that knows about it. With a meshwirectl that has the subcommand (its
`capture --help` describes `--point`), the telemetry turns start it; with
one that has not, they run without it and the report says "not available
in this build". Nothing else changes when capture is merged.
"""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path
from typing import Optional

from .processes import Process

NOT_AVAILABLE = "not available in this build"
# Pod frames before encryption, but only to UDP port 9 (discard): the
# benchmark's flows go to other ports, so nothing is ever written.
FILTER_ARGS = ["--point", "pre-encrypt", "--filter", "udp port 9", "-c", "1000000"]


@functools.lru_cache(maxsize=None)
def available(ctl: Path) -> bool:
    """Whether this meshwirectl has `capture`. Its exit status is not
    enough: without the subcommand, CLI11 answers `capture --help` with the
    top-level help and status 0. Asked once per binary."""
    try:
        r = subprocess.run([str(ctl), "capture", "--help"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return r.returncode == 0 and "--point" in r.stdout + r.stderr


def argv(ctl: Path, socket: Path, pcap: Path) -> list:
    return [ctl, "--socket", socket, "capture", *FILTER_ARGS, "-w", pcap]


def describe(ctl: Path) -> str:
    """What the telemetry turns do for a capture, as the report says it."""
    if not available(ctl):
        return NOT_AVAILABLE
    return "meshwirectl capture " + " ".join(f"'{a}'" if " " in a else a for a in FILTER_ARGS)


def start(ctl: Path, socket: Path, workdir: Path, prefix: list) -> Optional[Process]:
    """The idle capture against the data plane at `socket` (argv after
    `prefix`, e.g. a taskset), or None when meshwirectl has no capture."""
    if not available(ctl):
        return None
    return Process("meshwirectl capture", [*prefix, *argv(ctl, socket, workdir / "idle.pcapng")],
                   workdir / "capture.log")
