package bolt

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	bbolt "go.etcd.io/bbolt"

	"github.com/klavi-billing/billingd/storage/kv"
)

// The archive file: archived history in a bbolt file of its own, <path>.archive.
//
// storage keeps settled attempts and older events in buckets of their own, archive
// and event_archive (storage/archive.go), so that the live buckets hold only what
// can still change. In one file that is not enough: a year of copy-on-write commits
// spreads the live pages among the archived ones (bbolt hands out any free page),
// and every page fault of a due scan maps up to 16 neighbouring pages of the page
// cache (Linux's fault-around), which are then history. A due scan of a store with
// a year of history mapped 3.6 times the memory of a new store's, and billed at 0.90
// of its rate (docs/BENCHMARKS.md, "Issue 13, fifth pass"). Three more buckets grow
// with history without the due scan reading them: dates (the ledger's index, an
// entry per attempt), feed and feed_ids (every published event).
//
// So this engine keeps those five buckets (layers) in a second file, in two levels:
//
//   - In the database file, each is a stage: storage's writes to it land there, in
//     the same transaction as the rest of the change (a move into the archive stays
//     one atomic write). A delete of a key the archive file holds also writes a
//     tombstone (bucket <name>_deleted).
//   - A background drain copies the staged records and tombstones into the archive
//     file in one commit (fsync), and only then removes them from the database file
//     in a second: a record the change wrote again meanwhile stays staged, and one it
//     deleted meanwhile gets a tombstone. A crash between the two commits leaves
//     records in both files with the same value, which the next drain settles.
//   - A read looks in the stage first, then (unless a tombstone hides the key) in the
//     archive file, through a read transaction of the archive file begun at the
//     transaction's first read there. A drain does not commit to the archive file
//     while a View begun before it read the stages is open (waitViews), and a write
//     transaction holds off its second commit: every transaction sees a record a
//     drain or a change moves once, never in both files or in neither. Cursors
//     merge the two levels in key order, the stage winning.
//
// The hot path does not read these buckets (storage reads the archive only for
// attempts that are not pinned; a submission puts a dates entry, which is staged;
// only an attempt whose date changes deletes its old entry, which looks in the
// archive file for a tombstone), so the due scan reads the database file alone, and the drain writes what it
// staged to the archive file in the background, a delay after it was written.
//
// The two files are bound by an identifier: the database file records it (bucket
// archive_file, key "id", written before the archive file is created) and, once the
// first record is drained, that the archive file is in use (key "used"); the archive
// file records the same identifier (bucket meta, key "of"). Open refuses an archive
// file of another identifier, or beside a database file that records none (a
// restored backup: Backup writes one file holding everything), and a missing
// archive file that is in use (its history would be lost).

// ArchiveSuffix names the archive file beside a database file: <path>.archive.
const ArchiveSuffix = ".archive"

// ArchivePath returns the archive file of the database at path.
func ArchivePath(path string) string { return path + ArchiveSuffix }

// ErrArchiveMismatch: the archive file beside a database file belongs to another
// database (or the database file records none). Nothing was opened or written. It
// is an ErrNotBillingd (the pair is not one database: exit 3), but does not say
// so: both files are billingd's.
var ErrArchiveMismatch error = pairError("the archive file belongs to another database")

// ErrArchiveMissing: the archive file of a database whose history was moved there
// is missing (or empty). It is an ErrCorrupt (the database is incomplete).
var ErrArchiveMissing error = pairError("the archive file is missing")

// pairError is an error of the pair of files, an ErrNotBillingd or ErrCorrupt
// without their words.
type pairError string

func (e pairError) Error() string { return string(e) }

func (e pairError) Is(target error) bool {
	switch e {
	case "the archive file belongs to another database":
		return target == ErrNotBillingd
	case "the archive file is missing":
		return target == ErrCorrupt
	}
	return false
}

// A layer is one of the buckets kept in the archive file, under its name: staged in
// the database file under its name, with tombstones in gone.
type layer struct{ name, gone []byte }

