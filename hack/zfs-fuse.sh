#!/usr/bin/env bash
# A shared zfs-fuse daemon and test pool for berth's zfs tests.
#
#   hack/zfs-fuse.sh acquire POOL    start zfs-fuse if needed, make POOL exist
#   hack/zfs-fuse.sh release POOL    drop one hold; the last one destroys POOL
#                                    (and stops the daemon if this script started it)
#
# Holds are reference counted so that test binaries running in parallel share
# one daemon and one pool. A hold belongs to a process: the caller's pid
# (this script's parent, or $BERTH_ZFS_HOLDER when set) and its start time, so a
# recycled pid is not mistaken for the holder. Every call, under an flock,
# first drops holds whose process is gone: a run that was killed (no release)
# leaves a count that the next acquire or release repairs.
#
# The pool lives on a sparse 2 GiB file, /var/tmp/berth-zfs-POOL.img, created
# with `truncate -s`; a pool that exists already (a previous run, or
# zfs-fuse re-importing it from its cache at start) is reused if healthy,
# imported if the file is there but the pool is not, and destroyed and made
# again if it is faulted.
#
# Prints nothing on success; errors go to stderr and the exit status is 1.
set -euo pipefail

STATE=/run/berth-zfs-fuse
LOCK=$STATE/lock
PIDFILE=/run/zfs-fuse.pid # where Debian's init script keeps it too
STARTED=$STATE/started    # present when this script started the daemon
IMG_SIZE=${BERTH_ZFS_IMG_SIZE:-2G}

die() {
	printf 'zfs-fuse.sh: %s\n' "$*" >&2
	exit 1
}

usage() { die "usage: $0 acquire|release POOL"; }

[[ $# -eq 2 ]] || usage
cmd=$1
pool=$2
[[ $pool =~ ^[A-Za-z][A-Za-z0-9_.-]{0,63}$ ]] || die "bad pool name ${pool@Q}: letters, digits, _ . - (starting with a letter)"
[[ $(id -u) -eq 0 ]] || die "must run as root"
for c in zfs-fuse zfs zpool truncate flock; do
	command -v "$c" >/dev/null || die "$c not found (install the zfs-fuse package: hack/deps.sh)"
done

img=/var/tmp/berth-zfs-$pool.img
holders=$STATE/$pool.holders

mkdir -p "$STATE"
exec 9>"$LOCK"
flock 9 || die "cannot lock $LOCK"

# "PID STARTTIME" of a process, or nothing if it is gone.
proc_id() {
	local pid=$1 stat
	stat=$(cat "/proc/$pid/stat" 2>/dev/null) || return 0
	# Field 22 (starttime) counted after the ")" that ends the command name.
	stat=${stat##*) }
	# shellcheck disable=SC2086
	set -- $stat
	printf '%s %s\n' "$pid" "${20}"
}

holder_id() { proc_id "${BERTH_ZFS_HOLDER:-$PPID}"; }

# Keep the lines of $1 whose process is still alive with the same start time.
prune() {
	local f=$1 pid st tmp
	[[ -f $f ]] || return 0
	tmp=$f.tmp
	: >"$tmp"
	while read -r pid st; do
		[[ -n ${pid:-} ]] || continue
		if [[ "$(proc_id "$pid")" == "$pid $st" ]]; then
			printf '%s %s\n' "$pid" "$st" >>"$tmp"
		fi
	done <"$f"
	mv "$tmp" "$f"
}

daemon_pid() {
	local pid
	[[ -f $PIDFILE ]] || return 1
	pid=$(cat "$PIDFILE" 2>/dev/null) || return 1
	[[ $pid =~ ^[0-9]+$ ]] || return 1
	[[ -d /proc/$pid ]] || return 1
	[[ "$(readlink "/proc/$pid/exe" 2>/dev/null)" == */zfs-fuse ]] || return 1
	echo "$pid"
}

daemon_ready() { zpool list -H -o name >/dev/null 2>&1; }

start_daemon() {
	if daemon_pid >/dev/null; then
		return 0
	fi
	# A daemon that runs without (our) pidfile still owns the socket.
	if daemon_ready; then
		return 0
	fi
	rm -f "$PIDFILE" # stale: its process is dead
	local out
	# 9>&-: the daemon must not inherit (and so hold forever) our lock.
	if ! out=$(zfs-fuse --pidfile "$PIDFILE" 2>&1 9>&-); then
		die "starting zfs-fuse: $out"
	fi
	touch "$STARTED"
	local i
	for ((i = 0; i < 100; i++)); do
		daemon_ready && return 0
		sleep 0.1
	done
	die "zfs-fuse started but \`zpool list\` does not answer after 10s"
}

stop_daemon() {
	[[ -f $STARTED ]] || return 0 # not ours: leave it running
	local pid i
	if pid=$(daemon_pid); then
		zfs umount -a >/dev/null 2>&1 || true
		kill "$pid" 2>/dev/null || true
		for ((i = 0; i < 100; i++)); do
			[[ -d /proc/$pid ]] || break
			sleep 0.1
		done
		[[ -d /proc/$pid ]] && die "zfs-fuse (pid $pid) did not exit 10s after SIGTERM"
	fi
	rm -f "$PIDFILE" "$STARTED"
}

pool_health() { zpool list -H -o health "$pool" 2>/dev/null; }

make_pool() {
	local health out
	health=$(pool_health || true)
	if [[ $health == ONLINE ]]; then
		return 0
	fi
	if [[ -n $health ]]; then
		# Known to the daemon but unusable (its file was removed): start over.
		zpool destroy -f "$pool" >/dev/null 2>&1 || die "destroying faulted pool $pool ($health) failed"
	elif [[ -f $img ]]; then
		if zpool import -d "$(dirname "$img")" "$pool" >/dev/null 2>&1 &&
			[[ $(pool_health || true) == ONLINE ]]; then
			return 0
		fi
		zpool destroy -f "$pool" >/dev/null 2>&1 || true
	fi
	rm -f "$img"
	truncate -s "$IMG_SIZE" "$img" || die "cannot create $img"
	if ! out=$(zpool create -m none "$pool" "$img" 2>&1); then
		rm -f "$img"
		die "zpool create $pool $img: $out"
	fi
}

destroy_pool() {
	local out
	if [[ -n "$(pool_health || true)" ]]; then
		if ! out=$(zpool destroy -f "$pool" 2>&1); then
			die "zpool destroy $pool: $out"
		fi
	fi
	rm -f "$img"
}

# Whether any pool still has holders (the daemon is shared by all of them).
any_holders() {
	local f
	for f in "$STATE"/*.holders; do
		[[ -e $f ]] || continue
		prune "$f"
		[[ -s $f ]] && return 0
	done
	return 1
}

me=$(holder_id)
[[ -n $me ]] || die "holder process ${BERTH_ZFS_HOLDER:-$PPID} not found"

case $cmd in
acquire)
	prune "$holders"
	start_daemon
	make_pool
	printf '%s\n' "$me" >>"$holders"
	;;
release)
	prune "$holders"
	if [[ -f $holders ]]; then
		# Drop one hold of ours (a process may hold several times).
		awk -v me="$me" '!done && $0 == me { done = 1; next } { print }' "$holders" >"$holders.tmp"
		mv "$holders.tmp" "$holders"
	fi
	if [[ -s $holders ]]; then
		exit 0
	fi
	rm -f "$holders"
	if daemon_ready; then
		destroy_pool
	else
		rm -f "$img"
	fi
	if ! any_holders; then
		stop_daemon
	fi
	;;
*)
	usage
	;;
esac
