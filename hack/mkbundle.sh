#!/usr/bin/env bash
# Make an OCI bundle from the cached busybox rootfs.
#
#   hack/mkbundle.sh DIR [ARG...]
#
# DIR/rootfs is a copy (cp -a) of hack/.cache/rootfs, built by hack/mkrootfs.sh
# when missing. DIR/config.json comes from `berth spec --bundle DIR` and is then
# edited: process.terminal=false, process.args=ARG... (default:
# sh -c 'echo hello from berth'), root.path=rootfs.
#
# Environment:
#   BERTH        berth binary used for `spec` (default: target/release/berth)
#   BERTH_PROBE  static probe binary to put in the cached rootfs (optional)
#   BERTH_ROOTFS_CACHE  rootfs cache dir (default: hack/.cache/rootfs)
set -euo pipefail

if (($# < 1)) || [[ $1 == -h || $1 == --help ]]; then
	echo "usage: $0 DIR [ARG...]" >&2
	exit 2
fi
dir=$1
shift
if (($#)); then
	args=("$@")
else
	args=(sh -c 'echo hello from berth')
fi

here=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
repo=$(dirname -- "$here")
berth=${BERTH:-$repo/target/release/berth}
cache=${BERTH_ROOTFS_CACHE:-$repo/hack/.cache/rootfs}

log() { printf 'mkbundle: %s\n' "$*"; }

if [[ ! -x $berth ]]; then
	log "$berth not found or not executable: run 'make build' or set BERTH" >&2
	exit 1
fi
command -v jq >/dev/null || {
	log "jq not found: run hack/deps.sh" >&2
	exit 1
}

probe_args=()
if [[ -n ${BERTH_PROBE:-} ]]; then
	probe_args=(--probe "$BERTH_PROBE")
fi
"$here/mkrootfs.sh" "$cache" "${probe_args[@]}" >/dev/null

mkdir -p -- "$dir"
dir=$(cd -- "$dir" && pwd)
rm -rf -- "$dir/rootfs" "$dir/config.json"
cp -a -- "$cache" "$dir/rootfs"

"$berth" spec --bundle "$dir"
[[ -f $dir/config.json ]] || {
	log "'$berth spec --bundle $dir' wrote no config.json" >&2
	exit 1
}

args_json=$(jq -cn '$ARGS.positional' --args -- "${args[@]}")
jq --argjson args "$args_json" \
	'.process.terminal = false | .process.args = $args | .root.path = "rootfs"' \
	"$dir/config.json" >"$dir/config.json.tmp"
mv -f -- "$dir/config.json.tmp" "$dir/config.json"
log "bundle at $dir: $(jq -c .process.args "$dir/config.json")"
