"""Fixtures of the integration suite: one 2-node, 4-pod meshwire cluster for
the whole session (built by meshwire_topology, torn down at the end, also on
failure and Ctrl-C). Nothing is skipped: a machine that cannot create network
namespaces or lacks a tool fails every test with the reason."""
import os
import shutil
import subprocess
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import meshwire_topology as topo  # noqa: E402

_TOOLS = ("ip", "bridge", "sysctl", "ss", "tcpdump", "tshark", "iperf3", "ping")
_live = {}  # "cluster" -> the session's Cluster, for failure reports


def _preflight() -> list[str]:
    problems = []
    if os.geteuid() != 0:
        problems.append("the integration suite must run as root (network namespaces, raw sockets)")
    for tool in _TOOLS:
        if shutil.which(tool) is None:
            problems.append(f"'{tool}' is not installed (scripts/bootstrap.sh installs it)")
    try:
        import scapy  # noqa: F401
        import yaml  # noqa: F401
    except ImportError as e:
        problems.append(f"{e}: run the suite with /usr/bin/python3 (Debian's python3-scapy, python3-yaml)")
    try:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM  # noqa: F401
    except ImportError as e:
        problems.append(f"{e}: Scapy's ESP needs python3-cryptography (only recommended by python3-scapy)")
    if not problems:
        probe = f"mw{os.getpid() & 0xffff:04x}-probe"
        made = subprocess.run(["ip", "netns", "add", probe], capture_output=True, text=True)
        if made.returncode != 0:
            problems.append(f"cannot create a network namespace ('ip netns add' said: {made.stderr.strip()})")
        else:
            subprocess.run(["ip", "netns", "del", probe], capture_output=True)
    return problems


@pytest.fixture(scope="session")
def cluster():
    problems = _preflight()
    if problems:
        pytest.fail("integration environment not usable:\n  " + "\n  ".join(problems), pytrace=False)
    topo.cleanup_stale()
    binary = topo.find_dataplane()
    if not binary.exists():
        pytest.fail(f"data plane binary {binary} not found: build it first "
                    f"(make build, or set BUILD / MESHWIRE_DATAPLANE)", pytrace=False)
    c = topo.Cluster(binary, nodes=2, pods_per_node=2, workers=1)
    try:
        try:
            c.create()
        except Exception as e:
            pytest.fail(f"cannot build the test topology (namespaces, bridges, veths): {e}", pytrace=False)
        _live["cluster"] = c
        try:
            c.start()
        except Exception as e:
            pytest.fail(f"meshwire-dataplane did not come up: {e}", pytrace=False)
        yield c
    finally:
        _live.pop("cluster", None)
        c.teardown()


@pytest.fixture(scope="session")
def node1(cluster):
    return cluster.node("node1")


@pytest.fixture(scope="session")
def node2(cluster):
    return cluster.node("node2")


@pytest.fixture(scope="session")
def injector(cluster):
    inj = cluster.injector()
    yield inj
    inj.close()


@pytest.fixture(scope="session")
def esp_sender(cluster, injector):
    """Scapy as node1's data plane towards node2 (node2's spare inbound SA)."""
    return topo.EspSender(cluster, injector, sender="node1", receiver="node2")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    c = _live.get("cluster")
    if report.failed and c is not None:
        for node in c.nodes:
            report.sections.append((f"{node.name} meshwire-dataplane output (tail)", node.log_tail()))
            if node.process is not None and node.process.poll() is not None:
                report.sections.append((f"{node.name} exited", f"exit code {node.process.returncode}"))


@pytest.fixture(autouse=True)
def _dataplanes_alive(request):
    """A data plane that died in an earlier test fails the next one with its
    exit code and log instead of with timeouts."""
    if "cluster" not in request.fixturenames:
        yield
        return
    c = request.getfixturevalue("cluster")
    for node in c.nodes:
        if node.process is None or node.process.poll() is not None:
            code = None if node.process is None else node.process.returncode
            pytest.fail(f"{node.name}: meshwire-dataplane is not running (exit code {code})\n"
                        f"{node.log_tail()}", pytrace=False)
    yield
