package bolt

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"os"

	bbolt "go.etcd.io/bbolt"
)

// The structural check of a bbolt file, reading its pages with pread(2).
//
// bbolt's own check (Tx.Check) and a walk of every bucket through cursors read the
// pages through bbolt's mapping of the file. On a file whose live pages are
// scattered (a year of commits), each page fault maps the page's cached neighbours,
// up to a 2 MiB folio of other buckets' pages, and a walk of the whole file took the
// process's resident memory to 1.9 times what its due scan needs, even with the
// mapping released every millisecond (docs/BENCHMARKS.md, "Issue 13, eighth pass").
// Pages read with pread land in the page cache and a buffer of this walk's, never in
// the process's page tables: the walk's resident memory is its buffers and two
// bitmaps of the file's pages.
//
// checkPages checks what bbolt's Tx.Check checks, on the same snapshot (the meta
// page of a read transaction, which keeps every page it reaches from being reused
// while it is open), and a little more:
//   - every page reachable from the meta page (the root bucket, every bucket's
//     B+tree, the free list) lies below the high-water mark, carries its own page
//     number, is a branch or leaf page and is reached once;
//   - every element of a page lies inside the page, and the keys of each B+tree are
//     in strict order, within the range its parent's keys give each page;
//   - every page below the high-water mark is reached or listed free, and none is
//     both (or listed free twice).
//
// It counts the keys of each top-level bucket, those of its nested buckets included,
// as a walk of its cursors does. Layout: go.etcd.io/bbolt/internal/common (Page,
// Meta, branchPageElement, leafPageElement, InBucket), little-endian.

const (
	branchPageFlag = 0x01
	leafPageFlag   = 0x02
	bucketLeafFlag = 0x01
	// pageElementSize: a branch element (pos, ksize uint32; pgid uint64) and a leaf
	// element (flags, pos, ksize, vsize uint32) both take 16 bytes.
	pageElementSize = 16
	// bucketHeaderSize: InBucket (root pgid, sequence uint64).
	bucketHeaderSize = 16
	metaVersion      = 2
	// maxTreeDepth bounds the pages and nested buckets a walk descends through (its
	// recursion, and a page buffer for each level): billingd's files are a few
	// levels deep, bbolt sets no bound, and a damaged file cannot loop (a page is
	// walked once, and an inline bucket's page is smaller than its parent's).
	maxTreeDepth = 4096
)

// errMetaMoved: neither meta page holds the read transaction's meta any more (two
// commits since it began); the check takes a newer transaction.
var errMetaMoved = errors.New("the meta page of the check's transaction was rewritten")

// pageMeta is the part of a meta page the check reads.
type pageMeta struct {
	root, freelist, hwm, txid uint64
}

// readMeta returns the meta page of transaction txid, read from f (pread): the one
// of the two that holds txid and passes Meta.Validate (magic number, version,
// checksum), as bbolt skips a meta page that does not. bbolt validated it when the
// transaction began: when neither does now, a writer is rewriting it (two commits
// since), and the caller takes a newer transaction (errMetaMoved).
func readMeta(f *os.File, pageSize int, txid uint64) (pageMeta, error) {
	le := binary.LittleEndian
	buf := make([]byte, pageHeaderSize+64)
	for i := range 2 {
		if _, err := f.ReadAt(buf, int64(i*pageSize)); err != nil {
			return pageMeta{}, fmt.Errorf("meta page %d: %w", i, err)
		}
		m := buf[pageHeaderSize:]
		h := fnv.New64a()
		_, _ = h.Write(m[:56])
		if le.Uint64(m[48:]) != txid || le.Uint32(m[0:]) != metaMagic || le.Uint32(m[4:]) != metaVersion || le.Uint64(m[56:]) != h.Sum64() {
			continue
		}
		return pageMeta{root: le.Uint64(m[16:]), freelist: le.Uint64(m[32:]), hwm: le.Uint64(m[40:]), txid: txid}, nil
	}
	return pageMeta{}, errMetaMoved
}

// pageCheck is one walk of one file.
type pageCheck struct {
	f        *os.File
	ps       int
	meta     pageMeta
	reached  bitmap
	freed    bitmap
	bufs     [][]byte // one page buffer per depth of the walk
	problems []string
	prefix   string
	keys     int // keys counted under the current top-level bucket
	// visit, when not nil, is called for every bucket and key in the order of a
	// walk of the buckets' cursors, until the first problem or its first error
	// (err), which ends the walk.
	visit visitFn
	err   error
	path  [][]byte // the buckets from the root to the one being walked
}

