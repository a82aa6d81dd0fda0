# meshwire: the two commands a user needs are `make demo` and `make test`.
# Both install what is missing (Debian 12, as root), build, then run.

BUILD      ?= build
MESON_ARGS ?=
FUZZ_SECONDS ?= 20

.PHONY: all deps build test unit integration fuzz demo bench bench-micro clean

all: build

deps:
	@scripts/bootstrap.sh

$(BUILD)/build.ninja:
	meson setup $(BUILD) $(MESON_ARGS)

build: deps $(BUILD)/build.ninja
	ninja -C $(BUILD)

# Every suite: unit (GoogleTest), fuzz (libFuzzer, bounded), integration
# (network namespaces, real data planes, Scapy/tshark). Ends with the line
# "N passed, N failed".
test: build
	@FUZZ_SECONDS=$(FUZZ_SECONDS) BUILD=$(BUILD) tests/run_all.sh

unit: build
	$(BUILD)/tests/dataplane_tests
	$(BUILD)/tests/control_tests

fuzz: build
	@FUZZ_SECONDS=$(FUZZ_SECONDS) BUILD=$(BUILD) tests/fuzz/run_fuzz.sh

integration: build
	/usr/bin/python3 -m pytest -v tests/integration

demo: build
	@BUILD=$(BUILD) scripts/demo.sh

# The benchmark suite (meshwire-perf): meshwire against testpmd, ipsec-secgw
# and raw AES-GCM measured in the same run; NDR/PDR, latency, scenarios.
# Writes perf/results/<time>/{results.json,report.md,*.png}. BENCH_ARGS
# passes options (e.g. --quick, --skip ipsec-secgw, --trial-s 1).
BENCH_ARGS ?=
bench: build
	cd perf && /usr/bin/python3 -m meshwire_perf --build $(abspath $(BUILD)) $(BENCH_ARGS)

bench-micro: build
	$(BUILD)/perf/micro/dp_micro_bench --benchmark_repetitions=3 --benchmark_report_aggregates_only=true

clean:
	rm -rf $(BUILD) build-fuzz
