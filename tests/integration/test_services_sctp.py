"""SCTP Services end to end, with associations crafted by Scapy: this kernel
has no SCTP. Every pod gets a raw IPPROTO_SCTP socket, opened from this
process inside the pod's namespace (topo.in_netns): it sends what Scapy
builds (the kernel adds the IP header) and receives every SCTP packet to the
pod, as it arrived. Holding the protocol also keeps the pod's kernel from
answering SCTP with ICMP protocol unreachable.

A client pod plays an SCTP client towards the ClusterIP; the backend pod
that receives the INIT plays the server (INIT-ACK, COOKIE-ACK, SACK). Each
packet is checked where it lands: addresses and ports translated, chunks
byte for byte as sent, CRC32c valid (Scapy's CRC32c, and tshark's for the
INITs of the first test).

Pods as in test_services: node1 has n1p1 (a client), n1p2 and n1p3
(backends); node2 has n2p1 and n2p2 (backends) and n2p3 (a client). The
Service has two SCTP ports, so both NAT cases are covered:
  diameter  10.96.0.20:3868  -> backends :3868  addresses only: the CRC32c
                                               passes unchanged
  ngap      10.96.0.20:38412 -> backends :7412  ports too: the CRC32c is
                                               updated on the way
"""

import contextlib
import dataclasses
import itertools
import random
import socket
import struct
import time
from typing import Callable, Optional

import pytest

import meshwire_topology as topo

from meshwire_control import CONTROLLER, Controllers, ctl_json, nodes_yaml, write_atomic
from test_services import frontend

VIP = "10.96.0.20"
SERVICE = "signalling"
IPPROTO_SCTP = 132
TIMEOUT = 10        # seconds for anything expected to arrive
SETTLE = 0.5        # seconds for strays (a copy, a second backend) to arrive before counting

# SCTP chunk types (RFC 9260 3.2).
DATA, INIT, INIT_ACK, SACK, ABORT, COOKIE_ECHO, COOKIE_ACK = 0, 1, 2, 3, 6, 10, 11


@dataclasses.dataclass(frozen=True)
class Frontend:
    name: str           # the Service port's name
    port: int           # on the VIP
    target_port: int    # on the backends

    @property
    def full_name(self) -> str:
        return f"default/{SERVICE}:{self.name}"


DIAMETER = Frontend("diameter", 3868, 3868)
NGAP = Frontend("ngap", 38412, 7412)
FRONTENDS = [DIAMETER, NGAP]


def sctp_service_yaml() -> str:
    return "\n".join([
        "apiVersion: v1", "kind: Service", "metadata:", f"  name: {SERVICE}", "  namespace: default", "spec:",
        "  type: ClusterIP", f"  clusterIP: {VIP}", f"  clusterIPs: [{VIP}]", "  ports:",
        *[f"  - {{name: {f.name}, port: {f.port}, targetPort: {f.target_port}, protocol: SCTP}}"
          for f in FRONTENDS]]) + "\n"


def sctp_slice_yaml(backends, target_ports: Optional[dict] = None) -> str:
    """The Service's EndpointSlice; `target_ports` overrides a port's
    backend port by name (to break the Service on purpose)."""
    ports = {f.name: f.target_port for f in FRONTENDS} | (target_ports or {})
    lines = ["apiVersion: discovery.k8s.io/v1", "kind: EndpointSlice", "metadata:", f"  name: {SERVICE}-1",
             "  namespace: default", "  labels:", f"    kubernetes.io/service-name: {SERVICE}",
             "addressType: IPv4", "ports:",
             *[f"- {{name: {name}, port: {port}, protocol: SCTP}}" for name, port in ports.items()],
             "endpoints:"]
    for pod in backends:
        lines += [f"- addresses: [{pod.ipv4}]", "  conditions: {ready: true, serving: true}",
                  f"  nodeName: {pod.node.name}", f"  targetRef: {{kind: Pod, namespace: default, name: {pod.name}}}"]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------
# SCTP endpoints in the pods