// visitFn is called for each key of a bucket: path names the buckets from the root
// down to the one holding k, and v is k's value, or nil when k names a nested
// bucket, whose sequence is seq. path, k and v are valid only during the call.
type visitFn func(path [][]byte, k, v []byte, seq uint64) error

// see calls visit, unless the walk found a problem or visit failed. A panic in
// visit (in the bbolt file a copy writes) is its error, not a problem of the file
// walked.
func (p *pageCheck) see(k, v []byte, seq uint64) {
	if p.visit == nil || p.err != nil || len(p.problems) > 0 {
		return
	}
	defer func() {
		if r := recover(); r != nil {
			p.err = fmt.Errorf("%v", r)
		}
	}()
	p.err = p.visit(p.path, k, v, seq)
}

type bitmap []uint64

func newBitmap(n uint64) bitmap             { return make(bitmap, (n+63)/64) }
func (b bitmap) has(i uint64) bool          { return b[i/64]&(1<<(i%64)) != 0 }
func (b bitmap) set(i uint64)               { b[i/64] |= 1 << (i % 64) }
func (p *pageCheck) inRange(id uint64) bool { return id < p.meta.hwm }

func (p *pageCheck) problem(format string, args ...any) {
	switch {
	case len(p.problems) < maxProblems:
		p.problems = append(p.problems, p.prefix+fmt.Sprintf(format, args...))
	case len(p.problems) == maxProblems:
		p.problems = append(p.problems, "…")
	}
}

// checkPages walks the bbolt file bdb has open, read from f, on the snapshot of one
// read transaction of bdb, and returns its problems (each beginning with prefix,
// up to maxProblems). It counts each top-level bucket's keys into records when that
// is not nil. f is read only, never through the mapping; bdb's read transaction
// keeps the pages it reaches from being reused while the walk reads them.
func checkPages(bdb *bbolt.DB, f *os.File, records map[string]int, prefix string) []string {
	problems, _ := walkPages(bdb, f, records, prefix, nil)
	return problems
}

// walkPages is checkPages, calling visit for every bucket and key (see pageCheck)
// while the walk finds no problem. It returns the problems, and visit's error.
func walkPages(bdb *bbolt.DB, f *os.File, records map[string]int, prefix string, visit visitFn) ([]string, error) {
	for tries := 0; ; tries++ {
		var verr error
		var problems []string
		err := guard(func() error {
			return bdb.View(func(tx *bbolt.Tx) error {
				m, err := readMeta(f, bdb.Info().PageSize, uint64(tx.ID()))
				if err != nil {
					return err
				}
				p := &pageCheck{f: f, ps: bdb.Info().PageSize, meta: m, prefix: prefix, visit: visit}
				problems = p.run(records)
				verr = p.err
				return nil
			})
		})
		switch {
		case errors.Is(err, errMetaMoved) && tries < 100:
			continue
		case errors.Is(err, errMetaMoved):
			return []string{fmt.Sprintf("%sneither meta page held the transaction of the check intact, %d times (the file written meanwhile?)", prefix, tries)}, nil
		case err != nil:
			return []string{prefix + problemText(err)}, nil
		}
		return problems, verr
	}
}

// run walks the file from the meta page.
func (p *pageCheck) run(records map[string]int) []string {
	m := p.meta
	if m.hwm < 2 {
		p.problem("the meta page's high-water mark is %d pages", m.hwm)
		return p.problems
	}
	p.reached, p.freed = newBitmap(m.hwm), newBitmap(m.hwm)
	p.reached.set(0)
	p.reached.set(1)
	if m.freelist != noFreelist {
		p.readFreelist()
	}
	if !p.inRange(m.root) {
		p.problem("the root bucket's page %d: out of bounds: %d", m.root, m.hwm)
		return p.problems
	}
	// The root bucket's keys are the top-level buckets.
	p.tree(m.root, 0, nil, nil, func(k, v []byte, flags uint32, depth int) {
		if flags&bucketLeafFlag == 0 {
			p.problem("the root bucket holds a key that is not a bucket (%x)", k)
			return
		}
		p.keys = 0
		n := len(p.problems)
		p.path = p.path[:0]
		if len(v) >= bucketHeaderSize {
			p.see(k, nil, binary.LittleEndian.Uint64(v[8:]))
		}
		p.path = append(p.path, k)
		p.bucket(v, depth)
		if records != nil && len(p.problems) == n {
			records[string(k)] = p.keys
		}
	})
	if m.freelist == noFreelist || p.err != nil {
		// Without a free list kept in the file, what is not reached is free; after
		// visit's error, the walk was cut short.
		return p.problems
	}
	for id := uint64(2); id < m.hwm; id++ {
		if !p.reached.has(id) && !p.freed.has(id) {
			p.problem("page %d: unreachable unfreed", id)
		}
	}
	return p.problems
}

