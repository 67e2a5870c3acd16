#!/bin/sh
# Test of billingd-backup (rotation, failure, usage) with a stand-in for billingd
# that writes the file `db backup` is given. Run by verify.sh (make deploy-check).
set -eu

here=$(CDPATH= cd -- "$(dirname -- "$0")" && pwd)
script=$here/billingd-backup
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

fail() {
	echo "backup_test.sh: $*" >&2
	exit 1
}

# The stand-in: `db backup FILE` writes FILE, or fails when $FAKE_FAIL is set.
cat >"$work/billingd" <<'FAKE'
#!/bin/sh
[ "$1 $2" = "db backup" ] || { echo "unexpected: $*" >&2; exit 2; }
[ -z "${FAKE_FAIL:-}" ] || { echo "billingd: backup of /var/lib/billingd/billingd.db: boom" >&2; exit 1; }
[ ! -e "$3" ] || { echo "billingd: db backup: $3 exists" >&2; exit 2; }
echo copy >"$3"
echo "backed up /var/lib/billingd/billingd.db to $3"
FAKE
chmod +x "$work/billingd"
export BILLINGD="$work/billingd"

dir=$work/backups
mkdir "$dir"
# Five older copies, a file of another name and a fresh temporary file.
for d in 20260101 20260102 20260103 20260104 20260105; do
	echo old >"$dir/billingd-${d}T033000Z.db"
done
echo keep >"$dir/notes.txt"
echo tmp >"$dir/.billingd-backup-123"

"$script" "$dir" 3 >"$work/out"
new=$(ls "$dir" | grep -E '^billingd-[0-9]{8}T[0-9]{6}Z\.db$' | sort -r | head -n 1)
[ "$(cat "$dir/$new")" = copy ] || fail "the newest file is not the new copy: $new"
left=$(ls "$dir" | grep -E '^billingd-' | sort | tr '\n' ' ')
[ "$left" = "billingd-20260104T033000Z.db billingd-20260105T033000Z.db $new " ] ||
	fail "after a backup keeping 3: $left"
[ -e "$dir/notes.txt" ] || fail "a file of another name was removed"
[ -e "$dir/.billingd-backup-123" ] || fail "a fresh temporary file was removed"
grep -q "removed $dir/billingd-20260103T033000Z.db" "$work/out" || fail "removals are not listed"

# A failed backup removes nothing and exits 1.
before=$(ls "$dir" | tr '\n' ' ')
if FAKE_FAIL=1 "$script" "$dir" 1 >/dev/null 2>"$work/err"; then
	fail "a failed backup exited 0"
fi
[ "$(ls "$dir" | tr '\n' ' ')" = "$before" ] || fail "a failed backup removed files"
grep -q "no copy removed" "$work/err" || fail "a failed backup does not say so"

# Usage: exit 2.
for args in "" "$dir 0" "$dir x" "$dir 1 extra"; do
	set +e
	# shellcheck disable=SC2086 # word splitting wanted
	"$script" $args >/dev/null 2>&1
	code=$?
	set -e
	[ $code -eq 2 ] || fail "billingd-backup $args: exit $code, want 2"
done
if "$script" "$work/missing" >/dev/null 2>&1; then
	fail "a missing directory exited 0"
fi

echo "billingd-backup: rotation, failure and usage ok"
