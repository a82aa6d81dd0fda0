"""Services end to end: two data planes programmed by their controllers from
a folder of Node, Service and EndpointSlice objects; real clients (curl,
socat, a Python line client) in pod namespaces reach a ClusterIP whose
backends are pods on both nodes.

Pods: node1 has n1p1 (a client), n1p2 and n1p3 (backends); node2 has n2p1
and n2p2 (backends) and n2p3 (a client). Each backend runs
service_backend.py, which answers with its name."""

import json
import subprocess
import time

import pytest
import yaml

import meshwire_topology as topo

from meshwire_control import (CONTROLLER, CTL, ctl_json, service_folder, service_yaml, serving, slice_yaml,
                              write_atomic)

VIP = "10.96.0.10"
STICKY_VIP = "10.96.0.11"
FLAKY_VIP = "10.96.0.12"
PY = "/usr/bin/python3"


@pytest.fixture(scope="module")
def svc(cluster):
    if not CONTROLLER.exists():
        pytest.fail(f"{CONTROLLER} is not built")
    with topo.running_cluster(cluster.binary, nodes=2, pods_per_node=3, workers=1, static_peers=False) as c:
        n1, n2 = c.nodes
        backends = [n1.pods[1], n1.pods[2], n2.pods[0], n2.pods[1]]
        folder = service_folder(c, {"web": (VIP, backends)})
        write_atomic(folder / "sticky.yaml", service_yaml("sticky", STICKY_VIP, affinity=True))
        write_atomic(folder / "sticky-slice.yaml", slice_yaml("sticky", backends))
        # flaky: the backends, plus a pod that refuses (nothing listens on
        # n2p3) and an address where nothing answers at all.
        write_atomic(folder / "flaky.yaml", service_yaml("flaky", FLAKY_VIP))
        write_atomic(folder / "flaky-slice.yaml",
                     slice_yaml("flaky", backends + [n2.pods[2]], ghosts=[("10.12.0.99", "node2")]))
        with serving(c, folder, backends) as (ctls, _):
            yield c, ctls, folder, backends


def curl(pod, url: str, *extra: str) -> str:
    done = topo.run(["curl", "-sS", "--max-time", "3", *extra, url], ns=pod.ns, check=False, timeout=10)
    return done.stdout.strip() if done.returncode == 0 else f"error {done.returncode}: {done.stderr.strip()}"


def frontend(node, name_prefix: str) -> list[dict]:
    return ctl_json(node, "show", "services", name_prefix).get("services", [])


def test_curl_to_the_cluster_ip_spreads_over_backends_on_both_nodes(svc):
    c, _, _, backends = svc
    client = c.nodes[0].pods[0]
    answers = [curl(client, f"http://{VIP}/") for _ in range(40)]
    errors = [a for a in answers if a.startswith("error")]
    assert not errors, errors[:3]
    names = set(answers)
    assert names <= {p.name for p in backends}
    # Four equal backends over 40 connections: every one is chosen (the
    # chance that one is missed is 4 * 0.75^40 = 4e-5).
    assert names == {p.name for p in backends}, answers
    # meshwirectl explains the spread.
    web = [s for s in frontend(c.nodes[0], "default/web:http")]
    assert len(web) == 1
    rows = web[0]["backends"]
    assert sorted(b["backend"]["target"] for b in rows) == sorted(f"default/{p.name}" for p in backends)
    assert all(b["state"] == "active" and b["selectable"] for b in rows)
    assert sum(int(b["connections"]) for b in rows) >= 40


def test_a_client_on_the_other_node_reaches_the_same_service(svc):
    c, _, _, backends = svc
    client = c.nodes[1].pods[2]
    answers = {curl(client, f"http://{VIP}/") for _ in range(20)}
    assert answers <= {p.name for p in backends}, answers


def test_udp_through_the_vip_with_socat(svc):
    c, _, _, backends = svc
    client = c.nodes[0].pods[0]
    done = topo.run(["socat", "-T", "2", "-", f"UDP4:{VIP}:53"], ns=client.ns, input="hello\n", check=False,
                    timeout=10)
    assert done.returncode == 0, done.stderr
    name, _, rest = done.stdout.partition(" ")
    assert name in {p.name for p in backends}
    assert rest == "hello\n"


