#!/usr/bin/env bash
# Move free cgroup controllers between their v1 hierarchies and cgroup2 on a
# hybrid host, and put them back exactly as they were.
#
#   hack/cgroup-layout.sh v2-controllers [CONTROLLER...]
#   hack/cgroup-layout.sh restore
#   hack/cgroup-layout.sh status
#
# v2-controllers: for each controller (default: pids cpu cpuset blkio hugetlb;
#   "io" means blkio), unmount its v1 hierarchy so the kernel hands the
#   controller to cgroup2 (it then shows in cgroup.controllers of the cgroup2
#   root). Its mount (mount point, mount options, superblock options,
#   propagation) is recorded first in $STATE. Only a controller that is alone
#   on its hierarchy, mounted once, and has no cgroup but the root is moved:
#   anything else would destroy cgroups or other controllers' mounts. A
#   hierarchy whose umount is refused (EBUSY: someone holds a file in it open)
#   or which stays alive after the umount (a reference outside this mount
#   namespace) cannot be moved; it is left (or put back) on v1 and reported.
#   Nothing is enabled in any cgroup.subtree_control: that is the runtime's job.
#   Exit status: 0 all requested controllers are on cgroup2, 3 some could not
#   be moved (listed on stderr), 1 error.
#
# restore: whatever state it finds (also after a killed test run): removes
#   leftover test cgroups (any cgroup named $TEST_PREFIX*, after killing what
#   runs in them) on every hierarchy, disables the moved controllers in every
#   cgroup2 cgroup.subtree_control from the deepest cgroup up, then mounts the
#   recorded v1 hierarchies again with their recorded options. Without a record
#   (e.g. the state file was lost) a controller that is on cgroup2 while an
#   empty, unmounted /sys/fs/cgroup/<name> exists is mounted back there with
#   default options. Idempotent: with nothing to do it does nothing.
#
# status: where each controller is now, the cgroup2 root's subtree_control,
#   and the pending record if any.
#
# Every command takes an exclusive flock on $LOCK (waiting up to 5 minutes),
# which tests/cgroup_v2.rs holds for its whole run; it sets
# BERTH_CGROUP_LAYOUT_LOCKED=1 when it calls this script under that lock.
set -euo pipefail

LOCK=${BERTH_CGROUP_LAYOUT_LOCK:-/run/berth-cgroup-layout.lock}
STATE=${BERTH_CGROUP_LAYOUT_STATE:-/run/berth-cgroup-layout.state}
TEST_PREFIX=berth-test-cgv2
DEFAULT_CONTROLLERS=(pids cpu cpuset blkio hugetlb)

log() { printf 'cgroup-layout: %s\n' "$*" >&2; }
die() {
	log "error: $*"
	exit 1
}

usage() {
	sed -n '2,9p' "$0" | sed 's/^# \{0,1\}//' >&2
	exit 2
}

(($# >= 1)) || usage
cmd=$1
shift
[[ $(id -u) == 0 ]] || die "must run as root"

take_lock() {
	[[ ${BERTH_CGROUP_LAYOUT_LOCKED:-} == 1 ]] && return 0
	exec 9>>"$LOCK"
	flock -w 300 9 || die "$LOCK is held by another run for more than 5 minutes"
}

# v1 name of a controller (blkio) and its cgroup2 name (io).
v1_name() { if [[ $1 == io ]]; then echo blkio; else echo "$1"; fi; }
v2_name() { if [[ $1 == blkio ]]; then echo io; else echo "$1"; fi; }

# mountinfo records of cgroup mounts, one per line, as
# "ID MOUNTPOINT FSTYPE SOURCE MOUNT_OPTS SUPER_OPTS OPTIONAL_FIELDS".
cgroup_mounts() {
	awk '{
		sep = 0
		for (i = 7; i <= NF; i++) if ($i == "-") { sep = i; break }
		if (!sep || ($(sep + 1) != "cgroup" && $(sep + 1) != "cgroup2")) next
		opt = ""
		for (j = 7; j < sep; j++) opt = opt (opt == "" ? "" : ",") $j
		if (opt == "") opt = "-"
		print $1, $5, $(sep + 1), $(sep + 2), $6, $(sep + 3), opt
	}' /proc/self/mountinfo
}

# The first cgroup2 mount point, or nothing.
cgroup2_mount() { cgroup_mounts | awk '$3 == "cgroup2" { print $2; exit }'; }

# v1 mounts whose superblock options name controller $1 (exact option).
v1_mounts_of() {
	cgroup_mounts | awk -v c="$1" '$3 == "cgroup" {
		n = split($6, o, ",")
		for (i = 1; i <= n; i++) if (o[i] == c) { print; break }
	}'
}

