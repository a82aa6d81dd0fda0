"""Systems under test and the generator configuration that matches each.

Topology (all on one machine, no kernel in the packet path):

    meshwire-perf  --memif pod.sock-->     system under test
    (lcore on CPU A)  --memif fabric.sock-->  (worker on CPU B)

The generator plays every pod behind the local port and the peer node
behind the fabric port: it answers ARP/ND there, sends pod traffic or ESP
that it encrypts itself, and counts what comes back. The generator is the
memif server and starts first; the system under test is the client, so it
may be killed and started again under a running generator and simply
reconnects (DPDK 22.11's memif client does not survive being restarted
against a server that went away; its server copes with clients that come
and go).
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import yaml

from .processes import Process

READY_LINE = "meshwire-dataplane: ready"

# Addresses of the benchmark's world: this node (node1) and its peer (node2),
# and for the Service's benchmark (MeshwireServiceDut) a second peer, node3.
NODE_TUNNEL, PEER_TUNNEL, NODE3_TUNNEL = "192.0.2.1", "192.0.2.2", "192.0.2.3"
SERVICE_VIP, SERVICE_PORT, BACKEND_PORT = "10.96.0.10", 80, 8080
LOCAL_PODS = {4: "10.11.0.100", 6: "fd00:11::100"}
LOCAL_PODS_B = {4: "10.11.0.200", 6: "fd00:11::200"}    # same-node destinations
REMOTE_PODS = {4: "10.12.0.10", 6: "fd00:12::10"}
POD_COUNT = 16       # addresses on each side
FLOWS = 1024         # distinct 5-tuples per traffic profile
RING_LOG2 = 12       # memif ring size 2^12

DUT_POD_MAC, DUT_FABRIC_MAC = "02:00:00:00:01:01", "02:00:00:00:01:02"
GEN_POD_MAC, GEN_FABRIC_MAC = "02:00:00:00:02:01", "02:00:00:00:02:02"


@dataclass
class Sa:
    spi: int
    key: bytes
    salt: bytes

    @staticmethod
    def fresh(spi: int) -> "Sa":
        return Sa(spi, os.urandom(16), os.urandom(4))

    def dataplane(self) -> dict:
        return {"spi": f"0x{self.spi:x}", "algorithm": "aes-128-gcm", "key": self.key.hex(),
                "salt": self.salt.hex()}

    def generator(self) -> dict:
        return {"spi": self.spi, "key": self.key.hex(), "salt": self.salt.hex()}


@dataclass
class Cpus:
    """Which CPUs the generator and the system under test's worker run on."""
    generator: int
    worker: int
    main: int   # the DUT's main (control) lcore: shares the generator's CPU

    @staticmethod
    def from_affinity() -> "Cpus":
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) == 1:
            return Cpus(cpus[0], cpus[0], cpus[0])
        return Cpus(generator=cpus[0], worker=cpus[1], main=cpus[0])


class Topology:
    """One benchmark run's folder, prefixes and memif sockets."""

    def __init__(self, workdir: Path, cpus: Optional[Cpus] = None):
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.cpus = cpus or Cpus.from_affinity()
        self.tag = "mwb" + secrets.token_hex(3)
        self.pod_sock = workdir / "pod.sock"
        self.fabric_sock = workdir / "fabric.sock"

    def clear_sockets(self) -> None:
        for sock in (self.pod_sock, self.fabric_sock):
            sock.unlink(missing_ok=True)

    def remove_runtime_dirs(self) -> None:
        """DPDK's runtime folders of this run's processes (/var/run/dpdk/<file
        prefix>), once they have exited: EAL leaves them behind."""
        import shutil
        # As EAL picks it: /var/run for root, else $XDG_RUNTIME_DIR or /tmp.
        base = "/var/run" if os.getuid() == 0 else os.environ.get("XDG_RUNTIME_DIR") or "/tmp"
        runtime = Path(base) / "dpdk"
        for d in runtime.glob(f"{self.tag}-*"):
            shutil.rmtree(d, ignore_errors=True)

    def memif(self, index: int, sock: Path, role: str, mac: str, queues: int = 1) -> str:
        # 4096-slot rings (as a VF's 4096 descriptors) on every system alike:
        # they ride out the millisecond stalls of a shared VM's vCPUs.
        dev = f"net_memif{index},role={role},id=0,socket={sock},socket-abstract=no,mac={mac},rsize={RING_LOG2}"
        if queues > 1:
            dev += f",rx_queues={queues},tx_queues={queues}"
        return dev

    def eal(self, who: str, memory_mb: int = 1024) -> list[str]:
        return ["--no-huge", "-m", str(memory_mb), "--no-pci", "--file-prefix", f"{self.tag}-{who}",
                "--log-level", "lib.eal:notice"]


