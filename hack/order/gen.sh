#!/usr/bin/env bash
# Regenerate hack/order/berth.order: the functions berth runs for run,
# create, start, exec, state, list, ps, kill and delete, which the link
# (build.rs, lld's --symbol-ordering-file) places next to each other at the
# start of .text. A command then touches (and keeps resident) a few hundred
# KiB of code instead of most of the binary: faults around each touched
# page map 64 KiB of it.
#
#   hack/order/gen.sh        (as root; needs gcc; ~5 min, mostly the build)
#
# Builds berth as `make build` does but with symbols (target/order/), runs
# each command under hack/order/trace-funcs (a breakpoint on every function
# entry, in every process of the command that runs berth's code), and writes
# the names of the functions that ran. Names that no longer exist after a
# code change are skipped by the linker; rerun this when the hot paths change.
set -euo pipefail

here=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
repo=$(cd -- "$here/../.." && pwd)
out=$here/berth.order
tmp=$(mktemp -d /tmp/berth-order.XXXXXX)
ro=$tmp/ro
root=$tmp/root

cleanup() {
	local b=$ro/berth
	if [[ -x $b ]]; then
		for id in $("$b" --root "$root" list -q 2>/dev/null); do
			"$b" --root "$root" delete --force "$id" >/dev/null 2>&1 || true
		done
	fi
	umount "$ro" 2>/dev/null || true
	rm -rf "$tmp"
}
trap cleanup EXIT

echo "order: building berth with symbols (target/order)"
(cd "$repo" && CARGO_TARGET_DIR=$repo/target/order CARGO_PROFILE_RELEASE_STRIP=false \
	cargo rustc -q --release -p berth --bin berth -- -C target-feature=+crt-static)
bin=$repo/target/order/release/berth
gcc -O2 -Wall -o "$tmp/trace-funcs" "$here/trace-funcs.c"

# Offsets from the load address: a static PIE's first segment is at 0.
first_load=$(readelf -lW "$bin" | awk '$1 == "LOAD" { print $3; exit }')
[[ $((first_load)) -eq 0 ]] || { echo "order: $bin does not load at 0" >&2; exit 1; }
nm --defined-only "$bin" | awk '$2 ~ /^[tTwWi]$/ { print $1 }' | sort -u >"$tmp/entries"

# And from a read-only mount, where berth does not re-execute itself.
mkdir -p "$ro"
cp "$bin" "$ro/berth"
mount --bind "$ro" "$ro"
mount -o remount,bind,ro "$ro"
b=$ro/berth
BERTH=$b bash "$repo/hack/mkbundle.sh" "$tmp/bundle" /bin/true >/dev/null
BERTH=$b bash "$repo/hack/mkbundle.sh" "$tmp/sleep" sleep 1000000 >/dev/null

hits=$tmp/hits
t() { "$tmp/trace-funcs" "$tmp/entries" "$hits" -- "$b" --root "$root" "$@" </dev/null >/dev/null 2>&1 || true; }

echo "order: tracing"
# From a writable file, as installed: create, run and exec re-execute berth
# from a read-only clone of itself first.
plain() { "$tmp/trace-funcs" "$tmp/entries" "$hits" -- "$tmp/berth" --root "$root" "$@" </dev/null >/dev/null 2>&1 || true; }
cp "$bin" "$tmp/berth"
plain run --bundle "$tmp/bundle" o-plain
plain run --detach --bundle "$tmp/sleep" o-plain-sleep
plain exec o-plain-sleep /bin/true
plain delete --force o-plain-sleep
t run --bundle "$tmp/bundle" o-run
t --log "$tmp/log.json" --log-format json run --bundle "$tmp/bundle" o-run-log
t create --bundle "$tmp/bundle" o-life &
sleep 1
t state o-life
t start o-life
wait
t delete o-life
t run --detach --bundle "$tmp/sleep" o-sleep
t exec o-sleep /bin/true
t state o-sleep
t list
t list --format json
t ps o-sleep
t kill o-sleep KILL
sleep 0.2
t delete o-sleep
t delete --force o-missing

sort -u "$hits" >"$tmp/hit"
nm --defined-only "$bin" | awk -v hits="$tmp/hit" '
	BEGIN { while ((getline h < hits) > 0) want[h] = 1 }
	($2 ~ /^[tTwWi]$/) && ($1 in want) { print $3 }' >"$out"
echo "order: $(wc -l <"$out") of $(wc -l <"$tmp/entries") functions ran; wrote $out"
