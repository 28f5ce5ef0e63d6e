#!/usr/bin/env bash
# Install what berth's build, tests, demo and benchmarks need on a Debian 12 host,
# and prepare the host's cgroups so crun accepts it. Nothing else.
#
# Idempotent: packages already installed are left alone (apt-get is not even
# called), and the hugetlb v1 bind is done only when it is missing.
#
# Extra packages can be asked for without editing this file:
#   BERTH_EXTRA_PKGS="foo bar" hack/deps.sh
set -euo pipefail

# Packages the project needs. Add to this list (one reason a line) rather than
# installing things by hand: CI starts from a fresh machine.
PKGS=(
	busybox-static # hack/mkrootfs.sh: the test and demo root filesystem
	runc           # reference runtime: behaviour comparisons and hack/bench
	crun           # the crun backend, and hack/bench
	jq             # hack/mkbundle.sh edits config.json
	hyperfine      # hack/bench --hyperfine
	gnuplot-nox    # hack/bench-plot draws docs/benchmarks.png (pngcairo terminal; no X11, installs cleanly with --no-install-recommends)
	uidmap         # newuidmap/newgidmap: rootless berth's subordinate id mappings (tests/rootless.rs)
	procps         # ps(1): `berth ps` runs it (tests/manage.rs)
	criu           # checkpoint/restore (tests/checkpoint.rs skip with `criu check`'s reason when it fails, as 3.17 does on this kernel)
	zfs-fuse       # the zfs storage driver: real ZFS in userspace (hack/zfs-fuse.sh starts its daemon for the tests)
	btrfs-progs    # mkfs.btrfs for the btrfs storage driver's tests (loop-mounted file)
	umoci          # hack/image-bench: the unpack throughput berth is compared with
	containerd     # integration/tests/containerd.rs: berth as the runc shim's binary (ctr)
	podman         # integration/tests/podman.rs: berth as podman's --runtime (through conmon)
	docker.io      # integration/tests/docker.rs: berth as a dockerd --add-runtime runtime (a private daemon; /usr/bin/docker)
)
# shellcheck disable=SC2206
PKGS+=(${BERTH_EXTRA_PKGS:-})

log() { printf 'deps: %s\n' "$*"; }

if [[ $(id -u) -ne 0 ]]; then
	log "must run as root (installs packages, mounts cgroups)" >&2
	exit 1
fi

# ---- packages -------------------------------------------------------------
missing=()
for p in "${PKGS[@]}"; do
	if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
		missing+=("$p")
	fi
done

if ((${#missing[@]})); then
	log "installing: ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" </dev/null
	log "installed: ${missing[*]}"
else
	log "packages already installed: ${PKGS[*]}"
fi

# ---- cgroups: heal a layout a killed tests/cgroup_v2.rs run left -----------
# (It moves free controllers to cgroup2 for its run; restore waits for a run
# in progress, as it takes the same lock, and does nothing on a tidy host.)
bash "$(dirname "$0")/cgroup-layout.sh" restore

# ---- cgroups: bind hugetlb to a v1 hierarchy on hybrid hosts ----------------
# On a hybrid host (v1 controllers under /sys/fs/cgroup/*, cgroup2 at
# /sys/fs/cgroup/unified) any controller left on the v2 hierarchy makes crun
# refuse to run. hugetlb is the one left there on this machine; mounting it as
# its own v1 hierarchy moves it off v2.
cg=/sys/fs/cgroup
fstype=$(stat -f -c %T "$cg" 2>/dev/null || echo unknown)
if [[ $fstype == cgroup2fs ]]; then
	log "cgroups: unified (v2) host, nothing to do"
elif ! awk '$1 == "hugetlb" && $4 == 1 { found = 1 } END { exit !found }' /proc/cgroups; then
	log "cgroups: kernel has no hugetlb controller, nothing to do"
elif awk '{ for (i = 7; i <= NF; i++) if ($i == "-") break
	     if ($(i + 1) == "cgroup" && $(i + 3) ~ /(^|,)hugetlb(,|$)/) found = 1 }
	   END { exit !found }' /proc/self/mountinfo; then
	log "cgroups: hugetlb already on a v1 hierarchy"
else
	mkdir -p "$cg/hugetlb"
	mount -t cgroup -o hugetlb cgroup "$cg/hugetlb"
	log "cgroups: mounted hugetlb v1 hierarchy at $cg/hugetlb (crun refuses v2 controllers on hybrid hosts)"
fi
