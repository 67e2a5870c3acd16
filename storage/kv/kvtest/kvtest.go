package kvtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/klavi-billing/billingd/storage/kv"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Caps names what an engine can do beyond the contract every engine meets, which
// turns on the subtests that need it. The zero Caps is an engine with one writer
// (storage/bolt).
type Caps struct {
	// Concurrent: an Update or a View may stay open while another Update, run from
	// inside its fn on the same goroutine, commits (an optimistic engine such as
	// etcd). Turns on the snapshot and conflict subtests.
	Concurrent bool
	// Fence, when not nil, returns a fence that holds on e and a function that
	// makes it stop holding (etcd: revoke the election key's lease). Turns on the
	// lost-fence subtests. When nil, the suite writes with a made-up non-zero fence,
	// which an engine with one writer accepts.
	Fence func(t *testing.T, e kv.Engine) (f kv.Fence, lose func())
	// ContextReads: reads go through the context given to View and Update, so a
	// context canceled inside fn fails the next read (a network engine).
	ContextReads bool
}

// Buckets are the bucket names every engine opened by Run must have. "kv" is a
// prefix of "kv2" on purpose.
var Buckets = [][]byte{[]byte("kv"), []byte("kv2")}

var (
	bkt  = Buckets[0]
	bkt2 = Buckets[1]
)

// Run runs the suite against engines made by open, one fresh engine per subtest
// (subtests run in parallel). open returns an engine with the given buckets, all
// empty, and fails t when it cannot; Run closes the engine when the subtest ends.
// caps holds at most one Caps; none is the zero Caps.
func Run(t *testing.T, open func(t *testing.T, buckets [][]byte) kv.Engine, caps ...Caps) {
	var c Caps
	if len(caps) > 0 {
		c = caps[0]
	}
	s := &suite{open: open, caps: c}
	for _, tc := range []struct {
		name string
		fn   func(*testing.T)
		skip string // why the subtest does not apply, if it does not
	}{
		{"GetPutDelete", s.getPutDelete, ""},
		{"EmptyValue", s.emptyValue, ""},
		{"BinaryKeys", s.binaryKeys, ""},
		{"Buckets", s.buckets, ""},
		{"Writable", s.writable, ""},
		{"Cursor", s.cursor, ""},
		{"ForEach", s.forEach, ""},
		{"Last", s.last, ""},
		{"ReadYourWrites", s.readYourWrites, ""},
		{"GetsBetweenWrites", s.getsBetweenWrites, ""},
		{"Atomic", s.atomic, ""},
		{"Fence", s.fence, ""},
		{"FenceLost", s.fenceLost, ifNot(c.Fence != nil, "no fence can be lost")},
		{"Serializable", s.serializable, ""},
		{"Snapshot", s.snapshot, ifNot(c.Concurrent, "one writer")},
		{"Conflict", s.conflict, ifNot(c.Concurrent, "one writer")},
		{"MaxOps", s.maxOps, ""},
		{"FailedRead", s.failedRead, ifNot(c.ContextReads, "reads ignore the context")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.skip != "" {
				t.Skip(tc.skip)
			}
			t.Parallel()
			tc.fn(t)
		})
	}
}

func ifNot(ok bool, why string) string {
	if ok {
		return ""
	}
	return why
}

type suite struct {
	open func(t *testing.T, buckets [][]byte) kv.Engine
	caps Caps
}

func (s *suite) engine(t *testing.T) kv.Engine {
	t.Helper()
	e := s.open(t, Buckets)
	require.NotNil(t, e)
	t.Cleanup(func() { assert.NoError(t, e.Close()) })
	return e
}

// put commits pairs (key, value, key, value, ...) to bucket b in Updates of at most
// MaxOps writes.
func put(t *testing.T, e kv.Engine, b []byte, pairs ...string) {
	t.Helper()
	step := len(pairs)
	if n := e.MaxOps(); n > 0 && 2*n < step {
		step = 2 * n
	}
	for len(pairs) > 0 {
		chunk := pairs[:min(step, len(pairs))]
		pairs = pairs[len(chunk):]
		require.NoError(t, e.Update(t.Context(), kv.Write{}, func(tx kv.Tx) error {
			bk := tx.Bucket(b)
			for i := 0; i < len(chunk); i += 2 {
				if err := bk.Put([]byte(chunk[i]), []byte(chunk[i+1])); err != nil {
					return err
				}
			}
			return nil
		}))
	}
}

