package bolt

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	bbolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/klavi-billing/billingd/storage"
	"github.com/klavi-billing/billingd/storage/kv"
)

// The sentinels of package storage, as this engine returns them.
var (
	ErrLocked      = storage.ErrLocked
	ErrNotBillingd = storage.ErrNotBillingd
	ErrCorrupt     = storage.ErrCorrupt
	ErrReplaced    = storage.ErrReplaced
	ErrSimulated   = storage.ErrSimulated
)

// v1Buckets are in every billingd file; the others came with schema 2 and are
// created when a writer opens a schema 1 file.
var v1Buckets = []string{"meta", "consents", "cursors", "due", "attempts", "poll", "amounts", "attention"}

// Options tune Open. The zero value is the production setting.
type Options struct {
	// Timeout bounds the wait for the file lock (default 5s); then Open fails with ErrLocked.
	Timeout time.Duration
	// ReadOnly opens with a shared lock and never writes (db check, offline reads).
	ReadOnly bool
	// NoSync skips fsync on commit. Only for throwaway databases (simulations).
	NoSync bool
	// MaxBatchDelay and MaxBatchSize tune the group commit of Apply (defaults 2ms, 1000).
	MaxBatchDelay time.Duration
	MaxBatchSize  int
	// Logger receives open/close notes; nil is slog.Default().
	Logger *slog.Logger
	// OnWrite is storage.Options.OnWrite.
	OnWrite func(err error)
	// MappedBudget, in bytes, bounds the file pages this process keeps mapped beyond
	// what it mapped after the last release: a write that finds more gives the
	// mapping's pages back (mappedBudget). 0: no bound (the default).
	MappedBudget int64
	// NoArchiveFile keeps archived history in the database file itself, as before
	// the archive file (archivefile.go): for copies written once and read (backups),
	// and for comparisons.
	NoArchiveFile bool
	// ArchiveDelay is the wait between a write that archives records and the drain
	// that moves them to the archive file (default 1s).
	ArchiveDelay time.Duration
	// CompactAtStart compacts the database file before Open returns
	// (compactstart.go): CompactNever (the zero value), CompactAuto (billingd run's
	// default) or CompactAlways. A writer's option; a failed compaction is logged
	// and the file used as it is.
	CompactAtStart CompactMode
	// Simulated marks a new database as billingd simulate's (storage.Options.Simulated).
	Simulated bool
	// RefuseSimulated fails Open with storage.ErrSimulated for a database billingd
	// simulate made, before anything is written to it: no layout, no compaction at
	// start, no archive file made, no mark in the lock file (billingd run's setting).
	RefuseSimulated bool

	// noMark: OpenEngine's target of a copy, which does not mark its lock file
	// (markLock): a copy cut short and removed is made again, not refused as lost.
	noMark bool
}

// Store is billingd's store in one bbolt file: a storage.DB over this engine, and
// what only a file has (backup, size figures, page verification, identity).
type Store struct {
	*storage.DB
	e *engine
}

// engine is kv.Engine over one bbolt file.
type engine struct {
	bolt *bbolt.DB
	path string
	lock *os.File // the flock of lockPath(path), held until Close
	file *os.File // bbolt's open file (bbolt closes it)
	id   fileID   // the open file's device and inode
	// hasID: id is known (a platform without inodes has none).
	hasID bool
	// known names the buckets of the layout.
	known map[string]bool

	// replaced is set for good once the path is found not to name the open file, or
	// the archive path its archive file (archReplaced).
	replaced     atomic.Bool
	archReplaced atomic.Bool
	// mapped bounds the file pages kept mapped (Options.MappedBudget).
	mapped mappedBudget
	// checkedTx is the write transaction whose identity check passed. Only write
	// transactions touch it, and bbolt runs one at a time. Holding the pointer keeps
	// that Tx alive, so a later transaction can never have the same address.
	checkedTx *bbolt.Tx
	// writeTxs counts the write transactions checkWrite saw (WriteStats).
	writeTxs atomic.Int64
	// arch is the archive file; nil when there is none (Options.NoArchiveFile, or a
	// read-only database that never moved a record there).
	arch *archiveFile
	log  *slog.Logger
	// fill, when not 0, is the fill percent of every bucket written (bbolt's
	// Bucket.FillPercent): 1 for a copy whose keys arrive in order.
	fill float64
	// readOnly: opened with Options.ReadOnly.
	readOnly bool
	// checkedAtOpen: the open compacted the file and walked the copy now at the path
	// (checkPages, every bucket counted), so the first Verify need not walk the
	// database file again (structure).
	checkedAtOpen atomic.Bool
	// evicted counts the free pages dropped from the page cache (evictFree).
	evicted atomic.Int64
	// drainHook, for tests, runs after a drain has read the stages (1) and after
	// its first commit (2); its error ends the drain there (as a crash would).
	drainHook func(at int) error
}

