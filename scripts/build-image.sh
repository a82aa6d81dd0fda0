#!/usr/bin/env bash
# Builds meshwire's container image, meshwire:<version> (the version in
# meson.build), from ./Dockerfile.
#
# Engine: docker when its daemon answers, else buildah, else podman (both
# with --isolation chroot by default: it works as root inside containers and
# sandboxes where an OCI runtime does not). Base: debian:bookworm-slim when
# it is present or can be pulled; otherwise (no registry reachable, or
# --offline-base) a base made here from Debian's packages with debootstrap
# (minbase, slimmed like Debian's own image) and imported into the engine,
# so the same Dockerfile builds on a machine that reaches only a Debian
# mirror. The base is kept and reused on later runs.
#
#   scripts/build-image.sh                       # build meshwire:<version>
#   scripts/build-image.sh --save meshwire.tar   # and write an archive for docker load / ctr import
#   scripts/build-image.sh --push registry.example.com/team
#
# Needs root for the debootstrap base and for buildah/podman's chroot
# isolation.
set -euo pipefail
shopt -s inherit_errexit  # a failure inside $(...) (the base's making) stops the script too
cd "$(dirname "$0")/.."

usage() {
  cat <<'EOF'
usage: scripts/build-image.sh [options]
  --engine docker|buildah|podman  the container engine (default: docker with a running daemon, else buildah, else podman)
  --isolation chroot|oci          buildah/podman build isolation (default chroot)
  --base IMAGE                    the base image for both stages (default debian:bookworm-slim, else the debootstrap base)
  --offline-base                  use the debootstrap base even where debian:bookworm-slim could be pulled
  --refresh-base                  build the debootstrap base again (e.g. for Debian's security updates)
  --mirror URL                    Debian mirror for debootstrap and the base's apt sources (default http://deb.debian.org/debian)
  --tag NAME                      image name (default meshwire:<version>)
  --no-cache                      build every layer again
  --save FILE                     also write the image as a docker-archive tarball (docker load, ctr -n k8s.io images import, podman load)
  --push REGISTRY                 also push it as REGISTRY/meshwire:<version>
  --insecure-registry             push without TLS verification (buildah/podman)
EOF
}

die() { echo "build-image: $*" >&2; exit 2; }

engine="" isolation=chroot base="" offline_base=0 refresh_base=0
mirror=http://deb.debian.org/debian tag="" no_cache=0 save="" push="" tls_verify=true
while [ $# -gt 0 ]; do
  case "$1" in
    --engine) engine=${2:?--engine needs a value}; shift 2 ;;
    --isolation) isolation=${2:?--isolation needs a value}; shift 2 ;;
    --base) base=${2:?--base needs a value}; shift 2 ;;
    --offline-base) offline_base=1; shift ;;
    --refresh-base) refresh_base=1; offline_base=1; shift ;;
    --mirror) mirror=${2:?--mirror needs a value}; shift 2 ;;
    --tag) tag=${2:?--tag needs a value}; shift 2 ;;
    --no-cache) no_cache=1; shift ;;
    --save) save=${2:?--save needs a file}; shift 2 ;;
    --push) push=${2:?--push needs a registry}; shift 2 ;;
    --insecure-registry) tls_verify=false; shift ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; die "unknown option: $1" ;;
  esac
done
case "$isolation" in chroot|oci) ;; *) die "--isolation: '$isolation' is not chroot or oci" ;; esac

version=$(sed -n "s/^[[:space:]]*version:[[:space:]]*'\([^']*\)'.*/\1/p" meson.build | head -n 1)
[ -n "$version" ] || die "meson.build: no version: '...' line"
tag=${tag:-meshwire:$version}
revision=unknown source=""
if git rev-parse --git-dir >/dev/null 2>&1; then
  revision=$(git rev-parse HEAD)
  git diff --quiet HEAD -- 2>/dev/null || revision="$revision-dirty"
  source=$(git config --get remote.origin.url || true)
fi
created=$(date -u +%Y-%m-%dT%H:%M:%SZ)

