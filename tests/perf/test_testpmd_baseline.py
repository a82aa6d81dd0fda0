"""perf/meshwire_perf/baselines/testpmd.py: the testpmd command line, the
exit-summary parser on captured output, and real runs: io forwarding on a
net_null port, and on one net_memif port looped back to a flowgen peer
(which shows that --port-topology=loop sends what a port receives back out
of that same port).

Run: /usr/bin/python3 -m pytest -q tests/perf/test_testpmd_baseline.py
"""

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "perf"))

from meshwire_perf.baselines import testpmd  # noqa: E402

# The server side of a real run (DPDK 22.11.11): testpmd io/loop on one
# net_memif port, a flowgen peer on the other end, --stats-period 1
# --record-core-cycles, SIGINT after 2 s (trimmed: EAL and stream lines).
SAMPLE = """\
Auto-start selected
Set io packet forwarding mode
Configuring Port 0 (socket 0)
Port 0: 96:DE:54:65:BE:4F
Checking link statuses...
Done
No commandline core given, start packet forwarding
io packet forwarding - ports=1 - cores=1 - streams=1 - NUMA support enabled, MP allocation mode: native
Logical Core 1 (socket 0) forwards packets on 1 streams:
  RX P=0/Q=0 (socket 0) -> TX P=0/Q=0 (socket 0) peer=02:00:00:00:00:00
\x1b[2J\x1b[1;1H
Port statistics ====================================
  ######################## NIC statistics for port 0  ########################
  RX-packets: 0          RX-missed: 0          RX-bytes:  0
  RX-errors: 0
  RX-nombuf:  0         
  TX-packets: 0          TX-errors: 0          TX-bytes:  0

  Throughput (since last show)
  Rx-pps:            0          Rx-bps:            0
  Tx-pps:            0          Tx-bps:            0
  ############################################################################
\x1b[2J\x1b[1;1H
Port statistics ====================================
  ######################## NIC statistics for port 0  ########################
  RX-packets: 14453408   RX-missed: 0          RX-bytes:  867204480
  RX-errors: 0
  RX-nombuf:  0         
  TX-packets: 14452224   TX-errors: 0          TX-bytes:  867133440

  Throughput (since last show)
  Rx-pps:      9677330          Rx-bps:   4645118728
  Tx-pps:      9676306          Tx-bps:   4644627288
  ############################################################################
Telling cores to stop...
Waiting for lcores to finish...

  ---------------------- Forward statistics for port 0  ----------------------
  RX-packets: 18209792       RX-dropped: 0             RX-total: 18209792
  TX-packets: 18208256       TX-dropped: 1536          TX-total: 18209792
  ----------------------------------------------------------------------------

  +++++++++++++++ Accumulated forward statistics for all ports+++++++++++++++
  RX-packets: 18209792       RX-dropped: 0             RX-total: 18209792
  TX-packets: 18208256       TX-dropped: 1536          TX-total: 18209792
  ++++++++++++++++++++++++++++++++++++++++++++++++++++++++++++++++++++++++++++

  CPU cycles/packet=233.07 (total cycles=4244240114 / total io packets=18209792) at 2790 MHz Clock

Done.

Stopping port 0...
Stopping ports...
Done

Shutting down port 0...
Closing ports...
Port 0 is closed
Done

Bye...
"""

# Two net_null ports, paired, with RX error lines as testpmd prints them
# when a port has ierrors or rx_nombuf, and no accumulated section.
SAMPLE_PAIRED = """\
  ---------------------- Forward statistics for port 0  ----------------------
  RX-packets: 39637856       RX-dropped: 12            RX-total: 39637868
  RX-error: 3
  RX-nombufs: 7             
  TX-packets: 39637800       TX-dropped: 56            TX-total: 39637856
  ----------------------------------------------------------------------------

  ---------------------- Forward statistics for port 1  ----------------------
  RX-packets: 39637856       RX-dropped: 0             RX-total: 39637856
  TX-packets: 39637856       TX-dropped: 0             TX-total: 39637856
  ----------------------------------------------------------------------------
"""


def _require_tool():
    if shutil.which(testpmd.TOOL) is None:
        pytest.fail(f"{testpmd.TOOL} is not installed (scripts/bootstrap.sh installs Debian's dpdk)")


def _prefix(tag):
    return f"mwtpt{os.getpid()}{tag}"


# ---- command line