// Open opens (creating if needed) the billingd database at path. It never hangs on a
// file another process holds (ErrLocked after Options.Timeout), refuses a file that is
// not a billingd database (ErrNotBillingd, ErrCorrupt) or comes from a newer version
// (ErrSchema), and in those cases leaves the file untouched.
//
// A writer first takes an exclusive flock on <path>.lock, a file it creates beside
// the database and never removes, and holds it until Close: the lock stays with the
// path even if the database file is moved away or replaced, so a second writer on
// the same path fails with ErrLocked. Before every write the path is checked to
// still name the open file (ErrReplaced otherwise).
func Open(path string, opts Options) (*Store, error) {
	db, err := openEngine(path, opts)
	if err != nil {
		return nil, err
	}
	sdb, err := storage.New(context.Background(), db, storage.Options{ReadOnly: opts.ReadOnly, Logger: opts.Logger, OnWrite: opts.OnWrite,
		Simulated: opts.Simulated, RefuseSimulated: opts.RefuseSimulated})
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	return &Store{DB: sdb, e: db}, nil
}

// LockPath is the lock file of the database at path (<path>.lock), which a writer
// holds while the file is open. A tool writing files must leave it alone as it
// leaves the database: a file moved over it drops the lock of the daemon holding it.
func LockPath(path string) string { return lockPath(path) }

// OpenEngine opens (creating if needed) the bbolt file at path as a bare kv.Engine
// with storage's buckets, under the same lock and checks as Open, but writes no
// record: a new file has every bucket and no key, not even billingd's marker. It is
// the target of a copy between engines (billingd db migrate), which writes the
// source's meta records itself. A file that is already a billingd database is
// opened as it is.
func OpenEngine(path string, opts Options) (kv.Engine, error) {
	opts.noMark = true
	return openEngine(path, opts)
}