// get returns the committed value of key in b, nil when absent.
func get(t *testing.T, e kv.Engine, b []byte, key string) (v []byte) {
	t.Helper()
	require.NoError(t, e.View(t.Context(), func(tx kv.Tx) error {
		v = bytes.Clone(tx.Bucket(b).Get([]byte(key)))
		return nil
	}))
	return v
}

// dump returns b's committed pairs in cursor order, "key=value".
func dump(t *testing.T, e kv.Engine, b []byte) []string {
	t.Helper()
	var out []string
	require.NoError(t, e.View(t.Context(), func(tx kv.Tx) error {
		out = walk(tx.Bucket(b).Cursor())
		return nil
	}))
	return out
}

// walk returns "key=value" for every key from c.First on.
func walk(c kv.Cursor) []string {
	var out []string
	for k, v := c.First(); k != nil; k, v = c.Next() {
		out = append(out, string(k)+"="+string(v))
	}
	return out
}

func (s *suite) getPutDelete(t *testing.T) {
	e := s.engine(t)
	require.NotEmpty(t, e.Name())
	assert.Nil(t, get(t, e, bkt, "a"))
	put(t, e, bkt, "a", "1", "b", "2")
	assert.Equal(t, []byte("1"), get(t, e, bkt, "a"))
	assert.Equal(t, []byte("2"), get(t, e, bkt, "b"))
	put(t, e, bkt, "a", "11")
	assert.Equal(t, []byte("11"), get(t, e, bkt, "a"))
	require.NoError(t, e.Update(t.Context(), kv.Write{}, func(tx kv.Tx) error {
		return errors.Join(tx.Bucket(bkt).Delete([]byte("a")), tx.Bucket(bkt).Delete([]byte("absent")))
	}))
	assert.Nil(t, get(t, e, bkt, "a"))
	assert.Equal(t, []string{"b=2"}, dump(t, e, bkt))
}

func (s *suite) emptyValue(t *testing.T) {
	e := s.engine(t)
	require.NoError(t, e.Update(t.Context(), kv.Write{}, func(tx kv.Tx) error {
		b := tx.Bucket(bkt)
		require.NoError(t, b.Put([]byte("empty"), []byte{}))
		require.NoError(t, b.Put([]byte("nil"), nil))
		for _, k := range []string{"empty", "nil"} {
			v := b.Get([]byte(k))
			assert.NotNil(t, v, "buffered %s", k)
			assert.Empty(t, v, "buffered %s", k)
		}
		return nil
	}))
	for _, k := range []string{"empty", "nil"} {
		v := get(t, e, bkt, k)
		assert.NotNil(t, v, k)
		assert.Empty(t, v, k)
	}
	require.NoError(t, e.View(t.Context(), func(tx kv.Tx) error {
		k, v := tx.Bucket(bkt).Cursor().First()
		assert.Equal(t, "empty", string(k))
		assert.NotNil(t, v)
		k, v = tx.Bucket(bkt).Last([]byte("n"))
		assert.Equal(t, "nil", string(k))
		assert.NotNil(t, v)
		return nil
	}))
}

func (s *suite) binaryKeys(t *testing.T) {
	e := s.engine(t)
	put(t, e, bkt, "\xff\xff", "4", "a\x00", "3", "a", "2", "\x00", "1", "\x00\x00", "1b")
	assert.Equal(t, []string{"\x00=1", "\x00\x00=1b", "a=2", "a\x00=3", "\xff\xff=4"}, dump(t, e, bkt))
	require.NoError(t, e.View(t.Context(), func(tx kv.Tx) error {
		b := tx.Bucket(bkt)
		k, _ := b.Last([]byte("a"))
		assert.Equal(t, "a\x00", string(k))
		k, _ = b.Last([]byte("\xff"))
		assert.Equal(t, "\xff\xff", string(k))
		k, _ = b.Last([]byte("\x00"))
		assert.Equal(t, "\x00\x00", string(k))
		k, _ = b.Cursor().Seek([]byte("a\x00"))
		assert.Equal(t, "a\x00", string(k))
		return nil
	}))
}

