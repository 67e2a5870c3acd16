package bolt

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	bbolt "go.etcd.io/bbolt"

	"github.com/klavi-billing/billingd/storage/kv"
)

// TestFreeRuns reads the free list from the file as bbolt keeps it: after writes
// that free pages, the runs hold as many pages as bbolt counts free or pending,
// none of them in use.
func TestFreeRuns(t *testing.T) {
	path := filepath.Join(t.TempDir(), "billingd.db")
	db := openArchived(t, path)
	ctx := context.Background()
	for round := range 20 {
		require.NoError(t, db.e.Update(ctx, kv.Write{}, func(tx kv.Tx) error {
			for j := range 300 {
				if err := tx.Bucket(bucketConsents).Put(fmt.Appendf(nil, "k%05d", j), fmt.Appendf(nil, "%0400d", round)); err != nil {
					return err
				}
			}
			return nil
		}))
	}
	require.NoError(t, db.e.Update(ctx, kv.Write{}, func(tx kv.Tx) error {
		for j := range 300 {
			if j%3 != 0 {
				if err := tx.Bucket(bucketConsents).Delete(fmt.Appendf(nil, "k%05d", j)); err != nil {
					return err
				}
			}
		}
		return nil
	}))
	var runs [][2]uint64
	var free int
	require.NoError(t, db.e.view(func(tx *bbolt.Tx) error {
		var err error
		runs, err = freeRuns(db.e.file, tx, db.e.bolt.Info().PageSize)
		st := db.e.bolt.Stats()
		free = st.FreePageN + st.PendingPageN
		for _, r := range runs {
			for id := r[0]; id < r[0]+r[1]; id++ {
				info, err := tx.Page(int(id))
				require.NoError(t, err)
				require.Equal(t, "free", info.Type, "page %d", id)
			}
		}
		return err
	}))
	total := 0
	for _, r := range runs {
		total += int(r[1])
	}
	require.Greater(t, free, 10, "the writes freed pages")
	assert.Equal(t, free, total)
	before := db.e.evicted.Load()
	assert.Equal(t, total, db.e.evictFree(), "every free page is dropped")
	assert.Equal(t, before+int64(total), db.e.evicted.Load())
	// Out of the page cache (so no fault maps them as neighbours of a live page).
	ps := int64(db.e.bolt.Info().PageSize)
	cached := 0
	for _, r := range runs {
		n := cachedPages(db.e.bolt.Info().Data, int64(r[0])*ps, int64(r[1])*ps)
		if n < 0 {
			t.Skip("mincore(2) is not available here")
		}
		cached += n
	}
	assert.Zero(t, cached, "free pages left in the page cache")
	require.NoError(t, db.Close())
	ro, err := Open(path, Options{ReadOnly: true})
	require.NoError(t, err)
	defer ro.Close()
	assert.Zero(t, ro.e.evictFree(), "a reader drops nothing")
}

// TestFreelistType: the array for a new file and a file listing few free pages, the
// hash map past arrayFreelistMax (told from the file's free list page).
func TestFreelistType(t *testing.T) {
	path := filepath.Join(t.TempDir(), "billingd.db")
	assert.Equal(t, bbolt.FreelistArrayType, freelistType(path), "a new file")
	db := openArchived(t, path)
	require.NoError(t, db.Close())
	assert.Equal(t, bbolt.FreelistArrayType, freelistType(path))

	// A file whose free list lists more than the bound: bbolt with the hash map,
	// many pages freed at once.
	big := filepath.Join(t.TempDir(), "big.db")
	b, err := bbolt.Open(big, 0o600, &bbolt.Options{NoSync: true, FreelistType: bbolt.FreelistMapType})
	require.NoError(t, err)
	val := make([]byte, 3000)
	require.NoError(t, b.Update(func(tx *bbolt.Tx) error {
		bk, err := tx.CreateBucket([]byte("b"))
		if err != nil {
			return err
		}
		for i := range arrayFreelistMax + 1000 {
			if err := bk.Put(fmt.Appendf(nil, "%08d", i), val); err != nil {
				return err
			}
		}
		return nil
	}))
	require.NoError(t, b.Update(func(tx *bbolt.Tx) error { return tx.DeleteBucket([]byte("b")) }))
	require.NoError(t, b.Update(func(tx *bbolt.Tx) error { _, err := tx.CreateBucket([]byte("c")); return err }))
	require.NoError(t, b.Close())
	assert.Equal(t, bbolt.FreelistMapType, freelistType(big))
	f, err := os.Open(big)
	require.NoError(t, err)
	defer f.Close()
	n, ok := freelistCount(f)
	require.True(t, ok)
	assert.Greater(t, n, arrayFreelistMax)
}

// cachedPages counts the pages of size bytes at offset off of the file mapped at
// data that are in the page cache (mincore(2)); -1 when it cannot tell.
func cachedPages(data uintptr, off, size int64) int {
	vec, ok := cacheVector(data+uintptr(off), size)
	if !ok {
		return -1
	}
	n := 0
	for _, v := range vec {
		n += int(v & 1)
	}
	return n
}
