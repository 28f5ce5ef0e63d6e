#!/usr/bin/env bash
# Runs berth's cargo-fuzz targets (fuzz/fuzz_targets/*.rs), each for a bounded
# time, on the stable toolchain: coverage-guided libFuzzer (sancov), debug
# assertions and overflow checks on, no sanitizer (ASan needs nightly's -Z).
#
#   hack/fuzz.sh [--time SECS] [TARGET...]     (default: every target, 60 s each)
#
# Installs the pinned cargo-fuzz with `cargo install` when it is missing.
# Each run starts from the committed seeds in fuzz/corpus/TARGET (read, never
# written) plus what earlier runs found in target/fuzz/corpus/TARGET. A crash,
# a panic, a timeout or running out of memory fails the script; the input is
# kept under target/fuzz/artifacts/TARGET/. Logs: target/fuzz/logs/TARGET.log.
set -euo pipefail
cd "$(dirname -- "${BASH_SOURCE[0]}")/.."
root=$PWD

CARGO_FUZZ_VERSION=0.13.2
time=${FUZZ_TIME:-60}
targets=()
while (($#)); do
	case $1 in
	--time) time=$2; shift 2 ;;
	--time=*) time=${1#--time=}; shift ;;
	-h | --help) sed -n '2,12s/^# \{0,1\}//p' "$0"; exit 0 ;;
	-*) echo "fuzz.sh: unknown option $1" >&2; exit 2 ;;
	*) targets+=("$1"); shift ;;
	esac
done
if ((${#targets[@]} == 0)); then
	for f in fuzz/fuzz_targets/*.rs; do
		targets+=("$(basename "$f" .rs)")
	done
fi

if [[ "$(cargo fuzz --version 2>/dev/null)" != "cargo-fuzz $CARGO_FUZZ_VERSION" ]]; then
	echo "fuzz.sh: installing cargo-fuzz $CARGO_FUZZ_VERSION" >&2
	cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked --force
fi

# Its own target directory, so a fuzz build never waits on the workspace's.
export CARGO_TARGET_DIR=$root/target/fuzz
mkdir -p "$CARGO_TARGET_DIR/logs"

# The fuzz crate is outside the workspace, so `make lint` does not see it.
# (clippy would cost a second full build of it: run it by hand,
# `cargo clippy --manifest-path fuzz/Cargo.toml -- -D warnings`.)
rustfmt --check --edition 2021 fuzz/fuzz_targets/*.rs

failed=()
for t in "${targets[@]}"; do
	seeds=fuzz/corpus/$t
	found=$CARGO_TARGET_DIR/corpus/$t
	artifacts=$CARGO_TARGET_DIR/artifacts/$t
	log=$CARGO_TARGET_DIR/logs/$t.log
	mkdir -p "$seeds" "$found" "$artifacts"
	args=(
		-max_total_time="$time"
		-timeout=10
		-rss_limit_mb=2048
		-print_final_stats=1
		-artifact_prefix="$artifacts/"
	)
	[[ -f fuzz/dict/$t.dict ]] && args+=(-dict="fuzz/dict/$t.dict")

	echo "fuzz: $t for ${time}s (seeds: $(find "$seeds" -type f | wc -l) in $seeds)"
	cargo fuzz build --sanitizer none "$t"
	touch "$artifacts/.start"
	rc=0
	# New inputs go to the first directory ($found); the seeds stay as committed.
	cargo fuzz run --sanitizer none "$t" "$found" "$seeds" -- "${args[@]}" >"$log" 2>&1 || rc=$?

	runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n1)
	rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n1)
	cov=$(grep -oE 'cov: [0-9]+ ft: [0-9]+ corp: [0-9]+/[0-9]+[a-zA-Z]*' "$log" | tail -n1 || true)
	if ((rc == 0)); then
		echo "fuzz: $t ok: ${runs:-?} executions in ${time}s (${rate:-?}/s), ${cov:-no coverage line}"
	else
		echo "fuzz: $t FAILED (exit $rc) after ${runs:-?} executions; end of $log:" >&2
		tail -n 60 "$log" >&2
		crash=$(find "$artifacts" -type f -newer "$artifacts/.start" | head -n1)
		if [[ -n $crash ]]; then
			echo "fuzz: input kept at $crash; reproduce with:" \
				"CARGO_TARGET_DIR=$CARGO_TARGET_DIR cargo fuzz run -s none $t $crash" >&2
		fi
		failed+=("$t")
	fi
done

if ((${#failed[@]})); then
	echo "fuzz: failed: ${failed[*]}" >&2
	exit 1
fi