// openEngine opens path for Open and OpenEngine: the lock, the checks, the layout.
func openEngine(path string, opts Options) (_ *engine, err error) {
	if opts.Timeout <= 0 {
		opts.Timeout = 5 * time.Second
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		return nil, fmt.Errorf("open %s: %w", path, syscall.EISDIR)
	} else if err != nil && opts.ReadOnly {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	// A directory where a writer's lock file or the archive file goes is refused
	// before the lock file is created, as syscall.EISDIR: the state directory is
	// unusable as it is (exit 3), not a failure a restart may fix.
	if fi, err := os.Stat(lockPath(path)); err == nil && fi.IsDir() && !opts.ReadOnly {
		return nil, fmt.Errorf("open %s: lock file %s: %w", path, lockPath(path), syscall.EISDIR)
	}
	if fi, err := os.Stat(ArchivePath(path)); err == nil && fi.IsDir() && !opts.NoArchiveFile {
		return nil, fmt.Errorf("open %s: archive file %s: %w", path, ArchivePath(path), syscall.EISDIR)
	}
	if err := notArchiveFile(path); err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	lock, err := acquireLock(path, !opts.ReadOnly, opts.Timeout)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	opened := false
	defer func() {
		// Every failure below releases the lock (their errors are scoped to their
		// own if statements: the lock's release must not hang on a variable).
		if !opened && lock != nil {
			_ = lock.Close()
		}
	}()
	created := false
	if !opts.ReadOnly {
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			if err := lostDatabase(path, lock, opts); err != nil {
				return nil, fmt.Errorf("open %s: %w", path, err)
			}
			created = true
		}
	}
	// A file shorter than its header says is refused before bbolt reads a page of it:
	// reading past the end of a mapped file faults.
	if err := precheck(path, opts.Timeout); err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	open := func() (*bbolt.DB, *os.File, error) {
		bdb, file, err := openBolt(path, &bbolt.Options{
			Timeout:      opts.Timeout,
			ReadOnly:     opts.ReadOnly,
			NoSync:       opts.NoSync,
			FreelistType: freelistType(path),
			// Read the free list now, under guard, rather than later on a goroutine of
			// bbolt's where a damaged one would kill the process.
			PreLoadFreelist: true,
		})
		if err != nil {
			return nil, nil, err
		}
		bdb.MaxBatchDelay = 2 * time.Millisecond
		if opts.MaxBatchDelay > 0 {
			bdb.MaxBatchDelay = opts.MaxBatchDelay
		}
		if opts.MaxBatchSize > 0 {
			bdb.MaxBatchSize = opts.MaxBatchSize
		}
		return bdb, file, nil
	}
	bdb, file, err := open()
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	db := &engine{bolt: bdb, path: path, lock: lock, file: file, known: names(storage.Buckets), log: log, readOnly: opts.ReadOnly}
	db.mapped.budget = opts.MappedBudget
	if err := db.identify(file); err != nil {
		_ = bdb.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	if err := db.checkLength(); err != nil {
		_ = bdb.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	// The archive file's refusals first: a refused open writes nothing.
	if _, _, _, err := db.archiveState(opts); err != nil {
		_ = bdb.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	if opts.RefuseSimulated {
		if err := db.View(context.Background(), storage.NotSimulated); err != nil {
			_ = bdb.Close()
			return nil, fmt.Errorf("open %s: %w", path, err)
		}
	}
	if err := db.prepare(opts.ReadOnly); err != nil {
		_ = bdb.Close()
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	if !opts.ReadOnly {
		removeStaleCopies(path, log)
	}
	if !opts.ReadOnly && opts.CompactAtStart != CompactNever {
		st, ok, err := db.compactAtStart(opts.CompactAtStart, open)
		switch {
		case ok:
			log.Info("database file compacted at start", "path", path, "before_bytes", st.before, "after_bytes", st.after,
				"took", st.took.Round(time.Millisecond).String())
		case err != nil && db.bolt == nil:
			// Closed for the switch and not open again: the open fails (the file at
			// the path is whole, the original or the compacted copy; a new start
			// opens it).
			return nil, fmt.Errorf("open %s: compaction at start: %w", path, err)
		case err != nil:
			log.Warn("database file: compaction at start failed; the file is used as it is", "path", path, "err", err)
		}
	}
	if !opts.NoArchiveFile {
		if err := db.openArchive(opts); err != nil {
			_ = db.bolt.Close()
			return nil, fmt.Errorf("open %s: %w", path, err)
		}
	}
	db.evictFree()
	if !opts.ReadOnly {
		// Only a database that is kept: not a simulation's or a copy's (NoSync,
		// NoArchiveFile), nor a copy's target.
		if !opts.NoSync && !opts.NoArchiveFile && !opts.noMark {
			markLock(lock)
		}
		if created && !opts.NoArchiveFile {
			log.Info("no database file: created a new, empty database", "path", path)
		}
	}
	opened = true
	return db, nil
}

// notArchiveFile refuses path when it names the archive file of a database beside
// it (<db>.archive next to <db>): given where a database file is expected (--db,
// storage.path), opening it would read as a damaged database, and a writer would
// lay a database out in it.
func notArchiveFile(path string) error {
	base, ok := strings.CutSuffix(path, ArchiveSuffix)
	if !ok || base == "" {
		return nil
	}
	if _, err := os.Stat(path); err != nil {
		return nil
	}
	if fi, err := os.Stat(base); err == nil && !fi.IsDir() {
		return fmt.Errorf("%w: it is the archive file of the database %s beside it, not a database: give the database file (--db %s, storage.path)", ErrNotBillingd, base, base)
	}
	// No database file beside it: told by its contents (an archive file's meta
	// bucket names the database it was made for).
	if isArchiveFile(path) {
		return fmt.Errorf("%w: it is an archive file, of the database %s, which is missing: put the database file (or a backup) back at %s and give that (--db %s, storage.path); the archive file holds history found nowhere else",
			ErrNotBillingd, base, base, base)
	}
	return nil
}

// isArchiveFile reports whether the bbolt file at path is an archive file (its meta
// bucket records the database it belongs to); false when it cannot be read.
func isArchiveFile(path string) bool {
	b, err := bbolt.Open(path, 0o600, &bbolt.Options{ReadOnly: true, Timeout: 100 * time.Millisecond})
	if err != nil {
		return false
	}
	defer b.Close()
	found := false
	_ = guard(func() error {
		return b.View(func(tx *bbolt.Tx) error {
			if m := tx.Bucket(bucketArchiveMeta); m != nil && m.Get(keyOf) != nil && tx.Bucket([]byte("consents")) == nil {
				found = true
			}
			return nil
		})
	})
	return found
}

// lostDatabaseMark is what a writer writes into an empty lock file: that a database
// was opened at the path, so a later open that finds no database file knows it was
// lost rather than never made (lostDatabase).
const lostDatabaseMark = "billingd: a writer opened the database beside this lock file. Never remove this file while billingd runs.\n"

// markLock writes lostDatabaseMark into the lock file when it is empty (best
// effort: a lock file that cannot be written only loses the check).
func markLock(lock *os.File) {
	if lock == nil {
		return
	}
	if fi, err := lock.Stat(); err != nil || fi.Size() > 0 {
		return
	}
	if _, err := lock.WriteAt([]byte(lostDatabaseMark), 0); err == nil {
		_ = lock.Sync()
	}
}

// lostError is lostDatabase's refusal: an fs.ErrNotExist (exit 3) in its own words.
type lostError string

func (e lostError) Error() string        { return string(e) }
func (e lostError) Is(target error) bool { return target == fs.ErrNotExist }

// lostDatabase is called when a writer finds no database file at path: a first
// start, unless what a database leaves beside it is there, its archive file or a
// lock file a writer marked (markLock). Then the database was moved away or lost,
// and making a new, empty one would bill nobody while looking healthy: it is
// refused (an fs.ErrNotExist: exit 3), and the message says how to start anew.
func lostDatabase(path string, lock *os.File, opts Options) error {
	apath := ArchivePath(path)
	marked := false
	if lock != nil {
		if fi, err := lock.Stat(); err == nil && fi.Size() > 0 {
			marked = true
		}
	}
	if _, err := os.Stat(apath); err == nil && !opts.NoArchiveFile {
		also := ""
		if marked {
			also = " and remove " + lockPath(path)
		}
		return lostError(fmt.Sprintf("the database file is missing, and its archive file %s is beside it: the database was moved or lost. Put it (or a backup) back at %s; to start a new, empty database, move %s away%s first",
			apath, path, apath, also))
	}
	if marked {
		return lostError(fmt.Sprintf("the database file is missing, and its lock file %s shows billingd opened a database here before: it was moved or lost. Put it (or a backup) back at %s; to start a new, empty database, remove %s first",
			lockPath(path), path, lockPath(path)))
	}
	return nil
}

// prepare refuses a bbolt file of another program and lays out the buckets: all of
// them in a new file, those of schema 2 in a schema 1 file. Opening a current file
// writes nothing.
func (db *engine) prepare(readOnly bool) error {
	var names []string
	missing := false
	if err := guard(func() error {
		return db.bolt.View(func(tx *bbolt.Tx) error {
			_ = tx.ForEach(func(name []byte, _ *bbolt.Bucket) error {
				names = append(names, string(name))
				return nil
			})
			for _, b := range storage.Buckets {
				missing = missing || tx.Bucket(b) == nil
			}
			for _, b := range engineBuckets {
				missing = missing || tx.Bucket(b) == nil
			}
			return nil
		})
	}); err != nil {
		return err
	}
	switch {
	case len(names) == 0 && readOnly:
		return fmt.Errorf("%w: the file is empty", ErrNotBillingd)
	case len(names) > 0 && !contains(names, "meta"):
		if len(names) > 5 {
			names = append(names[:5], "…")
		}
		return fmt.Errorf("%w: it has buckets %s and no billingd meta bucket", ErrNotBillingd, strings.Join(names, ", "))
	}
	if len(names) > 0 {
		for _, b := range v1Buckets {
			if !contains(names, b) {
				return fmt.Errorf("%w: bucket %s is missing", ErrCorrupt, b)
			}
		}
	}
	if !missing || readOnly {
		return nil
	}
	return guard(func() error {
		return db.bolt.Update(func(tx *bbolt.Tx) error {
			for _, b := range append(storage.Buckets[:len(storage.Buckets):len(storage.Buckets)], engineBuckets...) {
				if _, err := tx.CreateBucketIfNotExists(b); err != nil {
					return err
				}
			}
			return nil
		})
	})
}

func names(buckets [][]byte) map[string]bool {
	m := make(map[string]bool, len(buckets))
	for _, b := range buckets {
		m[string(b)] = true
	}
	return m
}

func contains(names []string, name string) bool {
	for _, n := range names {
		if n == name {
			return true
		}
	}
	return false
}

// openBolt opens path with bbolt under guard and sorts its errors into the
// package's sentinels. It returns bbolt's open file too: bbolt opens it through a
// hook of ours, so that it can be closed (and its lock released) even when bbolt
// panics halfway through opening a damaged file.
func openBolt(path string, o *bbolt.Options) (*bbolt.DB, *os.File, error) {
	// bbolt calls the hook again for Tx.WriteTo (backups): only the first file is the DB's.
	var first atomic.Pointer[os.File]
	o.OpenFile = func(name string, flag int, perm os.FileMode) (*os.File, error) {
		f, err := os.OpenFile(name, flag, perm)
		if err == nil {
			first.CompareAndSwap(nil, f)
		}
		return f, err
	}
	var bdb *bbolt.DB
	err := guard(func() error {
		var err error
		bdb, err = bbolt.Open(path, 0o600, o)
		return err
	})
	file := first.Load()
	switch {
	case err == nil:
		return bdb, file, nil
	case errors.Is(err, berrors.ErrTimeout):
		return nil, nil, fmt.Errorf("%w (waited %s; is billingd already running?)", ErrLocked, o.Timeout)
	case errors.Is(err, berrors.ErrInvalid), errors.Is(err, berrors.ErrChecksum), errors.Is(err, berrors.ErrVersionMismatch):
		return nil, nil, fmt.Errorf("%w: %v (not a bbolt database, or its header is damaged)", ErrCorrupt, err)
	case errors.Is(err, ErrCorrupt):
		if bdb == nil && file != nil {
			unmapLeaked(file)
			_ = file.Close()
		}
	case strings.Contains(err.Error(), "file size too small"):
		return nil, nil, fmt.Errorf("%w: %v (shorter than a database's first pages: truncated)", ErrCorrupt, err)
	}
	return nil, nil, err
}

// precheck opens an existing, non-empty file read-only, reading only its header,
// and refuses it when it is shorter than the pages the header counts.
func precheck(path string, timeout time.Duration) error {
	fi, err := os.Stat(path)
	switch {
	case err != nil:
		return nil // a new file: nothing to check; bbolt reports open errors
	case fi.Size() == 0:
		// Only a missing file is a first install. An empty one is a restore or a copy
		// that went wrong (a full disk, a cp onto a truncated target): opening it would
		// make it a new, empty database that bills nobody.
		return fmt.Errorf("%w: the file is empty (0 bytes); a billingd database never is. Restore it, or remove it to start a new one", ErrCorrupt)
	}
	bdb, _, err := openBolt(path, &bbolt.Options{ReadOnly: true, Timeout: timeout})
	if err != nil {
		return err
	}
	defer bdb.Close()
	var need int64
	if err := guard(func() error {
		return bdb.View(func(tx *bbolt.Tx) error {
			need = tx.Size()
			return nil
		})
	}); err != nil {
		return err
	}
	if need > fi.Size() {
		return fmt.Errorf("%w: truncated: its header counts %d bytes of pages and the file has %d", ErrCorrupt, need, fi.Size())
	}
	return nil
}

// identify records the open file's device and inode, and makes sure the path still
// names it (it could have been replaced between bbolt's open and now).
func (db *engine) identify(f *os.File) error {
	if f == nil {
		return nil
	}
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if db.id, db.hasID = idOf(fi); !db.hasID {
		return nil
	}
	return db.CheckIdentity()
}

// CheckIdentity returns ErrReplaced when the path no longer names the open file
// (moved away, replaced by another file, removed), and nil when it does. Once it
// has failed it keeps failing. It costs one stat(2).
func (db *engine) CheckIdentity() error {
	if db.replaced.Load() {
		return fmt.Errorf("%w: %s", ErrReplaced, db.replacedPath())
	}
	if db.hasID {
		fi, err := os.Stat(db.path)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("check %s: %w", db.path, err)
		}
		same := false
		if err == nil {
			id, ok := idOf(fi)
			same = ok && id == db.id
		}
		if !same {
			db.replaced.Store(true)
			return fmt.Errorf("%w: %s", ErrReplaced, db.path)
		}
	}
	// The archive file too: history drained there would be lost with the process
	// if the path no longer named it.
	if a := db.arch; a != nil {
		if err := a.checkIdentity(); err != nil {
			if errors.Is(err, ErrReplaced) {
				db.archReplaced.Store(true)
				db.replaced.Store(true)
			}
			return err
		}
	}
	return nil
}

// replacedPath names the file found replaced: the archive file's path when it was.
func (db *engine) replacedPath() string {
	if db.archReplaced.Load() {
		return db.arch.path
	}
	return db.path
}

// checkWrite runs first in every write transaction: one identity check per
// transaction, however many batched changes share it.
func (db *engine) checkWrite(tx *bbolt.Tx) error {
	if db.checkedTx == tx {
		return nil
	}
	if err := db.CheckIdentity(); err != nil {
		return err
	}
	db.checkedTx = tx
	db.writeTxs.Add(1)
	return nil
}

// WriteStats are counters of the database file's write path since Open, for
// benchmarks and diagnostics. The archive file's writes are not counted.
type WriteStats struct {
	// Transactions: write transactions begun (each Update, and each group of
	// concurrent Applies that bbolt's Batch runs as one), rolled back ones included,
	// and the archive drain's transactions on the database file.
	Transactions int64
	// PagesWritten: the writes of committed pages (bbolt's TxStats.Write): one
	// write call for each page, or for each run of a value's overflow pages.
	PagesWritten int64
}

// WriteStats returns the counters of the database file's write path since Open.
func (s *Store) WriteStats() WriteStats {
	st := s.e.bolt.Stats()
	return WriteStats{Transactions: s.e.writeTxs.Load(), PagesWritten: st.TxStats.GetWrite()}
}

// guard turns a panic inside bbolt (which is how it meets a damaged page: a failed
// assertion, or a page pointer that leads out of the mapped file) into ErrCorrupt.
// Memory faults become panics for the duration (debug.SetPanicOnFault), so reading
// a damaged file never kills the process. bbolt rolls the transaction back before
// the panic reaches here.
func guard(fn func() error) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: %s", ErrCorrupt, panicText(r))
		}
	}()
	return fn()
}

