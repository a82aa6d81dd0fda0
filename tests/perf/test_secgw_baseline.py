"""Tests for perf/meshwire_perf/baselines/secgw.py: DPDK's ipsec-secgw as a
benchmark baseline. The functional tests build ipsec-secgw from dpdk-doc's
sources (cached in $MESHWIRE_SECGW_BUILD, default /tmp/meshwire-secgw-build;
the first build takes about 20 s), run it on two net_pcap ports and check
with Scapy that what it sends to the fabric is tunnel-mode ESP that decrypts
to the frames the pods sent.

Run: /usr/bin/python3 -m pytest -q tests/perf/test_secgw_baseline.py
"""
import ipaddress
import os
import shutil
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "perf"))

from meshwire_perf.baselines import secgw  # noqa: E402

BUILD_DIR = Path(os.environ.get("MESHWIRE_SECGW_BUILD", "/tmp/meshwire-secgw-build"))
PEER_MAC = "02:00:00:00:00:99"
POD_SRC_MAC = "02:00:00:00:00:01"
KEY = bytes(range(0x10, 0x20))
SALT = bytes.fromhex("a0a1a2a3")
SPI = 0x1000
PROTECTED = ["10.12.0.0/24", "fd00:12::/64"]

needs_sources = pytest.mark.skipif(not (secgw.SECGW_SRC / "ipsec-secgw.c").is_file(),
                                   reason=f"{secgw.SECGW_SRC} is absent (Debian package dpdk-doc)")


def _sa(tunnel=("192.0.2.1", "192.0.2.2"), key=KEY):
    return secgw.SecgwSa(spi=SPI, key=key, salt=SALT, tunnel_src=tunnel[0], tunnel_dst=tunnel[1])


# ---------------------------------------------------------------- config and argv

def test_no_udp_encap_in_software_modes():
    for mode in secgw.MODES:
        assert secgw.supports_udp_encap(mode) is False
    with pytest.raises(ValueError):
        secgw.supports_udp_encap("inline-bogus")


def test_config_rules(tmp_path):
    cfg = secgw.write_config(tmp_path, _sa(), PROTECTED, PEER_MAC, mode="cpu-crypto").read_text()
    rules = [l for l in cfg.splitlines() if l and not l.startswith("#")]
    key = ":".join(f"{b:02x}" for b in KEY + SALT)
    assert "sp ipv4 out esp protect 4096 pri 1 dst 10.12.0.0/24 sport 0:65535 dport 0:65535" in rules
    assert ("sp ipv6 out esp protect 4097 pri 1 dst fd00:0012:0000:0000:0000:0000:0000:0000/64 "
            "sport 0:65535 dport 0:65535") in rules
    assert (f"sa out 4096 aead_algo aes-128-gcm aead_key {key} mode ipv4-tunnel "
            "src 192.0.2.1 dst 192.0.2.2 type cpu-crypto") in rules
    assert (f"sa in 4096 aead_algo aes-128-gcm aead_key {key} mode ipv4-tunnel "
            "src 192.0.2.2 dst 192.0.2.1 type cpu-crypto") in rules
    assert "rt ipv4 dst 192.0.2.2/32 port 1" in rules
    assert f"neigh port 1 {PEER_MAC}" in rules
    assert not any("udp-encap" in r for r in rules)
    assert secgw.outbound_spis(_sa(), PROTECTED) == {4: SPI, 6: SPI + 1}
    assert secgw.outbound_spis(_sa(), ["fd00:12::/64"]) == {6: SPI}
    la = secgw.write_config(tmp_path, _sa(key=bytes(32)), ["10.12.0.0/24"], PEER_MAC,
                            mode="lookaside-none").read_text()
    assert "aes-256-gcm" in la and "type no-offload" in la and "sp ipv6" not in la
    with pytest.raises(ValueError):
        secgw.write_config(tmp_path, _sa(key=bytes(15)), PROTECTED, PEER_MAC)
    with pytest.raises(ValueError):
        secgw.write_config(tmp_path, _sa(tunnel=("192.0.2.1", "fd00::2")), PROTECTED, PEER_MAC)


