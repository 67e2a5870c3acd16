package sandbox

import (
	"bytes"
	"container/heap"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"github.com/klavi-billing/billingd/cycle"
	"github.com/klavi-billing/billingd/klavi"
	"github.com/klavi-billing/billingd/retry"
)

// The journal (Options.Journal) is a write-ahead log of what Klavi would never
// forget: every consent and every payment, each time it changes.
//
// # Format
//
// One record per line: the CRC-32C (Castagnoli) of the JSON that follows, as 8
// lower-case hex digits, a space, the JSON, a newline. The first record is the
// header {"t":"journal","v":1}; every other is the full image of one thing after a
// change, {"t":"consent","c":{...}} or {"t":"payment","p":{...}}: the last image of
// an id is its state. Payments are replayed in their sequence order, consents in
// the order they first appear.
//
// # Durability
//
// A change is appended to the journal while the sandbox's lock is held, so the
// journal's order is the order of the changes; the answer that reveals it is
// written only after the journal has been written and fsynced up to it. Concurrent
// requests share one fsync (group commit): the first to wait writes and syncs
// everything appended so far, the others wait for it, and none answers before its
// records are on disk. If a write or fsync fails, every later answer is a 500: the
// state in memory is ahead of the disk.
//
// On Open the journal is replayed. A last line with no newline (or a tail of NUL
// bytes), what a crash in the middle of a write leaves, is a torn record: it is
// logged, cut off and ignored (no answer depended on it). Any other damage (a bad
// checksum, JSON or header before the last line) is an error from Open.

// journalVersion is the format's version, in the header.
const journalVersion = 1

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// ErrJournalCorrupt is returned (wrapped) by Open for a journal damaged other than
// by a torn last record.
var ErrJournalCorrupt = errors.New("journal is corrupt")

// record is one journal line's JSON.
type record struct {
	T string        `json:"t"`
	V int           `json:"v,omitempty"`
	C *consentImage `json:"c,omitempty"`
	P *paymentImage `json:"p,omitempty"`
}

type consentImage struct {
	ID      string                `json:"id"`
	N       int                   `json:"n,omitempty"`
	Status  klavi.ConsentStatus   `json:"status"`
	Reason  *klavi.StatusReason   `json:"reason,omitempty"`
	Created time.Time             `json:"created"`
	Updated time.Time             `json:"updated"`
	Consent *klavi.CreatedConsent `json:"consent"`
}

type cancelImage struct {
	From   string    `json:"from"`
	At     time.Time `json:"at"`
	By     string    `json:"by,omitempty"`
	ByType string    `json:"byType,omitempty"`
}

type paymentImage struct {
	Seq        int                 `json:"seq"`
	ID         string              `json:"id"`
	ConsentID  string              `json:"consentId,omitempty"`
	CRID       string              `json:"clientRequestId,omitempty"`
	Kind       Kind                `json:"kind"`
	Original   string              `json:"original,omitempty"`
	Cycle      int                 `json:"cycle"`
	Attempt    int                 `json:"attempt,omitempty"`
	Date       cycle.Date          `json:"date,omitzero"`
	Amount     int64               `json:"amount"`
	Status     klavi.PaymentStatus `json:"status"`
	Reason     *klavi.StatusReason `json:"reason,omitempty"`
	CreatedAt  time.Time           `json:"createdAt"`
	UpdatedAt  time.Time           `json:"updatedAt"`
	SettleAt   time.Time           `json:"settleAt,omitzero"`
	Strategy   *retry.Strategy     `json:"strategy,omitempty"`
	Plan       []retry.Retry       `json:"plan,omitempty"`
	Planned    bool                `json:"planned,omitempty"`
	Dropped    bool                `json:"dropped,omitempty"`
	EndToEnd   string              `json:"endToEndId,omitempty"`
	Remittance string              `json:"remittance,omitempty"`
	Cancel     *cancelImage        `json:"cancel,omitempty"`
}

func (p *payment) image() *paymentImage {
	im := &paymentImage{
		Seq: p.seq, ID: p.id, ConsentID: p.consentID, CRID: p.crid, Kind: p.kind, Cycle: p.cycle,
		Attempt: p.attempt, Date: p.date, Amount: int64(p.amount), Status: p.status, Reason: p.reason,
		CreatedAt: p.createdAt, UpdatedAt: p.updatedAt, SettleAt: p.settleAt, Strategy: p.strategy,
		Plan: p.plan, Planned: p.planned, Dropped: p.dropped, EndToEnd: p.endToEnd, Remittance: p.remittance,
	}
	if p.original != nil {
		im.Original = p.original.id
	}
	if c := p.cancel; c != nil {
		im.Cancel = &cancelImage{From: c.from, At: c.at, By: c.by, ByType: c.byType}
	}
	return im
}

func (cs *consentState) image() *consentImage {
	return &consentImage{ID: cs.c.ID, N: cs.n, Status: cs.status, Reason: cs.reason, Created: cs.created, Updated: cs.updated, Consent: cs.c}
}