// panicText describes what bbolt panicked with. A memory fault means a page number
// led outside the mapped file.
func panicText(r any) string {
	if re, ok := r.(runtime.Error); ok {
		if _, fault := r.(interface{ Addr() uintptr }); fault || strings.Contains(re.Error(), "invalid memory address") {
			return "a damaged page points outside the file"
		}
		return "a page is damaged (" + strings.TrimPrefix(re.Error(), "runtime error: ") + ")"
	}
	msg := fmt.Sprint(r)
	// bbolt checks that a page read carries its own number; what it finds instead is
	// whatever the damage left there, not a page number worth printing.
	if m := pageSelfID.FindStringSubmatch(msg); m != nil {
		return "page " + m[1] + " is damaged: its header does not carry its own page number"
	}
	return msg
}

var pageSelfID = regexp.MustCompile(`Page expected to be: (\d+), but self identifies as \d+`)

// Path returns the database file's path.
func (s *Store) Path() string { return s.e.path }

// CheckIdentity returns ErrReplaced when the path no longer names the open file
// (see engine.CheckIdentity).
func (s *Store) CheckIdentity() error { return s.e.CheckIdentity() }

// Backup writes a consistent copy of the database to w: one bbolt file holding
// everything, the archived history included (in its archive buckets), which Open
// reads as it is and whose history a writer then moves to an archive file of its
// own. It is safe while the daemon runs and writes: the copy is made from one read
// transaction of the database file (and one of the archive file, begun after it),
// key by key into a temporary file beside the database (storage/kv.Copy), then
// written to w. It returns the bytes written.
//
// A copy of the database file alone (bbolt's Tx.WriteTo) would not do: the archived
// history is in the archive file, and a restored copy beside a later archive file
// would show history the restored database never wrote.
func (s *Store) Backup(ctx context.Context, w io.Writer) (int64, error) {
	// The copy is made beside w when w is a named file (billingd db backup writes a
	// temporary file beside its output): the database's own directory may not be
	// writable by whoever backs it up (billingd-backup.service may write only its
	// backup directory).
	dir := filepath.Dir(s.e.path)
	if f, ok := w.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode().IsRegular() {
			dir = filepath.Dir(f.Name())
		}
	}
	f, size, err := s.copyFile(ctx, dir)
	if err != nil {
		return 0, fmt.Errorf("backup: %w", err)
	}
	defer f.Close()
	n, err := io.Copy(w, io.LimitReader(f, size))
	if err != nil {
		return n, fmt.Errorf("backup: %w", err)
	}
	return n, nil
}