var layers = [...]layer{
	{name: []byte("archive"), gone: []byte("archive_deleted")},
	{name: []byte("event_archive"), gone: []byte("event_archive_deleted")},
	{name: []byte("dates"), gone: []byte("dates_deleted")},
	{name: []byte("feed"), gone: []byte("feed_deleted")},
	{name: []byte("feed_ids"), gone: []byte("feed_ids_deleted")},
}

var (
	// bucketArchiveFile, in the database file: keyID and keyUsed.
	bucketArchiveFile = []byte("archive_file")
	// bucketArchiveMeta, in the archive file: keyOf.
	bucketArchiveMeta = []byte("meta")
	keyID             = []byte("id")
	keyUsed           = []byte("used")
	keyOf             = []byte("of")
)

// engineBuckets are the database file's buckets of this engine's own, outside
// storage's layout.
var engineBuckets = func() [][]byte {
	bs := [][]byte{bucketArchiveFile}
	for _, l := range layers {
		bs = append(bs, l.gone)
	}
	return bs
}()

// layerOf returns the index of the layer named name, or -1.
func layerOf(name []byte) int {
	for i := range layers {
		if string(layers[i].name) == string(name) {
			return i
		}
	}
	return -1
}

// drainChunk bounds the records one drain moves (two commits).
const drainChunk = 4096

// stageLimit bounds the records staged in the database file: past it, a write
// that stages more wakes the drain and waits for it, up to backlogWait
// (drainBacklog). Without a bound, a
// burst faster than the drain (a month of history written at once, the outbox of
// a billing day published) grows the database file by what it staged, and the
// pages freed once drained stay in it, scattered among the live ones: a store
// built that way kept 1.9 GB free in a 2.3 GB database file.
const stageLimit = 4 * drainChunk

// backlogWait bounds how long a write waits for the drain past stageLimit.
const backlogWait = time.Second

// archiveFile is the open archive file and its drain.
type archiveFile struct {
	path     string
	db       *bbolt.DB
	file     *os.File // bbolt's open file (bbolt closes it), read by checkPages
	readOnly bool
	fid      fileID
	hasFID   bool
	// used: the database file records that records were drained here.
	used atomic.Bool
	log  *slog.Logger
	// delay is the wait between a write to a stage and the drain that follows.
	delay time.Duration
	// backlog is how long a write past stageLimit waits for the drain (backlogWait).
	backlog time.Duration

	kick chan struct{}
	// urgent cuts the delay short: a write found the stages past stageLimit.
	urgent chan struct{}
	stop   chan struct{}
	done   chan struct{}
	// mu makes drains one at a time.
	mu sync.Mutex
	// views counts the Views open in each of two epochs; a drain waits, before it
	// commits to the archive file, until every View begun before it read the
	// stages has ended (waitViews).
	viewMu    sync.Mutex
	viewCond  *sync.Cond
	viewEpoch uint64
	viewsOpen [2]int
	// heldSince is when the drain began waiting in waitViews for older Views
	// (UnixNano), 0 when it is not waiting. Held longer than heldGrace (by a backup),
	// it cannot shorten the stages, and a write past stageLimit does not wait for it
	// (drainBacklog).
	heldSince atomic.Int64
	// moved counts the records and tombstones drained.
	moved atomic.Int64
	// staged counts the records and tombstones staged since the last drain that
	// emptied the stages (about: a batched change may count twice).
	staged atomic.Int64
	// evictedAt is when a drain last evicted the free pages (under mu).
	evictedAt time.Time

	closeOnce sync.Once
	stopOnce  sync.Once
	closeErr  error

	// inFlight holds the keys a drain has read from each stage and not yet
	// settled (flying: any), under flightMu.
	flightMu sync.Mutex
	inFlight [len(layers)]map[string]struct{}
	flying   atomic.Bool
}

// enterView registers a View about to begin its database file's transaction, and
// returns its epoch for exitView.
func (a *archiveFile) enterView() uint64 {
	a.viewMu.Lock()
	e := a.viewEpoch
	a.viewsOpen[e&1]++
	a.viewMu.Unlock()
	return e
}

// exitView registers the end of a View of epoch e.
func (a *archiveFile) exitView(e uint64) {
	a.viewMu.Lock()
	a.viewsOpen[e&1]--
	if a.viewsOpen[e&1] == 0 {
		a.viewCond.Broadcast()
	}
	a.viewMu.Unlock()
}