func (s *suite) buckets(t *testing.T) {
	e := s.engine(t)
	put(t, e, bkt, "k", "one", "z", "one")
	put(t, e, bkt2, "k", "two", "a", "two")
	assert.Equal(t, []string{"k=one", "z=one"}, dump(t, e, bkt))
	assert.Equal(t, []string{"a=two", "k=two"}, dump(t, e, bkt2))
	require.NoError(t, e.View(t.Context(), func(tx kv.Tx) error {
		k, _ := tx.Bucket(bkt).Last(nil)
		assert.Equal(t, "z", string(k))
		k, _ = tx.Bucket(bkt2).Last(nil)
		assert.Equal(t, "k", string(k))
		assert.Panics(t, func() { tx.Bucket([]byte("nope")) })
		return nil
	}))
}

func (s *suite) writable(t *testing.T) {
	e := s.engine(t)
	require.NoError(t, e.View(t.Context(), func(tx kv.Tx) error {
		assert.False(t, tx.Writable())
		assert.Error(t, tx.Bucket(bkt).Put([]byte("a"), []byte("1")))
		return nil
	}))
	assert.Nil(t, get(t, e, bkt, "a"))
	require.NoError(t, e.Update(t.Context(), kv.Write{}, func(tx kv.Tx) error {
		assert.True(t, tx.Writable())
		return nil
	}))
}

func (s *suite) cursor(t *testing.T) {
	e := s.engine(t)
	const n = 1000 // more than one page of any paging engine
	var pairs []string
	for i := n - 1; i >= 0; i-- {
		pairs = append(pairs, key(i), "v"+strconv.Itoa(i))
	}
	put(t, e, bkt, pairs...)
	put(t, e, bkt2, "0000", "other", "9999", "other")
	require.NoError(t, e.View(t.Context(), func(tx kv.Tx) error {
		c := tx.Bucket(bkt).Cursor()
		i := 0
		for k, v := c.First(); k != nil; k, v = c.Next() {
			require.Equal(t, key(i), string(k))
			require.Equal(t, "v"+strconv.Itoa(i), string(v))
			i++
		}
		assert.Equal(t, n, i)
		k, _ := c.Next()
		assert.Nil(t, k, "Next after the end")

		k, v := c.Seek([]byte(key(500)))
		assert.Equal(t, key(500), string(k))
		assert.Equal(t, "v500", string(v))
		k, _ = c.Next()
		assert.Equal(t, key(501), string(k))
		k, _ = c.Seek([]byte(key(500) + "x"))
		assert.Equal(t, key(501), string(k), "Seek between keys")
		k, _ = c.Seek([]byte("a"))
		assert.Nil(t, k, "Seek past the end")
		k, _ = c.Seek(nil)
		assert.Equal(t, key(0), string(k), "Seek(nil)")
		k, _ = c.First()
		assert.Equal(t, key(0), string(k))

		k, _ = tx.Bucket(bkt).Cursor().Seek([]byte(key(n - 1)))
		assert.Equal(t, key(n-1), string(k))
		return nil
	}))
	require.NoError(t, e.View(t.Context(), func(tx kv.Tx) error {
		k, _ := tx.Bucket(bkt2).Cursor().First() // an empty bucket's cursor, after writes elsewhere
		assert.Equal(t, "0000", string(k))
		return nil
	}))
}

func key(i int) string { return fmt.Sprintf("%04d", i) }

func (s *suite) forEach(t *testing.T) {
	e := s.engine(t)
	put(t, e, bkt, "c", "3", "a", "1", "b", "2")
	stop := errors.New("stop")
	require.NoError(t, e.View(t.Context(), func(tx kv.Tx) error {
		var got []string
		require.NoError(t, tx.Bucket(bkt).ForEach(func(k, v []byte) error {
			got = append(got, string(k)+"="+string(v))
			return nil
		}))
		assert.Equal(t, []string{"a=1", "b=2", "c=3"}, got)
		got = nil
		err := tx.Bucket(bkt).ForEach(func(k, v []byte) error {
			got = append(got, string(k))
			if string(k) == "b" {
				return stop
			}
			return nil
		})
		assert.ErrorIs(t, err, stop)
		assert.Equal(t, []string{"a", "b"}, got)
		return tx.Bucket(bkt2).ForEach(func(k, v []byte) error { return fmt.Errorf("empty bucket gave %q", k) })
	}))
}

