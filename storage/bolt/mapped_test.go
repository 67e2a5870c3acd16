package bolt

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	bbolt "go.etcd.io/bbolt"

	"github.com/klavi-billing/billingd/storage/kv"
)

// A write that finds the process mapping more of the file than the budget beyond
// what it mapped after the last release gives the pages back; with no bound, it
// never does.
func TestMappedBudget(t *testing.T) {
	if mappedFile() < 0 {
		t.Skip("no /proc/self/statm here")
	}
	for _, tc := range []struct {
		name    string
		budget  int64
		release bool
	}{{"1 MiB", 1 << 20, true}, {"no bound", 0, false}} {
		t.Run(tc.name, func(t *testing.T) {
			st, err := Open(filepath.Join(t.TempDir(), "b.db"), Options{NoSync: true, MappedBudget: tc.budget})
			require.NoError(t, err)
			defer st.Close()
			db := st.e
			// 32 MiB of values, in pages of their own.
			value := make([]byte, 4000)
			for i := 0; i < 8192; i += 1024 {
				require.NoError(t, db.Update(context.Background(), kv.Write{}, func(tx kv.Tx) error {
					for j := i; j < i+1024; j++ {
						if err := tx.Bucket([]byte("meta")).Put(fmt.Appendf(nil, "test-%06d", j), value); err != nil {
							return err
						}
					}
					return nil
				}))
			}
			db.release()
			look := func() {
				db.mapped.checked = time.Time{} // the next write looks
				db.boundMapped()
			}
			look() // the base
			before := mappedFile()
			require.NoError(t, db.view(func(tx *bbolt.Tx) error {
				var sum int
				return tx.Bucket([]byte("meta")).ForEach(func(_, v []byte) error {
					for i := 0; i < len(v); i += 1024 {
						sum += int(v[i])
					}
					return nil
				})
			}))
			read := mappedFile()
			require.Greater(t, read-before, int64(24<<20), "reading the file mapped its pages")
			look()
			if tc.release {
				assert.Equal(t, 1, db.mapped.released)
				assert.Less(t, mappedFile()-before, int64(8<<20), "given back")
			} else {
				assert.Zero(t, db.mapped.released)
				assert.Greater(t, mappedFile()-before, int64(24<<20), "kept")
			}
		})
	}
}