def test_command_io_loop_one_core():
    cmd = testpmd.command(["net_null0"], testpmd.default_eal("mwx"), fwd_lcore=1, main_lcore=0)
    assert cmd[:3] == ["stdbuf", "-oL", "-eL"] and cmd[3] == "dpdk-testpmd"
    eal, app = cmd[:cmd.index("--")], cmd[cmd.index("--") + 1:]
    assert eal[eal.index("-l") + 1] == "0,1" and eal[eal.index("--main-lcore") + 1] == "0"
    assert eal[eal.index("--vdev") + 1] == "net_null0"
    assert {"--no-huge", "--no-pci", "--file-prefix", "mwx"} <= set(eal)
    for opt in ("--auto-start", "--forward-mode=io", "--port-topology=loop", "--nb-cores=1",
                "--total-num-mbufs=16384", "--burst=32", "--rxq=1", "--txq=1", "--record-core-cycles"):
        assert opt in app, opt
    period = [a for a in app if a.startswith("--stats-period=")]
    assert period and int(period[0].split("=")[1]) > 0   # 0 would exit at once on stdin=/dev/null
    assert "-a" not in app                               # -a is --allow for EAL: use the long form


def test_command_ports_in_order_paired_queues():
    devs = ["net_memif0,role=server,socket=/tmp/a.sock,socket-abstract=no,id=0",
            "net_memif1,role=server,socket=/tmp/b.sock,socket-abstract=no,id=0"]
    cmd = testpmd.command(devs, ["--file-prefix", "p"], topology="paired", queues=2, burst=64, nb_mbufs=8192,
                          line_buffered=False)
    assert cmd[0] == "dpdk-testpmd"
    assert [cmd[i + 1] for i, a in enumerate(cmd) if a == "--vdev"] == devs
    assert {"--port-topology=paired", "--rxq=2", "--txq=2", "--burst=64", "--total-num-mbufs=8192"} <= set(cmd)


def test_command_lcores():
    same = testpmd.command(["net_null0"], [], fwd_lcore=1, main_lcore=1)
    assert same[same.index("--lcores") + 1] == "0@1,1@1" and same[same.index("--main-lcore") + 1] == "0"
    given = testpmd.command(["net_null0"], ["-l", "2,3"], fwd_lcore=1, main_lcore=0)
    assert given.count("-l") == 1 and "--main-lcore" not in given
    with pytest.raises(ValueError):
        testpmd.command(["net_null0"], [], topology="ring")
    with pytest.raises(ValueError):
        testpmd.command([], [])


# ---- parser

def test_parse_stats_sample():
    st = testpmd.parse_stats(SAMPLE)
    assert st["ports"] == {0: {"rx_packets": 18209792, "rx_dropped": 0, "rx_total": 18209792,
                               "tx_packets": 18208256, "tx_dropped": 1536, "tx_total": 18209792,
                               "rx_errors": 0, "rx_nombufs": 0}}
    assert st["total"] == st["ports"][0]
    assert st["cycles_per_packet"] == pytest.approx(233.07) and st["tsc_mhz"] == 2790
    assert st["nic"][0] == {"rx_packets": 14453408, "rx_missed": 0, "rx_bytes": 867204480, "rx_errors": 0,
                            "rx_nombuf": 0, "tx_packets": 14452224, "tx_errors": 0, "tx_bytes": 867133440}
    assert st["pps"] == {0: {"rx": 9677330, "tx": 9676306}}     # the last periodic block
    assert testpmd.READY_MARKER in SAMPLE


def test_parse_stats_paired_errors_and_summed_total():
    st = testpmd.parse_stats(SAMPLE_PAIRED)
    p0, p1 = st["ports"][0], st["ports"][1]
    assert (p0["rx_packets"], p0["rx_dropped"], p0["rx_errors"], p0["rx_nombufs"]) == (39637856, 12, 3, 7)
    assert (p0["tx_packets"], p0["tx_dropped"]) == (39637800, 56)
    assert p1["rx_errors"] == 0 and p1["tx_packets"] == 39637856
    assert st["total"]["rx_packets"] == 2 * 39637856 and st["total"]["tx_dropped"] == 56
    assert st["cycles_per_packet"] is None and st["nic"] == {} and st["pps"] == {}


def test_parse_stats_without_summary_raises():
    crashed = SAMPLE[:SAMPLE.index("Telling cores")]
    with pytest.raises(ValueError, match="Forward statistics"):
        testpmd.parse_stats(crashed)


# ---- real runs

def test_net_null_io_forwarding(tmp_path):
    _require_tool()
    prefix = _prefix("n")
    cmd = testpmd.command(["net_null0"], testpmd.default_eal(prefix))
    proc = testpmd.start(cmd, tmp_path / "testpmd.log")
    try:
        assert proc.poll() is None
        time.sleep(1.0)
    finally:
        out = testpmd.stop(proc)
    assert proc.returncode == 0, out[-3000:]
    st = testpmd.parse_stats(out)
    port = st["ports"][0]
    assert port["rx_packets"] > 0 and port["tx_packets"] > 0, out[-3000:]
    assert port["tx_packets"] + port["tx_dropped"] == port["rx_packets"]
    assert st["cycles_per_packet"] and st["cycles_per_packet"] > 0
    assert not os.path.exists(f"/var/run/dpdk/{prefix}")


