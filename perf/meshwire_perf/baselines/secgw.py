"""DPDK's reference IPsec gateway, ``ipsec-secgw``, as a benchmark baseline.

PROVENANCE
==========
* Sources: the ``ipsec-secgw`` example of the DPDK release installed on the
  machine (Debian 12: ``dpdk-doc`` 22.11.x, files under
  ``/usr/share/dpdk/examples/ipsec-secgw`` plus ``../common``). Nothing of
  it is kept in this repository: ``build()`` copies both folders into the
  caller's work directory and builds there with the example's own Makefile
  (``make shared``: ``cc -O3 $(pkg-config --cflags libdpdk)
  -DALLOW_EXPERIMENTAL_API ...``, linked against the shared DPDK libraries,
  so the ipsec-mb crypto PMDs come from Debian's ``librte-crypto-ipsec-mb``).
* One change to the copy, made by ``build()`` and nothing else: in
  ``ipsec-secgw.c`` the default port configuration asks for RX checksum
  offload (``.offloads = RTE_ETH_RX_OFFLOAD_CHECKSUM``) and the application
  refuses to start on a port without it ("required RX offloads: 0xe,
  available RX offloads: 0x0"). No virtual device has it (net_memif,
  net_pcap, net_null, net_ring all fail), so the copy asks for no RX
  offload instead. The application never reads the RX checksum flags, so
  its data path is unchanged. If a later DPDK drops that line the patch is
  skipped.
* Options used (see ``command()``): ``-p 0x3 -u 0x2 -P`` (port 0 protected
  pod side, port 1 unprotected fabric side, promiscuous), ``--config
  '(0,0,L),(1,0,L')'`` (one RX queue per port), ``-f <config>``, ``-l``
  (the librte_ipsec code path: only that path supports cpu-crypto, ESN and
  anti-replay), ``-e`` (ESN), ``-w 2048`` (replay window of the inbound SAs,
  as meshwire), crypto vdev ``crypto_aesni_gcm`` (Intel ipsec-mb). The
  forwarding loop runs on the main lcore when ``lcores`` has one core.
* SA type: ``cpu-crypto`` by default (synchronous
  ``rte_cryptodev_sym_cpu_crypto_process`` on the forwarding core, no crypto
  op enqueue/dequeue); ``lookaside-none`` (``type no-offload``: the same
  ipsec-mb code behind a software cryptodev queue pair) is supported too.
  Both are software crypto on the forwarding core. Measured on the 2-vCPU
  development VM (shared, noisy; secgw on one core fed by net_pcap
  ``infinite_rx`` on the same core, so the absolute figures include the
  source's copy; best of 4 interleaved runs, Mpps sent, 64 B / 1400 B):
  cpu-crypto + crypto_aesni_gcm 5.85 / 2.92, lookaside-none +
  crypto_aesni_gcm 5.56 / 2.50, cpu-crypto + crypto_aesni_mb 4.58 / 2.47,
  lookaside-none + crypto_aesni_mb 4.86 / 2.46. Hence the defaults:
  cpu-crypto on crypto_aesni_gcm, the strongest baseline.

What differs from meshwire's wire format
----------------------------------------
meshwire: tunnel-mode ESP in UDP/4500 (RFC 3948), AES-GCM (RFC 4106) with a
16-byte ICV, IV = the 64-bit sequence number, ESN always on (sequence starts
at 1), padding to 4 bytes, anti-replay window 2048, outer IPv4 with DF and
TTL 64.

ipsec-secgw 22.11 as configured here:

* **Plain ESP (IP protocol 50), no UDP/4500 encapsulation.** Its SA parser
  accepts ``udp-encap`` only for ``lookaside-protocol-offload``,
  ``inline-protocol-offload`` and ``inline-crypto-offload`` (hardware), and
  rejects it for ``no-offload``/``cpu-crypto`` ("UDP encapsulation not
  supported for security session type ..."); ``supports_udp_encap()``
  returns False for both software modes and ``SecgwSa.udp_encap`` is then
  ignored. Each packet is therefore 8 bytes shorter on the wire than
  meshwire's, and no UDP header is written.
* Same AEAD: AES-GCM-128/192/256, 16-byte ICV, nonce = salt || IV, IV = the
  64-bit sequence number, sequence numbers start at 1; with ``-e`` the high
  32 bits are in the AAD (checked: Scapy decrypts with ``esn_en=True,
  esn=0`` and fails with ``esn_en=False``). Padding to 4 bytes.
* One SPI serves one inner address family (secgw looks the SA's inner
  protocol up in its SP tables and refuses an SPI used by IPv4 and IPv6
  rules). ``write_config`` therefore gives IPv4 pod CIDRs ``sa.spi`` and
  IPv6 pod CIDRs ``sa.spi + 1`` (just ``sa.spi`` when only one family is
  given), same key, same tunnel: see ``outbound_spis()``.
* The outer header is librte_ipsec's template: TTL 64, DSCP/ECN copied from
  the inner packet, DF not set, IPv4 checksum in software on these ports.
* Anti-replay (``-w 2048``) and ESN apply to the inbound SA that the
  configuration also holds (secgw refuses ``-u`` without an inbound SA); the
  benchmark direction (pod -> fabric) only encrypts.
* The inner packet is not touched: no TTL/hop-limit decrement (meshwire
  decrements it, a router hop), no MSS clamping, no ICMP errors.
* secgw does not answer or send ARP/ND: the fabric next hop (``peer_mac``)
  is a static ``neigh`` rule in the config file (22.11 has no
  ``--eth-dest`` option), and frames leave with the port's own MAC as
  source (net_pcap: 02:70:63:61:70:0N; net_memif: random unless the vdev has
  ``mac=``). Ports are promiscuous, so the generator's destination MAC does
  not matter. Non-IP frames (ARP, ...) are dropped with one
  "Unsupported packet type" error line each in the log: don't send them.

Running it
----------
* Ready marker: ``READY_MARKER`` ("entering main loop on lcore") is logged
  on stderr (DPDK's log) about 0.5 s after start on net_pcap ports. Before
  that secgw waits for the links of all ports, up to 9 s, then starts
  anyway. net_memif: as ``role=client`` secgw exits at once ("rte_eth_dev_start:
  err=-1") when the server socket is not there yet; as ``role=server`` it is
  ready as soon as both peers connect (or after the 9 s), and peers that
  connect later still get traffic. stdout (printf) is block-buffered when
  it is a pipe or a file, hence ``stdbuf -oL`` in ``command()``.
* SIGINT/SIGTERM: the loop stops, cryptodev and ports are closed, "Bye..."
  and exit status 0, in well under a second.
* Memory: with ``--no-huge`` it needs at least ``-m 512`` (8512 mbufs,
  ACL and LPM tables); ``-m 1024`` is what the tests use.
"""

