package bolt

import (
	"encoding/binary"
	"errors"
	"os"
	"time"

	bbolt "go.etcd.io/bbolt"
)

// A database file that has staged and drained many records, or was written commit
// by commit for a long time, keeps free pages scattered among its live ones. They
// were written, so the page cache holds them, and every page fault of a read maps
// up to 16 neighbouring cached pages of the file (Linux's fault-around): free pages
// among them count in the daemon's resident memory as if they were read. evictFree
// drops them from this process's mapping and from the page cache: a fault then maps
// only live neighbours. bbolt reuses a free page by writing it whole (pwrite), so
// nothing needs it cached.

// evictEvery bounds how often the drain evicts free pages.
const evictEvery = 5 * time.Second

// Page and meta layout of a bbolt file (go.etcd.io/bbolt/internal/common: Page,
// Meta), little-endian on every platform bbolt supports here.
const (
	pageHeaderSize   = 16
	metaMagic        = 0xED0CDAED
	freelistPageFlag = 0x10
	noFreelist       = ^uint64(0)
)

var errNoFreelist = errors.New("no free list to read")

// arrayFreelistMax is the most free pages a database file may list for this engine
// to keep its free list as bbolt's array, which hands out the lowest free pages
// first: the live pages then gather at the front of the file, and a page fault's
// neighbours (see above) are live pages rather than free ones or pages of history.
// On a store built with a year of history, a due scan's resident memory grew by
// 1.4 times a new store's instead of 2.2 times, at 0.96 of its rate instead of 0.76
// (5,000 consents; docs/BENCHMARKS.md, "Issue 13, sixth pass"). But the array costs
// a copy of the list at each allocation and release, so a file listing more (one
// that held its history before the archive file, until compacted) keeps bbolt's
// hash map.
const arrayFreelistMax = 1 << 16

// freelistType chooses the free list for the database file at path from the count
// its free list page holds (read from the file, before bbolt opens it).
func freelistType(path string) bbolt.FreelistType {
	f, err := os.Open(path)
	if err != nil {
		return bbolt.FreelistArrayType // a new file
	}
	defer f.Close()
	n, ok := freelistCount(f)
	if !ok || n > arrayFreelistMax {
		return bbolt.FreelistMapType
	}
	return bbolt.FreelistArrayType
}

// freelistCount reads how many pages the free list of the file's newest meta page
// lists; false when it cannot tell.
func freelistCount(f *os.File) (int, bool) {
	le := binary.LittleEndian
	buf := make([]byte, pageHeaderSize+64)
	var best, txid uint64
	ps := 0
	for i := range 2 {
		off := int64(0)
		if i == 1 {
			if ps == 0 {
				return 0, false
			}
			off = int64(ps)
		}
		if _, err := f.ReadAt(buf, off); err != nil {
			return 0, false
		}
		m := buf[pageHeaderSize:]
		if le.Uint32(m[0:]) != metaMagic {
			continue
		}
		if i == 0 {
			ps = int(le.Uint32(m[8:]))
			if ps < 1024 || ps > 1<<16 {
				return 0, false
			}
		}
		if t := le.Uint64(m[48:]); t >= txid {
			txid, best = t, le.Uint64(m[32:])
		}
	}
	if ps == 0 || best == noFreelist || best < 2 {
		return 0, false
	}
	hdr := make([]byte, pageHeaderSize+8)
	if _, err := f.ReadAt(hdr, int64(best)*int64(ps)); err != nil || le.Uint16(hdr[8:])&freelistPageFlag == 0 {
		return 0, false
	}
	n := uint64(le.Uint16(hdr[10:]))
	if n == 0xFFFF {
		n = le.Uint64(hdr[pageHeaderSize:])
	}
	return int(n), true
}

// freeRuns returns the free pages of the database file as runs (first page, pages),
// from the free list that the meta page of transaction tx points at, read from the
// file (pread, not the mapping). The transaction keeps that free list's pages from
// being reused while it is open. Pages at or past the high-water mark are left out.
func freeRuns(f *os.File, tx *bbolt.Tx, pageSize int) ([][2]uint64, error) {
	le := binary.LittleEndian
	want := uint64(tx.ID())
	limit := uint64(tx.Size()) / uint64(pageSize)
	fl := noFreelist
	meta := make([]byte, pageHeaderSize+64)
	for i := range 2 {
		if _, err := f.ReadAt(meta, int64(i*pageSize)); err != nil {
			return nil, err
		}
		m := meta[pageHeaderSize:]
		if le.Uint32(m[0:]) == metaMagic && le.Uint64(m[48:]) == want {
			fl = le.Uint64(m[32:])
		}
	}
	if fl == noFreelist || fl >= limit {
		return nil, errNoFreelist // a free list not kept in the file, or a meta rewritten since
	}
	hdr := make([]byte, pageHeaderSize+8)
	if _, err := f.ReadAt(hdr, int64(fl)*int64(pageSize)); err != nil {
		return nil, err
	}
	if le.Uint16(hdr[8:])&freelistPageFlag == 0 {
		return nil, errNoFreelist
	}
	n, start := uint64(le.Uint16(hdr[10:])), uint64(pageHeaderSize)
	if n == 0xFFFF {
		n, start = le.Uint64(hdr[pageHeaderSize:]), pageHeaderSize+8
	}
	size := (uint64(le.Uint32(hdr[12:])) + 1) * uint64(pageSize)
	if start+n*8 > size || fl+size/uint64(pageSize) > limit {
		return nil, errNoFreelist
	}
	buf := make([]byte, size)
	if _, err := f.ReadAt(buf, int64(fl)*int64(pageSize)); err != nil {
		return nil, err
	}
	var runs [][2]uint64
	for i := range n {
		id := le.Uint64(buf[start+8*i:])
		if id < 2 || id >= limit {
			continue
		}
		if k := len(runs) - 1; k >= 0 && runs[k][0]+runs[k][1] == id {
			runs[k][1]++
			continue
		}
		runs = append(runs, [2]uint64{id, 1})
	}
	return runs, nil
}

// evictFree drops the database file's free pages from the mapping and the page
// cache, and returns how many it dropped. It does nothing on a read-only open or
// where it cannot read the free list.
func (db *engine) evictFree() int {
	if db.file == nil || db.readOnly {
		return 0
	}
	dropped := 0
	_ = db.view(func(tx *bbolt.Tx) error {
		ps := db.bolt.Info().PageSize
		runs, err := freeRuns(db.file, tx, ps)
		if err != nil {
			return nil
		}
		data := db.bolt.Info().Data
		for _, r := range runs {
			dropPages(db.file, data, int64(r[0])*int64(ps), int64(r[1])*int64(ps))
			dropped += int(r[1])
		}
		return nil
	})
	db.evicted.Add(int64(dropped))
	return dropped
}
