"""meshwirectl capture on running data planes (the session's 2-node cluster):
each point of the path yields the packets it should (rx on the uplink:
ESP-in-UDP; pre-encrypt: the pod's inner packet; post-decrypt on the
receiving node: the inner packet again), filters and counts are exact, tshark
reads every file, a bad filter is refused whole, a client that dies leaves
the data plane healthy and free for the next capture, and an overloaded
capture drops copies (counted) while forwarding goes on."""

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

import meshwire_topology as topo

CTL = topo.find_dataplane().parents[1] / "control" / "meshwirectl"


def capture_cmd(node, path, *args):
    return [str(CTL), "--socket", str(node.api_socket), "capture", *map(str, args), "-w", str(path)]


def capture(node, path, *args, timeout=30):
    """A capture run to its end (-c or --duration in args)."""
    return subprocess.run(capture_cmd(node, path, *args), capture_output=True, text=True, timeout=timeout)


class BackgroundCapture:
    """A capture running while traffic is sent: started() once the data
    plane has published it (the file appears with the stream's first
    chunk, sent after the workers' taps are live)."""

    def __init__(self, node, path, *args):
        self.path = Path(path)
        self.proc = topo.popen(capture_cmd(node, path, *args), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                               text=True)

    def started(self):
        topo.wait_for(lambda: self.path.exists() or self.proc.poll() is not None, timeout=10,
                      what="the capture's first chunk")
        assert self.proc.poll() is None, f"capture exited early: {self.proc.stderr.read()}"
        time.sleep(0.2)  # the workers pick the taps up within a poll round
        return self

    def wait(self, timeout=30):
        out, err = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, err

    def stop(self, sig=signal.SIGINT):
        topo.stop_process(self.proc, sig, timeout=10)
        return self.proc.returncode, self.proc.stderr.read() if self.proc.stderr else ""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.proc.poll() is None:
            topo.stop_process(self.proc, signal.SIGKILL)
        for f in (self.proc.stdout, self.proc.stderr):
            if f:
                f.close()


def capture_during(node, path, traffic, *args):
    """Runs a capture (args end it: -c or --duration) while traffic() runs;
    asserts that it ended well and returns meshwirectl's closing words."""
    with BackgroundCapture(node, path, *args) as cap:
        cap.started()
        traffic()
        rc, err = cap.wait()
    assert rc == 0, err
    return err


def tshark_fields(path, *fields, display_filter=None):
    """One list of field values per packet of the file (tshark must read it)."""
    args = ["tshark", "-r", str(path), "-n", "-T", "fields", "-E", "separator=|"]
    if display_filter:
        args += ["-Y", display_filter]
    for f in fields:
        args += ["-e", f]
    done = topo.run(args)
    return [line.split("|") for line in done.stdout.splitlines() if line.strip()]


def send_udp(pod, dst, port, count, interval=0.02):
    """`count` UDP datagrams from a pod to dst:port (nothing needs to listen)."""
    script = ("import socket,time\n"
              "s=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
              f"for i in range({count}):\n"
              f"    s.sendto(b'meshwire-capture-%d' % i, ({dst!r}, {port}))\n"
              f"    time.sleep({interval})\n")
    topo.run(["/usr/bin/python3", "-c", script], ns=pod.ns)


def ctl_counters(node):
    out = subprocess.run([str(CTL), "--socket", str(node.api_socket), "--json", "show", "counters"],
                         capture_output=True, text=True, timeout=10, check=True).stdout
    return {k: int(v) for k, v in json.loads(out)["blocks"][0]["counters"].items()}


@pytest.fixture(scope="module")
def pods(cluster):
    a, b = cluster.node("node1").pods[0], cluster.node("node2").pods[0]
    assert cluster.ping(a, b, count=2).returncode == 0, "no connectivity between the nodes' pods"
    return a, b


def test_pre_encrypt_is_the_pods_inner_packet(cluster, node1, pods, tmp_path):
    a, b = pods
    path = tmp_path / "pre.pcapng"
    err = capture_during(node1, path, lambda: cluster.ping(a, b, count=5),
                         "--point", "pre-encrypt", "--filter", "icmp", "-c", 3)
    assert "3 packets written" in err and "stopped by count" in err
    rows = tshark_fields(path, "ip.src", "ip.dst", "icmp.type", "frame.interface_name", "frame.time_epoch")
    assert len(rows) == 3, rows
    for src, dst, icmp_type, ifname, epoch in rows:
        assert (src, dst, icmp_type) == (a.ipv4, b.ipv4, "8")  # echo requests, before sealing
        assert ifname == node1.local_if  # the local port they came in on (af_packet: its kernel interface)
        assert abs(float(epoch) - time.time()) < 60, epoch  # wall-clock timestamps
    # tshark's own summary line of the packets
    summary = topo.run(["tshark", "-r", str(path), "-n"]).stdout
    assert summary.count("Echo (ping) request") == 3, summary