def test_command_argv(tmp_path):
    cfg = secgw.write_config(tmp_path, _sa(), PROTECTED, PEER_MAC)
    eal = ["--no-huge", "-m", "1024", "--no-pci", "--file-prefix", "x"]
    argv = secgw.command(Path("/bin/secgw"), eal, ["net_memif0,role=client", "net_memif1,role=client"],
                         cfg, PEER_MAC, lcores="1", line_buffered=False)
    assert argv == ["/bin/secgw", *eal, "--vdev", "net_memif0,role=client", "--vdev", "net_memif1,role=client",
                    "--vdev", "crypto_aesni_gcm0", "-l", "1", "--",
                    "-p", "0x3", "-u", "0x2", "-P", "--config", "(0,0,1),(1,0,1)", "-f", str(cfg),
                    "-l", "-e", "-w", "2048"]
    two = secgw.command(Path("/bin/secgw"), eal, ["a", "b"], cfg, PEER_MAC, lcores="0-1", mtu=9000)
    assert two[two.index("--config") + 1] == "(0,0,0),(1,0,1)"
    assert two[-4:] == ["--mtu", "9000", "-j", str(9000 + 146)]
    if shutil.which("stdbuf"):
        assert two[:3] == ["stdbuf", "-oL", "/bin/secgw"]
    with pytest.raises(ValueError):   # the config file names another next hop
        secgw.command(Path("/bin/secgw"), eal, ["a", "b"], cfg, "02:00:00:00:00:98")


# ---------------------------------------------------------------- functional, net_pcap

@pytest.fixture(scope="module")
def binary():
    if not (secgw.SECGW_SRC / "ipsec-secgw.c").is_file():
        pytest.skip(f"{secgw.SECGW_SRC} is absent (Debian package dpdk-doc)")
    t0 = time.monotonic()
    path = secgw.build(BUILD_DIR)
    assert path.is_file() and os.access(path, os.X_OK)
    t1 = time.monotonic()
    assert secgw.build(BUILD_DIR) == path          # cached: no second build
    assert time.monotonic() - t1 < min(5.0, max(1.0, t1 - t0))
    return path


def _pod_frames():
    from scapy.all import IP, UDP, Ether, IPv6, Raw
    payload = bytes(range(32))
    return [
        Ether(src=POD_SRC_MAC, dst="02:00:00:00:00:02") / IP(src="10.11.0.100", dst="10.12.0.10")
        / UDP(sport=40000, dport=5201) / Raw(payload),
        Ether(src=POD_SRC_MAC, dst="02:00:00:00:00:02") / IPv6(src="fd00:11::100", dst="fd00:12::10")
        / UDP(sport=40000, dport=5201) / Raw(payload),
        # not to a remote pod: no SP rule, so secgw must drop it (never send it in clear)
        Ether(src=POD_SRC_MAC, dst="02:00:00:00:00:02") / IP(src="10.11.0.100", dst="10.99.0.1")
        / UDP(sport=40000, dport=5201) / Raw(payload),
    ]


def _run_secgw(binary, workdir, sa, mode):
    """Runs ipsec-secgw on net_pcap ports fed with _pod_frames(); returns
    (frames on port 0, frames on port 1, log text)."""
    from scapy.all import rdpcap, wrpcap
    wrpcap(str(workdir / "in.pcap"), _pod_frames())
    wrpcap(str(workdir / "empty.pcap"), [], linktype=1)   # header only: port 1 receives nothing
    cfg = secgw.write_config(workdir, sa, PROTECTED, PEER_MAC, mode=mode)
    prefix = f"mwsecgw-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    eal = ["--no-huge", "-m", "1024", "--no-pci", "--file-prefix", prefix]
    ports = [f"net_pcap0,rx_pcap={workdir}/in.pcap,tx_pcap={workdir}/out0.pcap",
             f"net_pcap1,rx_pcap={workdir}/empty.pcap,tx_pcap={workdir}/out1.pcap"]
    argv = secgw.command(binary, eal, ports, cfg, PEER_MAC, lcores="1")
    log_path = workdir / "secgw.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                start_new_session=True)
        try:
            deadline = time.monotonic() + 30
            while secgw.READY_MARKER not in log_path.read_text(errors="replace"):
                assert proc.poll() is None, f"ipsec-secgw exited {proc.returncode}:\n{log_path.read_text()}"
                assert time.monotonic() < deadline, f"no '{secgw.READY_MARKER}':\n{log_path.read_text()}"
                time.sleep(0.05)
            time.sleep(1.0)   # the pcap frames are read in the first loop iterations
            os.killpg(proc.pid, signal.SIGINT)
            rc = proc.wait(timeout=15)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            shutil.rmtree(f"/var/run/dpdk/{prefix}", ignore_errors=True)
    text = log_path.read_text(errors="replace")
    assert rc == 0, f"ipsec-secgw exit status {rc} after SIGINT:\n{text}"
    assert "Bye..." in text
    return rdpcap(str(workdir / "out0.pcap")), rdpcap(str(workdir / "out1.pcap")), text


