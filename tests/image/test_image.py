"""meshwire's container image (Dockerfile, scripts/build-image.sh).

Fast tests, always run: the Dockerfile's final stage installs packages that
provide every shared library the freshly built binaries ($BUILD) load, and
the programs meshwirectl starts; it holds no build tools; its packages
exist in Debian; build-image.sh rejects bad options by name.

The build test (MESHWIRE_IMAGE_BUILD=1) builds the image with
scripts/build-image.sh (all of meshwire compiles inside it: about 20
minutes on 2 busy cores the first time, seconds once its layers are
cached) and runs the three programs inside it, the data plane on two
net_null ports until it is ready.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import textwrap
import uuid

import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import dockerfile  # noqa: E402

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.path.abspath(os.path.join(ROOT, os.environ.get("BUILD", "build")))
BINARIES = {
    "meshwire-dataplane": "dataplane/meshwire-dataplane",
    "meshwirectl": "control/meshwirectl",
    "meshwire-controller": "control/meshwire-controller",
}
# Programs the binaries start (control/src/doctor/gather.cc: `ip -j route
# get`, and `nsenter --net=... ip` for a pod's namespace given by path).
SPAWNED = ("ip", "nsenter")
BUILD_TOOLS = re.compile(r"(-dev$|^build-essential$|^gcc|^g\+\+|^cpp|^clang|^make$|^meson$|^ninja-build$"
                         r"|^pkg-config$|^pkgconf$|^cmake$|^protobuf-compiler|^binutils)")


def stages() -> list[dockerfile.Stage]:
    with open(os.path.join(ROOT, "Dockerfile")) as f:
        return dockerfile.parse(f.read())


def runtime_packages() -> list[str]:
    return stages()[-1].apt_packages()


def built_binary(name: str) -> str:
    path = os.path.join(BUILD, BINARIES[name])
    if not os.access(path, os.X_OK):
        pytest.fail(f"{path} is missing: build meshwire first (make build, or BUILD=<dir>)")
    return path


# ---- the Dockerfile's parser

def test_parser_reads_stages_continuations_and_apt_installs():
    text = textwrap.dedent("""\
        ARG BASE=debian:bookworm-slim
        FROM ${BASE} AS build
        RUN apt-get update \\
        # a comment inside a continued instruction
         && apt-get install -y --no-install-recommends gcc \\
              make && rm -rf /var/lib/apt/lists/*
        FROM ${BASE}
        RUN apt-get install -y libc6; apt install --yes curl
        COPY --from=build /out /usr/bin/
        """)
    parsed = dockerfile.parse(text)
    assert [(s.base, s.name) for s in parsed] == [("${BASE}", "build"), ("${BASE}", None)]
    assert parsed[0].apt_packages() == ["gcc", "make"]
    assert parsed[1].apt_packages() == ["libc6", "curl"]
    assert parsed[1].instructions[-1] == ("COPY", "--from=build /out /usr/bin/")


def test_parser_rejects_a_file_without_from():
    with pytest.raises(ValueError, match="FROM"):
        dockerfile.parse("RUN true\n")


# ---- the final stage against the built binaries

@pytest.fixture(scope="module")
def apt() -> dockerfile.Apt:
    view = dockerfile.Apt()
    if not view.has_lists():
        pytest.skip("apt has no package lists here to resolve Debian's packages from (run apt-get update)")
    return view


@pytest.fixture(scope="module")
def installed(apt) -> set[str]:
    """What the final stage holds, as apt resolves it: the base's packages,
    the stage's own, and all they depend on."""
    return apt.install(apt.base() + runtime_packages())


def test_final_stage_provides_every_shared_library_of_the_binaries(installed):
    """Each library ldd shows for the three binaries must come from a package
    the final stage installs, one they depend on, or the base's own."""
    wanted: dict[str, list[str]] = {}  # path -> binaries that load it
    for name in BINARIES:
        for soname, path in dockerfile.shared_libraries(built_binary(name)).items():
            assert path != "not found", f"{name}: ldd cannot find {soname} on this machine"
            wanted.setdefault(path, []).append(name)
    owners = dockerfile.packages_of(list(wanted))
    unowned = [p for p, pkg in owners.items() if pkg is None]
    assert not unowned, f"libraries no Debian package provides (built by hand?): {unowned}"

    missing: dict[str, list[str]] = {}
    for path, pkg in owners.items():
        if pkg not in installed:
            missing.setdefault(pkg, []).append(path)
    assert not missing, "the Dockerfile's final stage lacks runtime packages: " + "; ".join(
        f"{pkg} ({', '.join(sorted(os.path.basename(p) for p in paths)[:3])}"
        f"{', ...' if len(paths) > 3 else ''}; for {', '.join(sorted({b for p in paths for b in wanted[p]}))})"
        for pkg, paths in sorted(missing.items()))


def test_final_stage_provides_the_programs_meshwirectl_starts(installed):
    paths = {}
    for program in SPAWNED:
        found = shutil.which(program)
        assert found, f"'{program}' is not installed here, so its package cannot be named"
        paths[program] = found
    owners = dockerfile.packages_of(list(paths.values()))
    for program, path in paths.items():
        assert owners[path] in installed, f"'{program}' ({owners[path]}) is not in the final stage"


def test_final_stage_has_the_dpdk_drivers_every_port_needs():
    """DPDK loads its drivers from its plugin folder at start, unseen by ldd:
    without the ring mempool no port starts, and the buses carry the VFs
    (PCI) and the virtual ports (vdev)."""
    packages = set(runtime_packages())
    for driver in ("librte-mempool-ring23", "librte-bus-pci23", "librte-bus-vdev23"):
        assert driver in packages, f"{driver} is missing from the final stage"
    # The drivers must match the ABI the data plane links (librte_eal.so.23).
    eal = dockerfile.shared_libraries(built_binary("meshwire-dataplane")).get("librte_eal.so.23")
    assert eal, "meshwire-dataplane does not link librte_eal.so.23: update the librte-*23 names in the Dockerfile"


def test_final_stage_has_no_build_tools_and_copies_only_the_binaries():
    tools = [p for p in runtime_packages() if BUILD_TOOLS.search(p)]
    assert not tools, f"build tools in the final stage: {tools}"
    final = stages()[-1]
    copies = [args for ins, args in final.instructions if ins == "COPY"]
    assert len(copies) == 1 and copies[0].startswith("--from=build "), copies
    sources, destination = copies[0].split()[1:-1], copies[0].split()[-1]
    assert destination == "/usr/bin/"
    assert sorted(os.path.basename(s) for s in sources) == sorted(BINARIES)
    users = [args for ins, args in final.instructions if ins == "USER"]
    assert users and users[-1] not in ("0", "root", "0:0"), "the image must not default to root"


def test_packages_of_both_stages_exist_in_debian(apt):
    unknown = [p for s in stages() for p in s.apt_packages() if apt.candidate(p) is None]
    assert not unknown, f"no such Debian bookworm packages: {unknown}"


# ---- scripts/build-image.sh's options

def script(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([os.path.join(ROOT, "scripts", "build-image.sh"), *args],
                          capture_output=True, text=True, timeout=60)


@pytest.mark.parametrize("args,error", [
    (["--frobnicate"], "unknown option: --frobnicate"),
    (["--isolation", "vm"], "--isolation: 'vm' is not chroot or oci"),
    (["--engine", "lxc"], "--engine: 'lxc' is not docker, buildah or podman"),
    (["--save"], "--save needs a file"),
])
def test_build_script_names_the_bad_option(args, error):
    out = script(*args)
    assert out.returncode != 0
    assert error in out.stderr


def test_build_script_help():
    out = script("--help")
    assert out.returncode == 0
    for option in ("--save FILE", "--push REGISTRY", "--offline-base", "--mirror URL"):
        assert option in out.stdout


# ---- the image itself (opt-in: it compiles all of meshwire)

needs_build = pytest.mark.skipif(os.environ.get("MESHWIRE_IMAGE_BUILD") != "1",
                                 reason="builds the whole image; set MESHWIRE_IMAGE_BUILD=1")


def meson_version() -> str:
    with open(os.path.join(ROOT, "meson.build")) as f:
        return re.search(r"version:\s*'([^']+)'", f.read()).group(1)


def engine() -> str:
    chosen = os.environ.get("MESHWIRE_IMAGE_ENGINE")
    if chosen:
        return chosen
    if shutil.which("docker") and subprocess.run(["docker", "info"], capture_output=True).returncode == 0:
        return "docker"
    for candidate in ("buildah", "podman"):
        if shutil.which(candidate):
            return candidate
    pytest.fail("no container engine: docker without a daemon, and no buildah or podman")


class Container:
    """One container of the image, commands run in it as a given user.
    buildah: a working container run with chroot isolation (works as root
    where an OCI runtime cannot start, as in this project's sandboxes)."""

    def __init__(self, engine_name: str, image: str):
        self.engine, self.image = engine_name, image
        self.id = None
        if engine_name == "buildah":
            self.id = subprocess.run(["buildah", "from", "--pull=never", image], capture_output=True,
                                     text=True, check=True).stdout.strip()

    def run(self, argv: list[str], user: str | None = None, timeout: int = 120,
            mounts: list[str] = ()) -> subprocess.CompletedProcess:
        if self.engine == "buildah":
            cmd = ["buildah", "run", "--isolation", "chroot"]
            if user:
                cmd += ["--user", user]
            for m in mounts:
                cmd += ["-v", m]
            cmd += [self.id, "--", *argv]
        else:
            cmd = [self.engine, "run", "--rm"]
            if user:
                cmd += ["--user", user]
            for m in mounts:
                cmd += ["-v", m]
            cmd += [self.image, *argv]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)

    def config(self) -> dict:
        """The image's OCI/Docker config: Labels, User, Env..."""
        if self.engine == "buildah":
            out = subprocess.run(["buildah", "inspect", "--type", "image", self.image],
                                 capture_output=True, text=True, check=True).stdout
            return json.loads(out)["OCIv1"]["config"]
        out = subprocess.run([self.engine, "image", "inspect", self.image],
                             capture_output=True, text=True, check=True).stdout
        return json.loads(out)[0]["Config"]

    def close(self):
        if self.id:
            subprocess.run(["buildah", "rm", self.id], capture_output=True)


@pytest.fixture(scope="module")
def image(tmp_path_factory):
    work = tmp_path_factory.mktemp("image")
    archive = work / "meshwire.tar"
    tag = f"meshwire:{meson_version()}"
    name = engine()
    out = subprocess.run([os.path.join(ROOT, "scripts", "build-image.sh"), "--engine", name,
                          "--save", str(archive)], capture_output=True, text=True, timeout=3600)
    assert out.returncode == 0, f"build-image.sh failed:\n{out.stdout[-4000:]}\n{out.stderr[-4000:]}"
    container = Container(name, tag)
    try:
        yield container, archive, work
    finally:
        container.close()


@needs_build
def test_image_runs_every_program(image):
    container, _, _ = image
    version = meson_version()
    for program in BINARIES:
        out = container.run([f"/usr/bin/{program}", "--version"])
        assert out.returncode == 0, f"{program} --version: {out.stderr}"
        assert out.stdout.strip() == f"{program} {version}"
    out = container.run(["sh", "-c", "ldd /usr/bin/meshwire-* /usr/bin/meshwirectl | grep 'not found' || true"])
    assert out.stdout.strip() == "", f"libraries missing in the image: {out.stdout}"
    for program in SPAWNED:
        assert container.run(["sh", "-c", f"command -v {program}"]).returncode == 0, f"no '{program}' in the image"


@needs_build
def test_image_has_no_build_tools_and_is_not_root_by_default(image):
    container, _, _ = image
    for tool in ("gcc", "g++", "meson", "ninja", "protoc"):
        assert container.run(["sh", "-c", f"command -v {tool}"]).returncode != 0, f"'{tool}' is in the image"
    assert container.run(["id", "-u"]).stdout.strip() == "65532"
    config = container.config()
    assert config.get("User") == "65532:65532"
    labels = config.get("Labels") or {}
    assert labels.get("org.opencontainers.image.title") == "meshwire"
    assert labels.get("org.opencontainers.image.version") == meson_version()
    head = subprocess.run(["git", "-C", ROOT, "rev-parse", "HEAD"], capture_output=True, text=True)
    if head.returncode == 0:  # the build's own revision, not a cached layer's
        assert labels.get("org.opencontainers.image.revision", "").startswith(head.stdout.strip()), labels


@needs_build
def test_image_data_plane_checks_and_starts_on_null_ports(image):
    container, _, work = image
    prefix = f"mw-img-{uuid.uuid4().hex[:8]}"
    # Readable by the image's default user too (pytest's folders are 0700).
    os.chmod(work, 0o755)
    config = work / "dataplane.yaml"
    config.write_text(textwrap.dedent(f"""\
        eal: ["--no-huge", "-m", "256", "--no-pci", "--file-prefix", "{prefix}", "-l", "0-1"]
        workers: 1
        node:
          tunnel_address: 192.0.2.1
          pod_cidrs: [10.11.0.0/24]
          gateway_v4: 169.254.1.1
        ports:
          - name: pods
            device: net_null0
            role: local
          - name: fabric
            device: net_null1
            role: uplink
        """))
    mount = f"{work}:/etc/meshwire:ro"
    out = container.run(["meshwire-dataplane", "--config", "/etc/meshwire/dataplane.yaml", "--check"],
                        mounts=[mount])
    assert out.returncode == 0 and "valid" in out.stdout, out.stdout + out.stderr
    # As root (as the DaemonSet runs it): start it, wait for "ready", stop it
    # with SIGINT. The mempool ring, vdev bus and null drivers load from
    # DPDK's plugin folder: a missing driver package fails here.
    run_it = ("meshwire-dataplane --config /etc/meshwire/dataplane.yaml >/tmp/dp.out 2>&1 & pid=$!; "
              "for i in $(seq 1 120); do grep -q ready /tmp/dp.out && break; "
              "kill -0 $pid 2>/dev/null || break; sleep 0.5; done; "
              "kill -INT $pid 2>/dev/null; wait $pid; echo rc=$?; cat /tmp/dp.out")
    out = container.run(["sh", "-c", run_it], user="0", mounts=[mount], timeout=180)
    assert "meshwire-dataplane: ready" in out.stdout, out.stdout + out.stderr
    assert "rc=0" in out.stdout and "meshwire-dataplane: stopped" in out.stdout, out.stdout
    # The same without DPDK's drivers folder: the start must fail, so the
    # run above did depend on the image's driver packages.
    empty = work / "no-drivers"
    empty.mkdir(exist_ok=True)
    pmds = container.run(["sh", "-c", "ls -d /usr/lib/*/dpdk/pmds-*"]).stdout.split()
    assert len(pmds) == 1, f"DPDK's drivers folder: {pmds}"
    out = container.run(["meshwire-dataplane", "--config", "/etc/meshwire/dataplane.yaml"], user="0",
                        mounts=[mount, f"{empty}:{pmds[0]}:ro"], timeout=120)
    assert out.returncode != 0 and "DPDK initialisation failed" in out.stderr, out.stdout + out.stderr