def test_client_ip_affinity_keeps_a_client_on_one_backend(svc):
    c, _, _, backends = svc
    client = c.nodes[0].pods[0]
    # Source ports above the ephemeral range: the other tests' connections
    # from this client (to web's VIP, whose backends are these) never used
    # them. A new connection whose reply tuple is an earlier one's (the same
    # backend and client port, that one closed but still tracked) goes to
    # the next backend, affinity or not (README, Limitations).
    answers = [curl(client, f"http://{STICKY_VIP}/", "--local-port", "61000-61199") for _ in range(15)]
    assert len(set(answers)) == 1, answers
    assert answers[0] in {p.name for p in backends}


ECHO_CLIENT = r"""
import socket, sys, time
s = socket.create_connection((sys.argv[1], 9000), timeout=3)
f = s.makefile("rwb")
names = set()
for i in range(int(sys.argv[2])):
    f.write(b"line %d\n" % i); f.flush()
    reply = f.readline().decode().split()
    assert reply[1:] == ["line", str(i)], reply
    names.add(reply[0])
    if i == 0:
        print(reply[0], flush=True)
    time.sleep(0.05)
print("done", " ".join(sorted(names)), flush=True)
"""


def test_endpoint_churn_leaves_established_connections_on_their_backend(svc):
    c, _, folder, backends = svc
    client = c.nodes[0].pods[0]
    proc = topo.popen([PY, "-c", ECHO_CLIENT, VIP, "80"], ns=client.ns, stdout=subprocess.PIPE,
                      stderr=subprocess.PIPE, text=True)
    try:
        first = proc.stdout.readline().strip()
        assert first in {p.name for p in backends}, proc.stderr.read() if proc.poll() is not None else first
        mine = next(p for p in backends if p.name == first)
        others = [p for p in backends if p is not mine]
        # The other backends leave and come back, three times, while the
        # connection carries a line every 50 ms.
        for _ in range(3):
            write_atomic(folder / "web-slice.yaml", slice_yaml("web", [mine]))
            time.sleep(0.6)
            write_atomic(folder / "web-slice.yaml", slice_yaml("web", [mine] + others))
            time.sleep(0.6)
        out, err = proc.communicate(timeout=20)
    finally:
        topo.stop_process(proc)
        write_atomic(folder / "web-slice.yaml", slice_yaml("web", backends))
    assert proc.returncode == 0, err
    assert out.strip() == f"done {first}"


# A line every 20 ms until stdin closes; the longest wait for a reply. Reads
# wait up to 15 s: TCP retransmits across a restart's gap on its own.
STEADY_CLIENT = r"""
import select, socket, sys, time
s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=15)
f = s.makefile("rwb")
names, longest, i = set(), 0.0, 0
while True:
    t = time.monotonic()
    f.write(b"line %d\n" % i); f.flush()
    reply = f.readline().decode().split()
    assert reply[1:] == ["line", str(i)], reply
    longest = max(longest, time.monotonic() - t)
    names.add(reply[0])
    if i == 0:
        print(reply[0], flush=True)
    i += 1
    if select.select([sys.stdin], [], [], 0.02)[0]:
        break
print("done", i, "%.3f" % longest, " ".join(sorted(names)), flush=True)
"""


# A line echo on port 7000 that answers "NAME line": no Service's port.
PLAIN_ECHO = r"""
import socket, sys
srv = socket.create_server(("0.0.0.0", 7000))
print("ready", flush=True)
c, _ = srv.accept()
f = c.makefile("rwb")
for line in f:
    f.write(sys.argv[1].encode() + b" " + line); f.flush()
"""