def test_rx_on_the_uplink_is_esp_in_udp(cluster, node2, pods, tmp_path):
    a, b = pods
    path = tmp_path / "rx.pcapng"
    capture_during(node2, path, lambda: cluster.ping(a, b, count=6),
                   "--point", "rx", "--port", "fabric", "--filter", "udp", "-c", 4)
    rows = tshark_fields(path, "ip.src", "ip.dst", "udp.dstport", "esp.spi")
    assert len(rows) == 4, rows
    for src, dst, dport, spi in rows:
        assert (src, dst, dport) == (cluster.node("node1").tunnel_address, node2.tunnel_address, "4500")
        assert spi, rows  # tshark sees ESP in the UDP payload
    # Nothing inner on the wire: no ICMP dissected in the clear.
    assert not tshark_fields(path, "frame.number", display_filter="icmp")


def test_post_decrypt_on_the_receiver_is_inner(cluster, node2, pods, tmp_path):
    a, b = pods
    path = tmp_path / "post.pcapng"
    capture_during(node2, path, lambda: cluster.ping(a, b, count=5), "--point", "post-decrypt", "-c", 3)
    rows = tshark_fields(path, "ip.src", "ip.dst", "icmp.type", "frame.len")
    assert len(rows) == 3, rows
    for src, dst, icmp_type, frame_len in rows:
        assert (src, dst, icmp_type) == (a.ipv4, b.ipv4, "8")
        assert int(frame_len) == 14 + 20 + 8 + 56  # synthetic Ethernet + the pod's IPv4 ping


def test_filter_keeps_only_matching_packets(cluster, node1, pods, tmp_path):
    a, b = pods
    path = tmp_path / "udp5000.pcapng"
    def traffic():
        send_udp(a, b.ipv4, 5001, 6)
        send_udp(a, b.ipv4, 5000, 5)
        send_udp(a, b.ipv4, 5001, 6)
        cluster.ping(a, b, count=2)
    err = capture_during(node1, path, traffic, "--point", "pre-encrypt", "--filter", "udp port 5000",
                         "--duration", 4)
    assert "stopped by duration" in err, err
    rows = tshark_fields(path, "udp.dstport", "data.data")
    assert [r[0] for r in rows] == ["5000"] * 5, rows


def test_count_gives_exactly_n_packets(cluster, node1, pods, tmp_path):
    a, b = pods
    path = tmp_path / "count.pcapng"
    err = capture_during(node1, path, lambda: cluster.ping(a, b, count=10), "--point", "tx", "-c", 7)
    assert len(tshark_fields(path, "frame.number")) == 7
    assert "7 packets written" in err


def test_bad_filter_is_refused_whole(cluster, node1, pods, tmp_path):
    path = tmp_path / "bad.pcapng"
    done = capture(node1, path, "--point", "rx", "--filter", "udp prot 5000", "-c", 1, timeout=10)
    assert done.returncode == 2, done.stderr
    assert "filter 'udp prot 5000'" in done.stderr and "syntax error" in done.stderr, done.stderr
    assert not path.exists()  # nothing half-started
    # An Ethernet filter cannot apply to inner packets: said at once as well.
    done = capture(node1, path, "--point", "pre-encrypt", "--filter", "ether host 02:00:00:00:00:01", "-c", 1,
                   timeout=10)
    assert done.returncode == 2 and "filter 'ether host" in done.stderr, done.stderr
    done = capture(node1, path, "--point", "rx", "--port", "nosuch", "-c", 1, timeout=10)
    assert done.returncode == 2 and "port: 'nosuch'" in done.stderr and "fabric" in done.stderr, done.stderr
    # The slot is free: a good capture right after works.
    a, b = pods
    capture_during(node1, path, lambda: cluster.ping(a, b, count=2), "--point", "pre-encrypt", "-c", 1)


def test_one_capture_at_a_time_and_ctrl_c_leaves_a_valid_file(cluster, node1, pods, tmp_path):
    a, b = pods
    first = tmp_path / "first.pcapng"
    with BackgroundCapture(node1, first, "--point", "rx") as cap:
        cap.started()
        second = capture(node1, tmp_path / "second.pcapng", "--point", "tx", "-c", 1, timeout=10)
        assert second.returncode == 1, second.stderr
        assert "already running" in second.stderr, second.stderr
        assert not (tmp_path / "second.pcapng").exists()
        cluster.ping(a, b, count=3)
        time.sleep(0.3)
        rc, err = cap.stop(signal.SIGINT)
    assert rc == 0, err
    assert "interrupted" in err
    # A valid file with what came before: the pods' ARP/ICMP at least.
    assert len(tshark_fields(first, "frame.number")) >= 3


