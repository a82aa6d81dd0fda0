#!/usr/bin/python3
"""meshwire demo: two nodes, four pods (network namespaces on this machine),
each node's data plane programmed by its meshwire-controller from a folder
of Kubernetes Node objects, with keys the nodes derive themselves;
encrypted pod traffic between the nodes, independent proof that it is
encrypted (tshark, and Scapy with the keys derived again in Python), and a
file edit the data planes follow. Everything is removed at the end, also on
Ctrl-C.

Run as root after building: `make demo` (BUILD selects the build folder).
"""
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))
import meshwire_topology as topo  # noqa: E402
import meshwire_control as mctl  # noqa: E402


def heading(text: str) -> None:
    print(f"\n== {text}", flush=True)


def indent(text: str, prefix: str = "   ") -> str:
    return "\n".join(prefix + line for line in text.rstrip().splitlines())


def show_ping(cluster, src, dst, family):
    done = cluster.ping(src, dst, family, count=3)
    target = dst.address(family)
    print(f"   {src.name} ({src.address(family)}) -> {dst.name} ({target})")
    lines = [line for line in done.stdout.splitlines() if "bytes from" in line or "packets transmitted" in line]
    print(indent("\n".join(lines), "     "))
    if done.returncode != 0:
        raise RuntimeError(f"ping failed:\n{done.stdout}{done.stderr}")


def show_iperf(cluster, client, server):
    report = cluster.iperf3(client, server, family=4, seconds=2)
    end = report["end"]
    mbps = end["sum_received"]["bits_per_second"] / 1e6
    print(f"   {client.name} -> {server.name}: {end['sum_received']['bytes'] / 1e6:.1f} MB received, "
          f"{mbps:.0f} Mbit/s, {end['sum_sent'].get('retransmits', 0)} retransmits")
    print("   (af_packet on veth: a functional demo, not a benchmark; see perf/)")


def show_capture(cluster, n1, n2, sas_of):
    a, b = n1.pods[0], n2.pods[0]
    with cluster.fabric_capture("demo") as pcap:
        cluster.ping(a, b, 4, count=2, extra=["-p", b"meshwire".hex()])
        cluster.ping(a, b, 6, count=2, extra=["-p", b"meshwire".hex()])
    from scapy.layers.ipsec import ESP
    from scapy.utils import rdpcap
    frames = rdpcap(str(pcap))
    esp = [f for f in frames if ESP in f]
    other = [f for f in frames if ESP not in f]
    print(f"   {len(frames)} frames on the fabric: {len(esp)} ESP-in-UDP/4500, "
          f"{len(other)} other ({', '.join(sorted({f.lastlayer().name for f in other})) or 'none'})")
    summary = subprocess.run(["tshark", "-n", "-r", str(pcap)], capture_output=True, text=True, timeout=60)
    print("   tshark, as an eavesdropper sees it (first 6):")
    print(indent("\n".join(summary.stdout.splitlines()[:6]), "     "))

    sas = {}
    for sender, receiver in ((n1, n2), (n2, n1)):
        for sa in sas_of(sender, receiver):
            sas[(sender.tunnel_address, sa.spi)] = (sa, receiver.tunnel_address)
    args = ["tshark", "-n", "-r", str(pcap), "-o", "esp.enable_encryption_decode:TRUE"]
    for (src, _), (sa, dst) in sas.items():
        args += sa.tshark_uat(src, dst)
    decoded = subprocess.run(args + ["-Y", "icmp || icmpv6"], capture_output=True, text=True, timeout=60)
    print("   tshark, given the SAs derived in Python (esp_sa table), the pings inside (first 6):")
    print(indent("\n".join(decoded.stdout.splitlines()[:6]), "     "))
    return esp, sas


def show_scapy_decrypt(esp_frames, sas):
    """Decrypts the first captured echo request and shows it layer by layer."""
    from scapy.layers.inet import ICMP, IP, UDP
    from scapy.layers.ipsec import ESP
    for frame in esp_frames:
        outer = frame[IP]
        sa, dst = sas[(outer.src, frame[ESP].spi)]
        inner = sa.scapy(outer.src, dst, frame[UDP].sport).decrypt(outer.copy())
        if ICMP in inner and inner[ICMP].type == 8:
            break
    else:
        raise RuntimeError("no encrypted echo request in the capture")
    print(f"   captured: {frame.summary()}  SPI={frame[ESP].spi:#x} seq={frame[ESP].seq}")
    print(f"   ciphertext: {bytes(frame[ESP].data[8:40]).hex()}...")
    print(f"   decrypted (ICV verified, ESN): {inner.summary()}")
    print(indent(inner.show(dump=True), "     "))