from __future__ import annotations

import fcntl
import ipaddress
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

SECGW_SRC = Path("/usr/share/dpdk/examples/ipsec-secgw")
COMMON_SRC = Path("/usr/share/dpdk/examples/common")

#: Logged (stderr) when the forwarding loop starts.
READY_MARKER = "entering main loop on lcore"

#: The software session types that ``write_config`` accepts, fastest first.
MODES = ("cpu-crypto", "lookaside-none")
DEFAULT_MODE = "cpu-crypto"
_MODE_ALIASES = {"cpu-crypto": "cpu-crypto", "lookaside-none": "lookaside-none",
                 "no-offload": "lookaside-none", "cryptodev": "lookaside-none"}
_SA_TYPE = {"cpu-crypto": "cpu-crypto", "lookaside-none": "no-offload"}

#: The crypto PMD (Intel ipsec-mb) that both modes use.
DEFAULT_CRYPTO_VDEV = "crypto_aesni_gcm0"
REPLAY_WINDOW = 2048

_BUILD_SUBDIR = "ipsec-secgw-src"
# Bump when the build recipe or the patch below changes.
_RECIPE = "meshwire-secgw-build-1"
_RX_CSUM_LINE = ".offloads = RTE_ETH_RX_OFFLOAD_CHECKSUM,"
_RX_CSUM_PATCHED = ".offloads = 0, /* meshwire: virtual ports have no RX checksum offload */"
_RTE_MBUF_DEFAULT_BUF_SIZE = 2048 + 128