// readFreelist marks the free list's pages reached and the pages it lists freed.
func (p *pageCheck) readFreelist() {
	le := binary.LittleEndian
	id := p.meta.freelist
	buf, ok := p.page(id, 0, freelistPageFlag)
	if !ok {
		return
	}
	n, start := uint64(le.Uint16(buf[10:])), uint64(pageHeaderSize)
	if n == 0xFFFF {
		if len(buf) < pageHeaderSize+8 {
			p.problem("page %d: the free list's count lies outside the page", id)
			return
		}
		n, start = le.Uint64(buf[pageHeaderSize:]), pageHeaderSize+8
	}
	if n > uint64(len(buf)) || start+n*8 > uint64(len(buf)) {
		p.problem("page %d: the free list's %d page numbers lie outside the page", id, n)
		return
	}
	for i := range n {
		f := le.Uint64(buf[start+8*i:])
		switch {
		case f < 2 || !p.inRange(f):
			p.problem("page %d: the free list lists page %d, out of bounds: %d", id, f, p.meta.hwm)
		case p.freed.has(f):
			p.problem("page %d: already freed", f)
		default:
			p.freed.set(f)
		}
	}
	for i := uint64(0); i < uint64(len(buf))/uint64(p.ps); i++ {
		if p.freed.has(id + i) {
			p.problem("page %d: reachable freed", id+i)
		}
	}
}

// page reads page id (and its overflow pages) into the buffer of depth and checks
// that it lies below the high-water mark, carries its own number, has flags want
// (a branch or leaf page when want is 0), and is reached for the first time; it
// marks its pages reached. It returns the page's bytes, and false (with the problem
// recorded) when the page cannot be walked.
func (p *pageCheck) page(id uint64, depth int, want uint16) ([]byte, bool) {
	le := binary.LittleEndian
	if !p.inRange(id) || id < 2 {
		p.problem("page %d: out of bounds: %d", id, p.meta.hwm)
		return nil, false
	}
	if p.reached.has(id) {
		p.problem("page %d: multiple references", id)
		return nil, false
	}
	for len(p.bufs) <= depth {
		p.bufs = append(p.bufs, make([]byte, p.ps))
	}
	buf := p.bufs[depth][:p.ps]
	if err := p.read(buf, id); err != nil {
		p.problem("page %d: unreadable: %v", id, err)
		return nil, false
	}
	if got := le.Uint64(buf[0:]); got != id {
		p.problem("page %d is damaged: its header does not carry its own page number", id)
		return nil, false
	}
	flags, overflow := le.Uint16(buf[8:]), uint64(le.Uint32(buf[12:]))
	switch {
	case want != 0 && flags != want, want == 0 && flags != branchPageFlag && flags != leafPageFlag:
		p.problem("page %d: invalid type: flags %#x", id, flags)
		return nil, false
	case overflow >= p.meta.hwm-id:
		p.problem("page %d: out of bounds: its %d overflow pages pass the high-water mark %d", id, overflow, p.meta.hwm)
		return nil, false
	}
	// A damaged overflow count claims pages that are another page's or free: the
	// page is not read (its claimed size is up to the whole file).
	for i := uint64(0); i <= overflow; i++ {
		switch {
		case p.reached.has(id + i):
			p.problem("page %d: multiple references", id+i)
			return nil, false
		case p.freed.has(id+i) && want != freelistPageFlag:
			p.problem("page %d: reachable freed", id+i)
			return nil, false
		}
	}
	for i := uint64(0); i <= overflow; i++ {
		p.reached.set(id + i)
	}
	if overflow > 0 {
		size := (overflow + 1) * uint64(p.ps)
		if uint64(cap(p.bufs[depth])) < size {
			p.bufs[depth] = make([]byte, size)
		}
		buf = p.bufs[depth][:size]
		if err := p.read(buf, id); err != nil {
			p.problem("page %d: unreadable: %v", id, err)
			return nil, false
		}
	}
	return buf, true
}

func (p *pageCheck) read(buf []byte, id uint64) error {
	_, err := p.f.ReadAt(buf, int64(id)*int64(p.ps))
	if errors.Is(err, io.EOF) {
		return fmt.Errorf("the file ends before it (truncated)")
	}
	return err
}