def crc32c_of(sctp: bytes) -> int:
    """The CRC32c of an SCTP packet (its checksum field taken as zero), as
    the field reads in network order (the CRC goes least significant byte
    first; Scapy's crc32c() gives it so)."""
    from scapy.layers.sctp import crc32c
    return crc32c(sctp[:8] + bytes(4) + sctp[12:])


@dataclasses.dataclass
class Seen:
    """An SCTP packet as it arrived in a pod."""
    pod: topo.Pod
    src: str
    dst: str
    sctp: bytes         # common header and chunks, as received

    @property
    def sport(self) -> int:
        return struct.unpack("!H", self.sctp[0:2])[0]

    @property
    def dport(self) -> int:
        return struct.unpack("!H", self.sctp[2:4])[0]

    @property
    def tag(self) -> int:
        return struct.unpack("!I", self.sctp[4:8])[0]

    @property
    def chksum(self) -> int:
        return struct.unpack("!I", self.sctp[8:12])[0]

    @property
    def crc_ok(self) -> bool:
        return self.chksum == crc32c_of(self.sctp)

    @property
    def chunks(self) -> bytes:
        return self.sctp[12:]

    @property
    def first_chunk(self) -> int:
        return self.sctp[12] if len(self.sctp) > 12 else -1

    def scapy(self):
        from scapy.layers.sctp import SCTP
        return SCTP(self.sctp)

    def __str__(self) -> str:
        return (f"[at {self.pod.name}] {self.src}:{self.sport} > {self.dst}:{self.dport} tag 0x{self.tag:08x} "
                f"chunk {self.first_chunk} crc 0x{self.chksum:08x} "
                f"({'valid' if self.crc_ok else f'INVALID, expected 0x{crc32c_of(self.sctp):08x}'})")


class SctpEndpoint:
    """A raw IPPROTO_SCTP socket in a pod's namespace, and what it received."""

    def __init__(self, pod: topo.Pod):
        self.pod = pod
        with topo.in_netns(pod.ns):
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_RAW, IPPROTO_SCTP)
        self.sock.setblocking(False)
        self.received: list[Seen] = []

    def send(self, dst: str, packet) -> bytes:
        """Sends a Scapy SCTP packet (or bytes) to dst; returns its bytes."""
        from scapy.packet import raw
        data = packet if isinstance(packet, bytes) else raw(packet)
        self.sock.sendto(data, (dst, 0))
        return data

    def poll(self) -> None:
        while True:
            try:
                data = self.sock.recv(65535)
            except BlockingIOError:
                return
            ihl = (data[0] & 0x0F) * 4
            total = struct.unpack("!H", data[2:4])[0]
            self.received.append(Seen(self.pod, socket.inet_ntoa(data[12:16]), socket.inet_ntoa(data[16:20]),
                                      data[ihl:total]))

    def close(self) -> None:
        self.sock.close()


@dataclasses.dataclass
class Setup:
    cluster: topo.Cluster
    folder: object
    backends: list
    clients: list
    endpoints: dict     # pod name -> SctpEndpoint

    def at(self, pod: topo.Pod) -> SctpEndpoint:
        return self.endpoints[pod.name]

    def seen(self, pred: Callable[[Seen], bool]) -> list[Seen]:
        for e in self.endpoints.values():
            e.poll()
        return [s for e in self.endpoints.values() for s in e.received if pred(s)]

    def wait_seen(self, pred: Callable[[Seen], bool], what: str, count: int = 1) -> list[Seen]:
        """Waits until `count` packets matching pred have arrived in any pod;
        returns all that match (no settling: more may come)."""
        try:
            topo.wait_for(lambda: len(self.seen(pred)) >= count, timeout=TIMEOUT, what=what)
        except TimeoutError:
            got = "\n  ".join(map(str, self.seen(pred))) or "nothing"
            raise AssertionError(f"timed out after {TIMEOUT}s waiting for {what}; matching so far:\n  {got}\n"
                                 f"{dataplane_report(self.cluster)}") from None
        return self.seen(pred)