@dataclass
class SecgwSa:
    spi: int
    key: bytes          # 16 (aes-128-gcm), 24 or 32 bytes
    salt: bytes         # 4 bytes
    tunnel_src: str     # outer source (this gateway), IPv4 or IPv6 text
    tunnel_dst: str     # outer destination (the peer)
    udp_encap: bool = True   # honoured only where supports_udp_encap(mode)


def _mode(mode: str) -> str:
    try:
        return _MODE_ALIASES[mode]
    except KeyError:
        raise ValueError(f"unknown secgw mode {mode!r}; use one of {MODES}") from None


def supports_udp_encap(mode: str) -> bool:
    """Whether this ipsec-secgw (22.11) can send ESP-in-UDP/4500 in ``mode``.
    It cannot in either software mode: its SA parser allows ``udp-encap``
    only for hardware (lookaside/inline protocol, inline crypto) sessions."""
    _mode(mode)
    return False


def _dpdk_version() -> str:
    try:
        out = subprocess.run(["pkg-config", "--modversion", "libdpdk"], capture_output=True,
                             text=True, check=True)
    except (OSError, subprocess.CalledProcessError) as e:
        raise RuntimeError(f"pkg-config libdpdk failed (install dpdk-dev and pkg-config): {e}") from e
    return out.stdout.strip()


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.splitlines()[-lines:])


