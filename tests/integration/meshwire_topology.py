"""A throwaway meshwire cluster on one machine, for integration tests and the demo.

Layout (every name starts with a per-run prefix ``mw<4 hex>-``):

    fabric ns:  bridge <p>-fbr ── <p>-n1uf ┐        ┌ <p>-n2uf
                        └──── <p>-injb ── <p>-inj (Scapy injects here)
    node ns n1: <p>-n1u  (uplink, af_packet port "fabric" of the data plane)
                <p>-n1l  (local,  af_packet port "pods")  ── <p>-n1lb ┐
                bridge <p>-n1br ── <p>-n1p1b, <p>-n1p2b ──────────────┘
    pod ns n1p1: eth0 (10.11.0.11/32, fd00:11::11/128, default via 169.254.1.1 / fe80::1)

Every node runs ``meshwire-dataplane`` inside its node namespace with a config
written here (fresh random keys per run). Teardown removes the processes, the
namespaces (and with them every interface), DPDK's runtime folder and the
temporary folder, also after an exception, Ctrl-C or SIGTERM; cleanup_stale()
removes what a killed run left behind.

Needs root, iproute2, tcpdump, tshark, iperf3, iputils-ping, Scapy and
python3-cryptography (Scapy's AES-GCM; only "recommended" by python3-scapy); run
with /usr/bin/python3. No ethtool: offloads are switched off with the ethtool
ioctl directly.
"""
from __future__ import annotations

import atexit
import contextlib
import ctypes
import dataclasses
import fcntl
import json
import os
import re
import secrets
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Iterable, Iterator, Optional

REPO_ROOT = Path(__file__).resolve().parents[2]
STATE_DIR = Path("/run/meshwire-tests")      # one <prefix>.json per live run (owner pid)
NETNS_DIR = Path("/run/netns")
DPDK_RUNTIME_DIR = Path("/var/run/dpdk")
PREFIX_RE = re.compile(r"^(mw[0-9a-f]{4})-")
READY_LINE = "meshwire-dataplane: ready"
GATEWAY_V4 = "169.254.1.1"
GATEWAY_V6 = "fe80::1"
NON_PEER_V4 = "192.0.2.99"    # a fabric address that is no node (unknown_peer tests)


def find_dataplane() -> Path:
    """The data plane binary: $MESHWIRE_DATAPLANE, else $BUILD (default build)."""
    explicit = os.environ.get("MESHWIRE_DATAPLANE")
    if explicit:
        return Path(explicit)
    build = Path(os.environ.get("BUILD", "build"))
    if not build.is_absolute():
        build = REPO_ROOT / build
    return build / "dataplane" / "meshwire-dataplane"


# --------------------------------------------------------------------------
# Commands and namespaces

class CommandError(RuntimeError):
    pass


def run(args: list[str], *, ns: Optional[str] = None, check: bool = True,
        timeout: float = 30, input: Optional[str] = None) -> subprocess.CompletedProcess:
    """Runs a command (in network namespace `ns`), returns its text output."""
    full = (["ip", "netns", "exec", ns] if ns else []) + [str(a) for a in args]
    try:
        done = subprocess.run(full, capture_output=True, text=True, timeout=timeout, input=input)
    except subprocess.TimeoutExpired as e:
        raise CommandError(f"timed out after {timeout}s: {' '.join(full)}") from e
    if check and done.returncode != 0:
        raise CommandError(f"exit {done.returncode}: {' '.join(full)}\n"
                           f"stdout: {done.stdout.strip()}\nstderr: {done.stderr.strip()}")
    return done


def popen(args: list[str], *, ns: Optional[str] = None, **kwargs) -> subprocess.Popen:
    """Starts a command in its own session (Ctrl-C in the terminal reaches
    only us; teardown stops it)."""
    full = (["ip", "netns", "exec", ns] if ns else []) + [str(a) for a in args]
    return subprocess.Popen(full, start_new_session=True, **kwargs)


def stop_process(proc: subprocess.Popen, sig: int = signal.SIGTERM, timeout: float = 10) -> Optional[int]:
    """Signals a process we started and reaps it (SIGKILL after `timeout`)."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            proc.wait(timeout=10)
    return proc.returncode


_libc = ctypes.CDLL(None, use_errno=True)
_CLONE_NEWNET = 0x40000000


@contextlib.contextmanager
def in_netns(name: str) -> Iterator[None]:
    """Moves the calling thread (only it) into network namespace `name` and
    back. Sockets created inside stay in that namespace after the block."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    try:
        target = os.open(NETNS_DIR / name, os.O_RDONLY)
        try:
            if _libc.setns(target, _CLONE_NEWNET) != 0:
                err = ctypes.get_errno()
                raise OSError(err, f"setns into {name}: {os.strerror(err)}")
        finally:
            os.close(target)
        try:
            yield
        finally:
            if _libc.setns(own, _CLONE_NEWNET) != 0:
                # Carrying on in the wrong namespace would be worse than dying.
                os.write(2, b"meshwire_topology: cannot return to own netns\n")
                os._exit(70)
    finally:
        os.close(own)


_SIOCETHTOOL = 0x8946
_ETHTOOL_STXCSUM = 0x17   # tx checksumming; TSO goes with it