def dataplane_report(c: topo.Cluster) -> str:
    """The service counters and the drops seen by each node, for failure
    messages."""
    out = []
    for n in c.nodes:
        try:
            total = next(b for b in ctl_json(n, "show", "counters").get("blocks", []) if b.get("name") == "total")
            svc = {k: v for k, v in total.get("counters", {}).items() if k.startswith("service")}
            drops = {d["name"]: d["count"] for d in ctl_json(n, "show", "drops").get("reasons", [])
                     if int(d.get("count", 0))}
            out.append(f"{n.name}: {svc}; drops {drops}")
        except Exception as e:  # a dead data plane is the news then
            out.append(f"{n.name}: meshwirectl failed: {e}\n{n.log_tail(10)}")
    return "\n".join(out)


_ports = itertools.count(40000)   # client source ports: one per association, never reused in a run


def fresh_tag() -> int:
    return random.getrandbits(32) | 1   # an initiate tag is never 0


# --------------------------------------------------------------------------
# Checks: a packet as it must look where it lands

def from_client(client: topo.Pod, cport: int, chunk: Optional[int] = None) -> Callable[[Seen], bool]:
    return lambda s: s.src == client.ipv4 and s.sport == cport and (chunk is None or s.first_chunk == chunk)


def to_client(client: topo.Pod, cport: int, chunk: Optional[int] = None) -> Callable[[Seen], bool]:
    return lambda s: s.pod is client and s.dport == cport and (chunk is None or s.first_chunk == chunk)


def check_forward(setup: Setup, seen: Seen, sent: bytes, client: topo.Pod, fe: Frontend) -> None:
    """seen is `sent` (client -> VIP:port) as a backend must receive it."""
    assert seen.pod in setup.backends, f"{seen} landed in a pod that is no backend"
    assert (seen.src, seen.dst) == (client.ipv4, seen.pod.ipv4), f"{seen}: addresses not translated"
    assert seen.sport == struct.unpack("!H", sent[0:2])[0], f"{seen}: the client's port changed"
    assert seen.dport == fe.target_port, f"{seen}: sent to {VIP}:{fe.port}, expected port {fe.target_port}"
    assert seen.tag == struct.unpack("!I", sent[4:8])[0], f"{seen}: the verification tag changed"
    assert seen.chunks == sent[12:], f"{seen}: the chunks changed on the way"
    assert seen.crc_ok, f"{seen}: bad CRC32c (sent 0x{struct.unpack('!I', sent[8:12])[0]:08x})"
    if fe.port == fe.target_port:
        assert seen.sctp == sent, f"{seen}: only the addresses were to change, and they are not in the CRC"


def check_reply(setup: Setup, seen: Seen, sent: bytes, client: topo.Pod, fe: Frontend) -> None:
    """seen is `sent` (backend -> client) as the client must receive it: from
    the VIP and the frontend's port."""
    assert seen.pod is client, f"{seen}: a reply landed elsewhere than at the client {client.name}"
    assert (seen.src, seen.dst) == (VIP, client.ipv4), f"{seen}: the reply does not come from the VIP"
    assert seen.sport == fe.port, f"{seen}: the reply does not come from the frontend's port {fe.port}"
    assert seen.dport == struct.unpack("!H", sent[2:4])[0]
    assert seen.tag == struct.unpack("!I", sent[4:8])[0], f"{seen}: the verification tag changed"
    assert seen.chunks == sent[12:], f"{seen}: the chunks changed on the way"
    assert seen.crc_ok, f"{seen}: bad CRC32c"


def init_packet(cport: int, fe: Frontend, ctag: int):
    from scapy.layers.sctp import (SCTP, SCTPChunkInit, SCTPChunkParamECNCapable,
                                   SCTPChunkParamSupportedAddrTypes)
    return SCTP(sport=cport, dport=fe.port, tag=0) / SCTPChunkInit(
        init_tag=ctag, a_rwnd=65536, n_out_streams=4, n_in_streams=4, init_tsn=ctag ^ 0x5A5A5A5A,
        params=[SCTPChunkParamSupportedAddrTypes(addr_type_list=["IPv4"]), SCTPChunkParamECNCapable()])


