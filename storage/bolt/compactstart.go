package bolt

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	bbolt "go.etcd.io/bbolt"
)

// Compaction at start.
//
// bbolt never moves a page it does not rewrite, and puts each rewritten page
// wherever a page is free: after months of commits a bucket's pages are spread over
// the whole database file, among every other bucket's. A due scan then touches the
// same pages as in a new file, but each page fault maps the cached neighbours of the
// page it reads (16 pages, or a whole folio of up to 2 MiB), which are other
// consents' records: on a year-old store of 100,000 consents the scan's peak
// resident memory was 1.48 times a new store's, from two buckets (cursors, events)
// whose pages were no more numerous but scattered (docs/BENCHMARKS.md, "Issue 13,
// seventh pass"). A copy in key order (bbolt.Compact) puts every bucket in contiguous
// full pages again. The history is in the archive file, so the database file holds
// what can still change and is checked and copied in under two seconds (1.3 to 1.7 s
// for the year-old store's 471 MiB, the file in the page cache; from a cold disk, as
// long as reading the file takes), which a daemon can afford as it starts, before
// its first scan, while it holds the lock and nothing else reads or writes the file.
//
// CompactAuto compacts when the file has reached compactFloor and has grown to
// compactGrowth times its size after its last compaction (recorded in the file, key
// "compacted" of bucket archive_file, by this and by `billingd db compact`), or was
// never compacted: growth by new consents is then paid for in compactions whose
// total work is about twice the final file's size.

// CompactMode chooses when Open compacts the database file (Options.CompactAtStart).
type CompactMode int

const (
	// CompactNever: Open never compacts (the zero value: tools, tests, readers).
	CompactNever CompactMode = iota
	// CompactAuto: Open compacts a file past compactFloor that has grown
	// compactGrowth times since its last compaction (billingd run's default).
	CompactAuto
	// CompactAlways: Open compacts the file whatever its size.
	CompactAlways
)

// String is the mode as storage.compact_at_start spells it.
func (m CompactMode) String() string {
	switch m {
	case CompactAuto:
		return "auto"
	case CompactAlways:
		return "always"
	}
	return "never"
}

// ParseCompactMode reads storage.compact_at_start: auto, always or never.
func ParseCompactMode(s string) (CompactMode, error) {
	switch s {
	case "auto", "":
		return CompactAuto, nil
	case "always":
		return CompactAlways, nil
	case "never":
		return CompactNever, nil
	}
	return 0, fmt.Errorf("%q is not auto, always or never", s)
}

const (
	// compactFloor is the smallest database file CompactAuto compacts: below it a
	// scattered file maps little more than a compact one.
	compactFloor = 64 << 20
	// compactGrowth is how many times its size after the last compaction a file
	// grows before CompactAuto compacts it again.
	compactGrowth = 2
)

// keyCompacted, in bucket archive_file: the database file's size in bytes (8,
// big-endian) after its last compaction.
var keyCompacted = []byte("compacted")

// compactStats says what compactAtStart did.
type compactStats struct {
	before, after int64
	took          time.Duration
}

// wantCompact reports whether mode compacts a file of size bytes whose last
// compaction left last bytes (0: never compacted).
func wantCompact(mode CompactMode, size, last int64) bool {
	switch mode {
	case CompactAlways:
		return true
	case CompactAuto:
		return size >= compactFloor && (last == 0 || size >= compactGrowth*last)
	}
	return false
}

// compactedSize reads keyCompacted; 0 when the file records none.
func (db *engine) compactedSize() (size, last int64, err error) {
	err = db.view(func(tx *bbolt.Tx) error {
		size = tx.Size()
		if b := tx.Bucket(bucketArchiveFile); b != nil {
			if v := b.Get(keyCompacted); len(v) == 8 {
				last = int64(binary.BigEndian.Uint64(v))
			}
		}
		return nil
	})
	return size, last, err
}