def show_counters(cluster):
    for node in cluster.nodes:
        c = node.counters()
        drops = {k: v for k, v in c["drops"].items() if v}
        main = {k: v for k, v in c.items() if k != "drops"}
        print(f"   {node.name}: " + ", ".join(f"{k}={v}" for k, v in main.items()))
        print(f"   {node.name} drops: " + (", ".join(f"{k}={v}" for k, v in drops.items()) or "none"))
        try:
            outbound = node.telemetry.sas()["outbound"]
        except (KeyError, TypeError, RuntimeError, OSError) as e:
            print(f"   {node.name} SAs: /meshwire/sas not available ({e!r})")
            continue
        for sa in outbound:
            print(f"   {node.name} outbound SA to {sa['peer']} (worker {sa['worker']}): SPI {sa['spi']:#x} "
                  f"{sa['algorithm']} seq {sa['seq']}")


VIP = "10.96.0.10"


def curl_many(pod, url: str, n: int) -> list[str]:
    """n HTTP GETs from pod (one connection each): the backends' answers."""
    out = []
    for _ in range(n):
        done = topo.run(["curl", "-sS", "--max-time", "3", url], ns=pod.ns, check=False, timeout=10)
        out.append(done.stdout.strip() if done.returncode == 0 else f"error ({done.stderr.strip()})")
    return out


def print_spread(answers: list[str]) -> None:
    for name in sorted(set(answers)):
        print(f"     {name:<28} {answers.count(name):3d} {'#' * answers.count(name)}")


def ctl_text(node, *args) -> str:
    return subprocess.run([str(mctl.CTL), "--socket", str(node.api_socket), *args],
                          capture_output=True, text=True, timeout=10).stdout


def show_services(cluster, folder, servers) -> None:
    n1, n2 = cluster.nodes
    client, backends = n1.pods[0], [n1.pods[1], n2.pods[0], n2.pods[1]]
    heading(f"a Service with three backends on two nodes: web, ClusterIP {VIP}")
    for pod in backends:
        servers.start(pod)
    mctl.write_atomic(folder / "web.yaml", mctl.service_yaml("web", VIP))
    mctl.write_atomic(folder / "web-slice.yaml", mctl.slice_yaml("web", backends))
    print(f"   {folder}/web.yaml and web-slice.yaml: a Service and its EndpointSlice;"
          f" {', '.join(p.name for p in backends)} answer with their names")
    topo.wait_for(lambda: mctl.ctl_json(n1, "show", "services", "default/web:http").get("services"),
                  timeout=20, what="node1 balancing web")
    print("   meshwirectl show services default/web:http (node1, the client's node):")
    print(indent(ctl_text(n1, "show", "services", "default/web:http"), "     "))

    heading(f"the spread: 30 connections from {client.name} to http://{VIP}/ (curl)")
    print_spread(curl_many(client, f"http://{VIP}/", 30))

    heading(f"a failing backend: the server in {n2.pods[0].name} stops, its port refuses connections")
    servers.stop(n2.pods[0])
    answers = curl_many(client, f"http://{VIP}/", 30)
    print(f"   30 connections: {sum(not a.startswith('error') for a in answers)} succeeded "
          "(a refused SYN is sent on to the next backend; the client never sees the refusal)")
    print_spread(answers)
    counters = mctl.ctl_json(n1, "show", "counters")["blocks"][0]["counters"]
    print(f"   node1: service_connect_failures={counters['service_connect_failures']}, "
          f"service_connect_retries={counters['service_connect_retries']}, "
          f"service_outlier_ejections={counters['service_outlier_ejections']}")
    print("   meshwirectl show backends default/web:http:")
    print(indent(ctl_text(n1, "show", "backends", "default/web:http"), "     "))
    servers.start(n2.pods[0])

    heading("node failure: node2's data plane is killed while node1's clients keep connecting")
    killed = time.monotonic()
    n2.process.kill()
    n2.process.wait(timeout=10)
    down = topo.wait_for(lambda: [p for p in mctl.ctl_json(n1, "show", "peers")["peers"]
                                  if p.get("liveness") == "down"], timeout=5, interval=0.02, what="node2 seen down")
    print(f"   node1 sees {down[0]['name']} down {time.monotonic() - killed:.2f} s after the kill (3 keepalives "
          "of 100 ms missed);\n   until then a SYN to a backend there was retried after 500 ms on another one."
          " Its backends now take no new connections:")
    print(indent(ctl_text(n1, "show", "backends", "default/web:http"), "     "))
    print_spread(curl_many(client, f"http://{VIP}/", 10))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def show_metrics(port: int) -> None:
    url = f"http://127.0.0.1:{port}/metrics"
    with urllib.request.urlopen(url, timeout=5) as r:
        text = r.read().decode()
    wanted = ("meshwire_dataplane_up", "meshwire_peer_up", "meshwire_port_receive_packets_total",
              "meshwire_dataplane_encrypted_packets_total", "meshwire_dataplane_decrypted_packets_total",
              "meshwire_sa_outbound_sequence", "meshwire_controller_key_epoch")
    lines = [line for line in text.splitlines() if line.split("{")[0].split(" ")[0] in wanted]
    print(f"   curl {url} ({len(text.splitlines())} lines; some of them):")
    print(indent("\n".join(lines), "     "))