def send_init(setup: Setup, client: topo.Pod, fe: Frontend) -> tuple[int, int, bytes]:
    """An INIT from client to VIP:port from a fresh port; (port, tag, bytes)."""
    cport, ctag = next(_ports), fresh_tag()
    return cport, ctag, setup.at(client).send(VIP, init_packet(cport, fe, ctag))


def init_reaches_a_backend(setup: Setup, client: topo.Pod, fe: Frontend) -> tuple[int, int, Seen]:
    """Sends an INIT and checks it where it lands; (port, tag, what the backend saw)."""
    cport, ctag, sent = send_init(setup, client, fe)
    seen = setup.wait_seen(from_client(client, cport, INIT), f"the INIT from {client.name}:{cport} to "
                                                             f"{VIP}:{fe.port} in a backend")[0]
    check_forward(setup, seen, sent, client, fe)
    return cport, ctag, seen


@dataclasses.dataclass
class Association:
    client: topo.Pod
    fe: Frontend
    cport: int
    backend: topo.Pod
    sent_by_client: int     # packets
    sent_by_backend: int


def associate(setup: Setup, client: topo.Pod, fe: Frontend) -> Association:
    """A whole association, each packet checked where it lands: INIT,
    INIT-ACK, COOKIE-ECHO, COOKIE-ACK, a DATA packet and a packet of two
    DATA chunks (odd sizes, so the CRC covers padded tails), a SACK."""
    from scapy.layers.sctp import (SCTP, SCTPChunkCookieAck, SCTPChunkCookieEcho, SCTPChunkData,
                                   SCTPChunkInitAck, SCTPChunkParamStateCookie, SCTPChunkSACK)
    cport, ctag, init = init_reaches_a_backend(setup, client, fe)
    backend = init.pod
    server = setup.at(backend)
    parsed = init.scapy()
    assert parsed.init_tag == ctag

    # The backend answers the INIT it saw: ports swapped, tag = the INIT's initiate tag.
    btag = fresh_tag()
    cookie = random.randbytes(45)   # not a multiple of 4: the parameter is padded
    sent = server.send(init.src, SCTP(sport=init.dport, dport=init.sport, tag=parsed.init_tag) / SCTPChunkInitAck(
        init_tag=btag, a_rwnd=65536, n_out_streams=4, n_in_streams=4, init_tsn=btag ^ 0x0F0F0F0F,
        params=[SCTPChunkParamStateCookie(cookie=cookie)]))
    got = setup.wait_seen(to_client(client, cport, INIT_ACK), f"the INIT-ACK from {backend.name} at {client.name}")
    check_reply(setup, got[0], sent, client, fe)
    assert got[0].scapy().params[0].cookie == cookie

    sent = setup.at(client).send(VIP, SCTP(sport=cport, dport=fe.port, tag=btag) / SCTPChunkCookieEcho(cookie=cookie))
    got = setup.wait_seen(from_client(client, cport, COOKIE_ECHO), f"the COOKIE-ECHO from {client.name}:{cport}")
    check_forward(setup, got[0], sent, client, fe)
    assert got[0].pod is backend, f"{got[0]}: the COOKIE-ECHO went to another backend than the INIT ({backend.name})"

    sent = server.send(init.src, SCTP(sport=init.dport, dport=cport, tag=ctag) / SCTPChunkCookieAck())
    got = setup.wait_seen(to_client(client, cport, COOKIE_ACK), f"the COOKIE-ACK at {client.name}")
    check_reply(setup, got[0], sent, client, fe)

    tsn = ctag ^ 0x5A5A5A5A
    data = [SCTP(sport=cport, dport=fe.port, tag=btag) /
            SCTPChunkData(tsn=tsn, stream_id=0, stream_seq=0, proto_id=46, beginning=1, ending=1, data=b"x"),
            SCTP(sport=cport, dport=fe.port, tag=btag) /
            SCTPChunkData(tsn=tsn + 1, stream_id=1, stream_seq=0, proto_id=60, beginning=1, ending=1,
                          data=random.randbytes(37)) /
            SCTPChunkData(tsn=tsn + 2, stream_id=1, stream_seq=1, proto_id=60, beginning=1, ending=1,
                          data=random.randbytes(601))]
    sent_data = {p[12:]: p for p in (setup.at(client).send(VIP, d) for d in data)}  # by chunks
    got = setup.wait_seen(from_client(client, cport, DATA), f"both DATA packets from {client.name}:{cport}", count=2)
    assert sorted(g.chunks for g in got) == sorted(sent_data), "\n".join(map(str, got))
    for g in got:
        assert g.pod is backend, f"{g}: DATA went to another backend than the INIT ({backend.name})"
        check_forward(setup, g, sent_data[g.chunks], client, fe)

    sent = server.send(init.src, SCTP(sport=init.dport, dport=cport, tag=ctag) /
                       SCTPChunkSACK(cumul_tsn_ack=tsn + 2, a_rwnd=65536))
    got = setup.wait_seen(to_client(client, cport, SACK), f"the SACK at {client.name}")
    check_reply(setup, got[0], sent, client, fe)
    return Association(client, fe, cport, backend, sent_by_client=4, sent_by_backend=3)


