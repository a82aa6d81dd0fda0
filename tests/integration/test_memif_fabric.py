"""The same data plane with a different PMD on the uplink: two nodes whose
fabric is one net_memif link (shared memory, no kernel in between), as
between two data planes on one host or a data plane and a traffic
generator. Port setup comes from what the memif device reports."""
import pytest

import meshwire_topology as topo


@pytest.fixture(scope="module")
def memif_fabric(cluster):
    """`cluster` first so that the environment checks ran."""
    with topo.running_cluster(cluster.binary, nodes=2, pods_per_node=1, fabric="memif") as c:
        yield c


def test_memif_fabric_carries_encrypted_traffic(memif_fabric):
    n1, n2 = memif_fabric.nodes
    a, b = n1.pods[0], n2.pods[0]
    for family in (4, 6):
        done = memif_fabric.ping(a, b, family, count=3)
        assert done.returncode == 0, done.stdout
    report = memif_fabric.iperf3(a, b, 4, seconds=2)
    assert report["end"]["sum_received"]["bytes"] > 0
    assert n1.telemetry.peers()["node2"]["resolved"] in (True, "true")  # ARP over memif
    for node in (n1, n2):
        c = node.counters()
        assert c["encrypted_packets"] > 0 and c["decrypted_packets"] > 0
        assert c["drops"]["auth_failed"] == 0 and c["drops"]["replay"] == 0