def build(workdir: Path) -> Path:
    """Builds ipsec-secgw under workdir (reuses a previous build); returns the binary path.
    Raises RuntimeError with the compiler output tail on failure."""
    workdir = Path(workdir)
    if not (SECGW_SRC / "ipsec-secgw.c").is_file():
        raise RuntimeError(f"{SECGW_SRC} is missing: install Debian's dpdk-doc package")
    if shutil.which("make") is None or shutil.which(os.environ.get("CC", "cc")) is None:
        raise RuntimeError("make and a C compiler are needed to build ipsec-secgw")
    stamp_text = f"{_RECIPE} dpdk={_dpdk_version()}\n"
    workdir.mkdir(parents=True, exist_ok=True)
    root = workdir / _BUILD_SUBDIR
    app = root / "ipsec-secgw"
    binary = app / "build" / "ipsec-secgw-shared"
    stamp = root / "meshwire-build.stamp"
    with open(workdir / ".ipsec-secgw-build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)   # two builders of one workdir take turns
        if binary.is_file() and os.access(binary, os.X_OK) and stamp.is_file() \
                and stamp.read_text() == stamp_text:
            return binary
        if root.exists():
            shutil.rmtree(root)
        root.mkdir()
        shutil.copytree(SECGW_SRC, app, ignore=shutil.ignore_patterns("test", "__pycache__"))
        if COMMON_SRC.is_dir():
            shutil.copytree(COMMON_SRC, root / "common")
        src = app / "ipsec-secgw.c"
        text = src.read_text()
        if text.count(_RX_CSUM_LINE) == 1:
            src.write_text(text.replace(_RX_CSUM_LINE, _RX_CSUM_PATCHED))
        for f in app.rglob("*"):
            f.chmod(f.stat().st_mode | 0o200)   # dpdk-doc files are read-only
        proc = subprocess.run(["make", "-C", str(app), "shared"], stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
        if proc.returncode != 0 or not binary.is_file():
            raise RuntimeError(f"building ipsec-secgw failed (make exit {proc.returncode}):\n"
                               f"{_tail(proc.stdout)}")
        stamp.write_text(stamp_text)
    return binary


def _family(addr: str) -> int:
    return ipaddress.ip_address(addr).version


def outbound_spis(sa: SecgwSa, protected_cidrs: list[str]) -> dict[int, int]:
    """The outbound SPI per inner IP version (4 or 6) that ``write_config``
    uses: sa.spi for IPv4 pods, sa.spi + 1 for IPv6 pods when both are given
    (secgw binds an SPI to one inner family), else sa.spi."""
    versions = sorted({ipaddress.ip_network(c, strict=False).version for c in protected_cidrs})
    if not versions:
        raise ValueError("protected_cidrs is empty")
    if len(versions) == 1:
        return {versions[0]: sa.spi}
    return {4: sa.spi, 6: sa.spi + 1}


def _hex_key(b: bytes) -> str:
    return ":".join(f"{x:02x}" for x in b)


def _mac(mac: str) -> str:
    m = mac.strip().lower().replace("-", ":")
    if not re.fullmatch(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}", m):
        raise ValueError(f"not a MAC address: {mac!r}")
    return m


def _net_text(net) -> str:
    if net.version == 6:
        return f"{net.network_address.exploded}/{net.prefixlen}"
    return str(net)


def write_config(workdir: Path, sa: SecgwSa, protected_cidrs: list[str], peer_mac: str,
                 mode: str = DEFAULT_MODE, *, pod_mac: str | None = None,
                 name: str = "ipsec-secgw.cfg") -> Path:
    """Writes the secgw config file (SP, SA, RT rules): outbound traffic arriving on the protected port (port 0)
    whose destination is in protected_cidrs (the remote pods, IPv4 and/or IPv6 CIDRs) is encrypted with sa
    in tunnel mode and sent out the unprotected port (port 1). Returns its path.

    Also written, because secgw refuses an unprotected port without them: the
    mirror inbound SA(s) (same SPI(s) and key, tunnel peer -> us, anti-replay
    and ESN as on the command line), an inbound SP that requires ESP for
    everything, and routes sending decrypted traffic to port 0 (whose
    next-hop MAC is pod_mac, else secgw's built-in default)."""
    mode = _mode(mode)
    if len(sa.key) not in (16, 24, 32):
        raise ValueError(f"AES-GCM key must be 16, 24 or 32 bytes, not {len(sa.key)}")
    if len(sa.salt) != 4:
        raise ValueError(f"salt must be 4 bytes, not {len(sa.salt)}")
    if not 0 < sa.spi < 0xFFFFFFFF:
        raise ValueError(f"bad SPI {sa.spi}")
    tun = _family(sa.tunnel_src)
    if _family(sa.tunnel_dst) != tun:
        raise ValueError("tunnel_src and tunnel_dst must be of one IP version")
    nets = [ipaddress.ip_network(c, strict=False) for c in protected_cidrs]
    spis = outbound_spis(sa, protected_cidrs)
    if max(spis.values()) >= 0xFFFFFFFF:
        raise ValueError(f"bad SPI {sa.spi}")
    algo = f"aes-{len(sa.key) * 8}-gcm"
    key = _hex_key(sa.key + sa.salt)
    tmode = "ipv4-tunnel" if tun == 4 else "ipv6-tunnel"
    sa_type = _SA_TYPE[mode]
    encap = " udp-encap" if sa.udp_encap and supports_udp_encap(mode) else ""
    any_ports = "sport 0:65535 dport 0:65535"

    lines = [
        "# meshwire benchmark baseline: ipsec-secgw (written by perf/meshwire_perf/baselines/secgw.py)",
        f"# mode {mode} (SA type {sa_type}); "
        + ("ESP in UDP/4500" if encap else "plain ESP (IP protocol 50): secgw 22.11 has no udp-encap for software SAs"),
        "",
        "# pod -> fabric: encrypt what goes to the remote pods",
    ]
    for net in nets:
        lines.append(f"sp ipv{net.version} out esp protect {spis[net.version]} pri 1 "
                     f"dst {_net_text(net)} {any_ports}")
    lines.append("# fabric -> pod: only ESP of the inbound SA(s) is accepted")
    for ver, spi in sorted(spis.items()):
        anynet = "0.0.0.0/0" if ver == 4 else "0000:0000:0000:0000:0000:0000:0000:0000/0"
        lines.append(f"sp ipv{ver} in esp protect {spi} pri 1 dst {anynet} {any_ports}")
    lines.append("")
    for ver, spi in sorted(spis.items()):
        lines.append(f"sa out {spi} aead_algo {algo} aead_key {key} mode {tmode} "
                     f"src {sa.tunnel_src} dst {sa.tunnel_dst} type {sa_type}{encap}")
    for ver, spi in sorted(spis.items()):
        lines.append(f"sa in {spi} aead_algo {algo} aead_key {key} mode {tmode} "
                     f"src {sa.tunnel_dst} dst {sa.tunnel_src} type {sa_type}{encap}")
    lines.append("")
    peer = ipaddress.ip_address(sa.tunnel_dst)
    lines.append(f"rt ipv{tun} dst {peer.exploded if tun == 6 else peer}/{32 if tun == 4 else 128} port 1")
    # decrypted traffic to the pod side (LPM refuses a /0: two halves)
    for ver in sorted(spis):
        halves = ("0.0.0.0/1", "128.0.0.0/1") if ver == 4 else \
            ("0000:0000:0000:0000:0000:0000:0000:0000/1", "8000:0000:0000:0000:0000:0000:0000:0000/1")
        for h in halves:
            lines.append(f"rt ipv{ver} dst {h} port 0")
    lines.append("")
    lines.append(f"neigh port 1 {_mac(peer_mac)}")
    if pod_mac:
        lines.append(f"neigh port 0 {_mac(pod_mac)}")
    workdir = Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / name
    path.write_text("\n".join(lines) + "\n")
    path.chmod(0o600)   # holds the key
    return path


def _parse_lcores(lcores: str) -> list[int]:
    out: list[int] = []
    for part in str(lcores).split(","):
        part = part.strip()
        m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
        if not m:
            raise ValueError(f"lcores must be a list like '1' or '1,2' or '1-2', not {lcores!r}")
        lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
        out.extend(range(lo, hi + 1))
    if not out:
        raise ValueError("no lcore")
    return out


def command(binary: Path, eal: list[str], port_devices: list[str], config: Path, peer_mac: str,
            lcores: str = "1", mtu: int = 1500, *, crypto_vdev: str = DEFAULT_CRYPTO_VDEV,
            esn: bool = True, replay_window: int = REPLAY_WINDOW, stats_interval: int = 0,
            line_buffered: bool = True) -> list[str]:
    """The full argv: eal (e.g. ['--no-huge','-m','1024','--no-pci','--file-prefix','x']) plus one --vdev per
    port_devices entry (port 0 = protected/pod side, port 1 = unprotected/fabric side) plus a crypto vdev
    (crypto_aesni_gcm), lcore list, then '--' and secgw's own options: -p 0x3 -u 0x2 -P --config
    '(port,queue,lcore)...' -f config -l -e -w 2048 [--mtu/-j when mtu != 1500] [-t N].
    With line_buffered (default) the argv starts with 'stdbuf -oL' so that
    secgw's printf output (the -t statistics, the exit lines) reaches a log
    file as it is written; READY_MARKER is on stderr and needs no such help.

    secgw 22.11 has no --eth-dest: the fabric next hop is the config file's
    'neigh port 1' rule (write_config); peer_mac is checked against it.
    With one lcore, that core is both main and forwarding lcore; with two,
    port 0's queue goes to the first and port 1's to the second."""
    if len(port_devices) != 2:
        raise ValueError("ipsec-secgw baseline needs exactly two ports: [protected (pods), unprotected (fabric)]")
    config = Path(config)
    if config.is_file():
        want = f"neigh port 1 {_mac(peer_mac)}"
        if want not in config.read_text().splitlines():
            raise ValueError(f"{config} has no '{want}' rule: write it with write_config(peer_mac=...)")
    cores = _parse_lcores(lcores)
    argv = [str(binary), *[str(a) for a in eal]]
    prefix = ["stdbuf", "-oL"] if line_buffered and shutil.which("stdbuf") else []
    for dev in port_devices:
        argv += ["--vdev", dev]
    argv += ["--vdev", crypto_vdev]
    if not any(a in ("-l", "--lcores", "-c") for a in argv):
        argv += ["-l", ",".join(str(c) for c in cores)]
    qmap = ",".join(f"({port},0,{cores[port % len(cores)]})" for port in range(len(port_devices)))
    argv += ["--", "-p", "0x3", "-u", "0x2", "-P", "--config", qmap, "-f", str(config), "-l"]
    if esn:
        argv.append("-e")
    if replay_window:
        argv += ["-w", str(replay_window)]
    if mtu != 1500:
        argv += ["--mtu", str(mtu)]
        frame = mtu + 14 + 4 + 128   # Ethernet header + CRC + mbuf headroom: no multi-segment mbufs
        if frame > _RTE_MBUF_DEFAULT_BUF_SIZE:
            argv += ["-j", str(frame)]
    if stats_interval:
        argv += ["-t", str(stats_interval)]
    return prefix + argv