# ---- systems under test

class MeshwireDut:
    """meshwire-dataplane with its local port on pod.sock and its uplink on
    fabric.sock; one peer (the generator) with one SA each way per worker."""

    name = "meshwire"

    def __init__(self, topo: Topology, binary: Path, workers: int = 1):
        self.topo = topo
        self.binary = binary
        self.workers = workers
        self.outbound = [Sa.fresh(0x1201 + w) for w in range(workers)]   # node1 -> node2: the sink's
        self.inbound = [Sa.fresh(0x2101 + w) for w in range(workers)]    # node2 -> node1: the generator's
        # What a key change (scenario key-change) moves the outbound SAs to;
        # the sink knows them from the start.
        self.next_outbound = [Sa.fresh(0x1301 + w) for w in range(workers)]
        self.config_path = topo.workdir / "dataplane.yaml"
        self.api_socket = topo.workdir / "api.sock"
        self.ctl = binary.parent.parent / "control" / "meshwirectl"
        self.generation = 0
        self.proc: Optional[Process] = None

    def config(self) -> dict:
        c = self.topo.cpus
        eal = self.topo.eal("dut")
        if self.workers == 1:
            # The control thread (main lcore) shares the worker's CPU: on the
            # generator's, its wake-ups (about 1000/s when idle) stalled the
            # generator 250-500 times per trial (each a VM exit), and
            # ipsec-secgw runs on one lcore too.
            eal += ["--lcores", f"0@{c.worker},1@{c.worker}"]
        # else: the data plane spreads its lcores over its CPU affinity
        return {
            "eal": eal,
            "workers": self.workers,
            "idle": "busy",
            # The generator plays node2 but sends no keepalives: with
            # liveness on, node2 would go down between decrypt trials (its
            # routes withdrawn for the next encrypt trial), and keepalives to
            # it would count as received frames.
            "liveness": {"interval_ms": 0},
            "node": {"tunnel_address": NODE_TUNNEL, "pod_cidrs": ["10.11.0.0/16", "fd00:11::/64"]},
            "ports": [
                {"name": "pods", "role": "local",
                 "device": self.topo.memif(0, self.topo.pod_sock, "client", DUT_POD_MAC, self.workers)},
                {"name": "fabric", "role": "uplink",
                 "device": self.topo.memif(1, self.topo.fabric_sock, "client", DUT_FABRIC_MAC, self.workers)},
            ],
            "peers": [{"name": "node2", "tunnel_address": PEER_TUNNEL,
                       "pod_cidrs": ["10.12.0.0/16", "fd00:12::/64"],
                       "sas": {"outbound": [sa.dataplane() for sa in self.outbound],
                               "inbound": [sa.dataplane() for sa in self.inbound]}}],
        }

    def start(self) -> None:
        self.config_path.write_text(yaml.safe_dump(self.config(), sort_keys=False))
        self.config_path.chmod(0o600)
        self.generation = 0  # a (re)started data plane runs its startup config
        self.live_outbound = self.outbound
        self.proc = Process("meshwire-dataplane", [self.binary, "--config", self.config_path,
                                                   "--api-socket", self.api_socket],
                            self.topo.workdir / "dataplane.log", ready=READY_LINE)

    def stop(self) -> None:
        if self.proc:
            self.proc.stop()

    def generator_ports(self) -> list[dict]:
        t = self.topo
        return [{"name": "pod", "device": t.memif(0, t.pod_sock, "server", GEN_POD_MAC, self.workers),
                 "queues": self.workers},
                {"name": "fabric", "device": t.memif(1, t.fabric_sock, "server", GEN_FABRIC_MAC, self.workers),
                 "queues": self.workers}]

    def traffic(self) -> list[dict]:
        out = []
        for fam in (4, 6):
            for l4 in ("udp", "tcp"):
                kind = f"ipv{fam}-{l4}"
                out.append(flows(f"encrypt/{kind}", "pod", "fabric", DUT_POD_MAC, LOCAL_PODS[fam],
                                 REMOTE_PODS[fam], l4,
                                 sink={"sas": [sa.generator() for sa in self.outbound + self.next_outbound],
                                       "udp": True,
                                       "esn": True, "sample_every": 16}))
                out.append(flows(f"decrypt/{kind}", "fabric", "pod", DUT_FABRIC_MAC, REMOTE_PODS[fam],
                                 LOCAL_PODS[fam], l4,
                                 encrypt={**self.inbound[0].generator(), "tunnel_src": PEER_TUNNEL,
                                          "tunnel_dst": NODE_TUNNEL, "dst_mac": DUT_FABRIC_MAC}))
                out.append(flows(f"local/{kind}", "pod", "pod", DUT_POD_MAC, LOCAL_PODS[fam],
                                 LOCAL_PODS_B[fam], l4))
        return out


    def change_keys(self, same: bool = False) -> float:
        """Applies the startup routing state with next_outbound as the outbound
        SAs (meshwirectl apply, a new generation); returns the seconds it took.
        With `same`, the outbound SAs stay what they are: the Apply's own cost
        without a key change (the control for the key-change scenario)."""
        import base64
        import json
        import subprocess
        import time

        def sa_json(sa: Sa) -> dict:
            return {"spi": sa.spi, "algorithm": "AES_128_GCM", "key": base64.b64encode(sa.key).decode(),
                    "salt": base64.b64encode(sa.salt).decode()}
        c = self.config()
        peers = [{"name": p["name"], "tunnel_address": p["tunnel_address"], "pod_cidrs": p["pod_cidrs"],
                  "outbound": [sa_json(sa) for sa in (self.live_outbound if same else self.next_outbound)],
                  "inbound": [sa_json(sa) for sa in self.inbound]} for p in c["peers"]]
        self.generation += 1
        self.live_outbound = self.live_outbound if same else self.next_outbound
        request = {"generation": self.generation, "state": {"pod_cidrs": c["node"]["pod_cidrs"], "peers": peers}}
        path = self.topo.workdir / "apply.json"
        path.write_text(json.dumps(request))
        path.chmod(0o600)
        # At normal priority: at nice 19 the client starved behind the two
        # busy-polling processes (one CI run's Apply landed after the trial).
        t = time.monotonic()
        subprocess.run([str(self.ctl), "--socket", str(self.api_socket), "apply", "-f", str(path)],
                       check=True, capture_output=True, text=True, timeout=10)
        return time.monotonic() - t

    def outbound_sas(self) -> list[dict]:
        """The live outbound SAs (SPI, seq) through meshwirectl."""
        import json
        import subprocess
        out = subprocess.run([str(self.ctl), "--socket", str(self.api_socket), "--json", "show", "sas"],
                             check=True, capture_output=True, text=True, timeout=10).stdout
        return [{"spi": sa["spi"], "seq": int(sa["seq"])} for sa in json.loads(out)["sas"]
                if sa["direction"] == "outbound"]