def test_killed_client_leaves_the_dataplane_healthy(cluster, node1, pods, tmp_path):
    a, b = pods
    path = tmp_path / "killed.pcapng"
    with BackgroundCapture(node1, path, "--point", "rx") as cap:
        cap.started()
        cluster.ping(a, b, count=2)
        cap.stop(signal.SIGKILL)
    # The data plane notices the client is gone and frees the slot: a
    # second capture works (retried while the first is being cleaned up).
    again = tmp_path / "again.pcapng"

    def second_capture_runs():
        with BackgroundCapture(node1, again, "--point", "pre-encrypt", "--filter", "icmp", "-c", 2) as cap2:
            try:
                cap2.started()
            except AssertionError:
                return False
            cluster.ping(a, b, count=3)
            rc, err = cap2.wait()
            assert rc == 0, err
            return True
    topo.wait_for(second_capture_runs, timeout=15, interval=0.5, what="a capture after the killed one")
    assert len(tshark_fields(again, "frame.number")) == 2
    assert cluster.ping(a, b, count=3).returncode == 0
    assert node1.process.poll() is None


def test_overloaded_capture_counts_drops_and_forwarding_goes_on(cluster, node1, node2, pods, tmp_path):
    a, b = pods
    before = ctl_counters(node1)
    path = tmp_path / "overload.pcapng"
    runs = []
    err = capture_during(node1, path, lambda: runs.append(cluster.iperf3(a, b, seconds=2)),
                         "--point", "rx", "--ring-size", 1, "--duration", 6)
    report = runs[0]
    after = ctl_counters(node1)
    dropped = after["capture_dropped"] - before["capture_dropped"]
    assert dropped > 0, (before, after)
    assert after["capture_copies"] > before["capture_copies"]
    # The CLI reports the capture's drops as the data plane counted them.
    assert f"{dropped} copies dropped" in err, err
    # Forwarding went on: iperf3 moved data, and pings still pass.
    assert report["end"]["sum_received"]["bytes"] > 1_000_000, report["end"]
    assert cluster.ping(a, b, count=3).returncode == 0
    # The file is still valid and holds what the ring let through.
    assert len(tshark_fields(path, "frame.number")) > 0


def test_a_dataplane_that_stops_ends_its_capture(cluster, tmp_path):
    """On a cluster of its own: SIGTERM during a capture stops the data plane
    promptly (the stream does not hold its API server), and the file is valid."""
    with topo.running_cluster(cluster.binary, nodes=2, pods_per_node=1, workers=1) as c:
        n1 = c.node("node1")
        a, b = n1.pods[0], c.node("node2").pods[0]
        assert c.ping(a, b, count=2).returncode == 0
        path = tmp_path / "stopping.pcapng"
        with BackgroundCapture(n1, path, "--point", "rx") as cap:
            cap.started()
            c.ping(a, b, count=2)
            t0 = time.monotonic()
            assert c.stop_node(n1) == 0
            assert time.monotonic() - t0 < 5
            rc, err = cap.wait(timeout=10)
        assert rc == 1 and "stopped during the capture" in err, err
        assert len(tshark_fields(path, "frame.number")) >= 2



def test_two_workers_each_fill_their_own_ring(cluster, tmp_path):
    """On a 2-worker cluster of its own: copies come from both workers' rings
    (the queue of a packet block names its worker), and `-w -` streams the
    file to a pipe that tshark reads."""
    with topo.running_cluster(cluster.binary, nodes=2, pods_per_node=1, workers=2) as c:
        n1 = c.node("node1")
        a, b = n1.pods[0], c.node("node2").pods[0]
        assert c.ping(a, b, count=2).returncode == 0
        path = tmp_path / "workers.pcapng"
        ports = range(5000, 5064)

        def traffic():  # many flows: the port's RSS spreads them over both workers' queues
            script = ("import socket\ns=socket.socket(socket.AF_INET,socket.SOCK_DGRAM)\n"
                      f"for p in range({ports.start},{ports.stop}):\n    s.sendto(b'x', ({b.ipv4!r}, p))\n")
            topo.run(["/usr/bin/python3", "-c", script], ns=a.ns)
        capture_during(n1, path, traffic, "--point", "pre-encrypt", "--filter", "udp", "--duration", 3)
        rows = tshark_fields(path, "udp.dstport", "frame.interface_queue")
        assert sorted(int(p) for p, _ in rows) == list(ports)
        assert {q for _, q in rows} == {"0", "1"}, rows
        # -w -: the same stream on standard output, read by tshark from a pipe.
        proc = topo.popen(capture_cmd(n1, "-", "--point", "pre-encrypt", "--filter", "icmp", "-c", 2),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        try:
            time.sleep(1)
            c.ping(a, b, count=3)
            out, err = proc.communicate(timeout=20)
        finally:
            topo.stop_process(proc, signal.SIGKILL)
        assert proc.returncode == 0, err
        read = subprocess.run(["tshark", "-r", "-", "-n", "-T", "fields", "-e", "icmp.type"], input=out,
                              capture_output=True, timeout=30)
        assert read.stdout.split() == [b"8", b"8"], read