// Snapshot writes a consistent copy of the database (as Backup writes it) to a
// temporary file beside it and returns that file, open and rewound, with its size.
// The file has no name any more (it is removed once open), so it disappears when
// closed. The read transactions last only as long as the local copy, not as long as
// whoever reads the snapshot.
func (s *Store) Snapshot(ctx context.Context) (*os.File, int64, error) {
	f, n, err := s.copyFile(ctx, filepath.Dir(s.e.path))
	if err != nil {
		return nil, 0, fmt.Errorf("snapshot: %w", err)
	}
	return f, n, nil
}

// backupDirPrefix names the temporary directories of copyFile for the database at
// path: .<name>.backup-<random>, beside it.
func backupDirPrefix(path string) string { return "." + filepath.Base(path) + ".backup-" }

// removeStaleCopies removes what copies of the database at path (backups,
// compactions at start) left behind when the process stopped during one (a writer
// holds the path's lock, so no copy of this database is under way).
// A compaction makes its copy beside the file a symbolic link at path names, so
// that directory is looked in too. Names are matched as prefixes, not as glob
// patterns (a path may hold '[' or '*').
func removeStaleCopies(path string, log *slog.Logger) {
	dirs := []string{filepath.Dir(path)}
	if real, err := filepath.EvalSymlinks(path); err == nil && filepath.Dir(real) != dirs[0] {
		dirs = append(dirs, filepath.Dir(real))
	}
	for _, dir := range dirs {
		entries, _ := os.ReadDir(dir)
		for _, e := range entries {
			if !e.IsDir() || !(strings.HasPrefix(e.Name(), backupDirPrefix(path)) || strings.HasPrefix(e.Name(), compactDirPrefix(path))) {
				continue
			}
			d := filepath.Join(dir, e.Name())
			if err := os.RemoveAll(d); err != nil {
				log.Warn("could not remove what an interrupted backup or compaction left", "path", d, "err", err)
			}
		}
	}
}

