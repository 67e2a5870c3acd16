#!/bin/sh
# Verify deploy/systemd/billingd.service with `systemd-analyze verify` against a staged
# install (make install DESTDIR=...), so the ExecStart binary exists as on a real
# host. Any warning (unknown key, bad value) fails. Needs make, Go and systemd's
# systemd-analyze (Debian: apt-get install systemd); PID 1 need not be systemd.
set -eu

repo=$(CDPATH= cd -- "$(dirname -- "$0")/../.." && pwd)
if ! command -v systemd-analyze >/dev/null 2>&1; then
	echo "verify.sh: systemd-analyze not found (Debian: apt-get install systemd)" >&2
	exit 1
fi

root=$(mktemp -d)
trap 'rm -rf "$root"' EXIT
make -C "$repo" --no-print-directory install DESTDIR="$root" >/dev/null

# --root needs the system's own units (sysinit.target, network-online.target...).
units=
for d in /usr/lib/systemd/system /lib/systemd/system; do
	if [ -e "$d/sysinit.target" ]; then units=$d; break; fi
done
if [ -z "$units" ]; then
	echo "verify.sh: no systemd unit directory with sysinit.target found" >&2
	exit 1
fi
mkdir -p "$root/usr/lib/systemd"
cp -a "$units" "$root/usr/lib/systemd/system"

out=$(systemd-analyze verify --root="$root" billingd.service 2>&1) || {
	echo "$out" >&2
	exit 1
}
if [ -n "$out" ]; then
	echo "$out" >&2
	exit 1
fi
echo "systemd-analyze verify: billingd.service ok"