# Clients of MeshwireServiceDut's profiles: `flows` (address, port) pairs over
# this many pod addresses; 7 keeps them distinct up to the generator's 65,536
# flows (its source ports cycle every 60,000).
CLIENT_FLOWS = 4096
CLIENT_ADDRESSES = 7


class MeshwireServiceDut(MeshwireDut):
    """meshwire-dataplane (node1) with two peers, node2 and node3, both played
    by the generator on the fabric port (each its own tunnel address and SAs
    each way), liveness on with its defaults (keepalives every 100 ms, down
    after 3 missed), and a UDP Service whose ClusterIP has two backends on
    each of them (applied through the API, as the controller does).

    The generator keeps both peers alive with background ESP dummy packets
    (1000/s each, under the peer's SA towards node1) and counts the Service's
    encrypted frames per node. Two traffic profiles, both pods -> ClusterIP
    from 4096 client flows: `services/ipv4-udp` (both nodes live throughout)
    and `peer-down/ipv4-udp`, in which node2 dies `node2_dies_at_s` into the
    trial: its background stops and frames sent to it after that are
    ignored, not received (a dead node receives nothing)."""

    PEERS = {"node2": (PEER_TUNNEL, "10.12.0.0/16", 0x1201, 0x2101),
             "node3": (NODE3_TUNNEL, "10.13.0.0/16", 0x1301, 0x3101)}   # tunnel, pods, outbound SPI, inbound SPI
    BACKENDS = {"node2": ["10.12.0.11", "10.12.0.12"], "node3": ["10.13.0.11", "10.13.0.12"]}
    KEEPALIVE_PPS = 1000   # each peer's background proof of life

    def __init__(self, topo: Topology, binary: Path, workers: int = 1, node2_dies_at_s: float = 1.0,
                 client_flows: int = CLIENT_FLOWS):
        super().__init__(topo, binary, workers)
        self.node2_dies_at_s = node2_dies_at_s
        self.client_flows = client_flows
        self.sas = {name: {"outbound": [Sa.fresh(out + w) for w in range(workers)],
                           "inbound": [Sa.fresh(inb + w) for w in range(workers)]}
                    for name, (_, _, out, inb) in self.PEERS.items()}
        self.outbound, self.inbound = self.sas["node2"]["outbound"], self.sas["node2"]["inbound"]
        self.next_outbound = []
        self.services_path = topo.workdir / "services.json"

    def config(self) -> dict:
        c = super().config()
        del c["liveness"]   # the defaults: keepalives every 100 ms, down after 3 missed
        c["peers"] = [{"name": name, "tunnel_address": tunnel, "pod_cidrs": [pods],
                       "sas": {"outbound": [sa.dataplane() for sa in self.sas[name]["outbound"]],
                               "inbound": [sa.dataplane() for sa in self.sas[name]["inbound"]]}}
                      for name, (tunnel, pods, _, _) in self.PEERS.items()]
        return c

    def services(self) -> dict:
        """The ApplyServicesRequest: one UDP frontend, two backends per node."""
        return {"services": [{"name": "default/echo:udp", "vip": SERVICE_VIP, "port": SERVICE_PORT,
                              "protocol": "UDP",
                              "backends": [{"address": addr, "port": BACKEND_PORT, "node": node,
                                            "target": f"default/{node}-pod{i + 1}"}
                                           for node, addrs in self.BACKENDS.items()
                                           for i, addr in enumerate(addrs)]}]}

    def start(self) -> None:
        super().start()
        import json
        self.services_path.write_text(json.dumps(self.services()))
        self.ctl_json("apply-services", "-f", str(self.services_path))

    def ctl_json(self, *args: str) -> dict:
        """meshwirectl --json ARGS against this data plane."""
        import json
        import subprocess
        out = subprocess.run([str(self.ctl), "--socket", str(self.api_socket), "--json", *args],
                             check=True, capture_output=True, text=True, timeout=10).stdout
        return json.loads(out) if out.strip() else {}

    def peers(self) -> dict:
        """Each peer's liveness as the data plane reports it."""
        return {p["name"]: {"liveness": p.get("liveness", ""), "last_heard_ms_ago": int(p.get("last_heard_ms_ago", 0))}
                for p in self.ctl_json("show", "peers").get("peers", [])}

    def counters(self) -> dict:
        """The data plane's counters and drops, summed over its workers."""
        got: dict = {}
        for what in ("counters", "drops"):
            for block in self.ctl_json("show", what).get("blocks", []):
                for k, v in (block.get("counters") or {}).items():
                    got[k] = got.get(k, 0) + int(v)
        return got

    def log_size(self) -> int:
        return len(self.proc.log_text()) if self.proc else 0

    def peer_down_logs(self, since: int = 0) -> list[dict]:
        """The data plane's 'peer NAME (ADDR) down: no keepalive for N ms'
        lines, from character `since` of its log (a log_size()) on."""
        import re
        return [{"peer": m.group(1), "silent_ms": int(m.group(2))}
                for m in re.finditer(r"peer (\S+) \(\S+\) down: no keepalive for (\d+) ms",
                                     self.proc.log_text()[since:] if self.proc else "")]

    def traffic(self) -> list[dict]:
        def sink(dies_at_s):
            sas = []
            for name in self.PEERS:
                for sa in self.sas[name]["outbound"]:
                    entry = {**sa.generator(), "label": name}
                    if name == "node2" and dies_at_s is not None:
                        entry["until_s"] = dies_at_s
                    sas.append(entry)
            return {"sas": sas, "udp": True, "esn": True, "sample_every": 16}

        def background(dies_at_s):
            out = []
            for name, (tunnel, _, _, _) in self.PEERS.items():
                stream = {"name": f"{name}-alive", "tx_port": "fabric", "rate_pps": self.KEEPALIVE_PPS,
                          "encrypt": {**self.sas[name]["inbound"][0].generator(), "tunnel_src": tunnel,
                                      "tunnel_dst": NODE_TUNNEL, "dst_mac": DUT_FABRIC_MAC}}
                if name == "node2" and dies_at_s is not None:
                    stream["until_s"] = dies_at_s
                out.append(stream)
            return out

        out = []
        for name, dies_at_s in (("services/ipv4-udp", None), ("peer-down/ipv4-udp", self.node2_dies_at_s)):
            t = flows(name, "pod", "fabric", DUT_POD_MAC, LOCAL_PODS[4], SERVICE_VIP, "udp",
                      sink=sink(dies_at_s), background=background(dies_at_s))
            t.update({"dst_count": 1, "dst_port": SERVICE_PORT, "dst_port_count": 1, "flows": self.client_flows,
                      "src_count": CLIENT_ADDRESSES})
            out.append(t)
        # The same clients to one of node3's backends directly: plain
        # encrypted forwarding, the services profile's baseline.
        t = flows("pod-to-pod/ipv4-udp", "pod", "fabric", DUT_POD_MAC, LOCAL_PODS[4], self.BACKENDS["node3"][0], "udp",
                  sink=sink(None), background=background(None))
        t.update({"dst_count": 1, "dst_port": BACKEND_PORT, "dst_port_count": 1, "flows": self.client_flows,
                  "src_count": CLIENT_ADDRESSES})
        out.append(t)
        return out


