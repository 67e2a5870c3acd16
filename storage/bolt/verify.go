package bolt

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/klavi-billing/billingd/storage"
	"github.com/klavi-billing/billingd/storage/kv"
	bbolt "go.etcd.io/bbolt"
)

// maxProblems bounds the problems a check lists: a badly damaged file has thousands.
const maxProblems = 20

// Stats are storage.Stats.
type Stats = storage.Stats

// Stats returns the database's size figures.
func (st *Store) Stats(ctx context.Context) (Stats, error) {
	db := st.e
	var s Stats
	size, err := db.fileSize()
	if err != nil {
		return s, err
	}
	s.SizeBytes = size
	var used int64
	err = db.view(func(tx *bbolt.Tx) error {
		used = tx.Size()
		return nil
	})
	bs := db.bolt.Stats()
	s.FreePages = bs.FreePageN + bs.PendingPageN
	s.InUseBytes = used - int64(s.FreePages)*int64(db.bolt.Info().PageSize)
	if a := db.arch; a != nil && err == nil {
		// The archive file's figures added: together they are the store.
		fi, ferr := os.Stat(a.path)
		if ferr != nil {
			return s, ferr
		}
		s.SizeBytes += fi.Size()
		var aused int64
		err = guard(func() error {
			return a.db.View(func(tx *bbolt.Tx) error {
				aused = tx.Size()
				return nil
			})
		})
		as := a.db.Stats()
		free := as.FreePageN + as.PendingPageN
		s.FreePages += free
		s.InUseBytes += aused - int64(free)*int64(a.db.Info().PageSize)
	}
	return s, err
}

// fileSize is the size of the open file.
func (db *engine) fileSize() (int64, error) {
	if db.file == nil {
		fi, err := os.Stat(db.path)
		if err != nil {
			return 0, err
		}
		return fi.Size(), nil
	}
	fi, err := db.file.Stat()
	if err != nil {
		return 0, fmt.Errorf("stat %s: %w", db.path, err)
	}
	return fi.Size(), nil
}

// checkLength refuses a file shorter than the pages its header says it has (a
// truncated copy): reading those pages would fault. It reads only the header.
func (db *engine) checkLength() error {
	size, err := db.fileSize()
	if err != nil {
		return err
	}
	var need int64
	if err := db.view(func(tx *bbolt.Tx) error {
		need = tx.Size()
		return nil
	}); err != nil {
		return err
	}
	if need > size {
		return fmt.Errorf("%w: truncated: its pages take %d bytes and the file has %d", ErrCorrupt, need, size)
	}
	return nil
}

// Verify checks the file's structure and returns ErrCorrupt, naming up to 20
// problems, when it is damaged: the file holds every page its header counts, every
// page of every bucket reads as a well-formed page in key order, and every page below
// the high-water mark is either reachable or free (what bbolt's Tx.Check checks, and
// more: checkPages), in the database file and in its archive file. bbolt keeps no
// checksums of data pages, so this is how a damaged page is found before a write
// depends on it. It reads each file once with pread, on the snapshot of one read
// transaction, and maps none of it; it does not decode records (Check does).
func (st *Store) Verify(ctx context.Context) error {
	return problemsErr(st.e.structure(nil))
}

// structure returns the structural problems of the file, and counts the keys of
// each top-level bucket into records when it is not nil.
func (db *engine) structure(records map[string]int) []string {
	if err := db.checkLength(); err != nil {
		return []string{problemText(err)}
	}
	// The first Verify after a compaction at start (verify_on_start) does not walk
	// the database file a third time: the compaction walked the file, then its copy.
	walkDB := records != nil || !db.checkedAtOpen.Swap(false)
	if walkDB {
		db.prefetch()
	}
	// The walks read the files with pread (checkPages), not through the mappings;
	// the counts of what the buckets hold through both files read the mappings: give
	// their pages back as they go.
	if records != nil {
		defer db.releaseEvery(3 * time.Millisecond)()
	}
	if db.arch != nil {
		// A drain moves records from one file to the other: none while the files
		// are walked and counted, so that both are seen at one moment.
		db.arch.mu.Lock()
		defer db.arch.mu.Unlock()
	}
	var problems []string
	if walkDB {
		problems = checkPages(db.bolt, db.file, records, "")
	}
	if len(problems) == 0 && db.arch != nil {
		arch := map[string]int{}
		// The archive file read in order first too: it is the larger file.
		prefetchFile(db.arch.db, db.arch.file)
		problems = checkPages(db.arch.db, db.arch.file, arch, "archive file "+db.arch.path+": ")
		if records != nil && len(problems) == 0 {
			// What the buckets hold through both files, as storage reads them.
			for _, l := range layers {
				n := 0
				err := db.View(context.Background(), func(tx kv.Tx) error {
					return tx.Bucket(l.name).ForEach(func(_, _ []byte) error { n++; return nil })
				})
				if err != nil {
					problems = append(problems, fmt.Sprintf("bucket %s: %s", l.name, problemText(err)))
				}
				records[string(l.name)] = n
			}
		}
	}
	if records != nil {
		for _, b := range engineBuckets {
			delete(records, string(b))
		}
	}
	return problems
}

