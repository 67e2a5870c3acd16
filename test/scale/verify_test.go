//go:build scale

package scale

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/klavi-billing/billingd/storage/bolt"
)

// TestVerifyFile times Store.Verify (what storage.verify_on_start runs) on the
// database at SCALE_VERIFY_DB, its archive file included, opened read-only, and
// reports this process's peak resident memory before and after it (VmHWM). It
// runs alone in its process: `SCALE_VERIFY_DB=PATH go test -tags scale -count=1
// -v -run '^TestVerifyFile$' ./test/scale/`. Skipped without SCALE_VERIFY_DB.
func TestVerifyFile(t *testing.T) {
	path := os.Getenv("SCALE_VERIFY_DB")
	if path == "" {
		t.Skip("SCALE_VERIFY_DB names no database")
	}
	db, err := bolt.Open(path, bolt.Options{ReadOnly: true, Timeout: time.Second})
	require.NoError(t, err)
	defer db.Close()
	opened := statusKB(t, "VmHWM")
	start := time.Now()
	require.NoError(t, db.Verify(context.Background()))
	took := time.Since(start)
	report(t, "verify: %s: %s, peak RSS %d MiB (%d MiB once open)", path, took.Round(time.Millisecond), statusKB(t, "VmHWM")>>10, opened>>10)
}