// compactAtStart compacts the open database file into a copy in a temporary
// directory beside it (removed at the next writer's open if a crash leaves it),
// synced, renamed over the file and its directory synced, and reopens it with
// reopen. Until the rename the file is untouched, so any error before it leaves
// the open file as it was (ok false: the caller goes on with it). The copy holds
// every bucket and key of the file and their sequences (bbolt.Compact), so the
// archive file's binding and every staged record come with it. It runs before the
// archive file is opened, under the writer's lock: nothing else reads or writes.
func (db *engine) compactAtStart(mode CompactMode, reopen func() (*bbolt.DB, *os.File, error)) (st compactStats, ok bool, err error) {
	size, last, err := db.compactedSize()
	if err != nil || !wantCompact(mode, size, last) {
		if err == nil {
			db.log.Debug("database file not compacted at start", "path", db.path, "used_bytes", size, "after_last_compaction_bytes", last,
				"mode", mode)
		}
		return st, false, err
	}
	began := time.Now()
	// A symbolic link at the path (a file on another volume) keeps naming the file:
	// the copy is made beside the file and renamed over it.
	real, err := filepath.EvalSymlinks(db.path)
	if err != nil {
		return st, false, err
	}
	orig, err := os.Stat(real)
	if err != nil {
		return st, false, err
	}
	dir := filepath.Dir(real)
	tmpDir, err := os.MkdirTemp(dir, compactDirPrefix(db.path)+"*")
	if err != nil {
		return st, false, err
	}
	defer os.RemoveAll(tmpDir)
	tmp := filepath.Join(tmpDir, "compact.db")
	// A damaged file is not compacted: a copy would hold what can be reached, pass
	// every check and replace the evidence. The copy reads the file with pread and
	// checks it as verify_on_start does (compactFile), counting every bucket's
	// records (its engine buckets too: the pair's binding is in one); the counts are
	// compared with the copy's. A damaged file is used as it is, and its verification
	// or its first read of a damaged page refuses it. The file is first read in order
	// (prefetch: from a cold disk, a walk in tree order is random reads).
	counts := map[string]int{}
	db.prefetch()
	err = compactFile(tmp, db.bolt, db.file, true, counts)
	if errors.Is(err, ErrCorrupt) {
		return st, false, fmt.Errorf("the file has problems, so it is not compacted: %s", problemText(err))
	}
	if err == nil {
		if last == 0 { // the copy's record of its size is one record more
			counts[string(bucketArchiveFile)]++
		}
		err = sameRecords(tmp, counts)
	}
	if err != nil {
		return st, false, err
	}
	// The file's mode and owner, as the original's.
	if err := os.Chmod(tmp, orig.Mode().Perm()); err != nil {
		return st, false, err
	}
	sameOwner(tmp, orig)
	fi, err := os.Stat(tmp)
	if err == nil && compactFault != nil {
		err = compactFault()
	}
	if err != nil {
		return st, false, err
	}
	// The switch: close, rename, reopen. db.bolt is nil while the file is closed;
	// the caller fails the open if it stays so.
	if err := db.bolt.Close(); err != nil {
		return st, false, db.reopenAfter(err, reopen)
	}
	db.bolt, db.file = nil, nil
	if err := os.Rename(tmp, real); err != nil {
		if errors.Is(err, syscall.EBUSY) {
			// A file bind-mounted at the path (a container) cannot be replaced: every
			// start would copy it for nothing.
			err = fmt.Errorf("%w: the database file is a mount point (bind-mounted?): mount its directory instead, or set storage.compact_at_start: never", err)
		}
		return st, false, db.reopenAfter(err, reopen) // the original is in place
	}
	if err := db.reopenAfter(nil, reopen); err != nil {
		return st, false, fmt.Errorf("reopening the compacted file: %w", err)
	}
	db.checkedAtOpen.Store(true)
	if err := syncDir(dir); err != nil {
		// The compacted file is open and complete; a crash before its directory
		// reaches the disk would find the original, as complete.
		db.log.Warn("database file compacted at start, but its directory's sync failed", "path", db.path, "err", err)
	}
	return compactStats{before: size, after: fi.Size(), took: time.Since(began)}, true, nil
}

// reopenAfter opens the database file again with reopen after cause (nil: after a
// successful switch) and returns cause, or what failed.
func (db *engine) reopenAfter(cause error, reopen func() (*bbolt.DB, *os.File, error)) error {
	bdb, file, err := reopen()
	if err != nil {
		db.bolt, db.file = nil, nil
		if cause != nil {
			return fmt.Errorf("%w; reopening the file: %w", cause, err)
		}
		return err
	}
	db.bolt, db.file = bdb, file
	if err := db.identify(file); err != nil {
		_ = bdb.Close()
		db.bolt, db.file = nil, nil
		return err
	}
	return cause
}

// sameRecords checks that the bbolt file at path passes the structural check
// (checkPages) and holds exactly as many records in each bucket as counts says.
func sameRecords(path string, counts map[string]int) error {
	b, f, err := openBolt(path, &bbolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		return err
	}
	defer b.Close()
	got := map[string]int{}
	problems := checkPages(b, f, got, "")
	if len(problems) > 0 {
		return fmt.Errorf("the copy fails its check: %s", strings.Join(problems, "; "))
	}
	for name, n := range counts {
		if g := got[name]; g != n {
			return fmt.Errorf("the copy holds %d records in bucket %s, the file %d", g, name, n)
		}
	}
	if len(got) != len(counts) {
		return fmt.Errorf("the copy holds %d buckets, the file %d", len(got), len(counts))
	}
	return nil
}

// compactFault, for tests, fails a compaction at start after its copy is written
// and before the switch.
var compactFault func() error

// compactDirPrefix names compactAtStart's temporary directories beside the
// database at path: .<name>.compact-<random>.
func compactDirPrefix(path string) string { return "." + filepath.Base(path) + ".compact-" }
