# meshwire's container image: meshwire-dataplane, meshwire-controller and
# meshwirectl on Debian bookworm, the same image for both containers of the
# DaemonSet. Build it with scripts/build-image.sh (it also builds offline,
# from a base made with debootstrap: BASE_IMAGE below).
#
# Two stages: "build" compiles with meson (release, -Dtests=false: no
# GoogleTest, benchmarks or meshwire-perf); the final stage holds only the
# runtime libraries and the three binaries. tests/image/ checks that the
# final stage's packages provide every shared library the binaries load.

ARG BASE_IMAGE=debian:bookworm-slim

FROM ${BASE_IMAGE} AS build
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      build-essential pkg-config meson ninja-build \
      libdpdk-dev libipsec-mb-dev libnuma-dev libpcap-dev libssl-dev \
      libboost-dev libyaml-cpp-dev nlohmann-json3-dev libcli11-dev \
      libcurl4-openssl-dev libmicrohttpd-dev \
      protobuf-compiler libprotobuf-dev libgrpc++-dev protobuf-compiler-grpc \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
# Only what a build without tests reads: a change under tests/ or perf/
# does not rebuild the image.
COPY meson.build meson_options.txt ./
COPY proto/ proto/
COPY dataplane/ dataplane/
COPY control/ control/
RUN meson setup /build --prefix=/usr --buildtype=release -Dtests=false \
 && ninja -C /build \
 && DESTDIR=/staging meson install -C /build --no-rebuild --strip

FROM ${BASE_IMAGE}
ENV DEBIAN_FRONTEND=noninteractive
# Runtime packages, one group a line:
#   DPDK 22.11 libraries the data plane links;
#   DPDK drivers, loaded at start from DPDK's plugin folder (not seen by ldd):
#     buses and the ring mempool every port needs; Intel VFs (iavf: E810,
#     X710/XL710; ixgbe: 82599, X540, X550), Mellanox/NVIDIA mlx5
#     (ConnectX-4 and later, bifurcated); af_packet, tap and memif for
#     nodes without SR-IOV; virtio for labs in VMs; null for smoke tests;
#   ipsec-mb, gRPC/protobuf, YAML, OpenSSL, libcurl, libpcap, libmicrohttpd;
#   ip (meshwirectl doctor runs `ip route get`; nsenter is in util-linux,
#     part of the base) and the CA bundle.
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      librte-eal23 librte-ethdev23 librte-mbuf23 librte-mempool23 librte-ring23 librte-rcu23 librte-hash23 librte-fib23 librte-net23 librte-pcapng23 librte-bpf23 librte-telemetry23 \
      librte-mempool-ring23 librte-bus-pci23 librte-bus-vdev23 librte-bus-auxiliary23 librte-net-iavf23 librte-net-ixgbe23 librte-net-mlx5-23 librte-net-af-packet23 librte-net-tap23 librte-net-memif23 librte-net-virtio23 librte-net-null23 \
      libipsec-mb1 libgrpc++1.51 libprotobuf32 libyaml-cpp0.7 libssl3 libcurl4 libpcap0.8 libmicrohttpd12 libnuma1 libbsd0 libstdc++6 \
      iproute2 ca-certificates \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin \
 && groupadd --system --gid 65532 meshwire \
 && useradd --system --uid 65532 --gid 65532 --home-dir /nonexistent --no-create-home --shell /usr/sbin/nologin meshwire
COPY --from=build /staging/usr/bin/meshwire-dataplane /staging/usr/bin/meshwire-controller /staging/usr/bin/meshwirectl /usr/bin/
# The labels come last: a new revision or date does not invalidate the
# layers above (build arguments reach every RUN after their ARG).
ARG BASE_IMAGE
ARG VERSION=0.1.0
ARG REVISION=unknown
ARG CREATED=unknown
ARG SOURCE=
LABEL org.opencontainers.image.title="meshwire" \
      org.opencontainers.image.description="Encrypted east-west data plane for Kubernetes on DPDK (meshwire-dataplane, meshwire-controller, meshwirectl)" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.created="${CREATED}" \
      org.opencontainers.image.source="${SOURCE}" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.base.name="${BASE_IMAGE}"
# Non-root by default. The DaemonSet runs the data plane as root (vfio
# device files, hugepages, locked memory; the API socket it creates is
# 0600), and the controller as the socket's owner: see README, "Container
# image".
USER 65532:65532
CMD ["/usr/bin/meshwirectl", "--help"]