// releaseEvery gives back the pages of the mappings (release) every d, until the
// function it returns is called, which releases them once more and waits.
func (db *engine) releaseEvery(d time.Duration) (stop func()) {
	done, released := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(released)
		t := time.NewTicker(d)
		defer t.Stop()
		for {
			select {
			case <-done:
				db.release()
				return
			case <-t.C:
				db.release()
			}
		}
	}()
	return func() { close(done); <-released }
}

// prefetch reads the pages in use of the database file once, in file order, so
// that the walk that follows finds them in the page cache: the walk goes in tree
// order, which on a cold disk is random reads (a million consents: 33 s cold
// without, 5 s with). A read error is left for the walk to meet.
func (db *engine) prefetch() { prefetchFile(db.bolt, db.file) }

// prefetchFile reads the pages in use of the bbolt file bdb has open from f, in
// file order, 4 MiB at a time with pread (into the page cache, not this process's
// mapping), skipping the pieces whose pages the page cache holds already (mincore
// on bdb's mapping, which reads nothing): a walk in tree order of a file that is
// not cached is random reads. A year-old store of 100,000 consents verified from a
// cold disk (a 471 MiB database file and a 2.6 GiB archive file): 60 s with the
// database file alone read first, 8 to 9.5 s with both (docs/BENCHMARKS.md).
func prefetchFile(bdb *bbolt.DB, f *os.File) {
	if bdb == nil || f == nil {
		return
	}
	const chunk = 4 << 20
	var (
		used   int64
		cached []byte
		known  bool
	)
	if err := guard(func() error {
		return bdb.View(func(tx *bbolt.Tx) error {
			used = tx.Size()
			// While the transaction is open the mapping cannot move.
			cached, known = cacheVector(bdb.Info().Data, used)
			return nil
		})
	}); err != nil {
		return
	}
	ps := int64(os.Getpagesize())
	buf := make([]byte, chunk)
	for off := int64(0); off < used; off += chunk {
		n := min(chunk, used-off)
		if known && allCached(cached[off/ps:(off+n+ps-1)/ps]) {
			continue
		}
		if _, err := f.ReadAt(buf[:n], off); err != nil {
			return
		}
	}
}

// allCached reports whether every page of a mincore vector is in the page cache.
func allCached(vec []byte) bool {
	for _, v := range vec {
		if v&1 == 0 {
			return false
		}
	}
	return true
}

// ReleaseMapped gives back the resident memory a walk of the mapping took
// (storage.DB.ReleaseMapped).
func (db *engine) ReleaseMapped() { db.release() }

// release gives back the resident memory a walk of the mapping took. It holds a
// read transaction, so the mapping cannot move meanwhile.
func (db *engine) release() {
	_ = db.view(func(tx *bbolt.Tx) error {
		releaseMapped(db.bolt.Info().Data, tx.Size())
		return nil
	})
	if db.arch != nil {
		_ = guard(func() error {
			return db.arch.db.View(func(tx *bbolt.Tx) error {
				releaseMapped(db.arch.db.Info().Data, tx.Size())
				return nil
			})
		})
	}
}

// problemText is an error's text without the ErrCorrupt prefix (a problem list is
// already about a corrupt file).
func problemText(err error) string {
	return strings.TrimPrefix(err.Error(), ErrCorrupt.Error()+": ")
}

func problemsErr(problems []string) error {
	if len(problems) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %s", ErrCorrupt, strings.Join(problems, "; "))
}

// Check verifies the whole database and returns what it found wrong (nil when
// sound): the structure (Verify), then billingd's own invariants (records decode,
// every index entry points at a stored record, the consent counts match).
func (st *Store) Check(ctx context.Context) error {
	if problems := st.e.structure(nil); len(problems) > 0 {
		return problemsErr(problems)
	}
	return st.DB.Check(ctx)
}

