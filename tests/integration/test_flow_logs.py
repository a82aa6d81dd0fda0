"""Flow logs and connect latency end to end: two data planes with
`flow_logs: {path: "-"}` (JSON lines on standard output, as a pod's log
collector would read them), programmed by their controllers with a Service
whose backends are pods on both nodes, and real clients: curl, a
long-lived line client, socat over UDP, connects a backend refuses.

Each test finds its own connections in the log by the client's source
port, and checks what the log says against what the client saw."""

import json
import re
import subprocess
import time

import pytest

import meshwire_topology as topo

from meshwire_control import CONTROLLER, ctl_json, service_folder, service_yaml, serving, slice_yaml, write_atomic

VIP = "10.96.0.10"
FLAKY_VIP = "10.96.0.12"
PY = "/usr/bin/python3"
SETTINGS = {
    # Closed connections and idle UDP flows leave the table within seconds.
    "services": {"tcp_closing_timeout_s": 1, "udp_timeout_s": 2, "connect_timeout_ms": 300},
    "flow_logs": {"path": "-", "interval_s": 2},
}


@pytest.fixture(scope="module")
def mesh(cluster):
    if not CONTROLLER.exists():
        pytest.fail(f"{CONTROLLER} is not built")
    with topo.running_cluster(cluster.binary, nodes=2, pods_per_node=3, static_peers=False,
                              extra_config=SETTINGS) as c:
        n1, n2 = c.nodes
        backends = [n1.pods[1], n1.pods[2], n2.pods[0], n2.pods[1]]
        folder = service_folder(c, {"web": (VIP, backends)})
        # flaky: the backends, a pod that refuses (nothing listens on n2p3)
        # and an address where nothing answers.
        write_atomic(folder / "flaky.yaml", service_yaml("flaky", FLAKY_VIP))
        write_atomic(folder / "flaky-slice.yaml",
                     slice_yaml("flaky", backends + [n2.pods[2]], ghosts=[("10.12.0.99", "node2")]))
        with serving(c, folder, backends):
            yield c, backends


def records(node) -> list[dict]:
    """The flow log lines node's data plane wrote to its standard output."""
    out = []
    for line in node.stdout_path.read_text(errors="replace").splitlines():
        if line.startswith("{"):
            out.append(json.loads(line))
    return out


def of_client(node, client: str, event: str = None, timeout: float = 8) -> list[dict]:
    """node's records of the connection from `client` ("addr:port"), waiting
    until one of `event` is there."""
    def found():
        mine = [r for r in records(node) if r["client"] == client]
        return mine if event is None or any(r["event"] == event for r in mine) else None
    return topo.wait_for(found, timeout=timeout, what=f"{node.name}: a flow log {event} record of {client}")


def curl(pod, url: str) -> dict:
    """One request; what curl says of it (its source port, the bytes)."""
    done = topo.run(["curl", "-sS", "--max-time", "3", "-o", "/dev/null", "-w",
                     '{"port": %{local_port}, "down": %{size_download}, "header": %{size_header}, '
                     '"up": %{size_request}, "code": %{http_code}}', url],
                    ns=pod.ns, check=False, timeout=10)
    return json.loads(done.stdout) if done.returncode == 0 else {"error": done.stderr}


def test_a_connection_that_closes_is_logged_with_its_traffic_each_way(mesh):
    c, backends = mesh
    n1 = c.nodes[0]
    client = n1.pods[0]
    got = curl(client, f"http://{VIP}/")
    assert got.get("code") == 200, got
    [end] = [r for r in of_client(n1, f"{client.ipv4}:{got['port']}", "end") if r["event"] == "end"]
    assert end["end"] == "fin", end
    assert end["node"] == "node1"
    assert end["service"] == "default/web:http"
    assert end["protocol"] == "tcp"
    assert end["frontend"] == f"{VIP}:80"
    backend = next(p for p in backends if end["backend"] == f"{p.ipv4}:8080")
    assert end["backend_target"] == f"default/{backend.name}"
    assert end["backend_node"] == ("node1" if backend in n1.pods else "node2")
    assert end["attempts"] == 1
    # IP bytes: the client's request and the server's answer, each with
    # TCP/IP headers on top (SYN, ACKs and FINs too).
    assert end["bytes_to_backend"] > got["up"] + 3 * 40, (end, got)
    assert end["bytes_to_client"] > got["down"] + got["header"] + 3 * 40, (end, got)
    assert end["packets_to_backend"] >= 4 and end["packets_to_client"] >= 4, end
    assert 0 <= end["duration_ms"] < 3000, end
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", end["time"]), end
    assert end["start"] <= end["time"]
    # Counted by the control thread.
    assert n1.counter("flow_log_records") >= 1