// waitViews waits until every View registered before it was called has ended; Views
// that begin meanwhile are not waited for (a new epoch). A View's archive file
// transaction begins at its first read there, possibly long after its database
// file's: were a drain to commit in between, the View could see in the archive file
// records moved by changes its database snapshot does not have, and a record moving
// between a live bucket and the archive would be in both, or in neither (a backup,
// one long View, could lose it). After the wait, every open View began after the
// stages were read, so its snapshot holds the changes this drain moves. A drain
// waits for a long View (a backup), and nothing waits for a drain: Views never
// block on it. Drains are one at a time (mu), so one wait at a time.
func (a *archiveFile) waitViews() {
	a.viewMu.Lock()
	old := a.viewEpoch
	a.viewEpoch++
	if a.viewsOpen[old&1] > 0 {
		a.heldSince.Store(time.Now().UnixNano())
		for a.viewsOpen[old&1] > 0 {
			a.viewCond.Wait()
		}
		a.heldSince.Store(0)
	}
	a.viewMu.Unlock()
}

// flies reports whether a drain is moving key of layer i.
func (a *archiveFile) flies(i int, key []byte) bool {
	if !a.flying.Load() {
		return false
	}
	a.flightMu.Lock()
	defer a.flightMu.Unlock()
	_, ok := a.inFlight[i][string(key)]
	return ok
}

// kickDrain asks the drain to run (without waiting).
func (a *archiveFile) kickDrain() {
	select {
	case a.kick <- struct{}{}:
	default:
	}
}

// archiveState reads what the database file records of its archive file (its
// identifier, whether records were drained there) and whether the archive file
// exists, and refuses the pairs Open must refuse: a stray archive file beside a
// database file that records none, a missing archive file that holds history, and
// Options.NoArchiveFile for a database whose history is in one. It writes nothing,
// so Open can refuse before it lays anything out.
func (db *engine) archiveState(opts Options) (id []byte, used, exists bool, err error) {
	apath := ArchivePath(db.path)
	if err := db.view(func(tx *bbolt.Tx) error {
		if b := tx.Bucket(bucketArchiveFile); b != nil {
			id = bytes.Clone(b.Get(keyID))
			used = b.Get(keyUsed) != nil
		}
		return nil
	}); err != nil {
		return nil, false, false, err
	}
	fi, err := os.Stat(apath)
	exists = err == nil
	switch {
	case err != nil && !errors.Is(err, os.ErrNotExist):
		return nil, false, false, fmt.Errorf("archive file %s: %w", apath, err)
	case opts.NoArchiveFile && used:
		return nil, false, false, fmt.Errorf("%s keeps its history in the archive file %s: it cannot be opened without it", db.path, apath)
	case opts.NoArchiveFile:
		return id, used, exists, nil
	case exists && fi.IsDir():
		return nil, false, false, fmt.Errorf("archive file %s: %w", apath, syscall.EISDIR)
	case exists && id == nil:
		return nil, false, false, fmt.Errorf("%w: %s records no archive file, and %s is beside it. A restored backup or a copied database holds its archived history in itself: move %s away (keep it until the restored database is checked)",
			ErrArchiveMismatch, db.path, apath, apath)
	case !exists && used:
		hint := ""
		// The archive file is looked for beside the path, not beside the file a
		// symbolic link there names.
		if real, err := filepath.EvalSymlinks(db.path); err == nil && real != db.path {
			if _, err := os.Stat(ArchivePath(real)); err == nil {
				hint = fmt.Sprintf(" (%s is a symbolic link to %s, and %s is beside that: link %s to it too)", db.path, real, ArchivePath(real), apath)
			}
		}
		return nil, false, false, fmt.Errorf("%w: %s holds the settled attempts and older events moved out of %s%s. Put it back beside the database (a backup restored instead would lose what was written since it)",
			ErrArchiveMissing, apath, db.path, hint)
	}
	return id, used, exists, nil
}