func (s *suite) last(t *testing.T) {
	e := s.engine(t)
	require.NoError(t, e.View(t.Context(), func(tx kv.Tx) error {
		k, v := tx.Bucket(bkt).Last(nil)
		assert.Nil(t, k, "empty bucket")
		assert.Nil(t, v)
		return nil
	}))
	put(t, e, bkt, "a1", "1", "a2", "2", "ab", "3", "abc", "4", "b", "5")
	put(t, e, bkt2, "zz", "other")
	for _, tc := range []struct{ prefix, key, value string }{
		{"", "b", "5"},
		{"a", "abc", "4"},
		{"a2", "a2", "2"},
		{"ab", "abc", "4"},  // a prefix of another key
		{"abc", "abc", "4"}, // a key and no more
		{"abd", "", ""},     // absent, between keys
		{"0", "", ""},       // absent, before every key
		{"c", "", ""},       // absent, after every key
		{"b\x00", "", ""},
	} {
		require.NoError(t, e.View(t.Context(), func(tx kv.Tx) error {
			k, v := tx.Bucket(bkt).Last([]byte(tc.prefix))
			if tc.key == "" {
				assert.Nil(t, k, "Last(%q)", tc.prefix)
				assert.Nil(t, v, "Last(%q)", tc.prefix)
			} else {
				assert.Equal(t, tc.key, string(k), "Last(%q)", tc.prefix)
				assert.Equal(t, tc.value, string(v), "Last(%q)", tc.prefix)
			}
			return nil
		}))
	}
	// Last and Get in turn in one transaction, a prefix longer than a small key,
	// and the caller's prefix left as it was.
	long := strings.Repeat("p", 80)
	put(t, e, bkt, long+"1", "6", long+"2", "7")
	require.NoError(t, e.View(t.Context(), func(tx kv.Tx) error {
		b := tx.Bucket(bkt)
		for range 2 {
			prefix := []byte(long)
			k, v := b.Last(prefix)
			assert.Equal(t, long+"2", string(k))
			assert.Equal(t, "7", string(v))
			assert.Equal(t, long, string(prefix), "prefix unchanged")
			assert.Equal(t, "4", string(b.Get([]byte("abc"))))
			k, _ = b.Last([]byte("a"))
			assert.Equal(t, "abc", string(k))
			assert.Equal(t, "6", string(b.Get([]byte(long+"1"))))
		}
		return nil
	}))
}

func (s *suite) readYourWrites(t *testing.T) {
	e := s.engine(t)
	put(t, e, bkt, "a", "1", "c", "3", "e", "5", "g", "7")
	require.NoError(t, e.Update(t.Context(), kv.Write{}, func(tx kv.Tx) error {
		b := tx.Bucket(bkt)
		require.NoError(t, b.Put([]byte("b"), []byte("2")))  // between existing keys
		require.NoError(t, b.Delete([]byte("c")))            // an existing key
		require.NoError(t, b.Put([]byte("e"), []byte("55"))) // overwrite
		require.NoError(t, b.Put([]byte("h"), []byte("8")))  // after every key
		require.NoError(t, b.Put([]byte("x"), []byte("9")))
		require.NoError(t, b.Delete([]byte("x"))) // put then delete
		require.NoError(t, b.Delete([]byte("g")))
		require.NoError(t, b.Put([]byte("g"), []byte("77"))) // delete then put
		require.NoError(t, tx.Bucket(bkt2).Put([]byte("d"), []byte("other")))

		assert.Equal(t, []byte("2"), b.Get([]byte("b")))
		assert.Nil(t, b.Get([]byte("c")))
		assert.Equal(t, []byte("55"), b.Get([]byte("e")))
		assert.Nil(t, b.Get([]byte("x")))
		want := []string{"a=1", "b=2", "e=55", "g=77", "h=8"}
		assert.Equal(t, want, walk(b.Cursor()))
		var got []string
		require.NoError(t, b.ForEach(func(k, v []byte) error {
			got = append(got, string(k)+"="+string(v))
			return nil
		}))
		assert.Equal(t, want, got)

		c := b.Cursor()
		k, _ := c.Seek([]byte("c"))
		assert.Equal(t, "e", string(k), "Seek to a deleted key")
		k, _ = c.Seek([]byte("b"))
		assert.Equal(t, "b", string(k), "Seek to a buffered key")
		k, _ = c.Next()
		assert.Equal(t, "e", string(k))

		k, v := b.Last(nil)
		assert.Equal(t, "h=8", string(k)+"="+string(v))
		k, _ = b.Last([]byte("c"))
		assert.Nil(t, k, "Last of a deleted key")
		k, v = b.Last([]byte("e"))
		assert.Equal(t, "e=55", string(k)+"="+string(v))
		require.NoError(t, b.Delete([]byte("h")))
		k, _ = b.Last(nil)
		assert.Equal(t, "g", string(k), "Last after deleting the last key")
		require.NoError(t, b.Delete([]byte("g")))
		k, _ = b.Last(nil)
		assert.Equal(t, "e", string(k), "Last below two deleted keys")
		return nil
	}))
	assert.Equal(t, []string{"a=1", "b=2", "e=55"}, dump(t, e, bkt))
	assert.Equal(t, []string{"d=other"}, dump(t, e, bkt2))
}

