#!/bin/sh
# Verify billingd's units (billingd.service, billingd-backup.service and its timer)
# with `systemd-analyze verify` against a staged install (make install DESTDIR=...),
# so every ExecStart= program exists as on a real host; then billingd.service again
# with its etcd drop-in (make install-etcd DESTDIR=..., billingd.service.d/etcd.conf;
# Wants=etcd.service needs no etcd on the host). Any warning (unknown key, bad
# value) fails. Then the backup script's own test
# (backup_test.sh). Needs make, Go and systemd's systemd-analyze (Debian: apt-get
# install systemd); PID 1 need not be systemd.
set -eu

repo=$(CDPATH= cd -- "$(dirname -- "$0")/../.." && pwd)
if ! command -v systemd-analyze >/dev/null 2>&1; then
	echo "verify.sh: systemd-analyze not found (Debian: apt-get install systemd)" >&2
	exit 1
fi

# --root needs the system's own units (sysinit.target, network-online.target...).
unitdir=
for d in /usr/lib/systemd/system /lib/systemd/system; do
	if [ -e "$d/sysinit.target" ]; then unitdir=$d; break; fi
done
if [ -z "$unitdir" ]; then
	echo "verify.sh: no systemd unit directory with sysinit.target found" >&2
	exit 1
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# verify TARGET UNIT...: stage `make TARGET` in a fresh root and verify the units.
verify() {
	target=$1
	shift
	root=$work/$target
	mkdir -p "$root"
	make -C "$repo" --no-print-directory "$target" DESTDIR="$root" >/dev/null
	mkdir -p "$root/usr/lib/systemd"
	cp -a "$unitdir" "$root/usr/lib/systemd/system"
	out=$(systemd-analyze verify --root="$root" "$@" 2>&1) || {
		echo "$out" >&2
		exit 1
	}
	if [ -n "$out" ]; then
		echo "$out" >&2
		exit 1
	fi
	echo "systemd-analyze verify ($target): $* ok"
}

verify install billingd.service billingd-backup.service billingd-backup.timer
verify install-etcd billingd.service

"$repo/deploy/systemd/backup_test.sh"