// openArchive opens (creating if needed) the archive file of the database, after
// prepare. Read-only, a database with nothing in an archive file yet is read
// alone.
func (db *engine) openArchive(opts Options) error {
	apath := ArchivePath(db.path)
	id, used, exists, err := db.archiveState(opts)
	if err != nil {
		return err
	}
	if !exists && opts.ReadOnly {
		return nil // nothing was ever moved there: the database file holds it all
	}
	if id == nil {
		// The database file first: a crash then leaves an identifier without a file,
		// never a file the database does not know.
		id = newArchiveID()
		if err := db.updateRaw(func(tx *bbolt.Tx) error {
			return tx.Bucket(bucketArchiveFile).Put(keyID, id)
		}); err != nil {
			return fmt.Errorf("archive file %s: %w", apath, err)
		}
	}
	if exists {
		if err := precheck(apath, opts.Timeout); err != nil {
			if fi, serr := os.Stat(apath); used && serr == nil && fi.Size() == 0 {
				return fmt.Errorf("%w: %s is empty (0 bytes), and it held the settled attempts and older events moved out of %s: a copy that went wrong? Put the archive file back beside the database (a backup restored instead would lose what was written since it)",
					ErrArchiveMissing, apath, db.path)
			}
			if used || opts.ReadOnly {
				return fmt.Errorf("archive file %s: %w", apath, err)
			}
			// Nothing was ever drained into it: what a crash left while it was
			// first made. It is made again.
			db.log.Warn("archive file unreadable and never used: made again", "path", apath, "err", err)
			if err := os.Remove(apath); err != nil {
				return fmt.Errorf("archive file %s: %w", apath, err)
			}
			exists = false
		}
	}
	adb, file, err := openBolt(apath, &bbolt.Options{
		Timeout:         opts.Timeout,
		ReadOnly:        opts.ReadOnly,
		NoSync:          opts.NoSync,
		FreelistType:    bbolt.FreelistMapType,
		PreLoadFreelist: true,
	})
	if err != nil {
		return fmt.Errorf("archive file %s: %w", apath, err)
	}
	a := &archiveFile{path: apath, db: adb, file: file, readOnly: opts.ReadOnly, log: db.log, delay: opts.ArchiveDelay,
		backlog: backlogWait, kick: make(chan struct{}, 1), urgent: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	for i := range a.inFlight {
		a.inFlight[i] = map[string]struct{}{}
	}
	a.viewCond = sync.NewCond(&a.viewMu)
	a.used.Store(used)
	if a.delay <= 0 {
		a.delay = time.Second
	}
	if file != nil {
		if st, err := file.Stat(); err == nil {
			a.fid, a.hasFID = idOf(st)
		}
	}
	usable, err := a.bind(id, used)
	if err != nil || !usable {
		_ = adb.Close()
		return err
	}
	if !exists {
		// The new file's name must be durable before anything is drained into it.
		if err := syncDir(filepath.Dir(apath)); err != nil {
			_ = adb.Close()
			return fmt.Errorf("archive file %s: %w", apath, err)
		}
	}
	db.arch = a
	if !opts.ReadOnly {
		go a.loop(db)
		a.kickDrain() // what a crash or a restored single file left staged
	}
	return nil
}

// bind checks the archive file's identifier against the database file's, and lays
// out a new archive file. Read-only, a file a crash left without its layout (so
// holding no record) is not usable: the database file is read alone.
func (a *archiveFile) bind(id []byte, used bool) (usable bool, err error) {
	var of []byte
	var missing bool
	if err := guard(func() error {
		return a.db.View(func(tx *bbolt.Tx) error {
			if b := tx.Bucket(bucketArchiveMeta); b != nil {
				of = bytes.Clone(b.Get(keyOf))
			}
			for _, l := range layers {
				missing = missing || tx.Bucket(l.name) == nil
			}
			return nil
		})
	}); err != nil {
		return false, fmt.Errorf("archive file %s: %w", a.path, err)
	}
	switch {
	case of != nil && !bytes.Equal(of, id):
		return false, fmt.Errorf("%w: %s was made for the database %s, not for this one (%s): a file copied from another installation? Put this database's own archive file beside it",
			ErrArchiveMismatch, a.path, hex.EncodeToString(of), hex.EncodeToString(id))
	case of == nil && used:
		return false, fmt.Errorf("%w: %s records no database, and the database file records that its archived history was moved there: it was replaced. Restore this database's archive file",
			ErrArchiveMismatch, a.path)
	case of != nil && !missing:
		return true, nil
	case a.readOnly:
		return false, nil
	}
	// A new file, or one whose layout a crash interrupted before any record.
	return true, guard(func() error {
		return a.db.Update(func(tx *bbolt.Tx) error {
			m, err := tx.CreateBucketIfNotExists(bucketArchiveMeta)
			if err != nil {
				return err
			}
			if err := m.Put(keyOf, id); err != nil {
				return err
			}
			for _, l := range layers {
				if _, err := tx.CreateBucketIfNotExists(l.name); err != nil {
					return err
				}
			}
			return nil
		})
	})
}

// syncDir makes the entries of directory dir durable (fsync).
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}

