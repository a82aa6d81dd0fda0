"""Reads what tests/image needs from a Dockerfile and from Debian's package
database: the stages, the packages each stage installs with apt-get, and
which Debian package provides a file.

Only the Dockerfile syntax the repository's Dockerfile uses is understood:
instructions continued with a trailing backslash, comment lines (also
between continued lines, as Docker allows), `FROM image [AS name]`, and
`apt-get install` inside RUN commands chained with && or ;."""
from __future__ import annotations

import os
import re
import shlex
import subprocess
from dataclasses import dataclass, field


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)  # (INSTRUCTION, arguments)

    def runs(self) -> list[str]:
        return [args for ins, args in self.instructions if ins == "RUN"]

    def apt_packages(self) -> list[str]:
        """Every package named by an `apt-get install` of this stage's RUNs, in order."""
        packages: list[str] = []
        for run in self.runs():
            for command in re.split(r"&&|;|\|\|", run):
                words = shlex.split(command)
                if len(words) >= 2 and words[0] in ("apt-get", "apt") and "install" in words:
                    after = words[words.index("install") + 1:]
                    packages += [w for w in after if not w.startswith("-")]
        return packages


def logical_lines(text: str) -> list[str]:
    """The Dockerfile's instructions, one string each: continuations joined,
    comment and blank lines dropped."""
    lines: list[str] = []
    current = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and not current):
            continue
        if stripped.endswith("\\"):
            current += stripped[:-1] + " "
            continue
        current += stripped
        if current.strip():
            lines.append(current.strip())
        current = ""
    if current.strip():
        lines.append(current.strip())
    return lines


def parse(text: str) -> list[Stage]:
    """The stages of a Dockerfile, in order. ARG lines before the first FROM
    are kept as the pseudo-stage's arguments only through FROM's text."""
    stages: list[Stage] = []
    for line in logical_lines(text):
        instruction, _, args = line.partition(" ")
        instruction = instruction.upper()
        args = args.strip()
        if instruction == "FROM":
            words = args.split()
            name = words[2] if len(words) >= 3 and words[1].upper() == "AS" else None
            stages.append(Stage(base=words[0], name=name))
        elif stages:
            stages[-1].instructions.append((instruction, args))
    if not stages:
        raise ValueError("no FROM instruction")
    return stages


def _dpkg_names(path: str) -> list[str]:
    """The names dpkg may know a file by: as given, resolved, and across the
    /lib -> /usr/lib merge (dpkg knows each file by the path its package
    ships it under)."""
    resolved = os.path.realpath(path)
    names = [path, resolved, os.path.join(os.path.dirname(path), os.path.basename(resolved))]
    for p in list(names):
        if p.startswith(("/usr/lib/", "/usr/lib64/", "/usr/bin/", "/usr/sbin/")):
            names.append(p[len("/usr"):])
        elif p.startswith(("/lib/", "/lib64/", "/bin/", "/sbin/")):
            names.append("/usr" + p)
    return list(dict.fromkeys(names))


def packages_of(paths: list[str]) -> dict[str, str | None]:
    """path -> the installed Debian package holding it (None: no package
    does). One dpkg-query for all: each call reads the whole database."""
    names = {path: _dpkg_names(path) for path in paths}
    every = sorted({n for ns in names.values() for n in ns})
    out = subprocess.run(["dpkg-query", "-S", *every], capture_output=True, text=True)
    owner: dict[str, str] = {}
    for line in out.stdout.splitlines():
        # "pkg[:arch][, pkg2]: /path"; diversions start with "diversion by".
        if line.startswith("diversion by") or ": " not in line:
            continue
        packages, _, file = line.partition(": ")
        owner.setdefault(file.strip(), packages.split(",")[0].strip().split(":")[0])
    return {path: next((owner[n] for n in ns if n in owner), None) for path, ns in names.items()}


def shared_libraries(binary: str) -> dict[str, str]:
    """soname -> path of every shared library the binary loads (ldd: the
    whole tree, not only its own NEEDED entries). A library ldd cannot find
    maps to "not found"."""
    out = subprocess.run(["ldd", binary], capture_output=True, text=True, check=True)
    libs: dict[str, str] = {}
    for line in out.stdout.splitlines():
        line = line.strip()
        m = re.match(r"(\S+) => (not found|\S+)", line)
        if m:
            libs[m.group(1)] = m.group(2)
        elif line.startswith("/"):  # the dynamic loader itself
            path = line.split()[0]
            libs[os.path.basename(path)] = path
    return libs


class Apt:
    """apt's own view of Debian's packages (this machine's package lists),
    as if nothing were installed: what a fresh image would get. Building it
    reads every list once (seconds); make one and ask it many questions."""

    def __init__(self):
        import apt_pkg  # Debian's python3-apt
        apt_pkg.init_config()
        # An empty dpkg database: this machine's installed packages must not
        # count as already there.
        apt_pkg.config.set("Dir::State::status", "/dev/null")
        # As the Dockerfile installs: apt-get install --no-install-recommends.
        apt_pkg.config.set("APT::Install-Recommends", "false")
        apt_pkg.config.set("APT::Install-Suggests", "false")
        apt_pkg.init_system()
        self._apt = apt_pkg
        self._cache = apt_pkg.Cache(None)
        self._arch = apt_pkg.config.find("APT::Architecture")
        self._policy = apt_pkg.DepCache(self._cache)  # for candidates only: never marked

    def _package(self, name: str):
        try:
            return self._cache[name]
        except KeyError:
            return None

    def candidate(self, name: str) -> str | None:
        """The version apt would install, or None when it knows no such package."""
        pkg = self._package(name)
        ver = self._policy.get_candidate_ver(pkg) if pkg is not None else None
        return ver.ver_str if ver is not None else None

    def has_lists(self) -> bool:
        return self.candidate("libc6") is not None

    def base(self) -> list[str]:
        """What `debootstrap --variant=minbase` installs, and so what
        debian:bookworm-slim holds: the Essential and Priority: required
        packages."""
        depcache = self._policy
        names = []
        for pkg in self._cache.packages:
            if pkg.architecture != self._arch:
                continue
            ver = depcache.get_candidate_ver(pkg)
            if ver is not None and (pkg.essential or ver.priority == self._apt.PRI_REQUIRED):
                names.append(pkg.name)
        return names

    def install(self, names: list[str]) -> set[str]:
        """Every package apt installs for these (its resolver, dependencies
        included) on top of an empty system. Unknown names raise KeyError."""
        depcache = self._apt.DepCache(self._cache)
        depcache.init()  # DepCaches of one cache share their marks: start from none
        for name in names:
            pkg = self._package(name)
            if pkg is None:
                raise KeyError(f"apt knows no package '{name}'")
            depcache.mark_install(pkg, True)
        if depcache.broken_count:
            raise RuntimeError(f"apt cannot install {names}: {depcache.broken_count} broken packages")
        return {pkg.name for pkg in self._cache.packages if depcache.marked_install(pkg)}
