"""Two workers per data plane: each has its own outbound SA per peer (own
SPI, key and sequence counter) and its own queue on every port; the peer
keeps one inbound SA per sending worker. On this 2-CPU machine the three
lcores share the CPUs (no -l: the data plane takes its CPU affinity)."""
import pytest

import meshwire_topology as topo


@pytest.fixture(scope="module")
def two_workers(cluster):
    """A separate 2-node cluster with workers: 2 (`cluster` first so that the
    environment checks ran)."""
    with topo.running_cluster(cluster.binary, nodes=2, pods_per_node=1, workers=2) as c:
        yield c


def test_two_workers_forward_and_keep_per_worker_sas(two_workers):
    n1, n2 = two_workers.nodes
    a, b = n1.pods[0], n2.pods[0]
    for family in (4, 6):
        done = two_workers.ping(a, b, family, count=3)
        assert done.returncode == 0, done.stdout
    report = two_workers.iperf3(a, b, 4, seconds=2, extra=["-P", "4"])
    assert report["end"]["sum_received"]["bytes"] > 0

    sas = n1.telemetry.sas()
    out = sorted((sa["worker"], sa["spi"]) for sa in sas["outbound"])
    assert [w for w, _ in out] == [0, 1] and out[0][1] != out[1][1], sas
    assert sum(sa["seq"] for sa in sas["outbound"]) > 0
    assert len(n2.telemetry.sas()["inbound"]) >= 2
    for node in (n1, n2):
        counters = node.counters()
        drops = counters["drops"]
        assert drops["auth_failed"] == 0 and drops["no_sa"] == 0, drops
        # net_af_packet spreads queues with PACKET_FANOUT_HASH plus ROLLOVER:
        # when one worker's ring is full (three lcores share two CPUs here),
        # packets of its SA roll over to the other worker, which can move the
        # window more than 2048 ahead of them: they are dropped as too old
        # (replay). Per-worker SAs keep that to a few per cent at worst; a shared
        # sequence counter would make every other packet a replay.
        assert drops["replay"] <= max(10, counters["decrypted_packets"] // 20), (drops, counters)
        # Per-worker counters: worker 0, worker 1 and the control thread (index 2).
        per_worker = [node.telemetry.query(f"/meshwire/counters,{w}") for w in range(3)]
        assert sum(c["encrypted_packets"] for c in per_worker) == node.counter("encrypted_packets")