// copyFile writes Backup's copy into a new file in a temporary directory in the
// directory in, removes the directory, and returns the file open at its start with
// its size (cut at the high-water mark: bbolt grows a file ahead of use).
func (s *Store) copyFile(ctx context.Context, in string) (*os.File, int64, error) {
	db := s.e
	dir, err := os.MkdirTemp(in, backupDirPrefix(db.path)+"*")
	if err != nil {
		return nil, 0, err
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "copy.db")
	dst, err := openEngine(path, Options{NoSync: true, NoArchiveFile: true, Timeout: time.Second, Logger: db.log})
	if err != nil {
		return nil, 0, err
	}
	dst.fill = 1 // keys arrive in order: full pages
	// The copy reads every page of both files through their mappings: give the
	// pages back as it goes (as Verify does), so that a daemon asked for a backup
	// does not come to map its whole store.
	stopDB, stopDst := db.releaseEvery(5*time.Millisecond), dst.releaseEvery(5*time.Millisecond)
	_, err = kv.Copy(ctx, dst, db, storage.Buckets, nil)
	stopDB()
	stopDst()
	var used int64
	if err == nil {
		err = dst.view(func(tx *bbolt.Tx) error {
			used = tx.Size()
			return nil
		})
	}
	if cerr := dst.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, 0, err
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return nil, 0, err
	}
	if err := f.Truncate(used); err != nil {
		f.Close()
		return nil, 0, err
	}
	return f, used, nil
}