class _EthtoolValue(ctypes.Structure):
    _fields_ = [("cmd", ctypes.c_uint32), ("data", ctypes.c_uint32)]


class _Ifreq(ctypes.Structure):
    _fields_ = [("name", ctypes.c_char * 16), ("data", ctypes.c_void_p), ("pad", ctypes.c_char * 16)]


def disable_tx_offloads(ns: str, ifname: str) -> None:
    """`ethtool -K ifname tx off` in `ns`: af_packet hands the data plane
    frames as the sender left them, so checksums must be complete and TCP
    segments MTU-sized (no TSO)."""
    with in_netns(ns):
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    with sock:
        value = _EthtoolValue(_ETHTOOL_STXCSUM, 0)
        req = _Ifreq(ifname.encode(), ctypes.addressof(value), b"")
        fcntl.ioctl(sock.fileno(), _SIOCETHTOOL, req)


def open_packet_socket(ns: str, ifname: str) -> socket.socket:
    """A raw AF_PACKET socket bound to `ifname` in `ns` (for injection)."""
    with in_netns(ns):
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
        sock.bind((ifname, 0))
    return sock


# --------------------------------------------------------------------------
# Security associations

@dataclasses.dataclass
class Sa:
    spi: int
    key: bytes
    salt: bytes
    algorithm: str = "aes-128-gcm"

    @staticmethod
    def fresh(spi: int, algorithm: str = "aes-128-gcm") -> "Sa":
        key_len = {"aes-128-gcm": 16, "aes-256-gcm": 32}[algorithm]
        return Sa(spi, os.urandom(key_len), os.urandom(4), algorithm)

    def config(self) -> dict:
        return {"spi": f"0x{self.spi:x}", "algorithm": self.algorithm,
                "key": self.key.hex(), "salt": self.salt.hex()}

    def scapy(self, src: str, dst: str, sport: int = 4500):
        """Scapy's view of this SA as tunnel-mode ESP-in-UDP with ESN (seq-hi 0)."""
        from scapy.layers.inet import IP, UDP
        from scapy.layers.inet6 import IPv6
        from scapy.layers.ipsec import ESP, SecurityAssociation
        tunnel = IPv6(src=src, dst=dst) if ":" in src else IP(src=src, dst=dst)
        return SecurityAssociation(ESP, spi=self.spi, crypt_algo="AES-GCM",
                                   crypt_key=self.key + self.salt, tunnel_header=tunnel,
                                   nat_t_header=UDP(sport=sport, dport=4500),
                                   esn_en=True, esn=0)

    def tshark_uat(self, src: str, dst: str) -> list[str]:
        family = "IPv6" if ":" in src else "IPv4"
        algo = {"aes-128-gcm": "AES-GCM with 16 octet ICV [RFC4106]",
                "aes-256-gcm": "AES-GCM with 16 octet ICV [RFC4106]"}[self.algorithm]
        return ["-o", f'uat:esp_sa:"{family}","{src}","{dst}","0x{self.spi:08x}","{algo}",'
                      f'"0x{(self.key + self.salt).hex()}","NULL",""']


def esp_encrypt(sa: Sa, src: str, dst: str, inner, seq: int, sport: int = 4500) -> bytes:
    """Tunnel-mode ESP-in-UDP of `inner` (a Scapy IP/IPv6 packet) as bytes of
    the outer IP packet: IV = the 64-bit sequence number, as meshwire sends."""
    from scapy.layers.inet import IP, UDP
    from scapy.layers.inet6 import IPv6
    from scapy.packet import raw
    pkt = sa.scapy(src, dst, sport).encrypt(inner, seq_num=seq, iv=struct.pack("!Q", seq))
    # Scapy writes the NAT-T UDP length as 8 and checksum 0: recompute.
    pkt[UDP].len = None
    if isinstance(pkt, IPv6):
        pkt[UDP].chksum = None
        pkt.plen = None
        return raw(IPv6(raw(pkt)))
    pkt[UDP].chksum = 0
    pkt.len = None
    pkt.chksum = None
    return raw(IP(raw(pkt)))