@needs_sources
@pytest.mark.parametrize("mode,tunnel", [
    ("cpu-crypto", ("192.0.2.1", "192.0.2.2")),
    ("lookaside-none", ("192.0.2.1", "192.0.2.2")),
    ("cpu-crypto", ("fd00:ff::1", "fd00:ff::2")),
])
def test_secgw_encrypts_to_decryptable_esp(binary, tmp_path, mode, tunnel):
    from scapy.all import IP, UDP, Ether, IPv6, raw
    from scapy.layers.ipsec import ESP, SecurityAssociation

    sa = _sa(tunnel=tunnel)
    pod_side, fabric, log = _run_secgw(binary, tmp_path, sa, mode)
    assert len(pod_side) == 0, "secgw sent something back to the pod side"
    assert "librte_ipsec usage: enabled" in log and "ESN: enabled" in log and "replay window size: 2048" in log

    outer_cls = IP if ipaddress.ip_address(tunnel[0]).version == 4 else IPv6
    spis = secgw.outbound_spis(sa, PROTECTED)
    want = {4: _pod_frames()[0][IP], 6: _pod_frames()[1][IPv6]}
    assert len(fabric) == 2, f"expected 2 ESP frames (IPv4 and IPv6 pod), got {[p.summary() for p in fabric]}"
    seen = set()
    for frame in fabric:
        assert frame[Ether].dst == PEER_MAC
        assert frame[Ether].src != PEER_MAC
        outer = frame[outer_cls]
        assert outer.src == ipaddress.ip_address(tunnel[0]).compressed
        assert outer.dst == ipaddress.ip_address(tunnel[1]).compressed
        assert (outer.proto if outer_cls is IP else outer.nh) == 50, "plain ESP (no UDP/4500) expected"
        assert UDP not in frame
        if outer_cls is IP:
            assert outer.ttl == 64
            again = IP(raw(outer))
            del again.chksum
            assert IP(raw(again)).chksum == outer.chksum, "outer IPv4 checksum"
        esp = frame[ESP]
        ver = next(v for v, s in spis.items() if s == esp.spi)
        assert esp.seq == 1
        assert bytes(esp.data[:8]) == (1).to_bytes(8, "big"), "IV must be the 64-bit sequence number"

        hdr = outer_cls(src=tunnel[0], dst=tunnel[1])
        ok = SecurityAssociation(ESP, spi=esp.spi, crypt_algo="AES-GCM", crypt_key=KEY + SALT,
                                 tunnel_header=hdr, esn_en=True, esn=0)
        inner = ok.decrypt(outer_cls(raw(outer)))
        assert raw(inner) == raw(want[ver]), f"decrypted {inner.summary()} != sent {want[ver].summary()}"
        no_esn = SecurityAssociation(ESP, spi=esp.spi, crypt_algo="AES-GCM", crypt_key=KEY + SALT,
                                     tunnel_header=hdr, esn_en=False)
        with pytest.raises(Exception):   # the ICV covers the ESN high bits
            no_esn.decrypt(outer_cls(raw(outer)))
        seen.add(ver)
    assert seen == {4, 6}