@pytest.mark.parametrize("through", ["pod", "vip"])
def test_a_connection_survives_its_clients_meshwire_pod_restarting(svc, through):
    """What a DaemonSet upgrade does to a node (README, Kubernetes, Upgrade):
    its data plane and controller stop and start again, with the same
    state folder, under a TCP connection from one of its pods: to a pod on
    the other node (the node's keys come back, at its next epoch, which the
    peer already accepts; TCP retransmits across the gap), or through a
    ClusterIP (the empty connection table picks the connection up again
    with the same backend, and replies met before the client's next packet
    are dropped, not delivered untranslated to draw a RST)."""
    c, ctls, _, backends = svc
    n1, n2 = c.nodes
    client = n1.pods[0]
    server = None
    if through == "pod":
        target, port = n2.pods[0].ipv4, "7000"
        server = topo.popen([PY, "-c", PLAIN_ECHO, n2.pods[0].name], ns=n2.pods[0].ns, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
        assert server.stdout.readline().strip() == "ready"
    else:
        target, port = VIP, "9000"
    proc = topo.popen([PY, "-c", STEADY_CLIENT, target, port], ns=client.ns, stdin=subprocess.PIPE,
                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    startup = n1.config_path.read_text()
    try:
        first = proc.stdout.readline().strip()
        assert first in {p.name for p in backends}, proc.stderr.read() if proc.poll() is not None else first
        time.sleep(0.5)
        ctls.stop(n1)
        c.stop_node(n1)
        # As the DaemonSet starts it: no pod CIDRs in the startup config, so
        # nothing is routed until the controller's first Apply, which brings
        # the services first (a local backend's reply could otherwise reach
        # the client before the data plane knows it is one).
        config = yaml.safe_load(startup)
        del config["node"]["pod_cidrs"]
        n1.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        c.start_node(n1)
        ctls.start(n1)
        topo.wait_for(lambda: int(ctl_json(n1, "show", "generation").get("services_generation", 0)) > 0,
                      timeout=30, what="node1 programmed again")
        time.sleep(2)  # lines flow again before the client is told to stop
        out, err = proc.communicate(input="stop\n", timeout=30)
    finally:
        n1.config_path.write_text(startup)
        topo.stop_process(proc)
        if server is not None:
            topo.stop_process(server)
    assert proc.returncode == 0, err
    done, lines, longest, *names = out.split("\n")[-2].split()
    assert done == "done" and names == [first], out
    # A report, not a threshold: the gap is the restart's, on a busy machine.
    print(f"{through}: {lines} lines; the longest wait for a reply across the restart: {float(longest):.2f} s; "
          f"untracked replies dropped: {n1.counter('drops.service_reply_untracked')}")


def test_a_backend_that_is_not_ready_takes_no_new_connections_and_says_why(svc):
    c, _, folder, backends = svc
    n1 = c.nodes[0]
    out = backends[2]  # on node2
    write_atomic(folder / "web-slice.yaml", slice_yaml("web", backends, not_ready={out.name}))
    try:
        def drained():
            rows = frontend(n1, "default/web:http")[0]["backends"]
            return [b for b in rows if b["backend"]["target"] == f"default/{out.name}" and not b["selectable"]]
        row = topo.wait_for(drained, timeout=10, what=f"{out.name} drained on node1")[0]
        assert row["state"] == "draining: not ready"
        answers = {curl(n1.pods[0], f"http://{VIP}/") for _ in range(20)}
        assert out.name not in answers
        assert answers <= {p.name for p in backends}
        text = topo.run([CTL, "--socket", n1.api_socket, "show", "services", "default/web:http"]).stdout
        assert "draining: not ready" in text
    finally:
        write_atomic(folder / "web-slice.yaml", slice_yaml("web", backends))


def test_flows_are_listed_with_their_backend(svc):
    c, _, _, backends = svc
    n1 = c.nodes[0]
    assert not curl(n1.pods[0], f"http://{VIP}/").startswith("error")
    flows = ctl_json(n1, "show", "flows", "--service", "default/web")
    assert int(flows["capacity"]) > 0
    assert int(flows["total"]) >= 1
    f = flows["flows"][0]
    assert f["frontend"] in (f"{VIP}:80", f"{VIP}:9000", f"{VIP}:53")
    assert f["backend"].rsplit(":", 1)[0] in {p.ipv4 for p in backends}
    assert f["client"].startswith(n1.pods[0].ipv4 + ":")


def test_a_bad_services_file_is_refused_naming_the_field(svc):
    c, _, _, _ = svc
    n1 = c.nodes[0]
    bad = c.tmpdir / "bad-services.json"
    bad.write_text(json.dumps({"services": [{"name": "x", "vip": "10.96.9.9", "port": 80, "protocol": "TCP",
                                             "backends": [{"address": "fd00::1", "port": 80}]}]}))
    done = topo.run([CTL, "--socket", n1.api_socket, "apply-services", "-f", bad], check=False)
    assert done.returncode != 0
    assert "services[0].backends[0].address" in done.stderr + done.stdout
    # ... and nothing changed.
    assert curl(n1.pods[0], f"http://{VIP}/") in {p.name for p in svc[3]}


def test_clients_connect_even_when_backends_refuse_or_are_silent_and_bad_ones_are_ejected(svc):
    c, _, _, backends = svc
    n1 = c.nodes[0]
    refusing, ghost = f"default/{c.nodes[1].pods[2].name}", "default/ghost"
    answers = [curl(n1.pods[0], f"http://{FLAKY_VIP}/") for _ in range(40)]
    # Every connect succeeds: refused (RST) and unanswered SYNs were sent on
    # to the next backend by the data plane.
    assert all(a in {p.name for p in backends} for a in answers), answers
    rows = {b["backend"]["target"]: b for b in frontend(n1, "default/flaky:http")[0]["backends"]}
    for bad in (refusing, ghost):
        assert int(rows[bad]["failed_connects"]) >= 1, rows[bad]
        assert int(rows[bad]["retries_away"]) >= 1, rows[bad]
    counters = ctl_json(n1, "show", "counters")["blocks"][0]["counters"]
    assert int(counters["service_connect_retries"]) >= 2
    # Five failures in a row eject a backend (the default), which says so.
    def ejected():
        for _ in range(10):
            curl(n1.pods[0], f"http://{FLAKY_VIP}/")
        rows = {b["backend"]["target"]: b for b in frontend(n1, "default/flaky:http")[0]["backends"]}
        return rows[refusing]["state"].startswith("ejected") and not rows[refusing]["selectable"]
    topo.wait_for(ejected, timeout=60, interval=0, what="the refusing backend ejected")


CONNECT_LOOP = r"""
import socket, sys, threading, time
# Eight clients, each making a new connection to VIP:80 every 20 ms for the
# given seconds; per connection: start (monotonic), seconds to connect (-1:
# failed) and the error.
end = time.monotonic() + float(sys.argv[2])
lock = threading.Lock()
def client():
    while time.monotonic() < end:
        t0 = time.monotonic()
        s = socket.socket()
        s.settimeout(3)
        try:
            s.connect((sys.argv[1], 80))
            took, why = time.monotonic() - t0, "ok"
        except OSError as e:
            took, why = -1, type(e).__name__ + ":" + str(e.errno) + ":port" + str(s.getsockname()[1])
        s.close()
        with lock:
            print(f"{t0:.4f} {took:.4f} {why}", flush=True)
        time.sleep(0.02)
threads = [threading.Thread(target=client) for _ in range(8)]
for t in threads:
    t.start()
for t in threads:
    t.join()
"""

UDP_LOOP = r"""
import select, socket, sys, time
# Sixteen UDP flows (a socket, so a source port, each) to VIP:53, a datagram
# on each every 20 ms for the given seconds; per answer: when (monotonic),
# the flow and the backend that answered (service_backend.py's first word).
end = time.monotonic() + float(sys.argv[2])
socks = []
for _ in range(16):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.connect((sys.argv[1], 53))
    s.setblocking(False)
    socks.append(s)
next_send = 0.0
while time.monotonic() < end:
    if time.monotonic() >= next_send:
        for s in socks:
            try:
                s.send(b"ping\n")
            except OSError:  # an ICMP error from the last datagram
                pass
        next_send = time.monotonic() + 0.02
    ready, _, _ = select.select(socks, [], [], max(0.0, next_send - time.monotonic()))
    for s in ready:
        try:
            data = s.recv(2048)
        except OSError:
            continue
        print(f"{time.monotonic():.4f} {socks.index(s)} {data.split()[0].decode()}", flush=True)
"""


def test_a_node_killed_mid_traffic_is_routed_around_within_a_second(svc):
    """Clients keep connecting to a ClusterIP with backends on both nodes
    while node2's data plane is killed: no connection fails (a SYN to a
    backend behind the dead node is retried elsewhere after
    connect_timeout_ms), and once node1 has missed node2's keepalives
    (~300 ms) new connections no longer wait for a retry at all."""
    c, ctls, _, backends = svc
    n1, n2 = c.nodes
    client = n1.pods[0]
    proc = topo.popen([PY, "-c", CONNECT_LOOP, VIP, "4"], ns=client.ns, stdout=subprocess.PIPE,
                      stderr=subprocess.PIPE, text=True)
    udp = topo.popen([PY, "-c", UDP_LOOP, VIP, "4"], ns=client.ns, stdout=subprocess.PIPE,
                     stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1.0)
        killed = float(topo.run([PY, "-c", "import time; print(time.monotonic())"]).stdout)
        n2.process.kill()
        n2.process.wait(timeout=10)
        out, err = proc.communicate(timeout=30)
        udp_out, udp_err = udp.communicate(timeout=30)
    finally:
        topo.stop_process(proc)
        topo.stop_process(udp)
    rows = [(float(t), float(took), why) for t, took, why in (line.split() for line in out.splitlines())]
    after = [(t - killed, took) for t, took, _ in rows if t >= killed]
    assert after, f"no connection after the kill: {err}"
    failed = [(round(t - killed, 3), why) for t, took, why in rows if t >= killed and took < 0]
    assert not failed, (f"{len(failed)} of {len(after)} connections failed after the kill (s after, error): {failed}; "
                        f"node1 drops: {ctl_json(n1, 'show', 'drops')}; "
                        f"counters: {ctl_json(n1, 'show', 'counters')['blocks'][0]['counters']}; "
                        f"flows: {ctl_json(n1, 'show', 'flows', '--limit', '5000')['flows']}")
    # Slow ones paid a retry (a SYN into the dead node); the last of them
    # started this long after the kill: the time until new connections
    # succeed at once again.
    slow = [a for a, took in after if took > 0.25]
    recovered = max(slow) if slow else 0.0
    print(f"\nnode killed: {len(after)} connections after, {len(slow)} paid a retry, "
          f"the last starting {recovered * 1000:.0f} ms after the kill")
    assert recovered < 1.0
    # UDP flows answered by node2's backends before the kill move to node1's
    # once node2 is down (their records are closed, and the next datagram
    # chooses again); the others keep their backend.
    on_node1 = {p.name for p in backends[:2]}
    answers = [(float(t) - killed, int(flow), who) for t, flow, who in (l.split() for l in udp_out.splitlines())]
    before = {flow: who for t, flow, who in answers if t < 0}
    assert len(before) == 16, f"not every UDP flow was answered before the kill: {before}; {udp_err}"
    moved = [flow for flow, who in before.items() if who not in on_node1]
    assert moved, f"no UDP flow went to node2 before the kill: {before}"  # 2**-16 by chance
    gaps = []
    for flow in before:
        after = [(t, who) for t, f, who in answers if f == flow and t >= 0]
        assert after, f"UDP flow {flow} ({before[flow]}) was not answered after the kill; {udp_err}"
        late = [who for t, who in after if t > after[-1][0] - 0.5]  # its last half second
        if flow in moved:
            assert set(late) <= on_node1, f"UDP flow {flow} did not move off node2: {after}"
            gaps.append(next(t for t, who in after if who in on_node1))
        else:
            assert set(w for _, w in after) == {before[flow]}, f"UDP flow {flow} changed backend: {after}"
    print(f"UDP: {len(moved)} of 16 flows moved from node2's backends, answered again "
          f"{min(gaps) * 1000:.0f}-{max(gaps) * 1000:.0f} ms after the kill")
    peers = ctl_json(n1, "show", "peers")["peers"]
    assert [p["liveness"] for p in peers if p["name"] == "node2"] == ["down"]
    rows = frontend(n1, "default/web:http")[0]["backends"]
    for b in rows:
        if b["backend"]["node"] == "node2":
            assert b["state"].startswith("node down") and not b["selectable"], b
    # node2 comes back: its controller programs it again, and node1 hears it.
    c.start_node(n2)
    topo.wait_for(lambda: [p["liveness"] for p in ctl_json(n1, "show", "peers")["peers"]
                           if p["name"] == "node2"] == ["up"], timeout=30, what="node2 up again on node1")
    topo.wait_for(lambda: len({curl(client, f"http://{VIP}/") for _ in range(12)} & {p.name for p in backends[2:]})
                  > 0, timeout=30, what="node2's backends chosen again")