# --------------------------------------------------------------------------
# The cluster

@pytest.fixture(scope="module")
def sctp_svc(cluster):
    if not CONTROLLER.exists():
        pytest.fail(f"{CONTROLLER} is not built")
    # These tests send INITs that no backend answers, and check where each
    # one lands: connect retries (an unanswered INIT goes to the next
    # backend after connect_timeout_ms) would add landings, so they wait a
    # minute here. test_services.py tests retries.
    with topo.running_cluster(cluster.binary, nodes=2, pods_per_node=3, workers=1, static_peers=False,
                              extra_config={"services": {"connect_timeout_ms": 60000}}) as c:
        n1, n2 = c.nodes
        backends = [n1.pods[1], n1.pods[2], n2.pods[0], n2.pods[1]]
        clients = [n1.pods[0], n2.pods[2]]
        folder = c.tmpdir / "objects"
        folder.mkdir()
        write_atomic(folder / "nodes.yaml", nodes_yaml(c))
        write_atomic(folder / f"{SERVICE}.yaml", sctp_service_yaml())
        write_atomic(folder / f"{SERVICE}-slice.yaml", sctp_slice_yaml(backends))
        ctls = Controllers(c, folder)
        endpoints = {}
        try:
            for pod in c.pods:
                endpoints[pod.name] = SctpEndpoint(pod)
            for n in c.nodes:
                ctls.start(n)
            for n in c.nodes:
                def programmed():
                    fes = frontend(n, f"default/{SERVICE}:")
                    return len(fes) == len(FRONTENDS) and all(
                        sum(b["selectable"] for b in f.get("backends", [])) == len(backends) for f in fes)
                topo.wait_for(programmed, timeout=30, what=f"{n.name}'s SCTP frontends programmed")
            yield Setup(c, folder, backends, clients, endpoints)
        finally:
            ctls.stop_all()
            for e in endpoints.values():
                e.close()


# --------------------------------------------------------------------------
# Tests