def main() -> int:
    if os.geteuid() != 0:
        print("demo: needs root (network namespaces)", file=sys.stderr)
        return 1
    # Ctrl-C tears down even when started from a shell that ignores SIGINT
    # for background jobs.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    started = time.monotonic()
    binary = topo.find_dataplane()
    if not binary.exists():
        print(f"demo: {binary} not found: build first (make demo does)", file=sys.stderr)
        return 1
    stale = topo.cleanup_stale()
    if stale:
        print(f"removed leftovers of earlier runs: {', '.join(stale)}")

    cluster = topo.Cluster(binary, nodes=2, pods_per_node=3, workers=1, static_peers=False)
    controllers = None
    servers = mctl.ServiceBackends()
    try:
        heading("building 2 nodes x 3 pods (network namespaces); data planes start with no peers and no keys")
        cluster.create()
        cluster.start()
        n1, n2 = cluster.nodes
        for node in cluster.nodes:
            print(f"   {node.name}: tunnel {node.tunnel_address}, pods {node.pod_cidr_v4} {node.pod_cidr_v6}, "
                  f"namespace {node.ns}")
            for pod in node.pods:
                print(f"      {pod.name}: {pod.ipv4} {pod.ipv6}")

        heading("meshwire-controller on each node, objects from a folder (--source dir:)")
        folder = cluster.tmpdir / "objects"
        folder.mkdir()
        mctl.write_atomic(folder / "nodes.yaml", mctl.nodes_yaml(cluster))
        print(f"   {folder}/nodes.yaml: the two Node objects, as kubectl prints them")
        controllers = mctl.Controllers(cluster, folder)
        metrics_ports = {}
        for node in cluster.nodes:
            metrics_ports[node.name] = free_port()
            controllers.start(node, "--metrics-listen", f"127.0.0.1:{metrics_ports[node.name]}")
        topo.wait_for(lambda: all(mctl.ctl_json(n, "show", "generation")["source"] == "api"
                                  and mctl.ctl_json(n, "show", "peers")["peers"] for n in cluster.nodes),
                      timeout=20, what="both data planes programmed")
        for node in cluster.nodes:
            print(f"   {node.name} controller:")
            print(indent(controllers.log(node), "     "))
        print(f"   published: {', '.join(sorted(f.name for f in folder.glob('meshwire-node-*.yaml')))} "
              "(public key, sending epoch, workers)")
        print("   meshwirectl --socket node1.api.sock show sas:")
        sas_table = subprocess.run([str(mctl.CTL), "--socket", str(n1.api_socket), "show", "sas"],
                                   capture_output=True, text=True, timeout=10).stdout
        print(indent(sas_table, "     "))

        heading("pods ping across nodes, IPv4")
        print("   (the first packet to a pod the data plane has not heard from waits while it\n"
              "    resolves the pod's MAC, hence the slower first reply)")
        show_ping(cluster, n1.pods[0], n2.pods[0], 4)
        show_ping(cluster, n2.pods[1], n1.pods[1], 4)
        heading("pods ping across nodes, IPv6")
        show_ping(cluster, n1.pods[0], n2.pods[0], 6)
        heading("iperf3 TCP across nodes (2 s)")
        show_iperf(cluster, n1.pods[0], n2.pods[0])
        heading("capture on the fabric during pings")
        esp_frames, sas = show_capture(cluster, n1, n2, lambda a, b: [controllers.derived_sa(a, b)])
        heading("Scapy decrypts one captured packet")
        show_scapy_decrypt(esp_frames, sas)
        heading("edit the folder: node2 gets another pod CIDR (10.99.0.0/24)")
        mctl.write_atomic(folder / "nodes.yaml", mctl.nodes_yaml(cluster, {"node2": ["10.99.0.0/24"]}))
        edited = time.monotonic()
        topo.wait_for(lambda: any(r["prefix"] == "10.99.0.0/24" for r in mctl.ctl_json(n1, "show", "routes")["routes"]),
                      timeout=15, what="node1 routes it")
        print(f"   node1 follows in {time.monotonic() - edited:.2f} s; meshwirectl show routes:")
        routes = subprocess.run([str(mctl.CTL), "--socket", str(n1.api_socket), "show", "routes"],
                                capture_output=True, text=True, timeout=10).stdout
        print(indent(routes, "     "))
        heading("counters from DPDK telemetry (/meshwire/counters, /meshwire/sas)")
        show_counters(cluster)
        heading("the same for Prometheus: meshwire-controller --metrics-listen, node1's /metrics")
        show_metrics(metrics_ports["node1"])
        show_services(cluster, folder, servers)
    except KeyboardInterrupt:
        print("\ninterrupted: tearing down", file=sys.stderr)
        return 130
    except Exception as e:
        print(f"\ndemo failed: {e}", file=sys.stderr)
        for node in cluster.nodes:
            print(node.log_tail(20), file=sys.stderr)
        return 1
    finally:
        servers.stop_all()
        if controllers is not None:
            controllers.stop_all()
        cluster.teardown()
    heading(f"torn down: namespaces, processes and keys removed ({time.monotonic() - started:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
