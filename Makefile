# Short names for what README.md tells people to run. Everything runs as root.
#
#   make demo    install deps, build berth, run one busybox container
#   make test    install deps, build, fmt + clippy, then the whole test suite
#   make bench   berth vs crun vs runc, every scenario of hack/bench (~6 min;
#                BENCH_ARGS="--quick", or "run -n 50 --hyperfine" for one)
#   make fuzz    each cargo-fuzz target for FUZZ_TIME seconds (hack/fuzz.sh)
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := build

CARGO      ?= cargo
TARGET     := x86_64-unknown-linux-gnu
BERTH_BIN  := $(CURDIR)/target/release/berth
PROBE      := $(CURDIR)/target/$(TARGET)/release/berth-probe
ROOTFS     := $(CURDIR)/hack/.cache/rootfs
DEMO       := $(CURDIR)/hack/.cache/demo
# The test runner: `cargo test` (default) or `cargo nextest run`.
TEST_CMD   ?= $(CARGO) test --workspace --no-fail-fast
BENCH_ARGS ?=
# Seconds each fuzz target runs in `make fuzz` and `make test`.
FUZZ_TIME  ?= 60

.NOTPARALLEL:
.PHONY: all deps build build-all probe rootfs demo lint fuzz test bench clean

all: build

deps:
	bash hack/deps.sh

# berth is linked statically: crt-static goes to its final link only (build
# scripts and proc macros stay dynamic), so start-up runs no dynamic loader
# and no shared library pages count in its RSS.
build:
	$(CARGO) rustc --release -p berth --bin berth -- -C target-feature=+crt-static

build-all: build
	$(CARGO) build --release --workspace --exclude berth

# berth-probe is copied into test root filesystems, so it must be static.
probe:
	RUSTFLAGS="-C target-feature=+crt-static" $(CARGO) build --release \
		-p berth-integration --bin berth-probe --target $(TARGET)

rootfs: probe
	bash hack/mkrootfs.sh $(ROOTFS) --probe $(PROBE)

demo: deps build
	BERTH=$(BERTH_BIN) bash hack/mkbundle.sh $(DEMO) sh -c 'echo "hello from berth: pid $$$$ in $$(hostname), uid $$(id -u)"'
	id=demo-$$$$; rc=0; \
	$(BERTH_BIN) run --bundle $(DEMO) $$id </dev/null || rc=$$?; \
	$(BERTH_BIN) delete --force $$id >/dev/null 2>&1 || true; \
	rm -rf $(DEMO); \
	exit $$rc

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

# Installs the pinned cargo-fuzz if it is missing; fails on any crash.
fuzz:
	bash hack/fuzz.sh --time $(FUZZ_TIME)

# The test suite is last so its summary lines close the output.
test: deps build-all rootfs lint fuzz
	BERTH_BIN=$(BERTH_BIN) BERTH_TEST_ROOTFS=$(ROOTFS) BERTH_PROBE=$(PROBE) \
		$(TEST_CMD)

bench: deps build
	BERTH=$(BERTH_BIN) bash hack/bench $(BENCH_ARGS)

clean:
	$(CARGO) clean
	rm -rf hack/.cache