// getsBetweenWrites interleaves Gets with puts and deletes over many pages' worth of
// keys in one transaction, through two handles of the same bucket, and checks every
// Get against a model: an engine that keeps state between Gets (a reused cursor, a
// cached bucket) must see each write at once.
func (s *suite) getsBetweenWrites(t *testing.T) {
	e := s.engine(t)
	n := 600 // keys, over several bbolt pages
	if m := e.MaxOps(); m > 0 {
		n = m / 2 // every key read is one more compare at commit (etcd)
	}
	model := map[string]string{}
	var pairs []string
	for i := 0; i < n; i += 2 {
		k, v := key(i), strings.Repeat("v", 40)+key(i)
		pairs, model[k] = append(pairs, k, v), v
	}
	put(t, e, bkt, pairs...)
	check := func(b kv.Bucket, i int) {
		t.Helper()
		k := key(i)
		want, ok := model[k]
		got := b.Get([]byte(k))
		if !ok {
			assert.Nil(t, got, "Get(%s) of an absent key", k)
			return
		}
		assert.Equal(t, want, string(got), "Get(%s)", k)
	}
	writes := n // within the engine's operation limit
	require.NoError(t, e.Update(t.Context(), kv.Write{}, func(tx kv.Tx) error {
		b1, b2 := tx.Bucket(bkt), tx.Bucket(bkt)
		for i := 0; i < n+2; i++ {
			j := (i * 7919) % (n + 2) // an order that jumps across pages
			check(b1, j)
			switch {
			case writes == 0:
			case j%3 == 0:
				writes--
				v := "new" + key(j)
				require.NoError(t, b2.Put([]byte(key(j)), []byte(v)))
				model[key(j)] = v
			case j%3 == 1:
				writes--
				require.NoError(t, b1.Delete([]byte(key(j))))
				delete(model, key(j))
			}
			check(b2, j)
			check(b1, j+1)
			check(b2, j-1)
		}
		return nil
	}))
	require.NoError(t, e.View(t.Context(), func(tx kv.Tx) error {
		b := tx.Bucket(bkt)
		for i := -1; i < n+3; i++ {
			check(b, i)
		}
		return nil
	}))
}

func (s *suite) atomic(t *testing.T) {
	e := s.engine(t)
	put(t, e, bkt, "a", "1")
	boom := errors.New("boom")
	err := e.Update(t.Context(), kv.Write{}, func(tx kv.Tx) error {
		require.NoError(t, tx.Bucket(bkt).Put([]byte("a"), []byte("2")))
		require.NoError(t, tx.Bucket(bkt).Put([]byte("b"), []byte("2")))
		require.NoError(t, tx.Bucket(bkt2).Put([]byte("c"), []byte("2")))
		return boom
	})
	require.ErrorIs(t, err, boom)
	assert.Equal(t, []string{"a=1"}, dump(t, e, bkt))
	assert.Empty(t, dump(t, e, bkt2))
}