# Field of /proc/cgroups for controller $1: 2 hierarchy id, 3 num_cgroups.
proc_cgroups() { awk -v c="$1" -v f="$2" '$1 == c { print $f }' /proc/cgroups; }

on_cgroup2() {
	local root=$1 name
	name=$(v2_name "$2")
	[[ -n $root ]] && grep -qw -- "$name" "$root/cgroup.controllers" 2>/dev/null
}

wait_for() { # SECONDS COMMAND...: poll every 50 ms
	local deadline=$((SECONDS + $1))
	shift
	until "$@"; do
		((SECONDS < deadline)) || return 1
		sleep 0.05
	done
}

# Mount a recorded hierarchy again: "CONTROLLER MOUNTPOINT FSTYPE SOURCE
# MOUNT_OPTS SUPER_OPTS OPTIONAL".
remount() {
	local ctrl=$1 mp=$2 fstype=$3 source=$4 mopts=$5 sopts=$6 optional=$7
	local opts
	# rw/ro is in both option lists; the superblock's controller list is what
	# selects the hierarchy.
	opts=$(printf '%s,%s' "$mopts" "$sopts" | tr ',' '\n' | awk '!seen[$0]++' | paste -sd, -)
	mkdir -p -- "$mp"
	# Dying cgroups of the controller on cgroup2 make the mount fail with
	# EBUSY for a moment.
	if ! wait_for 10 mount -t "$fstype" -o "$opts" "$source" "$mp" 2>/dev/null; then
		mount -t "$fstype" -o "$opts" "$source" "$mp" || true
		log "could not mount $ctrl back on $mp (-o $opts)"
		return 1
	fi
	if [[ $optional == *shared:* ]]; then
		mount --make-shared "$mp"
	fi
	log "$ctrl mounted back on $mp"
}