@pytest.mark.parametrize("fe", FRONTENDS, ids=lambda f: f.name)
def test_an_init_to_the_vip_reaches_one_backend_translated_with_a_valid_crc32c(sctp_svc, fe):
    setup = sctp_svc
    c = setup.cluster
    client = setup.clients[0]
    with contextlib.ExitStack() as stack:
        pcaps = {p.name: stack.enter_context(c.capture(p.ns, "eth0", "sctp", name=f"init-{fe.name}-{p.name}"))
                 for p in setup.backends}
        cport, _, seen = init_reaches_a_backend(setup, client, fe)
        time.sleep(SETTLE)
    arrivals = setup.seen(from_client(client, cport))
    assert arrivals == [seen], "the INIT arrived more than once:\n" + "\n".join(map(str, arrivals))

    # tshark, independently: exactly one INIT on the backends' wires, at the
    # same backend, translated, with a CRC32c it finds good.
    lines = []
    for name, pcap in pcaps.items():
        out = topo.run(["tshark", "-r", pcap, "-o", "sctp.checksum:CRC 32c", "-Y", f"sctp.srcport == {cport}",
                        "-T", "fields", "-e", "ip.src", "-e", "ip.dst", "-e", "sctp.dstport",
                        "-e", "sctp.checksum.status"]).stdout
        lines += [(name, *line.split("\t")) for line in out.splitlines() if line.strip()]
    assert lines == [(seen.pod.name, client.ipv4, seen.pod.ipv4, str(fe.target_port), "1")], lines


@pytest.mark.parametrize("fe", FRONTENDS, ids=lambda f: f.name)
@pytest.mark.parametrize("client_index", [0, 1], ids=["client-on-node1", "client-on-node2"])
def test_an_association_stays_on_its_backend_both_ways(sctp_svc, fe, client_index):
    setup = sctp_svc
    client = setup.clients[client_index]
    # Associations until every backend has served one, so that replies come
    # both from the client's node and through the tunnel (4 backends: at most
    # 40 tries: one is still missing then with probability <= 4 * 0.75^40 = 4e-5).
    done: list[Association] = []
    while {a.backend.name for a in done} != {p.name for p in setup.backends} and len(done) < 40:
        done.append(associate(setup, client, fe))
    assert {a.backend.name for a in done} == {p.name for p in setup.backends}, [a.backend.name for a in done]
    time.sleep(SETTLE)
    # Nothing of any association went anywhere else, nor came twice.
    for a in done:
        out = setup.seen(from_client(client, a.cport))
        assert len(out) == a.sent_by_client and all(s.pod is a.backend for s in out), \
            f"association from port {a.cport} (backend {a.backend.name}):\n" + "\n".join(map(str, out))
        back = setup.seen(lambda s, a=a: s.dport == a.cport and s.src != client.ipv4)
        assert len(back) == a.sent_by_backend and all(s.pod is client for s in back), "\n".join(map(str, back))


def test_many_associations_spread_over_backends_on_both_nodes(sctp_svc):
    setup = sctp_svc
    client = setup.clients[0]
    sent = {}
    for _ in range(40):
        cport, _, data = send_init(setup, client, DIAMETER)
        sent[cport] = data
    setup.wait_seen(lambda s: s.src == client.ipv4 and s.sport in sent, "40 INITs in the backends", count=40)
    time.sleep(SETTLE)
    by_port = {}
    for s in setup.seen(lambda s: s.src == client.ipv4 and s.sport in sent):
        by_port.setdefault(s.sport, []).append(s)
    for cport, data in sent.items():
        got = by_port.get(cport, [])
        assert len(got) == 1, f"the INIT from port {cport} arrived {len(got)} times: " + "; ".join(map(str, got))
        check_forward(setup, got[0], data, client, DIAMETER)
    per_backend = {p.name: sum(1 for g in by_port.values() if g[0].pod is p) for p in setup.backends}
    # Four equal backends, 40 associations: every one is chosen (missed with
    # probability 4 * 0.75^40 = 4e-5), so both nodes' backends are.
    assert all(per_backend.values()), per_backend