// encodeRecord is one journal line.
func encodeRecord(r *record) ([]byte, error) {
	data, err := json.Marshal(r)
	if err != nil {
		return nil, err
	}
	line := make([]byte, 0, len(data)+10)
	line = hex.AppendEncode(line, binary.BigEndian.AppendUint32(nil, crc32.Checksum(data, castagnoli)))
	line = append(line, ' ')
	line = append(line, data...)
	return append(line, '\n'), nil
}

// decodeRecord reads one journal line, without its newline.
func decodeRecord(line []byte) (*record, error) {
	if len(line) < 10 || line[8] != ' ' {
		return nil, errors.New("not a checksum and a record")
	}
	var sum [4]byte
	if _, err := hex.Decode(sum[:], line[:8]); err != nil {
		return nil, errors.New("bad checksum digits")
	}
	data := line[9:]
	if crc32.Checksum(data, castagnoli) != binary.BigEndian.Uint32(sum[:]) {
		return nil, errors.New("checksum mismatch")
	}
	var r record
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("bad record: %v", err)
	}
	return &r, nil
}

// journal appends records to a file and makes them durable in groups.
type journal struct {
	path string
	f    *os.File

	mu       sync.Mutex
	cond     *sync.Cond
	buf      []byte // appended, not yet written
	appended uint64 // records appended so far
	durable  uint64 // records written and fsynced
	flushing bool
	err      error // sticky: a failed write or fsync
}

// add appends a record; it is durable after wait(n) for an n at least the value
// last() returns afterwards.
func (j *journal) add(line []byte) {
	j.mu.Lock()
	j.buf = append(j.buf, line...)
	j.appended++
	j.mu.Unlock()
}

func (j *journal) last() uint64 {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.appended
}

// wait returns once the first n records are written and fsynced. The first waiter
// finding no write in progress writes everything appended so far; the others wait
// for it (one fsync for all of them).
func (j *journal) wait(n uint64) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	for j.durable < n {
		if j.err != nil {
			return j.err
		}
		if j.flushing {
			j.cond.Wait()
			continue
		}
		j.flushing = true
		buf, upto := j.buf, j.appended
		j.buf = nil
		j.mu.Unlock()
		err := j.write(buf)
		j.mu.Lock()
		j.flushing = false
		if err != nil {
			j.err = fmt.Errorf("journal %s: %w", j.path, err)
		} else {
			j.durable = upto
		}
		j.cond.Broadcast()
	}
	return nil
}

func (j *journal) write(b []byte) error {
	if len(b) > 0 {
		if _, err := j.f.Write(b); err != nil {
			return err
		}
	}
	return j.f.Sync()
}

// close makes everything appended durable and closes the file.
func (j *journal) close() error {
	err := j.wait(j.last())
	j.mu.Lock()
	defer j.mu.Unlock()
	if cerr := j.f.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if j.err == nil {
		j.err = errors.New("journal closed")
	}
	return err
}

// openJournal opens (creating it if needed) the journal at path, replays it into s,
// and leaves it ready to append.
func (s *Server) openJournal(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	j := &journal{path: path, f: f}
	j.cond = sync.NewCond(&j.mu)
	data, err := os.ReadFile(path)
	if err == nil {
		var good int
		good, err = s.replayJournal(path, data)
		if err == nil && good < len(data) {
			s.log.Warn("sandbox journal: ignored a torn last record", "file", path, "offset", good, "bytes", len(data)-good)
			err = f.Truncate(int64(good))
		}
		if err == nil {
			_, err = f.Seek(int64(good), 0)
		}
		if err == nil && good == 0 {
			var line []byte
			if line, err = encodeRecord(&record{T: "journal", V: journalVersion}); err == nil {
				j.add(line)
			}
		}
	}
	if err == nil {
		err = j.wait(j.last())
	}
	if err == nil {
		err = syncDir(filepath.Dir(path))
	}
	if err != nil {
		f.Close()
		if errors.Is(err, ErrJournalCorrupt) {
			return err
		}
		return fmt.Errorf("journal %s: %w", path, err)
	}
	s.jr = j
	return nil
}