func newArchiveID() []byte {
	id := make([]byte, 16)
	_, _ = rand.Read(id)
	return id
}

// checkIdentity returns ErrReplaced when the archive path no longer names the open
// archive file.
func (a *archiveFile) checkIdentity() error {
	if !a.hasFID {
		return nil
	}
	fi, err := os.Stat(a.path)
	if err == nil {
		if id, ok := idOf(fi); ok && id == a.fid {
			return nil
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("check %s: %w", a.path, err)
	}
	return fmt.Errorf("%w: %s", ErrReplaced, a.path)
}

// close stops the drain (letting a drain under way finish) and closes the file. A
// second close does nothing.
func (a *archiveFile) close() error {
	a.closeOnce.Do(func() {
		a.stopDrain()
		a.closeErr = a.db.Close()
	})
	return a.closeErr
}

// stopDrain stops the background drain and waits for it (a drain under way
// finishes). A second call does nothing.
func (a *archiveFile) stopDrain() {
	a.stopOnce.Do(func() {
		if !a.readOnly {
			close(a.stop)
			<-a.done
		}
	})
}

// loop drains the stages after each kick, a delay later (so that one drain takes
// what many commits staged), until they are empty. A failed drain is tried again
// after a pause growing to a minute; the records stay staged meanwhile, and are
// read there.
func (a *archiveFile) loop(db *engine) {
	defer close(a.done)
	pause := time.Second
	// wait waits d, or less when cut (nil: never); false when the drain stops.
	wait := func(d time.Duration, cut <-chan struct{}) bool {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-a.stop:
			return false
		case <-t.C:
			return true
		case <-cut:
			return true
		}
	}
	for {
		select {
		case <-a.stop:
			return
		case <-a.kick:
		}
		if !wait(a.delay, a.urgent) {
			return
		}
		for {
			n, err := db.drainArchive(drainChunk)
			if err != nil {
				a.log.Warn("archive file: drain failed; the records stay in the database file", "path", a.path, "retry_in", pause.String(), "err", err)
				if !wait(pause, nil) {
					return
				}
				pause = min(2*pause, time.Minute)
				a.kickDrain()
				break
			}
			pause = time.Second
			if n < drainChunk {
				break
			}
			select {
			case <-a.stop:
				return
			default:
			}
		}
	}
}

// DrainArchive moves what the stages hold into the archive file now, until they are
// empty, and returns how many records and tombstones it moved. The daemon's drain
// does the same in the background; tests and tools call it to be sure.
func (s *Store) DrainArchive() (int, error) {
	total := 0
	for {
		n, err := s.e.drainArchive(drainChunk)
		total += n
		if err != nil || n < drainChunk {
			return total, err
		}
	}
}

// ArchiveDrained returns how many records and tombstones the drain has moved to
// the archive file since Open.
func (s *Store) ArchiveDrained() int64 {
	if s.e.arch == nil {
		return 0
	}
	return s.e.arch.moved.Load()
}