// Report is what `billingd db check` prints: the file's figures, the records in
// each bucket, and every problem found (none for a sound file).
type Report struct {
	Path      string
	FileBytes int64 // the file's size, as ls -l shows it
	// ArchivePath and ArchiveBytes are the archive file and its size; "" and 0 when
	// the database has none.
	ArchivePath  string
	ArchiveBytes int64
	PageSize     int
	// UsedPages is the high-water mark: pages the database has ever used, free
	// ones included; the file may be longer (bbolt grows it ahead of use).
	UsedPages int64
	FreePages int
	Schema    int // the schema version stored in the file; 0 when unreadable
	// Simulated: billingd simulate made the database (storage.ErrSimulated);
	// billingd run refuses it.
	Simulated bool
	Records   map[string]int // keys per bucket
	Consents  map[storage.ConsentState]int
	Problems  []string
	// ArchiveMissing: the problem is the archive file's absence (ErrArchiveMissing),
	// not a damaged database file.
	ArchiveMissing bool
}

// Inspect checks the database at path, opened read-only (it fails with ErrLocked
// while a daemon holds it), and reports on it. The report is returned even for a
// damaged file, as far as it could be read, with the error wrapping ErrCorrupt. The
// file is never written.
func Inspect(path string, timeout time.Duration) (*Report, error) {
	rep := &Report{Path: path, Records: map[string]int{}, Consents: map[storage.ConsentState]int{}}
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("check %s: %w", path, err)
	}
	rep.FileBytes = fi.Size()
	db, err := Open(path, Options{ReadOnly: true, Timeout: timeout})
	if errors.Is(err, ErrCorrupt) {
		rep.ArchiveMissing = errors.Is(err, ErrArchiveMissing)
		rep.Problems = []string{problemText(errors.Unwrap(err))}
		if rep.Problems[0] == "" {
			rep.Problems[0] = err.Error()
		}
		return rep, fmt.Errorf("check %s: %w", path, err)
	}
	if err != nil {
		return nil, err
	}
	defer db.Close()
	ctx := context.Background()
	rep.PageSize = db.e.bolt.Info().PageSize
	_ = guard(func() error {
		return db.e.bolt.View(func(tx *bbolt.Tx) error {
			rep.UsedPages = tx.Size() / int64(rep.PageSize)
			return nil
		})
	})
	if db.e.arch != nil {
		rep.ArchivePath = db.e.arch.path
		if fi, err := os.Stat(rep.ArchivePath); err == nil {
			rep.ArchiveBytes = fi.Size()
		}
	}
	rep.Schema, _ = db.Schema(ctx)
	rep.Simulated, _ = db.Simulated(ctx)
	rep.Problems = db.e.structure(rep.Records)
	if len(rep.Problems) == 0 {
		rep.Problems = db.Invariants(ctx)
	}
	bs := db.e.bolt.Stats()
	rep.FreePages = bs.FreePageN + bs.PendingPageN
	if len(rep.Problems) == 0 {
		if counts, err := db.Counts(ctx); err == nil {
			rep.Consents = counts
		}
		return rep, nil
	}
	return rep, fmt.Errorf("check %s: %w: %s found", path, ErrCorrupt, countProblems(len(rep.Problems)))
}

