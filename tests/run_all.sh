#!/usr/bin/env bash
# Runs every test suite of meshwire and sums them into one closing line
# "N passed, N failed" (also written to $BUILD/test-results/summary.txt).
# Each suite writes a machine-readable report; summarize.py counts them.
set -uo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
FUZZ_SECONDS=${FUZZ_SECONDS:-20}
out="$BUILD/test-results"
rm -rf "$out"; mkdir -p "$out"

status=0

echo "== unit tests (GoogleTest)"
"$BUILD/tests/dataplane_tests" --gtest_output="json:$out/dataplane_tests.json" || status=1
"$BUILD/tests/control_tests" --gtest_output="json:$out/control_tests.json" || status=1

echo "== fuzz (libFuzzer, ${FUZZ_SECONDS}s per target)"
FUZZ_SECONDS=$FUZZ_SECONDS BUILD=$BUILD REPORT_DIR="$out" tests/fuzz/run_fuzz.sh || status=1

echo "== integration tests (network namespaces, real data planes)"
/usr/bin/python3 -m pytest -v -p no:cacheprovider --junitxml="$out/integration.xml" \
  tests/integration || status=1

echo "== benchmark harness (meshwire-perf: unit tests, baselines, a smoke run)"
BUILD=$BUILD /usr/bin/python3 -m pytest -v -p no:cacheprovider --junitxml="$out/perf.xml" \
  tests/perf || status=1

echo "== Kubernetes manifests (kubectl kustomize, API schemas, admission policy CEL, data plane config)"
BUILD=$BUILD /usr/bin/python3 -m pytest -v -p no:cacheprovider --junitxml="$out/k8s.xml" \
  tests/k8s || status=1

echo "== container image (the Dockerfile's runtime packages against the built binaries; MESHWIRE_IMAGE_BUILD=1 also builds it)"
BUILD=$BUILD /usr/bin/python3 -m pytest -v -p no:cacheprovider --junitxml="$out/image.xml" \
  tests/image || status=1

/usr/bin/python3 tests/summarize.py "$out" | tee "$out/summary.txt"
# A suite that crashed before writing its report counts as failed above.
tail -n 1 "$out/summary.txt" | grep -q ', 0 failed' || status=1
exit $status