@needs_build
def test_image_archive_loads_under_the_name_nodes_ask_for(image):
    _, archive, _ = image
    with tarfile.open(archive) as tar:
        manifest = json.load(tar.extractfile("manifest.json"))
    tags = [t for entry in manifest for t in entry.get("RepoTags") or []]
    # A manifest's "image: meshwire:<version>" is docker.io/library/meshwire:<version> to containerd.
    assert any(t in (f"docker.io/library/meshwire:{meson_version()}", f"meshwire:{meson_version()}")
               for t in tags), tags


@needs_build
def test_image_pushes_to_a_registry(image, tmp_path):
    """--push against a registry of our own on localhost (Debian's
    docker-registry, not installed by bootstrap: its package enables a
    service), read back through the registry API."""
    if shutil.which("docker-registry") is None:
        pytest.skip("docker-registry is not installed (apt-get install docker-registry)")
    container, _, _ = image
    import socket
    import time
    import urllib.request
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    (tmp_path / "config.yml").write_text(textwrap.dedent(f"""\
        version: 0.1
        storage:
          filesystem:
            rootdirectory: {tmp_path}/data
        http:
          addr: 127.0.0.1:{port}
        """))
    registry = subprocess.Popen(["docker-registry", "serve", str(tmp_path / "config.yml")],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}/v2/"
        for _ in range(50):
            try:
                urllib.request.urlopen(base, timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        out = subprocess.run([os.path.join(ROOT, "scripts", "build-image.sh"), "--engine", container.engine,
                              "--push", f"127.0.0.1:{port}/edge", "--insecure-registry"],
                             capture_output=True, text=True, timeout=3600)
        assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
        tags = json.load(urllib.request.urlopen(base + "edge/meshwire/tags/list", timeout=5))
        assert tags["tags"] == [meson_version()]
        request = urllib.request.Request(base + f"edge/meshwire/manifests/{meson_version()}", headers={
            "Accept": "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json"})
        manifest = json.load(urllib.request.urlopen(request, timeout=5))
        assert len(manifest["layers"]) >= 2  # the base and the runtime packages, at least
    finally:
        registry.terminate()
        registry.wait(timeout=10)