// Compact writes a compacted copy of the database at src to the new file dst (which
// must not exist), and of its archive file, if it has one, to dst's (ArchivePath),
// then verifies the copy. The copy has an identifier of its own binding its two
// files, so dst and its archive file replace src and its archive file as a pair,
// and neither opens beside the other's original. src is opened read-only, so a running daemon (which holds the
// file) makes it fail with ErrLocked instead of copying a moving target; a damaged
// src is refused (ErrCorrupt) before anything is written. Each copy is cut to the
// pages it uses, so compacting a compacted file never makes it larger. The sizes
// returned are the files' sizes, as ls -l shows them, the archive file's added.
func Compact(dst, src string) (before, after int64, err error) {
	for _, p := range []string{dst, ArchivePath(dst)} {
		if _, err := os.Stat(p); err == nil {
			return 0, 0, fmt.Errorf("compact: %s exists", p)
		}
	}
	in, err := Open(src, Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		return 0, 0, err
	}
	defer in.Close()
	if err := in.Verify(context.Background()); err != nil {
		return 0, 0, fmt.Errorf("compact: %s: %w", src, err)
	}
	pairs := [][2]string{{dst, src}}
	from := []*bbolt.DB{in.e.bolt}
	files := []*os.File{in.e.file}
	if in.e.arch != nil {
		pairs = append(pairs, [2]string{ArchivePath(dst), in.e.arch.path})
		from = append(from, in.e.arch.db)
		files = append(files, in.e.arch.file)
	}
	remove := func() {
		for _, p := range pairs {
			_ = os.Remove(p[0])
		}
	}
	_, last, err := in.e.compactedSize()
	if err != nil {
		return 0, 0, fmt.Errorf("compact: %w", err)
	}
	for i, p := range pairs {
		counts := map[string]int{}
		err := compactFile(p[0], from[i], files[i], i == 0, counts)
		if _, ok := counts[string(bucketArchiveFile)]; ok && i == 0 && last == 0 {
			counts[string(bucketArchiveFile)]++ // the copy's record of its size
		}
		if err == nil {
			err = sameRecords(p[0], counts)
		}
		if err != nil {
			remove()
			return 0, 0, fmt.Errorf("compact: %w", err)
		}
	}
	if len(pairs) == 2 {
		// A new identifier for the new pair: the compacted database file is then
		// refused beside the original archive file and the reverse, which would
		// read the same history only until either is written again.
		if err := rebind(pairs[0][0], pairs[1][0]); err != nil {
			remove()
			return 0, 0, fmt.Errorf("compact: %w", err)
		}
	}
	check, err := Open(dst, Options{ReadOnly: true, Timeout: time.Second})
	if err == nil {
		err = check.Check(context.Background())
		_ = check.Close()
	}
	if err != nil {
		remove()
		return 0, 0, fmt.Errorf("compact: the copy fails its check: %w", err)
	}
	for _, p := range pairs {
		fo, err := os.Stat(p[0])
		if err != nil {
			return 0, 0, err
		}
		fi, err := os.Stat(p[1])
		if err != nil {
			return 0, 0, err
		}
		before += fi.Size()
		after += fo.Size()
	}
	return before, after, nil
}