def esp_seal(sa: Sa, src: str, dst: str, plaintext: bytes, seq: int, sport: int = 4500,
             spi: Optional[int] = None) -> bytes:
    """ESP-in-UDP (outer IPv4) around an exact ESP plaintext (inner packet,
    padding, pad length, next header: whatever the caller wants, broken
    trailers included), sealed with AES-GCM as RFC 4106 with ESN (seq-hi 0).
    Returns the outer IP packet's bytes."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from scapy.layers.inet import IP, UDP
    from scapy.packet import raw
    spi = sa.spi if spi is None else spi
    iv = struct.pack("!Q", seq)
    aad = struct.pack("!III", spi, seq >> 32, seq & 0xFFFFFFFF)
    sealed = AESGCM(sa.key).encrypt(sa.salt + iv, plaintext, aad)
    esp = struct.pack("!II", spi, seq & 0xFFFFFFFF) + iv + sealed
    return raw(IP(src=src, dst=dst) / UDP(sport=sport, dport=4500, chksum=0) / esp)


def esp_trailer(inner: bytes, next_header: int, pad_length: Optional[int] = None) -> bytes:
    """inner + RFC 4303 padding (1, 2, 3, ...) to a 4-byte boundary + pad
    length + next header; `pad_length` overrides the pad length byte only."""
    pad = (-(len(inner) + 2)) % 4
    length = pad if pad_length is None else pad_length
    return inner + bytes(range(1, pad + 1)) + bytes([length, next_header])


# --------------------------------------------------------------------------
# Telemetry

class Telemetry:
    """Client of DPDK's telemetry socket of one data plane process."""

    def __init__(self, file_prefix: str):
        self.path = DPDK_RUNTIME_DIR / file_prefix / "dpdk_telemetry.v2"

    def query(self, command: str, timeout: float = 5) -> dict:
        with socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET) as sock:
            sock.settimeout(timeout)
            sock.connect(str(self.path))
            sock.recv(1 << 16)  # greeting: {"version": ..., "pid": ..., "max_output_len": ...}
            sock.send(command.encode())
            reply = json.loads(sock.recv(1 << 20).decode())
        key = command.split(",", 1)[0]  # the reply is keyed by the command without its parameter
        if key not in reply:
            raise RuntimeError(f"telemetry {command}: unexpected reply {reply}")
        return reply[key]

    def counters(self) -> dict:
        return self.query("/meshwire/counters")

    def ports(self) -> dict:
        return self.query("/meshwire/ports")

    def peers(self) -> dict:
        return self.query("/meshwire/peers")

    def sas(self) -> dict:
        """{"outbound": [...], "inbound": [...]}. DPDK 22.11 telemetry nests
        containers one level only, so the data plane may instead give one flat
        dict per SA keyed like "out/node2/0" with a "direction" field; both
        shapes come back as the former."""
        reply = self.query("/meshwire/sas")
        if isinstance(reply, dict) and {"outbound", "inbound"} <= set(reply):
            return reply
        shaped = {"outbound": [], "inbound": []}
        for sa in (reply or {}).values():
            shaped[sa["direction"]].append(sa)
        return shaped


def counter_value(counters: dict, name: str) -> int:
    """`name` is a top-level counter ("decrypted_packets") or a drop reason
    ("drops.replay" or just "replay")."""
    if name.startswith("drops."):
        return int(counters["drops"][name[len("drops."):]])
    if name in counters:
        return int(counters[name])
    return int(counters["drops"][name])


# --------------------------------------------------------------------------
# The cluster

@dataclasses.dataclass
class Pod:
    name: str           # "n1p1"
    ns: str
    node: "Node"
    ipv4: str
    ipv6: str
    host_if: str        # its veth end on the node's pod bridge

    def address(self, family: int) -> str:
        return self.ipv4 if family == 4 else self.ipv6


@dataclasses.dataclass
class Node:
    name: str           # "node1"
    index: int          # 1-based
    ns: str
    tunnel_address: str
    pod_cidr_v4: str
    pod_cidr_v6: str
    uplink_if: str      # in the node ns, the data plane's "fabric" port
    fabric_if: str      # its peer, on the fabric bridge
    local_if: str       # in the node ns, the data plane's "pods" port
    pod_bridge: str
    file_prefix: str
    pods: list[Pod] = dataclasses.field(default_factory=list)
    # peer name -> SAs (outbound: one per worker, inbound: one per peer worker + extras)
    outbound: dict[str, list[Sa]] = dataclasses.field(default_factory=dict)
    inbound: dict[str, list[Sa]] = dataclasses.field(default_factory=dict)
    config_path: Optional[Path] = None
    api_socket: Optional[Path] = None   # the data plane's control API (gRPC)
    stdout_path: Optional[Path] = None
    stderr_path: Optional[Path] = None
    process: Optional[subprocess.Popen] = None

    @property
    def telemetry(self) -> Telemetry:
        return Telemetry(self.file_prefix)

    def counters(self) -> dict:
        return self.telemetry.counters()

    def counter(self, name: str) -> int:
        return counter_value(self.counters(), name)

    def uplink_mac(self) -> str:
        return self.telemetry.ports()["fabric"]["mac"]

    def log_tail(self, lines: int = 40) -> str:
        out = []
        for path in (self.stdout_path, self.stderr_path):
            if path and path.exists():
                text = path.read_text(errors="replace").splitlines()[-lines:]
                out.append(f"--- {path.name} ---\n" + "\n".join(text))
        return "\n".join(out)


_live_clusters: list["Cluster"] = []
_handlers_installed = False


def _teardown_all() -> None:
    for cluster in list(_live_clusters):
        cluster.teardown()


def _on_signal(signum, frame):
    _teardown_all()
    raise SystemExit(128 + signum)


def _install_handlers() -> None:
    global _handlers_installed
    if _handlers_installed:
        return
    _handlers_installed = True
    atexit.register(_teardown_all)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(sig) in (signal.SIG_DFL, None):
            signal.signal(sig, _on_signal)
    # SIGINT stays Python's KeyboardInterrupt: every caller tears down in
    # finally (pytest fixtures, demo.py); atexit is the last resort.