def test_sctp_flows_are_listed_with_their_backend(sctp_svc):
    setup = sctp_svc
    for client in setup.clients:
        node = client.node   # connections are tracked on the client's node
        mine = {}
        for fe in FRONTENDS:
            cport, _, seen = init_reaches_a_backend(setup, client, fe)
            mine[cport] = (fe, seen)
        flows = ctl_json(node, "show", "flows", "--service", f"default/{SERVICE}")
        assert int(flows["total"]) >= len(mine)
        listed = flows["flows"]
        # Unanswered INITs: "init_sent"; associations that got their INIT-ACK: "sctp".
        assert listed and all(f["protocol"] == "SCTP" and f["state"] in ("sctp", "init_sent") for f in listed), listed
        assert {f["service"] for f in listed} <= {fe.full_name for fe in FRONTENDS}
        for cport, (fe, seen) in mine.items():
            row = [f for f in listed if f["client"] == f"{client.ipv4}:{cport}"]
            assert len(row) == 1, f"{client.name}:{cport} on {node.name}: {row or listed}"
            assert row[0]["frontend"] == f"{VIP}:{fe.port}"
            assert row[0]["state"] == "init_sent"
            assert row[0]["service"] == fe.full_name
            assert row[0]["backend"] == f"{seen.pod.ipv4}:{fe.target_port}", f"{row[0]}; the INIT went to {seen}"
        # The prefix selects: one port's flows only.
        ngap = ctl_json(node, "show", "flows", "--service", NGAP.full_name)["flows"]
        assert ngap and all(f["service"] == NGAP.full_name for f in ngap), ngap


@pytest.mark.parametrize("fe", FRONTENDS, ids=lambda f: f.name)
def test_a_bad_crc32c_arrives_as_bad_as_it_was_sent(sctp_svc, fe):
    """The data plane updates the CRC32c, it does not recompute it: a corrupt
    packet stays corrupt (by the same error) and the receiver drops it. Also
    shows that the checks above would see a bad CRC."""
    setup = sctp_svc
    client = setup.clients[0]
    cport, ctag = next(_ports), fresh_tag()
    good = init_packet(cport, fe, ctag)
    from scapy.packet import raw
    error = 0x00FF0F01
    pkt = good.copy()
    pkt.chksum = struct.unpack("!I", raw(good)[8:12])[0] ^ error
    sent = setup.at(client).send(VIP, pkt)
    seen = setup.wait_seen(from_client(client, cport, INIT), f"the corrupt INIT from port {cport}")[0]
    assert seen.pod in setup.backends, f"{seen} landed in a pod that is no backend"
    assert (seen.dst, seen.dport) == (seen.pod.ipv4, fe.target_port), f"{seen}: not translated"
    assert seen.chunks == sent[12:], f"{seen}: the chunks changed on the way"
    assert not seen.crc_ok, f"{seen}: the data plane made a corrupt packet's CRC32c valid"
    assert seen.chksum ^ crc32c_of(seen.sctp) == error, f"{seen}: the CRC32c error changed on the way"


def test_an_init_a_backend_aborts_is_retried_on_another_backend_and_the_client_never_sees_the_abort(sctp_svc):
    """L4 connect retries for SCTP: the backend answers the INIT with ABORT
    (no association for it there); the data plane sends the client's INIT
    on to the next backend, and the ABORT goes no further."""
    from scapy.layers.sctp import SCTP, SCTPChunkAbort
    setup = sctp_svc
    client = setup.clients[0]
    fe = FRONTENDS[0]
    cport, ctag, first = init_reaches_a_backend(setup, client, fe)
    server = setup.at(first.pod)
    # ABORT in answer to an INIT: the INIT's initiate tag, T bit clear (RFC 9260 8.4).
    server.send(first.src, SCTP(sport=first.dport, dport=first.sport, tag=ctag) / SCTPChunkAbort())
    again = setup.wait_seen(lambda s: from_client(client, cport, INIT)(s) and s.pod is not first.pod,
                            f"the INIT from {client.name}:{cport} at another backend than {first.pod.name}")[0]
    check_forward(setup, again, bytes(init_packet(cport, fe, ctag)), client, fe)
    time.sleep(0.2)
    assert not setup.seen(to_client(client, cport, ABORT)), "the ABORT reached the client"
    flows = ctl_json(client.node, "show", "flows", "--service", fe.full_name)["flows"]
    row = [f for f in flows if f["client"] == f"{client.ipv4}:{cport}"]
    assert len(row) == 1 and int(row[0]["attempts"]) == 2, row
    assert row[0]["backend"] == f"{again.pod.ipv4}:{fe.target_port}", row