// rebind gives the database file at path and the archive file at arch a new
// identifier binding them.
func rebind(path, arch string) error {
	id := newArchiveID()
	for _, f := range []struct {
		path        string
		bucket, key []byte
	}{{path, bucketArchiveFile, keyID}, {arch, bucketArchiveMeta, keyOf}} {
		b, err := bbolt.Open(f.path, 0o600, &bbolt.Options{FreelistType: bbolt.FreelistMapType})
		if err != nil {
			return err
		}
		err = b.Update(func(tx *bbolt.Tx) error {
			bk := tx.Bucket(f.bucket)
			if bk == nil {
				return fmt.Errorf("%s: no bucket %s", f.path, f.bucket)
			}
			return bk.Put(f.key, id)
		})
		if cerr := b.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// compactTxBytes bounds the keys and values one transaction of compactFile copies:
// a transaction's pages are held in memory until it commits, and the copy is not
// synced before its end. Compacting a 471 MiB database file (a year-old store of
// 100,000 consents) with bbolt.Compact, its mappings released every 5 ms: 8 MiB took
// 1.12 s and a process peak of 179 MiB, 1 MiB 0.94 s and 103 MiB, 256 KiB 0.91 s and
// 89 MiB; 256 KiB released every millisecond, 0.9 s and 70 MiB (a throwaway probe of
// the copy alone, before the compaction at start walked the file first, and before
// the copy read the file with pread; docs/BENCHMARKS.md).
const compactTxBytes = 256 << 10

// compactFile writes a compacted copy of the bbolt file of src to the new file dst,
// synced and cut to the pages it uses: every bucket, nested bucket, key and
// bucket sequence, in key order, each page filled (what bbolt.Compact writes). It
// reads src's pages from f with pread, not through src's mapping (walkPages: a copy
// through the mapping maps the page cache's folios of a scattered file, up to 2 MiB
// for each page it reads), on the snapshot of one read transaction of src, and
// checks them as it goes: a damaged file (any problem checkPages finds, the pages it
// cannot reach included) fails with ErrCorrupt naming its problems, and the copy is
// left for the caller to remove. It counts each top-level bucket's keys into counts
// when that is not nil. With record (a database file, not an archive file), the copy
// records its size (keyCompacted), within a page or two.
func compactFile(dst string, src *bbolt.DB, f *os.File, record bool, counts map[string]int) error {
	out, err := bbolt.Open(dst, 0o600, &bbolt.Options{NoSync: true, FreelistType: bbolt.FreelistMapType})
	if err != nil {
		return fmt.Errorf("create %s: %w", dst, err)
	}
	// The copy's pages are read back as it is written: give them back as it goes.
	stop := (&engine{bolt: out}).releaseEvery(time.Millisecond)
	c := &copier{dst: out, max: compactTxBytes}
	var problems []string
	err = guard(func() error {
		var err error
		problems, err = walkPages(src, f, counts, "", c.put)
		return c.end(err == nil && len(problems) == 0, err)
	})
	stop()
	if err == nil && len(problems) > 0 {
		err = problemsErr(problems)
	}
	if err == nil && record {
		err = out.Update(func(tx *bbolt.Tx) error {
			bk := tx.Bucket(bucketArchiveFile)
			if bk == nil { // a file written before the archive file records nothing
				return nil
			}
			return bk.Put(keyCompacted, binary.BigEndian.AppendUint64(nil, uint64(tx.Size())))
		})
	}
	var used int64
	if err == nil {
		err = out.View(func(tx *bbolt.Tx) error {
			used = tx.Size()
			return nil
		})
	}
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = truncateSync(dst, used)
	}
	return err
}

// copier writes what walkPages visits into dst, in transactions of up to max bytes
// of keys and values (bbolt.Compact's loop, fed by pread instead of cursors).
type copier struct {
	dst  *bbolt.DB
	tx   *bbolt.Tx
	size int64
	max  int64
	// at is the bucket of path in tx (nil: not looked up in this transaction).
	at   *bbolt.Bucket
	path [][]byte
}

// put copies one visited key: a bucket (v nil) with its sequence, or a key and
// its value.
func (c *copier) put(path [][]byte, k, v []byte, seq uint64) error {
	sz := int64(len(k) + len(v))
	if c.tx == nil || c.size+sz > c.max {
		if c.tx != nil {
			if err := c.tx.Commit(); err != nil {
				c.tx = nil
				return err
			}
		}
		tx, err := c.dst.Begin(true)
		if err != nil {
			return err
		}
		c.tx, c.size, c.at = tx, 0, nil
	}
	c.size += sz
	if len(path) == 0 {
		if v != nil {
			return fmt.Errorf("the root bucket holds a key that is not a bucket (%x)", k)
		}
		b, err := c.tx.CreateBucket(k)
		if err != nil {
			return err
		}
		return b.SetSequence(seq)
	}
	b, err := c.bucket(path)
	if err != nil {
		return err
	}
	if v == nil {
		nb, err := b.CreateBucket(k)
		if err != nil {
			return err
		}
		return nb.SetSequence(seq)
	}
	// bbolt keeps the value, not a copy, until the commit; v is the walk's buffer.
	return b.Put(k, bytes.Clone(v))
}

// bucket returns the bucket of path in the open transaction, each page of it to
// be filled (its keys arrive in order).
func (c *copier) bucket(path [][]byte) (*bbolt.Bucket, error) {
	if c.at != nil && len(path) == len(c.path) {
		same := true
		for i := range path {
			if !bytes.Equal(path[i], c.path[i]) {
				same = false
				break
			}
		}
		if same {
			return c.at, nil
		}
	}
	b := c.tx.Bucket(path[0])
	for _, name := range path[1:] {
		if b == nil {
			break
		}
		b = b.Bucket(name)
	}
	if b == nil {
		return nil, fmt.Errorf("the copy lacks bucket %q", path)
	}
	b.FillPercent = 1.0
	c.path = c.path[:0]
	for _, name := range path {
		c.path = append(c.path, bytes.Clone(name))
	}
	c.at = b
	return b, nil
}

// end commits the last transaction when ok, and rolls it back otherwise; it
// returns cause, or what failed.
func (c *copier) end(ok bool, cause error) error {
	if c.tx == nil {
		return cause
	}
	tx := c.tx
	c.tx = nil
	if !ok {
		_ = tx.Rollback()
		return cause
	}
	return tx.Commit()
}

// truncateSync cuts the file at path to size bytes, durably. bbolt grows a file
// ahead of its use; the pages past the high-water mark hold nothing.
func truncateSync(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	err = f.Truncate(size)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// countProblems says "1 problem" or "n problems".
func countProblems(n int) string {
	if n == 1 {
		return "1 problem"
	}
	return fmt.Sprintf("%d problems", n)
}
