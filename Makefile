# meshwire: the two commands a user needs are `make demo` and `make test`.
# Both install what is missing (Debian 12, as root), build, then run.

BUILD      ?= build
MESON_ARGS ?=
FUZZ_SECONDS ?= 20

.PHONY: all deps build test unit integration fuzz demo bench-micro clean

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

fuzz: build
	@FUZZ_SECONDS=$(FUZZ_SECONDS) BUILD=$(BUILD) tests/fuzz/run_fuzz.sh

integration: build
	/usr/bin/python3 -m pytest -v tests/integration

demo: build
	@BUILD=$(BUILD) scripts/demo.sh

bench-micro: build
	$(BUILD)/perf/micro/dp_micro_bench --benchmark_repetitions=3 --benchmark_report_aggregates_only=true

clean:
	rm -rf $(BUILD) build-fuzz