// drainArchive moves up to max staged records and tombstones into the archive
// file: one commit there, then one in the database file (see the file's comment).
func (db *engine) drainArchive(max int) (int, error) {
	a := db.arch
	if a == nil || a.readOnly {
		return 0, nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	type rec struct {
		layer int
		k, v  []byte
		gone  bool
	}
	var recs []rec
	var staged0 int64
	// Read the stages holding the write lock (a write transaction rolled back), and
	// mark what is read as in flight before letting go: a change committed before
	// is in what is read, and one after sees the marks, so a record it deletes gets
	// a tombstone even while the archive file does not have it yet. Without the
	// marks, a record deleted between this read and the archive file's commit would
	// be back in the archive file, visible, until the database file's commit.
	if err := guard(func() error {
		tx, err := db.bolt.Begin(true)
		if err != nil {
			return err
		}
		defer func() { _ = tx.Rollback() }()
		staged0 = a.staged.Load()
		for i, l := range layers {
			c := tx.Bucket(l.name).Cursor()
			for k, v := c.First(); k != nil && len(recs) < max; k, v = c.Next() {
				recs = append(recs, rec{layer: i, k: bytes.Clone(k), v: bytes.Clone(v)})
			}
			if g := tx.Bucket(l.gone); g != nil {
				c := g.Cursor()
				for k, _ := c.First(); k != nil && len(recs) < max; k, _ = c.Next() {
					recs = append(recs, rec{layer: i, k: bytes.Clone(k), gone: true})
				}
			}
		}
		if len(recs) > 0 {
			a.flightMu.Lock()
			for _, r := range recs {
				if !r.gone {
					a.inFlight[r.layer][string(r.k)] = struct{}{}
				}
			}
			a.flying.Store(true)
			a.flightMu.Unlock()
		}
		return nil
	}); err != nil || len(recs) == 0 {
		return 0, err
	}
	defer func() {
		a.flightMu.Lock()
		for i := range a.inFlight {
			clear(a.inFlight[i])
		}
		a.flying.Store(false)
		a.flightMu.Unlock()
	}()
	if db.drainHook != nil {
		if err := db.drainHook(1); err != nil {
			return 0, err
		}
	}
	if err := a.checkIdentity(); err != nil {
		return 0, err
	}
	if !a.used.Load() {
		if err := db.updateRaw(func(tx *bbolt.Tx) error {
			return tx.Bucket(bucketArchiveFile).Put(keyUsed, []byte{1})
		}); err != nil {
			return 0, err
		}
		a.used.Store(true)
	}
	// No View begun before the stages were read may see this commit: its database
	// file snapshot may lack the changes whose records it moves (see waitViews).
	a.waitViews()
	if err := guard(func() error {
		return a.db.Update(func(tx *bbolt.Tx) error {
			for _, r := range recs {
				b := tx.Bucket(layers[r.layer].name)
				var err error
				if r.gone {
					err = b.Delete(r.k)
				} else {
					err = b.Put(r.k, r.v)
				}
				if err != nil {
					return err
				}
			}
			return nil
		})
	}); err != nil {
		return 0, fmt.Errorf("archive file %s: %w", a.path, err)
	}
	if db.drainHook != nil {
		if err := db.drainHook(2); err != nil {
			return 0, err
		}
	}
	if err := db.updateRaw(func(tx *bbolt.Tx) error {
		for _, r := range recs {
			l := layers[r.layer]
			stage, gone := tx.Bucket(l.name), tx.Bucket(l.gone)
			if r.gone {
				if err := gone.Delete(r.k); err != nil {
					return err
				}
				continue
			}
			cur := stage.Get(r.k)
			switch {
			case cur == nil:
				// Deleted since it was read: the copy just written must stay hidden.
				if gone.Get(r.k) == nil {
					if err := gone.Put(r.k, []byte{}); err != nil {
						return err
					}
				}
			case bytes.Equal(cur, r.v):
				if err := stage.Delete(r.k); err != nil {
					return err
				}
			}
			// Written again since: it stays staged, and the next drain takes it.
		}
		return nil
	}); err != nil {
		return 0, err
	}
	a.moved.Add(int64(len(recs)))
	if now := time.Now(); now.Sub(a.evictedAt) >= evictEvery {
		a.evictedAt = now
		db.evictFree()
	}
	if len(recs) < max {
		// The stages were emptied when read: what was staged since (during a hold, a
		// backup's worth) still counts.
		a.staged.Add(-staged0)
	} else {
		a.staged.Add(-int64(len(recs)))
	}
	return len(recs), nil
}

// drainBacklog, on the writer's goroutine, makes a write that finds more than
// stageLimit records staged wait for the drain, up to backlogWait: backpressure on
// a burst faster than the drain. It does not drain itself: a drain waits for the
// Views open before it (waitViews), and a write may be made inside one. Nor does it
// wait once the drain has been held by such a View for heldGrace (a backup, a long
// report): the wait could not shorten the stages, and would slow every write of a
// billing day by up to backlogWait for as long as the backup runs; the stages grow
// past the bound meanwhile, by what is written during the View, and drain after it.
// The short reads always open under load hold a drain for less, and are waited out.
func (db *engine) drainBacklog() {
	a := db.arch
	if a == nil || a.readOnly || a.staged.Load() <= stageLimit {
		return
	}
	urge := func() {
		a.kickDrain()
		select {
		case a.urgent <- struct{}{}:
		default:
		}
	}
	urge()
	deadline := time.Now().Add(a.backlog)
	for a.staged.Load() > stageLimit/2 && time.Now().Before(deadline) && !a.heldLong() {
		urge()
		select {
		case <-a.stop:
			return
		case <-time.After(time.Millisecond):
		}
	}
}

// heldGrace: a drain held this long is held by a long View (a backup), not by the
// short reads always open under load, which a write past stageLimit waits out.
const heldGrace = 100 * time.Millisecond

// heldLong reports whether the drain has waited in waitViews for heldGrace or more.
func (a *archiveFile) heldLong() bool {
	h := a.heldSince.Load()
	return h != 0 && time.Since(time.Unix(0, h)) >= heldGrace
}

// updateRaw is a write transaction of bbolt's own, after the identity check, under
// guard.
func (db *engine) updateRaw(fn func(tx *bbolt.Tx) error) error {
	return guard(func() error {
		return db.bolt.Update(func(tx *bbolt.Tx) error {
			if err := db.checkWrite(tx); err != nil {
				return err
			}
			return fn(tx)
		})
	})
}

// archiveTx is the transaction's read transaction of the archive file, begun at its
// first use (after the database file's transaction began) and ended with it.
func (t *tx) archiveTx() *bbolt.Tx {
	if t.atx == nil {
		atx, err := t.e.arch.db.Begin(false)
		if err != nil {
			panic("bolt: archive file " + t.e.arch.path + ": " + err.Error())
		}
		t.atx = atx
	}
	return t.atx
}

// end ends the archive file's read transaction, if one was begun.
func (t *tx) end() {
	if t.atx != nil {
		_ = t.atx.Rollback()
		t.atx = nil
	}
}

// layered is one of the layers' buckets seen through both levels.
type layered struct {
	t *tx
	i int
	// stage is the database file's bucket; nil in a read-only file that predates it.
	stage *bucket
	gone  *bbolt.Bucket // nil in a read-only file that has none
	// noGone: gone held no key when the transaction first looked.
	noGone bool
	arch   *bucket
}

var _ kv.Bucket = (*layered)(nil)

func (t *tx) layered(i int, stage *bucket) *layered {
	l := &layered{t: t, i: i, stage: stage, gone: t.t.Bucket(layers[i].gone)}
	if l.gone == nil {
		l.noGone = true
	} else if k, _ := l.gone.Cursor().First(); k == nil && !t.t.Writable() {
		l.noGone = true // a read transaction's view cannot change
	}
	return l
}

// archive is the archive file's bucket.
func (l *layered) archive() *bucket {
	if l.arch == nil {
		name := layers[l.i].name
		b := l.t.archiveTx().Bucket(name)
		if b == nil {
			panic("bolt: archive file " + l.t.e.arch.path + " has no bucket " + string(name))
		}
		l.arch = &bucket{b: b, name: name}
	}
	return l.arch
}

// hidden reports whether a tombstone hides key in the archive file.
func (l *layered) hidden(key []byte) bool {
	return !l.noGone && l.gone.Get(key) != nil
}

// Get returns the staged record, or the archive file's unless a tombstone hides it.
func (l *layered) Get(key []byte) []byte {
	if l.stage != nil {
		if v := l.stage.Get(key); v != nil {
			return v
		}
	}
	if l.hidden(key) {
		return nil
	}
	return l.archive().Get(key)
}

// Put stages the record (and lifts a tombstone of its key).
func (l *layered) Put(key, value []byte) error {
	if l.stage == nil {
		return empty{}.Put(key, value)
	}
	if err := l.stage.Put(key, value); err != nil {
		return err
	}
	if l.gone != nil && l.gone.Get(key) != nil {
		if err := l.gone.Delete(key); err != nil {
			return err
		}
	}
	l.t.e.arch.staged.Add(1)
	l.t.e.arch.kickDrain()
	return nil
}

// Delete removes the staged record and hides the archive file's with a tombstone
// (also when a drain is moving the record there).
func (l *layered) Delete(key []byte) error {
	if l.stage == nil {
		return empty{}.Delete(key)
	}
	if err := l.stage.Delete(key); err != nil {
		return err
	}
	if l.gone == nil || l.gone.Get(key) != nil {
		return nil
	}
	if !l.t.e.arch.flies(l.i, key) && l.archive().Get(key) == nil {
		return nil
	}
	l.noGone = false
	if err := l.gone.Put(key, []byte{}); err != nil {
		return err
	}
	l.t.e.arch.staged.Add(1)
	l.t.e.arch.kickDrain()
	return nil
}

func (l *layered) Cursor() kv.Cursor {
	c := &layeredCursor{l: l, a: l.archive().b.Cursor()}
	if l.stage != nil {
		c.s = l.stage.b.Cursor()
	}
	return c
}

func (l *layered) ForEach(fn func(k, v []byte) error) error {
	c := l.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if err := fn(k, v); err != nil {
			return err
		}
	}
	return nil
}