def test_a_long_connection_gets_updates_and_shows_its_counts(mesh):
    c, backends = mesh
    n1 = c.nodes[0]
    client = n1.pods[0]
    # A line every 50 ms for 5 s, through the VIP's port 9000 (the backends'
    # line echo).
    script = ("import socket,sys,time\n"
              f"s=socket.create_connection(('{VIP}',9000),timeout=3)\n"
              "print(s.getsockname()[1],flush=True)\n"
              "f=s.makefile('rwb')\n"
              "for i in range(100):\n"
              "    f.write(b'line %d\\n'%i); f.flush(); f.readline(); time.sleep(0.05)\n")
    proc = topo.popen([PY, "-c", script], ns=client.ns, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        port = int(proc.stdout.readline())
        me = f"{client.ipv4}:{port}"
        time.sleep(1)
        flows = ctl_json(n1, "show", "flows", "--service", "default/web")["flows"]
        [mine] = [f for f in flows if f["client"] == me]
        assert mine["logged"] is True and int(mine["packets_to_backend"]) > 5, mine
        # interval_s 2: an update while it lasts, with the counts so far.
        update = next(r for r in of_client(n1, me, "update") if r["event"] == "update")
        assert update["packets_to_backend"] > 10 and update["bytes_to_client"] > 10 * 40, update
        assert update["duration_ms"] >= 2000, update
        out, err = proc.communicate(timeout=20)
        assert proc.returncode == 0, err
    finally:
        topo.stop_process(proc)
    end = next(r for r in of_client(n1, me, "end") if r["event"] == "end")
    assert end["end"] == "fin"
    assert end["packets_to_backend"] >= 100 and end["packets_to_client"] >= 100, end
    assert end["packets_to_backend"] >= update["packets_to_backend"]
    assert end["duration_ms"] >= 4500, end


def test_udp_flows_end_by_timeout(mesh):
    c, _ = mesh
    n1 = c.nodes[0]
    client = n1.pods[0]
    done = topo.run(["socat", "-T", "2", "-", f"UDP4:{VIP}:53,sourceport=5555"], ns=client.ns, input="hello\n",
                    check=False, timeout=10)
    assert done.returncode == 0, done.stderr
    end = next(r for r in of_client(n1, f"{client.ipv4}:5555", "end", timeout=10) if r["event"] == "end")
    assert end["end"] == "timeout" and end["protocol"] == "udp", end
    assert end["service"] == "default/web:dns"
    assert end["packets_to_backend"] == 1 and end["packets_to_client"] == 1, end
    assert end["bytes_to_backend"] == 20 + 8 + len("hello\n"), end


def test_connects_a_backend_refuses_or_ignores_are_logged_as_retries(mesh):
    """flaky's backends include a pod that refuses and an address that never
    answers: connections Maglev sends there are retried, each failed
    attempt logged, and the connection's own record counts its attempts."""
    c, _ = mesh
    n1 = c.nodes[0]
    client = n1.pods[0]
    whys = set()
    for _ in range(80):
        got = curl(client, f"http://{FLAKY_VIP}/")
        assert got.get("code") == 200, got
        whys = {r["why"] for r in records(n1) if r["event"] == "retry" and r["client"].startswith(client.ipv4 + ":")}
        if whys == {"refused", "unanswered"}:
            break
    assert whys == {"refused", "unanswered"}, (whys, [r for r in records(n1) if r["event"] == "retry"],
                                               ctl_json(n1, "show", "services", "default/flaky:http"))
    retries = [r for r in records(n1) if r["event"] == "retry"]
    refused = next(r for r in retries if r["why"] == "refused")
    assert refused["end"] == "retry" and refused["service"] == "default/flaky:http"
    assert refused["backend"] == f"{c.nodes[1].pods[2].ipv4}:8080", refused
    unanswered = next(r for r in retries if r["why"] == "unanswered")
    assert unanswered["backend"] == "10.12.0.99:8080", unanswered
    assert unanswered["duration_ms"] >= 300, unanswered  # connect_timeout_ms
    # The connection went on to a backend that answered: its end says so.
    end = next(r for r in of_client(n1, refused["client"], "end") if r["event"] == "end")
    assert end["attempts"] >= 2 and end["end"] == "fin", end


def test_connect_latency_is_a_histogram_per_backend(mesh):
    c, _ = mesh
    n1 = c.nodes[0]
    client = n1.pods[0]
    services = ctl_json(n1, "show", "services", "default/web:http")
    before = sum(int(n) for b in services["services"][0]["backends"] for n in b["connect_latency_counts"])
    for _ in range(10):
        assert curl(client, f"http://{VIP}/").get("code") == 200
    services = ctl_json(n1, "show", "services", "default/web:http")
    bounds = [int(b) for b in services["connect_latency_bounds_us"]]
    assert bounds == sorted(bounds) and bounds[0] == 100 and bounds[-1] == 5_000_000, bounds
    rows = services["services"][0]["backends"]
    counts = [[int(n) for n in b["connect_latency_counts"]] for b in rows]
    assert all(len(cs) == len(bounds) + 1 for cs in counts)
    assert sum(map(sum, counts)) >= before + 10
    # Nothing took a second on one machine; the mean is in the buckets' range.
    assert all(cs[-1] == 0 and cs[-2] == 0 for cs in counts), counts
    total_us = sum(int(b["connect_latency_sum_us"]) for b in rows)
    assert 0 < total_us / sum(map(sum, counts)) < 1_000_000