# ---- the engine
if [ -z "$engine" ]; then
  if command -v docker >/dev/null && docker info >/dev/null 2>&1; then engine=docker
  elif command -v buildah >/dev/null; then engine=buildah
  elif command -v podman >/dev/null; then engine=podman
  else
    die "no container engine: docker has no running daemon here and neither buildah nor podman is installed (Debian: apt-get install -y buildah)"
  fi
fi
case "$engine" in
  docker) docker info >/dev/null 2>&1 || die "--engine docker: the docker daemon does not answer (docker info)" ;;
  buildah|podman) command -v "$engine" >/dev/null || die "--engine $engine: not installed (Debian: apt-get install -y $engine)" ;;
  *) die "--engine: '$engine' is not docker, buildah or podman" ;;
esac
echo "build-image: $tag with $engine"

image_exists() {
  case "$engine" in
    docker) docker image inspect "$1" >/dev/null 2>&1 ;;
    buildah) buildah inspect --type image "$1" >/dev/null 2>&1 ;;
    podman) podman image exists "$1" ;;
  esac
}

try_pull() {
  case "$engine" in
    docker) docker pull "$1" ;;
    buildah) buildah pull "$1" ;;
    podman) podman pull "$1" ;;
  esac
}

# ---- the debootstrap base
offline_base_name=meshwire-base:bookworm
[ "$engine" = docker ] || offline_base_name=localhost/$offline_base_name