func (s *suite) snapshot(t *testing.T) {
	e := s.engine(t)
	put(t, e, bkt, "a", "1", "b", "1")
	require.NoError(t, e.View(t.Context(), func(tx kv.Tx) error {
		b := tx.Bucket(bkt)
		assert.Equal(t, []byte("1"), b.Get([]byte("a")))
		put(t, e, bkt, "a", "2", "b", "2", "c", "2") // commits while the View is open
		assert.Equal(t, []byte("1"), b.Get([]byte("a")))
		assert.Equal(t, []byte("1"), b.Get([]byte("b")))
		assert.Nil(t, b.Get([]byte("c")))
		assert.Equal(t, []string{"a=1", "b=1"}, walk(b.Cursor()))
		k, _ := b.Last(nil)
		assert.Equal(t, "b", string(k))
		return nil
	}))
	assert.Equal(t, []string{"a=2", "b=2", "c=2"}, dump(t, e, bkt))
}

func (s *suite) fence(t *testing.T) {
	e := s.engine(t)
	require.NoError(t, e.Update(t.Context(), kv.Write{}, func(tx kv.Tx) error {
		return tx.Bucket(bkt).Put([]byte("zero"), []byte("1"))
	}), "the zero fence")
	f := kv.Fence{Key: "kvtest/leader", Rev: 1}
	if s.caps.Fence != nil {
		f, _ = s.caps.Fence(t, e)
	}
	require.NoError(t, e.Update(t.Context(), kv.Write{Fence: f}, func(tx kv.Tx) error {
		return tx.Bucket(bkt).Put([]byte("fenced"), []byte("1"))
	}), "a fence that holds")
	assert.Equal(t, []string{"fenced=1", "zero=1"}, dump(t, e, bkt))
}

func (s *suite) fenceLost(t *testing.T) {
	t.Run("before", func(t *testing.T) {
		e := s.engine(t)
		f, lose := s.caps.Fence(t, e)
		lose()
		runs := 0
		err := e.Update(t.Context(), kv.Write{Fence: f}, func(tx kv.Tx) error {
			runs++
			return tx.Bucket(bkt).Put([]byte("a"), []byte("1"))
		})
		require.ErrorIs(t, err, kv.ErrFenced)
		assert.Equal(t, 1, runs, "a lost fence is not retried")
		assert.Empty(t, dump(t, e, bkt))
	})
	t.Run("during", func(t *testing.T) {
		e := s.engine(t)
		put(t, e, bkt, "n", "0")
		f, lose := s.caps.Fence(t, e)
		runs := 0
		err := e.Update(t.Context(), kv.Write{Fence: f}, func(tx kv.Tx) error {
			runs++
			b := tx.Bucket(bkt)
			n := b.Get([]byte("n"))
			if runs == 1 {
				lose()
				if s.caps.Concurrent { // and a conflict too: the fence still wins
					put(t, e, bkt, "n", "5")
				}
			}
			return b.Put([]byte("n"), append(n, '1'))
		})
		require.ErrorIs(t, err, kv.ErrFenced)
		assert.Equal(t, 1, runs, "a lost fence is not retried")
		assert.NotEqual(t, "01", string(get(t, e, bkt, "n")))
	})
}