// leafFn is called for each key of a leaf page, with its value, its element's
// flags and the depth of the page that holds it.
type leafFn func(k, v []byte, flags uint32, depth int)

// tree walks the B+tree whose root is page id, at depth: every key is at least lo
// and below hi (nil: unbounded), and leaf calls fn for each key.
func (p *pageCheck) tree(id uint64, depth int, lo, hi []byte, fn leafFn) {
	if depth >= maxTreeDepth {
		p.problem("page %d: deeper than %d pages and buckets", id, maxTreeDepth)
		return
	}
	buf, ok := p.page(id, depth, 0)
	if !ok {
		return
	}
	p.elements(id, buf, depth, lo, hi, fn)
}

// elements walks the elements of one page (a page of the file, or an inline
// bucket's page, id 0, inside its parent's value).
func (p *pageCheck) elements(id uint64, buf []byte, depth int, lo, hi []byte, fn leafFn) {
	le := binary.LittleEndian
	flags, count := le.Uint16(buf[8:]), int(le.Uint16(buf[10:]))
	if pageHeaderSize+count*pageElementSize > len(buf) {
		p.problem("page %d: its %d elements lie outside the page", id, count)
		return
	}
	prev := lo
	for i := range count {
		if p.err != nil {
			return
		}
		off := pageHeaderSize + i*pageElementSize
		e := buf[off : off+pageElementSize]
		var (
			kpos, ksize, vsize uint64
			child              uint64
			eflags             uint32
		)
		if flags == branchPageFlag {
			kpos, ksize, child = uint64(le.Uint32(e[0:])), uint64(le.Uint32(e[4:])), le.Uint64(e[8:])
		} else {
			eflags, kpos, ksize, vsize = le.Uint32(e[0:]), uint64(le.Uint32(e[4:])), uint64(le.Uint32(e[8:])), uint64(le.Uint32(e[12:]))
		}
		start := uint64(off) + kpos
		if start+ksize+vsize > uint64(len(buf)) {
			p.problem("page %d: element %d lies outside the page", id, i)
			return
		}
		k := buf[start : start+ksize]
		if (i == 0 && prev != nil && bytes.Compare(k, prev) < 0) || (i > 0 && bytes.Compare(k, prev) <= 0) || (hi != nil && bytes.Compare(k, hi) >= 0) {
			p.problem("page %d: key %d (%x) out of order", id, i, k)
			return
		}
		prev = k
		if flags == branchPageFlag {
			next := hi
			if i+1 < count {
				no := pageHeaderSize + (i+1)*pageElementSize
				npos, nsize := uint64(no)+uint64(le.Uint32(buf[no:])), uint64(le.Uint32(buf[no+4:]))
				if npos+nsize > uint64(len(buf)) {
					p.problem("page %d: element %d lies outside the page", id, i+1)
					return
				}
				next = buf[npos : npos+nsize]
			}
			p.tree(child, depth+1, k, next, fn)
			continue
		}
		if eflags&^bucketLeafFlag != 0 {
			p.problem("page %d: key %d has unknown flags %#x", id, i, eflags)
			return
		}
		fn(k, buf[start+ksize:start+ksize+vsize], eflags, depth)
	}
}

// bucket walks a bucket from its header (the value of its key in its parent),
// counting its keys and walking its nested buckets.
func (p *pageCheck) bucket(v []byte, depth int) {
	le := binary.LittleEndian
	if len(v) < bucketHeaderSize {
		p.problem("a bucket's header is %d bytes", len(v))
		return
	}
	count := func(k, v []byte, flags uint32, depth int) {
		p.keys++
		if flags&bucketLeafFlag == 0 {
			p.see(k, v, 0)
			return
		}
		if len(v) >= bucketHeaderSize {
			p.see(k, nil, le.Uint64(v[8:]))
		}
		p.path = append(p.path, k)
		p.bucket(v, depth)
		p.path = p.path[:len(p.path)-1]
	}
	root := le.Uint64(v[0:])
	if root != 0 {
		p.tree(root, depth+1, nil, nil, count)
		return
	}
	// An inline bucket: its leaf page follows the header, inside the value.
	in := v[bucketHeaderSize:]
	if len(in) < pageHeaderSize || le.Uint16(in[8:]) != leafPageFlag {
		p.problem("an inline bucket's page is damaged")
		return
	}
	if depth+1 >= maxTreeDepth {
		p.problem("an inline bucket deeper than %d pages and buckets", maxTreeDepth)
		return
	}
	p.elements(0, in, depth+1, nil, nil, count)
}