// syncDir fsyncs a directory, so a file just created in it survives a crash.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// replayJournal rebuilds s from a journal's bytes and returns the length of its good
// prefix (everything but a torn last record).
func (s *Server) replayJournal(path string, data []byte) (int, error) {
	consents := map[string]*consentImage{}
	payments := map[string]*paymentImage{}
	var consentOrder []string
	off, n := 0, 0
	for off < len(data) {
		nl := bytes.IndexByte(data[off:], '\n')
		if nl < 0 || data[off] == 0 && len(bytes.TrimLeft(data[off:], "\x00")) == 0 {
			break // torn: the last write did not finish
		}
		n++
		r, err := decodeRecord(data[off : off+nl])
		if err == nil && n == 1 && (r.T != "journal" || r.V != journalVersion) {
			err = fmt.Errorf("header %s v%d: want journal v%d", r.T, r.V, journalVersion)
		}
		if err == nil && n > 1 && !(r.T == "consent" && r.C != nil && r.C.Consent != nil) && !(r.T == "payment" && r.P != nil) {
			err = fmt.Errorf("unknown record %q", r.T)
		}
		if err != nil {
			return 0, fmt.Errorf("%w: %s: record %d at byte %d: %v", ErrJournalCorrupt, path, n, off, err)
		}
		switch {
		case r.C != nil:
			if _, ok := consents[r.C.ID]; !ok {
				consentOrder = append(consentOrder, r.C.ID)
			}
			consents[r.C.ID] = r.C
		case r.P != nil:
			payments[r.P.ID] = r.P
		}
		off += nl + 1
	}
	for _, id := range consentOrder {
		im := consents[id]
		c := im.Consent
		cs := &consentState{c: c, n: im.N, status: im.Status, reason: im.Reason, created: im.Created, updated: im.Updated,
			sched: c.Schedule(cycle.AdjustNone, nil), byCycle: map[int][]*payment{}}
		if c.ExpirationDateTime != nil {
			cs.expires = c.ExpirationDateTime.Time
		}
		s.consents[id] = cs
		s.consentList = append(s.consentList, cs)
		s.consentSeq = max(s.consentSeq, im.N)
		if _, used := s.crids[c.ClientRequestID]; !used && c.ClientRequestID != "" {
			s.crids[c.ClientRequestID] = id
		}
	}
	ims := make([]*paymentImage, 0, len(payments))
	for _, im := range payments {
		ims = append(ims, im)
	}
	sort.Slice(ims, func(a, b int) bool { return ims[a].Seq < ims[b].Seq })
	for _, im := range ims {
		p := &payment{
			seq: im.Seq, id: im.ID, consentID: im.ConsentID, crid: im.CRID, kind: im.Kind, cycle: im.Cycle,
			attempt: im.Attempt, date: im.Date, amount: klavi.Cents(im.Amount), status: im.Status, reason: im.Reason,
			createdAt: im.CreatedAt, updatedAt: im.UpdatedAt, settleAt: im.SettleAt, strategy: im.Strategy,
			plan: im.Plan, planned: im.Planned, dropped: im.Dropped, endToEnd: im.EndToEnd, remittance: im.Remittance,
			heapIndex: -1,
		}
		if c := im.Cancel; c != nil {
			p.cancel = &cancellation{from: c.From, at: c.At, by: c.By, byType: c.ByType}
		}
		if im.Original != "" {
			orig := s.payments[im.Original]
			if orig == nil {
				return 0, fmt.Errorf("%w: %s: payment %s retries %s, which it does not hold", ErrJournalCorrupt, path, im.ID, im.Original)
			}
			p.original = orig
			orig.retries = append(orig.retries, p)
		}
		s.payments[p.id] = p
		s.ledger = append(s.ledger, p)
		s.countPayment(p)
		s.accepted[p.kind]++
		s.seq = max(s.seq, p.seq)
		if p.crid != "" {
			s.crids[p.crid] = p.id
		}
		if cs := s.consents[p.consentID]; cs != nil && p.kind != KindInstant {
			cs.byCycle[p.cycle] = append(cs.byCycle[p.cycle], p)
			cs.payments = append(cs.payments, p)
		}
		if !p.settleAt.IsZero() {
			heap.Push(&s.queue, p)
		}
	}
	if n > 0 {
		s.log.Info("sandbox journal replayed", "file", path, "records", n, "consents", len(consents), "payments", len(payments))
	}
	return off, nil
}

// touchPayment marks p changed: its image is journaled when the lock is released.
// Callers hold s.mu.
func (s *Server) touchPayment(p *payment) {
	if s.jr != nil && !p.dirty {
		p.dirty = true
		s.dirtyPayments = append(s.dirtyPayments, p)
	}
}

// touchConsent marks cs changed, as touchPayment. Callers hold s.mu.
func (s *Server) touchConsent(cs *consentState) {
	if s.jr != nil && !cs.dirty {
		cs.dirty = true
		s.dirtyConsents = append(s.dirtyConsents, cs)
	}
}

// unlock journals the images of what changed under the lock, in the order it was
// first changed (consents first), then releases s.mu. Every section that may
// change state ends with it.
func (s *Server) unlock() {
	if s.jr != nil {
		for _, cs := range s.dirtyConsents {
			cs.dirty = false
			s.journalRecord(&record{T: "consent", C: cs.image()})
		}
		for _, p := range s.dirtyPayments {
			p.dirty = false
			s.journalRecord(&record{T: "payment", P: p.image()})
		}
		s.dirtyConsents, s.dirtyPayments = s.dirtyConsents[:0], s.dirtyPayments[:0]
	}
	s.mu.Unlock()
}

func (s *Server) journalRecord(r *record) {
	line, err := encodeRecord(r)
	if err != nil {
		// Only a value JSON cannot encode gets here; the journal stops so that no
		// answer claims what the disk does not hold.
		s.jr.mu.Lock()
		if s.jr.err == nil {
			s.jr.err = fmt.Errorf("journal %s: encode record: %w", s.jr.path, err)
		}
		s.jr.mu.Unlock()
		return
	}
	s.jr.add(line)
}

// sync returns once every change made so far is durable (nil without a journal).
func (s *Server) sync() error {
	if s.jr == nil {
		return nil
	}
	return s.jr.wait(s.jr.last())
}