cmd_v2_controllers() {
	local root
	if [[ $(stat -f -c %T /sys/fs/cgroup) == cgroup2fs ]]; then
		log "pure cgroup2 host: every controller is on cgroup2 already"
		return 0
	fi
	root=$(cgroup2_mount)
	[[ -n $root ]] || die "no cgroup2 mounted: this expects a hybrid host (cgroup2 at /sys/fs/cgroup/unified)"
	local want=("$@")
	((${#want[@]})) || want=("${DEFAULT_CONTROLLERS[@]}")
	local partial=0 c mounts n mp fstype source mopts sopts optional others
	touch "$STATE"
	for c in "${want[@]}"; do
		c=$(v1_name "$c")
		if on_cgroup2 "$root" "$c"; then
			log "$c: on cgroup2 already"
			continue
		fi
		if [[ -z $(proc_cgroups "$c" 1) ]]; then
			log "$c: this kernel has no such controller"
			partial=1
			continue
		fi
		mounts=$(v1_mounts_of "$c")
		n=$(grep -c . <<<"$mounts" || true)
		if ((n != 1)); then
			log "$c: not moved: its v1 hierarchy is mounted $n times here (need exactly one mount)"
			partial=1
			continue
		fi
		read -r _ mp fstype source mopts sopts optional <<<"$mounts"
		others=$(tr ',' '\n' <<<"$sopts" | grep -vx -e rw -e ro -e "$c" | grep -v '^release_agent=' | paste -sd, - || true)
		if [[ -n $others ]]; then
			log "$c: not moved: its hierarchy also has $others"
			partial=1
			continue
		fi
		if [[ $mp == *\\* ]]; then
			log "$c: not moved: mount point $mp has escaped characters"
			partial=1
			continue
		fi
		if (($(proc_cgroups "$c" 3) > 1)); then
			log "$c: not moved: its hierarchy has $(proc_cgroups "$c" 3) cgroups (only the root may exist)"
			partial=1
			continue
		fi
		# Record before unmounting, so a crash right after is restorable. A
		# stale record of the same controller is replaced.
		grep -v "^$c " "$STATE" >"$STATE.tmp" || true
		printf '%s %s %s %s %s %s %s\n' "$c" "$mp" "$fstype" "$source" "$mopts" "$sopts" "$optional" >>"$STATE.tmp"
		mv "$STATE.tmp" "$STATE"
		if ! umount -- "$mp" 2>/dev/null; then
			log "$c: not moved: umount $mp refused (busy: a process holds a file in that hierarchy open)"
			grep -v "^$c " "$STATE" >"$STATE.tmp" || true
			mv "$STATE.tmp" "$STATE"
			partial=1
			continue
		fi
		if ! wait_for 2 on_cgroup2 "$root" "$c"; then
			log "$c: not moved: the hierarchy stayed alive after umount (referenced from outside this mount namespace); mounting it back"
			remount "$c" "$mp" "$fstype" "$source" "$mopts" "$sopts" "$optional" || true
			grep -v "^$c " "$STATE" >"$STATE.tmp" || true
			mv "$STATE.tmp" "$STATE"
			partial=1
			continue
		fi
		log "$c: moved to cgroup2 ($(v2_name "$c") in $root/cgroup.controllers); was $fstype on $mp"
	done
	[[ -s $STATE ]] || rm -f "$STATE"
	log "cgroup2 controllers now: $(cat "$root/cgroup.controllers")"
	if ((partial)); then return 3; fi
	return 0
}

# cgroupfs files report size 0: read them.
no_tasks() { [[ -z $(cat "$1/cgroup.procs" 2>/dev/null) ]]; }

# Kill what runs in a cgroup and everything below it, then remove them all.
remove_cgroup_tree() {
	local top=$1 d pid
	while IFS= read -r d; do
		if [[ -e $d/cgroup.kill ]]; then
			echo 1 >"$d/cgroup.kill" 2>/dev/null || true
		else
			# v1: no cgroup.kill; freeze-free SIGKILL of each task is enough
			# for test containers.
			while read -r pid; do kill -9 "$pid" 2>/dev/null || true; done <"$d/cgroup.procs"
		fi
	done < <(find "$top" -depth -type d 2>/dev/null)
	while IFS= read -r d; do
		wait_for 5 no_tasks "$d" || log "processes left in $d"
		wait_for 5 rmdir -- "$d" 2>/dev/null || log "could not remove $d"
	done < <(find "$top" -depth -type d 2>/dev/null)
}

cmd_restore() {
	local root tmp_root=""
	if [[ $(stat -f -c %T /sys/fs/cgroup) == cgroup2fs && ! -s $STATE ]]; then
		log "pure cgroup2 host and nothing recorded: nothing to restore"
		return 0
	fi
	root=$(cgroup2_mount)
	if [[ -z $root ]]; then
		tmp_root=$(mktemp -d /tmp/berth-cgroup2.XXXXXX)
		mount -t cgroup2 cgroup2 "$tmp_root"
		root=$tmp_root
	fi
	local failed=0 line c mp fstype source mopts sopts optional d name
	# What to put back: the records, plus (without a record) a controller on
	# cgroup2 whose usual v1 mount point is an empty directory.
	local -a records=()
	if [[ -s $STATE ]]; then
		while IFS= read -r line; do
			[[ -n $line ]] && records+=("$line")
		done <"$STATE"
	fi
	for c in "${DEFAULT_CONTROLLERS[@]}"; do
		printf '%s\n' "${records[@]}" | grep -q "^$c " && continue
		d=/sys/fs/cgroup/$c
		if on_cgroup2 "$root" "$c" && [[ -d $d ]] && ! mountpoint -q "$d" && [[ -z $(ls -A "$d") ]]; then
			log "$c: on cgroup2 without a record while $d is empty: mounting it there"
			records+=("$c $d cgroup cgroup rw,relatime rw,$c -")
		fi
	done
	# Leftover test cgroups, on cgroup2 and on every v1 hierarchy.
	while IFS= read -r mp; do
		while IFS= read -r d; do
			log "removing leftover test cgroup $d"
			remove_cgroup_tree "$d"
		done < <(find "$mp" -mindepth 1 -type d -name "$TEST_PREFIX*" -prune 2>/dev/null)
	done < <({
		cgroup_mounts | awk '{ print $2 }'
		[[ -n $tmp_root ]] && echo "$tmp_root"
	} | sort -u)
	if ((${#records[@]} == 0)); then
		[[ -n $tmp_root ]] && umount "$tmp_root" && rmdir "$tmp_root"
		rm -f "$STATE"
		log "nothing to restore"
		return 0
	fi
	# Disable them in every subtree_control, children before parents (a
	# parent cannot drop a controller a child still enables).
	while IFS= read -r d; do
		for line in "${records[@]}"; do
			name=$(v2_name "${line%% *}")
			if grep -qw -- "$name" "$d/cgroup.subtree_control" 2>/dev/null; then
				echo "-$name" >"$d/cgroup.subtree_control" ||
					{
						log "could not disable $name in $d/cgroup.subtree_control"
						failed=1
					}
			fi
		done
	done < <(find "$root" -depth -type d 2>/dev/null)
	for line in "${records[@]}"; do
		read -r c mp fstype source mopts sopts optional <<<"$line"
		if ! on_cgroup2 "$root" "$c" && v1_mounts_of "$c" | grep -q .; then
			log "$c: on v1 already"
			continue
		fi
		remount "$c" "$mp" "$fstype" "$source" "$mopts" "$sopts" "$optional" || failed=1
	done
	if [[ -n $tmp_root ]]; then
		umount "$tmp_root" && rmdir "$tmp_root"
	fi
	for line in "${records[@]}"; do
		c=${line%% *}
		if [[ $(proc_cgroups "$c" 2) == 0 ]]; then
			log "$c: still not on a v1 hierarchy"
			failed=1
		fi
	done
	if ((failed)); then
		die "restore incomplete (record kept in $STATE; run restore again)"
	fi
	rm -f "$STATE"
	log "restored"
}

cmd_status() {
	local root c hier n where mp
	root=$(cgroup2_mount)
	printf '%-12s %-10s %-8s %s\n' CONTROLLER HIERARCHY CGROUPS WHERE
	while read -r c hier n _; do
		[[ $c == \#* ]] && continue
		mp=$(v1_mounts_of "$c" | awk '{ print $2 }' | paste -sd' ' -)
		if [[ -n $mp ]]; then
			where="v1 $mp"
		elif on_cgroup2 "$root" "$c"; then
			where="cgroup2 $root"
		elif [[ $hier != 0 ]]; then
			where="v1 hierarchy not mounted here"
		else
			where="not on a v1 hierarchy"
		fi
		printf '%-12s %-10s %-8s %s\n' "$c" "$hier" "$n" "$where"
	done </proc/cgroups
	if [[ -n $root ]]; then
		echo "cgroup2 at $root: controllers [$(cat "$root/cgroup.controllers")]," \
			"root subtree_control [$(cat "$root/cgroup.subtree_control")]"
	else
		echo "no cgroup2 mounted"
	fi
	if [[ -s $STATE ]]; then
		echo "moved by this script, restore pending ($STATE):"
		sed 's/^/  /' "$STATE"
	fi
}

case $cmd in
v2-controllers)
	take_lock
	cmd_v2_controllers "$@"
	;;
restore)
	(($# == 0)) || usage
	take_lock
	cmd_restore
	;;
status)
	(($# == 0)) || usage
	cmd_status
	;;
*) usage ;;
esac
