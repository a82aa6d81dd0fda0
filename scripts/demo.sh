#!/usr/bin/env bash
# `make demo`: two meshwire nodes and four pods as network namespaces on this
# machine, encrypted traffic between them, checked with tshark and Scapy, then
# everything removed (also on Ctrl-C). Needs root and a build (BUILD, default
# build/); Debian's python3 for Scapy.
set -euo pipefail
cd "$(dirname "$0")/.."
export BUILD="${BUILD:-build}"
exec /usr/bin/python3 scripts/demo.py "$@"