class TestpmdDut:
    """dpdk-testpmd io forwarding on one memif port, looped: every frame goes
    back out where it came from, the shape of meshwire's same-node path."""

    name = "testpmd"

    def __init__(self, topo: Topology):
        self.topo = topo
        self.proc: Optional[Process] = None

    def start(self) -> None:
        from .baselines import testpmd
        t = self.topo
        cmd = testpmd.command([t.memif(0, t.pod_sock, "client", DUT_POD_MAC)], t.eal("testpmd"),
                              fwd_lcore=t.cpus.worker, main_lcore=t.cpus.main, topology="loop")
        self.proc = testpmd.start(cmd, t.workdir / "testpmd.log")

    def stop(self) -> None:
        if self.proc:
            from .baselines import testpmd
            testpmd.stop(self.proc)

    def generator_ports(self) -> list[dict]:
        t = self.topo
        return [{"name": "pod", "device": t.memif(0, t.pod_sock, "server", GEN_POD_MAC)}]

    def traffic(self) -> list[dict]:
        return [flows("local/ipv4-udp", "pod", "pod", DUT_POD_MAC, LOCAL_PODS[4], LOCAL_PODS_B[4], "udp")]


class SecgwDut:
    """DPDK's ipsec-secgw example, built at bench time, encrypting the same
    pod traffic with AES-128-GCM tunnel SAs (port 0 protected, 1 not), in
    its fastest software mode (cpu-crypto, librte_ipsec path with ESN and a
    2048 replay window). It has no ESP-in-UDP with software crypto in DPDK
    22.11: its frames are plain ESP, 8 bytes shorter than meshwire's."""

    name = "ipsec-secgw"
    CIDRS = ["10.12.0.0/16", "fd00:12::/64"]

    def __init__(self, topo: Topology, build_dir: Path):
        self.topo = topo
        self.build_dir = build_dir
        self.sa = Sa.fresh(0x5300)
        self.proc: Optional[Process] = None

    def _secgw_sa(self):
        from .baselines import secgw
        return secgw.SecgwSa(spi=self.sa.spi, key=self.sa.key, salt=self.sa.salt, tunnel_src=NODE_TUNNEL,
                             tunnel_dst=PEER_TUNNEL, udp_encap=False)

    def start(self) -> None:
        from .baselines import secgw
        t = self.topo
        binary = secgw.build(self.build_dir)
        config = secgw.write_config(t.workdir, self._secgw_sa(), self.CIDRS, GEN_FABRIC_MAC,
                                    mode=secgw.DEFAULT_MODE)
        # One lcore, as meshwire's one worker: it polls both ports (main = forwarding lcore).
        cmd = secgw.command(binary, t.eal("secgw"),
                            [t.memif(0, t.pod_sock, "client", DUT_POD_MAC),
                             t.memif(1, t.fabric_sock, "client", DUT_FABRIC_MAC)],
                            config, GEN_FABRIC_MAC, lcores=str(t.cpus.worker))
        # It waits for its links before its main loop (wait_ready).
        self.proc = Process("ipsec-secgw", cmd, t.workdir / "secgw.log")

    def wait_ready(self) -> None:
        from .baselines import secgw
        self.proc.wait_for(secgw.READY_MARKER, 30)

    def stop(self) -> None:
        if self.proc:
            self.proc.stop()

    def generator_ports(self) -> list[dict]:
        t = self.topo
        return [{"name": "pod", "device": t.memif(0, t.pod_sock, "server", GEN_POD_MAC)},
                {"name": "fabric", "device": t.memif(1, t.fabric_sock, "server", GEN_FABRIC_MAC)}]

    def traffic(self) -> list[dict]:
        from .baselines import secgw
        spis = secgw.outbound_spis(self._secgw_sa(), self.CIDRS)
        return [flows(f"encrypt/ipv{fam}-udp", "pod", "fabric", DUT_POD_MAC, LOCAL_PODS[fam], REMOTE_PODS[fam],
                      "udp", sink={"sas": [Sa(spis[fam], self.sa.key, self.sa.salt).generator()], "udp": False,
                                   "esn": True, "sample_every": 16})
                for fam in (4, 6)]


def flows(name: str, tx: str, rx: str, dst_mac: str, src: str, dst: str, l4: str, **extra) -> dict:
    return {"name": name, "tx_port": tx, "rx_port": rx, "dst_mac": dst_mac, "l4": l4,
            "src": src, "src_count": POD_COUNT, "dst": dst, "dst_count": POD_COUNT, "flows": FLOWS, **extra}


def generator_config(topo: Topology, system) -> dict:
    return {"eal": topo.eal("gen", 512) + ["-l", str(topo.cpus.generator)],
            "ports": system.generator_ports(),
            "traffic": system.traffic()}