// serializable runs n read-modify-write increments of one counter at once.
func (s *suite) serializable(t *testing.T) {
	e := s.engine(t)
	const n = 8 // an optimistic engine retries each at most n-1 times
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for range n {
		wg.Go(func() {
			errs <- e.Update(context.Background(), kv.Write{}, func(tx kv.Tx) error {
				b := tx.Bucket(bkt)
				i, _ := strconv.Atoi(string(b.Get([]byte("counter"))))
				return b.Put([]byte("counter"), []byte(strconv.Itoa(i+1)))
			})
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	assert.Equal(t, strconv.Itoa(n), string(get(t, e, bkt, "counter")))
}

// conflict changes what fn read, from inside fn's first run, and checks that fn
// ran again on the new data and kept nothing of its first run.
func (s *suite) conflict(t *testing.T) {
	for _, tc := range []struct {
		name string
		read func(b kv.Bucket) string        // what fn reads, as a string
		poke func(t *testing.T, e kv.Engine) // the other writer
	}{
		{"present key", func(b kv.Bucket) string { return string(b.Get([]byte("k"))) },
			func(t *testing.T, e kv.Engine) { put(t, e, bkt, "k", "new") }},
		{"absent key", func(b kv.Bucket) string { return string(b.Get([]byte("absent"))) },
			func(t *testing.T, e kv.Engine) { put(t, e, bkt, "absent", "new") }},
		{"deleted key", func(b kv.Bucket) string { return string(b.Get([]byte("k"))) },
			func(t *testing.T, e kv.Engine) {
				require.NoError(t, e.Update(t.Context(), kv.Write{}, func(tx kv.Tx) error {
					return tx.Bucket(bkt).Delete([]byte("k"))
				}))
			}},
		{"cursor range", func(b kv.Bucket) string { return fmt.Sprint(walk(b.Cursor())) },
			func(t *testing.T, e kv.Engine) { put(t, e, bkt, "l", "new") }},
		{"cursor seek", func(b kv.Bucket) string {
			k, _ := b.Cursor().Seek([]byte("j"))
			return string(k)
		}, func(t *testing.T, e kv.Engine) { put(t, e, bkt, "jj", "new") }},
		{"last", func(b kv.Bucket) string {
			k, _ := b.Last([]byte("k"))
			return string(k)
		}, func(t *testing.T, e kv.Engine) { put(t, e, bkt, "kz", "new") }},
		{"last absent", func(b kv.Bucket) string {
			k, _ := b.Last([]byte("q"))
			return string(k)
		}, func(t *testing.T, e kv.Engine) { put(t, e, bkt, "q", "new") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := s.engine(t)
			put(t, e, bkt, "k", "old")
			var seen []string
			require.NoError(t, e.Update(t.Context(), kv.Write{}, func(tx kv.Tx) error {
				b := tx.Bucket(bkt)
				seen = append(seen, tc.read(b))
				if len(seen) == 1 {
					tc.poke(t, e)
					require.NoError(t, b.Put([]byte("first-run"), []byte("1")))
				}
				return tx.Bucket(bkt2).Put([]byte("seen"), []byte(seen[len(seen)-1]))
			}))
			require.Len(t, seen, 2, "fn runs again after a conflict")
			assert.NotEqual(t, seen[0], seen[1], "the second run reads the new data")
			assert.Equal(t, seen[1], string(get(t, e, bkt2, "seen")))
			assert.Nil(t, get(t, e, bkt, "first-run"), "nothing of the first run is kept")
		})
	}
}

func (s *suite) maxOps(t *testing.T) {
	e := s.engine(t)
	n := e.MaxOps()
	if n <= 0 {
		t.Skip("no limit")
	}
	write := func(count int) error {
		return e.Update(t.Context(), kv.Write{}, func(tx kv.Tx) error {
			for i := range count {
				_ = tx.Bucket(bkt).Put([]byte(key(i)), []byte("1")) // the error is checked at commit
			}
			return nil
		})
	}
	require.ErrorIs(t, write(n+1), kv.ErrTooLarge)
	assert.Empty(t, dump(t, e, bkt))
	require.NoError(t, write(n))
	assert.Len(t, dump(t, e, bkt), n)
	// Deleting and rewriting one key is one operation.
	require.NoError(t, e.Update(t.Context(), kv.Write{}, func(tx kv.Tx) error {
		b := tx.Bucket(bkt)
		for i := range n {
			require.NoError(t, b.Delete([]byte(key(i))))
			require.NoError(t, b.Put([]byte(key(i)), []byte("2")))
		}
		return nil
	}))
}

func (s *suite) failedRead(t *testing.T) {
	e := s.engine(t)
	put(t, e, bkt, "a", "1", "b", "2")
	t.Run("Update", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		defer cancel()
		err := e.Update(ctx, kv.Write{}, func(tx kv.Tx) error {
			b := tx.Bucket(bkt)
			assert.Equal(t, []byte("1"), b.Get([]byte("a")))
			cancel() // the next read fails
			assert.Nil(t, b.Get([]byte("b")))
			k, _ := b.Cursor().First()
			assert.Nil(t, k)
			_ = b.Put([]byte("c"), []byte("3"))
			return nil // fn need not notice
		})
		require.ErrorIs(t, err, context.Canceled)
		assert.Nil(t, get(t, e, bkt, "c"), "nothing committed")
	})
	t.Run("View", func(t *testing.T) {
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		err := e.View(ctx, func(tx kv.Tx) error {
			assert.Nil(t, tx.Bucket(bkt).Get([]byte("a")))
			return nil
		})
		require.ErrorIs(t, err, context.Canceled)
	})
}