def test_start_failure_names_command_and_log(tmp_path):
    _require_tool()
    cmd = testpmd.command(["net_nosuchpmd0"], testpmd.default_eal(_prefix("f")))
    with pytest.raises(RuntimeError) as err:
        testpmd.start(cmd, tmp_path / "bad.log", timeout=20)
    msg = str(err.value)
    assert "dpdk-testpmd" in msg and "net_nosuchpmd0" in msg
    assert not testpmd._live


def test_memif_loop_sends_back_out_of_the_same_port(tmp_path):
    """testpmd io/loop on a memif server port; on the client end a second
    testpmd in flowgen mode (it also polls RX, which memif needs) sends 64 B
    frames. Everything the generator sent must come back to it.

    Stop order, to keep both processes alive and their counters whole:
    the generator (interactive, stdin a pipe) stops forwarding first with
    'stop' and prints its counters, then the io side gets SIGINT and exits,
    then the generator quits. A memif side whose peer disconnects while it
    still polls may segfault, and memif zeroes a port's counters on
    disconnect."""
    _require_tool()
    sock = tmp_path / "pod.sock"
    dev = f"socket={sock},socket-abstract=no,id=0"
    io_cmd = testpmd.command([f"net_memif0,role=server,{dev}"], testpmd.default_eal(_prefix("s")),
                             fwd_lcore=1, main_lcore=0, topology="loop")
    gen_prefix = _prefix("c")
    gen_cmd = testpmd.command([f"net_memif0,role=client,{dev}"], testpmd.default_eal(gen_prefix),
                              fwd_lcore=0, main_lcore=1, topology="loop", forward_mode="flowgen",
                              extra=["--interactive"])
    gen_log_path = tmp_path / "flowgen.log"
    server = gen = None
    gen_log = open(gen_log_path, "wb")

    def gen_wait(marker, timeout=20):
        deadline = time.monotonic() + timeout
        while marker not in gen_log_path.read_text(errors="replace"):
            if gen.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"flowgen: no '{marker}'\n" + gen_log_path.read_text(errors="replace")[-3000:])
            time.sleep(0.05)

    try:
        server = testpmd.start(io_cmd, tmp_path / "io.log")
        gen = subprocess.Popen(gen_cmd, stdin=subprocess.PIPE, stdout=gen_log, stderr=subprocess.STDOUT)
        gen_wait(testpmd.READY_MARKER)
        time.sleep(1.5)
        gen.stdin.write(b"stop\n")
        gen.stdin.flush()
        gen_wait("Accumulated forward statistics")
        io_out = testpmd.stop(server)
        server = None
        gen.stdin.write(b"quit\n")
        gen.stdin.flush()
        gen.wait(15)
    finally:
        if server is not None:
            testpmd.stop(server)
        if gen is not None and gen.poll() is None:
            gen.send_signal(signal.SIGINT)
            try:
                gen.wait(10)
            except subprocess.TimeoutExpired:
                gen.kill()
                gen.wait()
        gen_log.close()
        shutil.rmtree(f"/var/run/dpdk/{gen_prefix}", ignore_errors=True)

    gen_out = gen_log_path.read_text(errors="replace")
    io_st, gen_st = testpmd.parse_stats(io_out), testpmd.parse_stats(gen_out)
    io_port, gen_port = io_st["ports"][0], gen_st["ports"][0]
    print(f"generator sent {gen_port['tx_packets']} received {gen_port['rx_packets']}; "
          f"io/loop received {io_port['rx_packets']} sent {io_port['tx_packets']} "
          f"(dropped {io_port['tx_dropped']}), {io_st['cycles_per_packet']} cycles/packet")
    assert gen.returncode == 0, gen_out[-3000:]
    assert gen_port["tx_packets"] > 100_000, gen_out[-3000:]
    # the io side got every frame and sent it back out of port 0, the only port
    assert io_port["rx_packets"] == gen_port["tx_packets"]
    assert io_port["tx_packets"] + io_port["tx_dropped"] == io_port["rx_packets"]
    assert io_port["tx_packets"] >= 0.99 * io_port["rx_packets"]
    # and the generator received them (less what was still in the ring when it stopped)
    assert gen_port["rx_packets"] <= io_port["tx_packets"]
    assert gen_port["rx_packets"] >= io_port["tx_packets"] - 4096
