#!/usr/bin/env bash
# Build a minimal busybox root filesystem for tests, the demo and benchmarks.
#
#   hack/mkrootfs.sh OUT_DIR [--probe PATH] [--force]
#
# OUT_DIR gets Debian's static busybox (/bin/busybox from busybox-static), a
# symlink for every applet, the usual top-level directories and small /etc files
# (users root 0, berth 1000, nobody 65534). With --probe, the given static binary
# is copied to OUT_DIR/bin/berth-probe (refreshed whenever it changed).
#
# A finished tree carries a stamp file; a later call with the same busybox
# returns at once (only the probe is compared and refreshed). --force rebuilds.
set -euo pipefail

usage() {
	echo "usage: $0 OUT_DIR [--probe PATH] [--force]" >&2
	exit 2
}

out="" probe="" force=0
while (($#)); do
	case $1 in
	--probe)
		(($# >= 2)) || usage
		probe=$2
		shift 2
		;;
	--probe=*)
		probe=${1#--probe=}
		shift
		;;
	--force)
		force=1
		shift
		;;
	-h | --help) usage ;;
	-*) usage ;;
	*)
		[[ -z $out ]] || usage
		out=$1
		shift
		;;
	esac
done
[[ -n $out ]] || usage

BUSYBOX=${BUSYBOX:-/bin/busybox}
STAMP_NAME=.berth-rootfs-stamp
# Bump LAYOUT when the tree built below changes, so cached trees are rebuilt.
LAYOUT=2

log() { printf 'mkrootfs: %s\n' "$*"; }

if [[ ! -x $BUSYBOX ]]; then
	log "$BUSYBOX not found: install busybox-static (hack/deps.sh)" >&2
	exit 1
fi
stamp_want="layout=$LAYOUT busybox-cksum=$(cksum <"$BUSYBOX" | cut -d' ' -f1)"

install_probe() {
	[[ -n $probe ]] || return 0
	if [[ ! -f $probe ]]; then
		log "probe binary $probe does not exist" >&2
		exit 1
	fi
	if ! cmp -s "$probe" "$out/bin/berth-probe" 2>/dev/null; then
		install -m 0755 "$probe" "$out/bin/berth-probe.tmp"
		mv -f "$out/bin/berth-probe.tmp" "$out/bin/berth-probe"
		log "installed probe $probe -> $out/bin/berth-probe"
	fi
}

if ((!force)) && [[ -f $out/$STAMP_NAME ]] && [[ $(<"$out/$STAMP_NAME") == "$stamp_want" ]]; then
	install_probe
	log "$out is up to date"
	exit 0
fi

# Build into a sibling temp dir and rename at the end, so an interrupted build
# never leaves a half tree that looks complete.
out_parent=$(dirname -- "$out")
mkdir -p "$out_parent"
tmp=$(mktemp -d "$out_parent/.mkrootfs.XXXXXX")
tmp=$(realpath -- "$tmp")
trap 'rm -rf -- "$tmp"' EXIT

cd "$tmp"
mkdir -p bin sbin usr/bin usr/sbin usr/local/bin \
	dev proc sys etc root run tmp var/tmp var/log var/run home/berth
chmod 0555 proc sys
chmod 0700 root
chmod 1777 tmp var/tmp
chown 1000:1000 home/berth 2>/dev/null || true

install -m 0755 "$BUSYBOX" bin/busybox

# One relative symlink per applet at busybox's own install path (bin/, sbin/,
# usr/bin/, usr/sbin/), plus bin/APPLET for every applet so /bin/NAME always
# works whatever busybox considers NAME's home.
declare -A made=()
while IFS= read -r path; do
	[[ -n $path && $path != */busybox && $path == */* ]] || continue
	dir=${path%/*}
	case $dir in
	bin) target=busybox ;;
	sbin) target=../bin/busybox ;;
	usr/bin | usr/sbin) target=../../bin/busybox ;;
	*) continue ;;
	esac
	ln -s "$target" "$path"
	made[$path]=1
done < <("$BUSYBOX" --list-full)
while IFS= read -r name; do
	[[ -n $name && $name != busybox && -z ${made[bin/$name]:-} ]] || continue
	ln -s busybox "bin/$name"
done < <("$BUSYBOX" --list)
[[ -e bin/sh ]] || ln -s busybox bin/sh

cat >etc/passwd <<'EOF'
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
bin:x:2:2:bin:/bin:/bin/false
berth:x:1000:1000:berth test user:/home/berth:/bin/sh
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
EOF
cat >etc/group <<'EOF'
root:x:0:
daemon:x:1:
bin:x:2:
sys:x:3:
adm:x:4:
tty:x:5:
disk:x:6:
wheel:x:10:
audio:x:29:
video:x:44:
users:x:100:
berth:x:1000:
nogroup:x:65534:
EOF
cat >etc/shadow <<'EOF'
root:*:19000:0:99999:7:::
daemon:*:19000:0:99999:7:::
bin:*:19000:0:99999:7:::
berth:*:19000:0:99999:7:::
nobody:*:19000:0:99999:7:::
EOF
chmod 0640 etc/shadow
# Same hostname and marker as the integration harness's own fallback rootfs
# (integration/src/lib.rs), so tests see one tree whichever built it.
echo berth-rootfs >etc/hostname
echo rootfs >etc/marker
cat >etc/hosts <<'EOF'
127.0.0.1	localhost
::1	localhost ip6-localhost ip6-loopback
EOF
: >etc/resolv.conf
echo 'hosts: files dns' >etc/nsswitch.conf
cat >etc/os-release <<'EOF'
NAME="berth test rootfs"
ID=berth-busybox
PRETTY_NAME="berth busybox test rootfs"
EOF
printf '%s\n' "$stamp_want" >"$STAMP_NAME"

cd - >/dev/null
if [[ -e $out ]]; then
	rm -rf -- "$out"
fi
chmod 0755 "$tmp"
mv -- "$tmp" "$out"
trap - EXIT
install_probe
log "built $out ($("$BUSYBOX" --list | wc -l) applets)"