def _pid_start_time(pid: int) -> Optional[str]:
    """The start time of a live process (with its pid, tells it from a later
    process with the same pid); None when gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    return None if fields[0] in ("Z", "X") else fields[19]


def _netns_pids(ns: str) -> list[int]:
    done = subprocess.run(["ip", "netns", "pids", ns], capture_output=True, text=True)
    return [int(p) for p in done.stdout.split()]


def _kill_netns_processes(ns: str) -> None:
    for _ in range(20):
        pids = _netns_pids(ns)
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)


def _remove_run(prefix: str, namespaces: Iterable[str], tmpdir: Optional[str]) -> None:
    for ns in namespaces:
        if (NETNS_DIR / ns).exists():
            _kill_netns_processes(ns)
            subprocess.run(["ip", "netns", "del", ns], capture_output=True)
    if DPDK_RUNTIME_DIR.is_dir():
        for d in DPDK_RUNTIME_DIR.glob(f"{prefix}-*"):
            shutil.rmtree(d, ignore_errors=True)
    if tmpdir:
        shutil.rmtree(tmpdir, ignore_errors=True)
    with contextlib.suppress(FileNotFoundError):
        (STATE_DIR / f"{prefix}.json").unlink()


def cleanup_stale() -> list[str]:
    """Removes what earlier runs left behind (killed before their teardown):
    namespaces named mw<4 hex>-* and their processes, DPDK runtime folders,
    temporary folders. Runs whose owner process is still alive are left alone
    (another engineer's suite may be running). Returns the removed prefixes."""
    by_prefix: dict[str, list[str]] = {}
    if NETNS_DIR.is_dir():
        for entry in NETNS_DIR.iterdir():
            m = PREFIX_RE.match(entry.name)
            if m:
                by_prefix.setdefault(m.group(1), []).append(entry.name)
    if STATE_DIR.is_dir():
        for state in STATE_DIR.glob("mw*.json"):
            by_prefix.setdefault(state.stem, [])
    if DPDK_RUNTIME_DIR.is_dir():
        for d in DPDK_RUNTIME_DIR.iterdir():
            m = PREFIX_RE.match(d.name)
            if m:
                by_prefix.setdefault(m.group(1), [])
    removed = []
    for prefix, namespaces in sorted(by_prefix.items()):
        tmpdir = None
        state_file = STATE_DIR / f"{prefix}.json"
        try:
            state = json.loads(state_file.read_text())
            alive = _pid_start_time(state["pid"]) == state["start_time"]
            tmpdir = state.get("tmpdir")
            namespaces = sorted(set(namespaces) | set(state.get("namespaces", [])))
        except (OSError, ValueError, KeyError):
            alive = False
        if alive:
            continue
        _remove_run(prefix, namespaces, tmpdir)
        removed.append(prefix)
    return removed


class Cluster:
    """N meshwire nodes with M pods each, on one fabric bridge.

    Usage:
        with Cluster(find_dataplane()) as cluster:   # builds and starts
            cluster.ping(cluster.pods[0], cluster.pods[2])
    """

    def __init__(self, binary: Path, nodes: int = 2, pods_per_node: int = 2, workers: int = 1,
                 tunnel_family: int = 4, extra_inbound: int = 2, keep_dir: bool = False,
                 fabric: str = "af_packet", static_peers: bool = True, extra_config: Optional[dict] = None,
                 node_env: Optional[dict] = None, node_args: Optional[dict] = None):
        """fabric: "af_packet" (uplinks on veths bridged in the fabric
        namespace) or "memif" (two nodes, uplinks joined by one net_memif
        link through shared memory: no kernel between the data planes).
        static_peers: False leaves the peers out of the startup configs (a
        controller programs them through the control API).
        extra_config: further sections of the data planes' configs
        (e.g. {"services": {...}}).
        node_env: node name -> environment variables added for its data
        plane (e.g. libfaketime's, to skew its wall clock).
        node_args: node name -> further command-line arguments of its data
        plane (e.g. --pod-annotations FILE)."""
        if fabric not in ("af_packet", "memif") or (fabric == "memif" and nodes != 2):
            raise ValueError(f"fabric {fabric!r} with {nodes} nodes")
        self.fabric = fabric
        self.static_peers = static_peers
        self.extra_config = extra_config or {}  # more top-level sections of every node's config
        self.node_env = node_env or {}
        self.node_args = node_args or {}
        self.binary = Path(binary)
        self.workers = workers
        self.tunnel_family = tunnel_family
        self.extra_inbound = extra_inbound
        self.keep_dir = keep_dir or os.environ.get("MESHWIRE_KEEP_LOGS") == "1"
        self.prefix = "mw" + secrets.token_hex(2)
        self.namespaces: list[str] = []
        self.fabric_ns = f"{self.prefix}-fab"
        self.fabric_bridge = f"{self.prefix}-fbr"
        self.inject_if = f"{self.prefix}-inj"
        self.tmpdir: Optional[Path] = None
        self._torn_down = False
        self._scratch = 0
        self.nodes: list[Node] = []
        for i in range(1, nodes + 1):
            p = f"{self.prefix}-n{i}"
            tunnel = f"192.0.2.{i}" if tunnel_family == 4 else f"2001:db8::{i}"
            node = Node(name=f"node{i}", index=i, ns=p, tunnel_address=tunnel,
                        pod_cidr_v4=f"10.{10 + i}.0.0/24", pod_cidr_v6=f"fd00:{10 + i}::/64",
                        uplink_if=f"{p}u", fabric_if=f"{p}uf", local_if=f"{p}l",
                        pod_bridge=f"{p}br", file_prefix=p)
            for j in range(1, pods_per_node + 1):
                node.pods.append(Pod(name=f"n{i}p{j}", ns=f"{p}p{j}", node=node,
                                     ipv4=f"10.{10 + i}.0.{10 + j}", ipv6=f"fd00:{10 + i}::{10 + j}",
                                     host_if=f"{p}p{j}b"))
            self.nodes.append(node)
        self._make_sas()

    # ---- lifecycle

    def __enter__(self) -> "Cluster":
        try:
            self.create()
            self.start()
        except BaseException:
            self.teardown()
            raise
        return self

    def __exit__(self, *exc) -> None:
        self.teardown()

    @property
    def pods(self) -> list[Pod]:
        return [pod for node in self.nodes for pod in node.pods]

    def node(self, name: str) -> Node:
        return next(n for n in self.nodes if n.name == name)

    def _make_sas(self) -> None:
        """Per ordered pair (a -> b) and worker w: SPI 0x<a><b>0<w+1>, e.g.
        node1 -> node2 worker 0 = 0x1201; extra inbound SAs on b for a (for
        Scapy as a fake sender a) get 0x<a><b>f<k>."""
        for a in self.nodes:
            for b in self.nodes:
                if a is b:
                    continue
                sas = [Sa.fresh((a.index << 12) | (b.index << 8) | (w + 1)) for w in range(self.workers)]
                a.outbound[b.name] = sas
                extras = [Sa.fresh((a.index << 12) | (b.index << 8) | 0xF0 | k)
                          for k in range(self.extra_inbound)]
                b.inbound[a.name] = list(sas) + extras

    def spare_sa(self, sender: str, receiver: str, k: int = 0) -> Sa:
        """The k-th extra inbound SA of `receiver` for `sender`: only Scapy
        sends with it."""
        return self.node(receiver).inbound[sender][self.workers + k]

    def _write_state(self) -> None:
        STATE_DIR.mkdir(parents=True, exist_ok=True)
        state = {"pid": os.getpid(), "start_time": _pid_start_time(os.getpid()),
                 "namespaces": self.namespaces, "tmpdir": str(self.tmpdir) if self.tmpdir else None}
        tmp = STATE_DIR / f".{self.prefix}.json.tmp"
        tmp.write_text(json.dumps(state))
        tmp.replace(STATE_DIR / f"{self.prefix}.json")

    def _add_ns(self, name: str) -> None:
        self.namespaces.append(name)
        self._write_state()  # before creating: a crash leaves a record
        run(["ip", "netns", "add", name])
        run(["ip", "-n", name, "link", "set", "lo", "up"])

    def create(self) -> None:
        """Builds namespaces, bridges and veths, and writes the configs."""
        _install_handlers()
        _live_clusters.append(self)
        self.tmpdir = Path(tempfile.mkdtemp(prefix=f"{self.prefix}-"))
        self._write_state()

        # Fabric: a bridge, no IPv6 on anything (no MLD/RS noise on the wire).
        f = self.fabric_ns
        self._add_ns(f)
        self._sysctls(f, {"net.ipv6.conf.all.disable_ipv6": 1, "net.ipv6.conf.default.disable_ipv6": 1})
        self._plain_bridging(f)
        run(["ip", "-n", f, "link", "add", self.fabric_bridge, "type", "bridge",
             "stp_state", "0", "mcast_snooping", "0"])
        run(["ip", "-n", f, "link", "add", self.inject_if, "type", "veth", "peer", "name", f"{self.prefix}-injb"])
        run(["ip", "-n", f, "link", "set", f"{self.prefix}-injb", "master", self.fabric_bridge, "up"])
        run(["ip", "-n", f, "link", "set", self.inject_if, "up"])
        run(["ip", "-n", f, "link", "set", self.fabric_bridge, "up"])

        for node in self.nodes:
            n = node.ns
            self._add_ns(n)
            # The node's kernel stays silent: no IPv6, no addresses, no forwarding.
            self._sysctls(n, {"net.ipv6.conf.all.disable_ipv6": 1, "net.ipv6.conf.default.disable_ipv6": 1})
            self._plain_bridging(n)
            run(["ip", "-n", n, "link", "add", node.uplink_if, "type", "veth",
                 "peer", "name", node.fabric_if, "netns", f])
            run(["ip", "-n", f, "link", "set", node.fabric_if, "master", self.fabric_bridge, "up"])
            run(["ip", "-n", n, "link", "set", node.uplink_if, "up"])
            run(["ip", "-n", n, "link", "add", node.pod_bridge, "type", "bridge",
                 "stp_state", "0", "mcast_snooping", "0"])
            run(["ip", "-n", n, "link", "set", node.pod_bridge, "up"])
            run(["ip", "-n", n, "link", "add", node.local_if, "type", "veth", "peer", "name", f"{node.local_if}b"])
            run(["ip", "-n", n, "link", "set", f"{node.local_if}b", "master", node.pod_bridge, "up"])
            run(["ip", "-n", n, "link", "set", node.local_if, "up"])
            for pod in node.pods:
                self._create_pod(pod)
            self._write_config(node)

    def _sysctls(self, ns: str, values: dict) -> None:
        run(["sysctl", "-q", "-w"] + [f"{k}={v}" for k, v in values.items()], ns=ns)

    def _plain_bridging(self, ns: str) -> None:
        """Bridges only switch frames: with br_netfilter loaded (Docker hosts)
        bridged IP would pass iptables/conntrack, which drops the malformed
        frames the tests inject. Per namespace since Linux 5.3; absent
        without br_netfilter (-e: unknown keys are fine)."""
        run(["sysctl", "-q", "-e", "-w", "net.bridge.bridge-nf-call-iptables=0",
             "net.bridge.bridge-nf-call-ip6tables=0", "net.bridge.bridge-nf-call-arptables=0"], ns=ns, check=False)

    def _create_pod(self, pod: Pod) -> None:
        p, n = pod.ns, pod.node.ns
        self._add_ns(p)
        self._sysctls(p, {
            "net.ipv6.conf.all.accept_dad": 0, "net.ipv6.conf.default.accept_dad": 0,
            "net.ipv6.conf.all.router_solicitations": 0, "net.ipv6.conf.default.router_solicitations": 0,
            "net.ipv6.conf.all.accept_ra": 0, "net.ipv6.conf.default.accept_ra": 0,
        })
        run(["ip", "-n", n, "link", "add", pod.host_if, "type", "veth", "peer", "name", "eth0", "netns", p])
        run(["ip", "-n", n, "link", "set", pod.host_if, "master", pod.node.pod_bridge, "up"])
        disable_tx_offloads(p, "eth0")
        cmds = [
            ["addr", "add", f"{pod.ipv4}/32", "dev", "eth0"],
            ["-6", "addr", "add", f"{pod.ipv6}/128", "dev", "eth0", "nodad"],
            ["link", "set", "eth0", "up"],
            ["route", "add", GATEWAY_V4, "dev", "eth0"],
            ["route", "add", "default", "via", GATEWAY_V4, "dev", "eth0"],
            ["-6", "route", "add", "default", "via", GATEWAY_V6, "dev", "eth0"],
        ]
        for c in cmds:
            run(["ip", "-n", p] + c)

    def _uplink_device(self, node: Node, queues: str) -> str:
        if self.fabric == "memif":
            role = "server" if node.index == 1 else "client"
            # A path socket: abstract ones are per network namespace.
            return (f"net_memif1,role={role},id=0,socket={self.tmpdir}/fabric.memif,socket-abstract=no"
                    + (f",rx_queues={self.workers},tx_queues={self.workers}" if self.workers > 1 else ""))
        return f"net_af_packet1,iface={node.uplink_if}{queues}"

    def _write_config(self, node: Node) -> None:
        import yaml
        eal = ["--no-huge", "-m", "512", "--no-pci", "--file-prefix", node.file_prefix,
               "--log-level", "lib.eal:notice"]
        if self.workers + 1 <= (os.cpu_count() or 1):
            eal += ["-l", f"0-{self.workers}"]
        # else: no lcore option, so the data plane spreads its lcores over its CPU affinity
        queues = f",qpairs={self.workers}" if self.workers > 1 else ""
        config = {
            "eal": eal,
            "workers": self.workers,
            "idle": "adaptive",
            "node": {"name": node.name, "tunnel_address": node.tunnel_address,
                     "pod_cidrs": [node.pod_cidr_v4, node.pod_cidr_v6]},
            "ports": [
                {"name": "pods", "device": f"net_af_packet0,iface={node.local_if}{queues}", "role": "local"},
                {"name": "fabric", "device": self._uplink_device(node, queues), "role": "uplink"},
            ],
            "peers": [
                {"name": peer.name, "tunnel_address": peer.tunnel_address,
                 "pod_cidrs": [peer.pod_cidr_v4, peer.pod_cidr_v6],
                 "sas": {"outbound": [sa.config() for sa in node.outbound[peer.name]],
                         "inbound": [sa.config() for sa in node.inbound[peer.name]]}}
                for peer in self.nodes if peer is not node and self.static_peers
            ],
        }
        config.update(self.extra_config)
        node.config_path = self.tmpdir / f"{node.name}.yaml"
        node.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        node.config_path.chmod(0o600)

    def start(self, timeout: float = 60) -> None:
        """Starts every node's data plane and waits for its ready line."""
        for node in self.nodes:
            self.start_node(node, timeout=timeout)

    def start_node(self, node: Node, timeout: float = 60) -> None:
        if not self.binary.exists():
            raise RuntimeError(f"data plane binary {self.binary} does not exist (build it: ninja -C build)")
        node.stdout_path = self.tmpdir / f"{node.name}.stdout"
        node.stderr_path = self.tmpdir / f"{node.name}.stderr"
        node.api_socket = self.tmpdir / f"{node.name}.api.sock"
        with open(node.stdout_path, "wb") as out, open(node.stderr_path, "wb") as err:
            env = {**os.environ, **self.node_env[node.name]} if node.name in self.node_env else None
            node.process = popen([self.binary, "--config", node.config_path, "--api-socket", node.api_socket,
                                  *self.node_args.get(node.name, [])],
                                 ns=node.ns, env=env,
                                 stdin=subprocess.DEVNULL, stdout=out, stderr=err)
        deadline = time.monotonic() + timeout
        while True:
            if READY_LINE in node.stdout_path.read_text(errors="replace"):
                break
            if node.process.poll() is not None:
                raise RuntimeError(f"{node.name}: meshwire-dataplane exited with {node.process.returncode} "
                                   f"before ready\n{node.log_tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"{node.name}: no '{READY_LINE}' within {timeout}s\n{node.log_tail()}")
            time.sleep(0.1)
        while not node.telemetry.path.exists():
            if time.monotonic() > deadline:
                raise RuntimeError(f"{node.name}: no telemetry socket {node.telemetry.path}")
            time.sleep(0.1)

    def stop_node(self, node: Node) -> Optional[int]:
        if node.process is None:
            return None
        rc = stop_process(node.process, signal.SIGTERM, timeout=10)
        return rc

    def teardown(self) -> None:
        if self._torn_down:
            return
        self._torn_down = True
        for node in self.nodes:
            with contextlib.suppress(Exception):
                self.stop_node(node)
        keep = self.keep_dir and self.tmpdir
        _remove_run(self.prefix, self.namespaces, None if keep else str(self.tmpdir) if self.tmpdir else None)
        if keep:
            print(f"meshwire_topology: logs kept in {self.tmpdir}")
        if self in _live_clusters:
            _live_clusters.remove(self)

    def scratch_ns(self) -> str:
        """An empty extra namespace, removed with the cluster."""
        self._scratch += 1
        name = f"{self.prefix}-x{self._scratch}"
        self._add_ns(name)
        return name

    # ---- traffic helpers

    def ping(self, src: Pod, dst: Pod | str, family: int = 4, count: int = 3, size: Optional[int] = None,
             deadline: float = 10, extra: Iterable[str] = (), check: bool = False) -> subprocess.CompletedProcess:
        """`ping` from pod `src`; succeeds (rc 0) when `count` replies came
        within `deadline` seconds (first packets may wait for resolution)."""
        target = dst.address(family) if isinstance(dst, Pod) else dst
        args = ["ping", f"-{family}", "-n", "-c", str(count), "-i", "0.2", "-w", str(deadline)]
        if size is not None:
            args += ["-s", str(size)]
        args += list(extra) + [target]
        return run(args, ns=src.ns, check=check, timeout=deadline + 10)

    def iperf3(self, client: Pod, server: Pod, family: int = 4, seconds: Optional[float] = 3,
               port: int = 5201, extra: Iterable[str] = ()) -> dict:
        """One iperf3 TCP run; returns the client's JSON report."""
        srv = popen(["iperf3", "-s", "-1", "-p", str(port)], ns=server.ns,
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_for(lambda: run(["ss", "-Hltn", f"sport = :{port}"], ns=server.ns).stdout.strip(),
                     timeout=10, what=f"iperf3 server listening in {server.name}")
            length = ["-t", str(seconds)] if seconds is not None else []
            done = run(["iperf3", "-c", server.address(family), "-p", str(port), "-J",
                        "--connect-timeout", "5000"] + length + list(extra),
                       ns=client.ns, check=False, timeout=(seconds or 10) + 30)
            try:
                report = json.loads(done.stdout)
            except ValueError:
                raise CommandError(f"iperf3 gave no JSON (rc {done.returncode}): {done.stdout[-500:]} {done.stderr}")
            if "error" in report:
                raise CommandError(f"iperf3 {client.name} -> {server.name}: {report['error']}")
            return report
        finally:
            stop_process(srv, signal.SIGTERM, timeout=5)

    @contextlib.contextmanager
    def capture(self, ns: str, iface: str, bpf: str = "", name: Optional[str] = None) -> Iterator[Path]:
        """tcpdump -w in `ns` on `iface` for the duration of the block; the
        pcap path is yielded (complete once the block has left)."""
        name = name or f"{ns}-{iface}-{time.monotonic_ns()}"
        path = self.tmpdir / f"{name}.pcap"
        errpath = self.tmpdir / f"{name}.tcpdump.err"
        with open(errpath, "wb") as err:
            proc = popen(["tcpdump", "-i", iface, "-n", "-U", "--immediate-mode", "-Z", "root", "-s", "0", "-w", path]
                         + (bpf.split() if bpf else []), ns=ns,
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=err)
        try:
            wait_for(lambda: "listening on" in errpath.read_text(errors="replace") or proc.poll() is not None,
                     timeout=10, what=f"tcpdump on {iface}")
            if proc.poll() is not None:
                raise CommandError(f"tcpdump on {ns}/{iface} failed: {errpath.read_text()}")
            yield path
            time.sleep(0.3)  # let the last packets through
        finally:
            stop_process(proc, signal.SIGINT, timeout=5)

    def fabric_capture(self, name: Optional[str] = None):
        return self.capture(self.fabric_ns, self.fabric_bridge, name=name)

    def injector(self) -> "Injector":
        return Injector(self)


class Injector:
    """Sends raw frames onto the fabric bridge from the injection veth."""

    def __init__(self, cluster: Cluster):
        self.cluster = cluster
        self.sock = open_packet_socket(cluster.fabric_ns, cluster.inject_if)
        out = run(["ip", "-j", "-n", cluster.fabric_ns, "link", "show", cluster.inject_if]).stdout
        self.mac = json.loads(out)[0]["address"]   # source MAC of injected frames

    def send(self, frames) -> int:
        """Sends Scapy frames or bytes; returns how many."""
        from scapy.packet import raw
        n = 0
        for frame in frames:
            self.sock.send(frame if isinstance(frame, (bytes, bytearray)) else raw(frame))
            n += 1
        return n

    def close(self) -> None:
        self.sock.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class EspSender:
    """Scapy posing as `sender`'s data plane towards `receiver`, with an extra
    inbound SA of the receiver that no data plane sends with. Sequence
    numbers only grow over the whole run (the receiver has an anti-replay
    window). Frames go to the receiver's uplink MAC from the injection veth."""

    def __init__(self, cluster: Cluster, injector: Injector, sender: str = "node1",
                 receiver: str = "node2", sport: int = 49999, spare: int = 0):
        self.cluster = cluster
        self.injector = injector
        self.sender = cluster.node(sender)
        self.receiver = cluster.node(receiver)
        self.sa = cluster.spare_sa(sender, receiver, spare)
        self.sport = sport
        self._next_seq = 1
        self.dst_mac = self.receiver.uplink_mac()

    def take_seq(self) -> int:
        seq = self._next_seq
        self._next_seq += 1
        return seq

    def skip_to(self, seq: int) -> None:
        """Later sequence numbers start at `seq` (after a jump ahead)."""
        self._next_seq = max(self._next_seq, seq)

    def sealed_frame(self, plaintext: bytes, seq: Optional[int] = None) -> bytes:
        """A frame with an exact ESP plaintext (see esp_seal), IPv4 fabric."""
        return self.frame(esp_seal(self.sa, self.sender.tunnel_address, self.receiver.tunnel_address,
                                   plaintext, seq if seq is not None else self.take_seq(), self.sport))

    def esp_packet(self, inner, seq: Optional[int] = None, sa: Optional[Sa] = None,
                   src: Optional[str] = None) -> bytes:
        """Outer IP packet (bytes) carrying `inner` encrypted."""
        return esp_encrypt(sa or self.sa, src or self.sender.tunnel_address, self.receiver.tunnel_address,
                           inner, seq if seq is not None else self.take_seq(), self.sport)

    def frame(self, ip_packet) -> bytes:
        """Ethernet frame to the receiver's uplink around an IP packet (bytes
        or Scapy)."""
        from scapy.layers.l2 import Ether
        from scapy.packet import raw
        data = ip_packet if isinstance(ip_packet, (bytes, bytearray)) else raw(ip_packet)
        ethertype = 0x86DD if (data[0] >> 4) == 6 else 0x0800
        return raw(Ether(src=self.injector.mac, dst=self.dst_mac, type=ethertype)) + bytes(data)

    def esp_frame(self, inner, **kw) -> bytes:
        return self.frame(self.esp_packet(inner, **kw))

    def send(self, frames) -> int:
        return self.injector.send(frames)


# --------------------------------------------------------------------------
# Waiting and parsing

def wait_for(predicate, timeout: float = 10, interval: float = 0.1, what: str = "condition"):
    """Polls until predicate() is truthy; returns its value or raises TimeoutError."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


@contextlib.contextmanager
def running_cluster(binary: Path, **kwargs) -> Iterator["Cluster"]:
    """A further cluster (Cluster(**kwargs)), created and started for the
    block and always torn down."""
    c = Cluster(binary, **kwargs)
    try:
        c.create()
        c.start()
        yield c
    finally:
        c.teardown()


def wait_counter(node: Node, name: str, at_least: int, timeout: float = 10) -> int:
    """Waits until counter `name` of `node` reaches `at_least`; returns the
    value then (the caller asserts the exact value it expects)."""
    last = [None]

    def reached():
        last[0] = node.counter(name)
        return last[0] >= at_least

    try:
        wait_for(reached, timeout=timeout, what=f"{node.name} {name} >= {at_least}")
    except TimeoutError:
        counters = node.counters()
        drops = {k: v for k, v in counters.get("drops", {}).items() if v}
        raise AssertionError(f"{node.name}: counter {name} is {last[0]}, expected at least {at_least} "
                             f"within {timeout}s; drops so far: {drops}") from None
    time.sleep(0.3)  # anything still in flight would be counted now
    return node.counter(name)


_PING_SUMMARY = re.compile(r"(\d+) packets transmitted, (\d+) received")


def ping_counts(output: str) -> tuple[int, int]:
    m = _PING_SUMMARY.search(output)
    if not m:
        raise ValueError(f"no ping summary in: {output!r}")
    return int(m.group(1)), int(m.group(2))


class BackgroundPing:
    """A ping running while something else happens; stop() returns
    (transmitted, received)."""

    def __init__(self, src: Pod, dst: Pod, family: int = 4, interval: float = 0.2):
        self.proc = popen(["ping", f"-{family}", "-n", "-i", str(interval), "-W", "2",
                           dst.address(family)], ns=src.ns,
                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def stop(self) -> tuple[int, int]:
        stop_process(self.proc, signal.SIGINT, timeout=5)
        out = self.proc.stdout.read()
        self.proc.stdout.close()
        self.output = out
        return ping_counts(out)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.proc.poll() is None:
            self.stop()