# Debian bookworm minbase in $1, slimmed as Debian's own bookworm-slim
# (no docs but copyrights, no man pages or translations, no recommends, apt
# caches emptied after every install), with bookworm, -updates and
# -security in its apt sources.
make_rootfs() {
  local root=$1
  command -v debootstrap >/dev/null || die "no registry image and no debootstrap to make a base (Debian: apt-get install -y debootstrap)"
  [ "$(id -u)" -eq 0 ] || die "the debootstrap base needs root"
  echo "build-image: debootstrap --variant=minbase bookworm from $mirror (a few minutes)"
  debootstrap --variant=minbase bookworm "$root" "$mirror" >"$root.log" 2>&1 ||
    { tail -n 20 "$root.log" >&2; die "debootstrap failed (log above)"; }

  cat >"$root/etc/dpkg/dpkg.cfg.d/meshwire-slim" <<'EOF'
# Keep images small: no documentation beyond copyrights, no man pages, no translations.
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/lintian/*
EOF
  cat >"$root/etc/apt/apt.conf.d/meshwire-slim" <<'EOF'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
Acquire::Languages "none";
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
EOF
  # Services are never started by package installs inside an image.
  printf '#!/bin/sh\nexit 101\n' >"$root/usr/sbin/policy-rc.d"
  chmod 0755 "$root/usr/sbin/policy-rc.d"

  local security=http://deb.debian.org/debian-security
  [ "$mirror" = http://deb.debian.org/debian ] || security=${mirror%/}-security
  rm -f "$root/etc/apt/sources.list"
  cat >"$root/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $mirror
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $security
Suites: bookworm-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  # What the exclusions above would have kept out, and what is this machine's.
  find "$root/usr/share/doc" -mindepth 1 -not -name copyright -not -type d -delete
  find "$root/usr/share/doc" -mindepth 1 -type d -empty -delete
  rm -rf "$root/usr/share/man/"* "$root/usr/share/info/"* "$root/usr/share/lintian/"*
  find "$root/usr/share/locale" -mindepth 1 -maxdepth 1 -not -name locale.alias -exec rm -rf {} +
  rm -rf "$root/var/cache/apt/archives/"*.deb "$root/var/cache/apt/"*.bin "$root/var/lib/apt/lists/"*
  rm -f "$root/etc/resolv.conf" "$root/etc/hostname" "$root/var/log/"*.log "$root/var/cache/ldconfig/aux-cache"
  : >"$root/etc/machine-id"
}

import_rootfs() {  # rootfs image-name
  local root=$1 name=$2 path_env=PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
  case "$engine" in
    docker|podman)
      tar --numeric-owner -C "$root" -c . |
        "$engine" import --change "ENV $path_env" --change 'CMD ["bash"]' - "$name" >/dev/null ;;
    buildah)
      local c mnt
      c=$(buildah from scratch)
      mnt=$(buildah mount "$c")
      tar --numeric-owner -C "$root" -c . | tar --numeric-owner -C "$mnt" -x
      buildah umount "$c" >/dev/null
      buildah config --env "$path_env" --cmd bash "$c"
      buildah commit --rm "$c" "$name" >/dev/null ;;
  esac
}

offline_base() {  # prints the base's name (and only that) on stdout
  if [ "$refresh_base" -eq 0 ] && image_exists "$offline_base_name"; then
    echo "build-image: base $offline_base_name (made earlier with debootstrap; --refresh-base to make it again)" >&2
  else
    local work
    work=$(mktemp -d "${TMPDIR:-/var/tmp}/meshwire-base.XXXXXX")
    # The rootfs is root's and large: removed whatever happens.
    trap 'rm -rf "$work"' EXIT
    make_rootfs "$work/rootfs" >&2
    import_rootfs "$work/rootfs" "$offline_base_name" >&2
    rm -rf "$work"
    trap - EXIT
    echo "build-image: base $offline_base_name imported" >&2
  fi
  echo "$offline_base_name"
}

if [ -z "$base" ]; then
  default_base=debian:bookworm-slim
  if [ "$offline_base" -eq 1 ]; then
    base=$(offline_base)
  elif image_exists "$default_base"; then
    base=$default_base
  elif try_pull "$default_base" >/dev/null 2>&1; then
    base=$default_base
  else
    echo "build-image: $default_base cannot be pulled here: using a base made with debootstrap" >&2
    base=$(offline_base)
  fi
fi
echo "build-image: base $base"

# ---- the build
build_args=(--build-arg "BASE_IMAGE=$base" --build-arg "VERSION=$version"
            --build-arg "REVISION=$revision" --build-arg "CREATED=$created" --build-arg "SOURCE=$source")
# The same labels again on the command line: buildah 1.28 takes a cached
# LABEL layer even when the build arguments in it changed, and these are
# applied to the final image whatever the cache holds.
build_args+=(--label "org.opencontainers.image.version=$version" --label "org.opencontainers.image.revision=$revision"
             --label "org.opencontainers.image.created=$created" --label "org.opencontainers.image.source=$source"
             --label "org.opencontainers.image.base.name=$base")
[ "$no_cache" -eq 1 ] && build_args+=(--no-cache)
start=$(date +%s)
case "$engine" in
  docker) docker build -f Dockerfile "${build_args[@]}" -t "$tag" . ;;
  buildah) buildah bud --isolation "$isolation" --layers --pull=never -f Dockerfile "${build_args[@]}" -t "$tag" . ;;
  podman) podman build --isolation "$isolation" --pull=never -f Dockerfile "${build_args[@]}" -t "$tag" . ;;
esac
echo "build-image: built $tag in $(( $(date +%s) - start )) s"

# ---- the archive and the push
# A manifest that says "image: meshwire:<version>" asks the node for
# docker.io/library/meshwire:<version>: the archive carries that name, so
# that ctr import, docker load and podman load all give the name it asks for.
bare=${tag#localhost/}
case "$bare" in */*) archive_name=$bare ;; *) archive_name=docker.io/library/$bare ;; esac
if [ -n "$save" ]; then
  rm -f "$save"
  case "$engine" in
    docker) docker tag "$tag" "$archive_name" && docker save -o "$save" "$archive_name" ;;
    buildah) buildah push "$tag" "docker-archive:$save:$archive_name" >/dev/null ;;
    podman) podman tag "$tag" "$archive_name" && podman save --format docker-archive -o "$save" "$archive_name" ;;
  esac
  echo "build-image: wrote $save ($archive_name; load it on a node with: ctr -n k8s.io images import $save)"
fi
if [ -n "$push" ]; then
  dest=${push%/}/${bare##*/}
  case "$engine" in
    docker) docker tag "$tag" "$dest" && docker push "$dest" ;;
    buildah) buildah push --tls-verify="$tls_verify" "$tag" "docker://$dest" ;;
    podman) podman push --tls-verify="$tls_verify" "$tag" "docker://$dest" ;;
  esac
  echo "build-image: pushed $dest"
fi