// Last returns the greater of the two levels' last keys with prefix.
func (l *layered) Last(prefix []byte) (k, v []byte) {
	var sk, sv []byte
	if l.stage != nil {
		sk, sv = l.stage.Last(prefix)
	}
	c := l.archive().b.Cursor()
	ak, av := seekLast(c, prefix)
	for ak != nil && bytes.HasPrefix(ak, prefix) && l.hidden(ak) {
		ak, av = c.Prev()
	}
	if ak == nil || !bytes.HasPrefix(ak, prefix) || sk != nil && bytes.Compare(sk, ak) >= 0 {
		return sk, sv
	}
	return ak, av
}

// layeredCursor walks both levels in key order; a key in both is the stage's.
type layeredCursor struct {
	l *layered
	// s is the stage's cursor (nil without a stage), a the archive file's.
	s, a           *bbolt.Cursor
	sk, sv, ak, av []byte
}

func (c *layeredCursor) First() (k, v []byte) {
	if c.s != nil {
		c.sk, c.sv = c.s.First()
	}
	c.ak, c.av = c.skip(c.a.First())
	return c.current()
}

func (c *layeredCursor) Seek(seek []byte) (k, v []byte) {
	if c.s != nil {
		c.sk, c.sv = c.s.Seek(seek)
	}
	c.ak, c.av = c.skip(c.a.Seek(seek))
	return c.current()
}

func (c *layeredCursor) Next() (k, v []byte) {
	switch d := c.order(); {
	case c.sk == nil && c.ak == nil:
		return nil, nil
	case d < 0:
		c.sk, c.sv = c.s.Next()
	case d > 0:
		c.ak, c.av = c.skip(c.a.Next())
	default:
		c.sk, c.sv = c.s.Next()
		c.ak, c.av = c.skip(c.a.Next())
	}
	return c.current()
}

// order compares the two levels' current keys, an end being past every key.
func (c *layeredCursor) order() int {
	switch {
	case c.sk == nil && c.ak == nil:
		return 0
	case c.sk == nil:
		return 1
	case c.ak == nil:
		return -1
	}
	return bytes.Compare(c.sk, c.ak)
}

func (c *layeredCursor) current() (k, v []byte) {
	if c.order() <= 0 {
		return c.sk, c.sv
	}
	return c.ak, c.av
}

// skip moves the archive file's cursor past keys a tombstone hides.
func (c *layeredCursor) skip(k, v []byte) ([]byte, []byte) {
	for k != nil && c.l.hidden(k) {
		k, v = c.a.Next()
	}
	return k, v
}
