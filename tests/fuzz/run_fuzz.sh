#!/usr/bin/env bash
# Builds and runs every libFuzzer target tests/fuzz/<name>_fuzz.cc.
#
# A target names what it links in comment lines of its own:
#   // fuzz-sources: dataplane/src/net/*.cc ...       (repo-relative, globs allowed, may repeat)
#   // fuzz-pkgs: libdpdk                             (pkg-config --libs of these)
#   // fuzz-libs: -lIPSec_MB                          (raw linker flags)
# Seeds come from tests/fuzz/corpus/<name without _fuzz>/ if present; the
# working corpus, crash artifacts and logs stay under $BUILD/fuzz/work/<name>/; the binary is $BUILD/fuzz/<name>.
# Writes $REPORT_DIR/<name>.fuzz ("<name> passed|failed") per target and
# exits non-zero if any failed to build or found a crash.
#
# Env: BUILD (build), FUZZ_SECONDS (20 per target), REPORT_DIR
# ($BUILD/test-results), FUZZ_CXX (clang++), FUZZ_TARGETS (names to run, all
# by default).
set -uo pipefail
cd "$(dirname "$0")/../.."
root=$(pwd)
BUILD=${BUILD:-build}
FUZZ_SECONDS=${FUZZ_SECONDS:-20}
REPORT_DIR=${REPORT_DIR:-$BUILD/test-results}
CXX=${FUZZ_CXX:-clang++}
out=$(realpath -m "$BUILD/fuzz")
mkdir -p "$out" "$REPORT_DIR"

read -r -a dpdk_cflags <<<"$(pkg-config --cflags libdpdk 2>/dev/null)"
status=0

# Values of "// <key>: ..." comment lines of a file, space-separated.
directive() { sed -n "s#^// $1:##p" "$2" | tr '\n' ' '; }

report() {  # name verdict
  echo "$1 $2" >"$REPORT_DIR/$1.fuzz"
  [ "$2" = passed ] || status=1
}

shopt -s nullglob
for src in tests/fuzz/*_fuzz.cc; do
  name=$(basename "$src" .cc)
  if [ -n "${FUZZ_TARGETS:-}" ] && [[ " $FUZZ_TARGETS " != *" $name "* ]]; then continue; fi
  work="$out/work/$name"
  mkdir -p "$work/corpus" "$work/artifacts"
  # Unquoted on purpose: a directive may name globs (dataplane/src/net/*.cc).
  # shellcheck disable=SC2207
  sources=($(directive fuzz-sources "$src"))
  read -r -a libs <<<"$(directive fuzz-libs "$src")"
  pkgs=$(directive fuzz-pkgs "$src")
  if [ -n "${pkgs// /}" ]; then
    read -r -a pkg_libs <<<"$(pkg-config --libs $pkgs)"
    libs+=("${pkg_libs[@]}")
  fi

  echo "-- $name: building"
  if ! "$CXX" -std=c++20 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined \
      -I dataplane/include -I dataplane/src -I tests "${dpdk_cflags[@]}" \
      "$src" "${sources[@]}" "${libs[@]}" -o "$out/$name" >"$work/build.log" 2>&1; then
    cat "$work/build.log"
    echo "-- $name: build failed"
    report "$name" failed
    continue
  fi

  seeds=()
  seed_dir="$root/tests/fuzz/corpus/${name%_fuzz}"
  [ -d "$seed_dir" ] && seeds=("$seed_dir")
  echo "-- $name: running ${FUZZ_SECONDS}s"
  # libFuzzer writes new inputs into the first corpus dir only: the seeds stay as they are.
  (cd "$work" && "$out/$name" -max_total_time="$FUZZ_SECONDS" -rss_limit_mb=2048 -timeout=10 \
      -print_final_stats=1 -artifact_prefix="$work/artifacts/" corpus "${seeds[@]}") >"$work/run.log" 2>&1
  rc=$?
  grep -E '^stat::(number_of_executed_units|average_exec_per_sec)' "$work/run.log" | tr '\n' ' '
  echo
  if [ $rc -eq 0 ]; then
    echo "-- $name: passed"
    report "$name" passed
  else
    tail -n 40 "$work/run.log"
    echo "-- $name: FAILED (rc $rc); artifacts in $work/artifacts/, log $work/run.log"
    report "$name" failed
  fi
done
exit $status
