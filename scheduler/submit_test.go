package scheduler

import (
	"context"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klavi-billing/billingd/consent"
	"github.com/klavi-billing/billingd/klavi"
	"github.com/klavi-billing/billingd/storage"
)

// commitCounter counts the scheduler's store commits by kind, and lets a test refuse
// one attempt's SUBMITTING write.
type commitCounter struct {
	Store
	mu       sync.Mutex
	applies  int // Apply calls
	applyAll []int
	// submitting: the SUBMITTING changes of each ApplyAll that had any.
	submitting []int
	refuse     storage.AttemptKey // its SUBMITTING write fails with ErrConflict
}

func (c *commitCounter) Apply(ctx context.Context, ch *storage.Change) error {
	c.mu.Lock()
	c.applies++
	refused := c.refuses(ch)
	c.mu.Unlock()
	if refused {
		return fmt.Errorf("store: %w (test)", storage.ErrConflict)
	}
	return c.Store.Apply(ctx, ch)
}

func (c *commitCounter) ApplyAll(ctx context.Context, chs []*storage.Change) (int, error) {
	c.mu.Lock()
	c.applyAll = append(c.applyAll, len(chs))
	n := 0
	for _, ch := range chs {
		if len(ch.DelDue) == 0 && len(ch.Attempts) == 1 && ch.Attempts[0].State == storage.AttemptSubmitting {
			n++
		}
	}
	if n > 0 {
		c.submitting = append(c.submitting, n)
	}
	for _, ch := range chs {
		if c.refuses(ch) {
			c.mu.Unlock()
			return 0, fmt.Errorf("store: %w (test)", storage.ErrConflict)
		}
	}
	c.mu.Unlock()
	return c.Store.ApplyAll(ctx, chs)
}

func (c *commitCounter) refuses(ch *storage.Change) bool {
	for _, a := range ch.Attempts {
		if a.AttemptKey == c.refuse && a.State == storage.AttemptSubmitting && a.PaymentID == "" {
			return true
		}
	}
	return false
}

// durableKlavi checks, as each create arrives, that the store already holds its
// attempt SUBMITTING with this clientRequestId: no request before its write.
type durableKlavi struct {
	*fakeKlavi
	t  *testing.T
	db storage.Store

	mu     sync.Mutex
	unsafe []string
}

func (k *durableKlavi) CreatePayment(ctx context.Context, id string, req *klavi.CreatePaymentRequest) (*klavi.Payment, error) {
	k0, _ := cycleOfCRID(k.t, req.ClientRequestID)
	a, err := k.db.GetAttempt(ctx, storage.AttemptKey{ConsentID: id, Cycle: k0})
	if err != nil || a.State != storage.AttemptSubmitting || a.ClientRequestID != req.ClientRequestID {
		k.mu.Lock()
		k.unsafe = append(k.unsafe, req.ClientRequestID)
		k.mu.Unlock()
	}
	return k.fakeKlavi.CreatePayment(ctx, id, req)
}

func addDue(t *testing.T, h *harness, n int, prefix string) []string {
	var ids []string
	for i := range n {
		c := loadExample(t, "monthly-31st.json")
		c.ID = fmt.Sprintf("urn:klavi:%s-%03d", prefix, i)
		c.PaymentMethodConfig.ReferenceStartDate = d("2026-01-10") // submitted on 7 Jan
		h.add(c)
		ids = append(ids, c.ID)
	}
	return ids
}

// The due scan commits a chunk's SUBMITTING attempts in one transaction, sends none
// before that commit, and records the answers in group commits.
func TestScanDue_OneCommitPerChunk(t *testing.T) {
	for _, workers := range []int{1, 8} {
		t.Run(fmt.Sprintf("workers %d", workers), func(t *testing.T) {
			h := newHarness(t, at("2026-01-07", 9, 0), func(c *Config) { c.Workers, c.Batch = workers, 16 })
			ids := addDue(t, h, 40, "chunk")
			cs := &commitCounter{Store: h.db}
			dk := &durableKlavi{fakeKlavi: h.kl, t: t, db: h.db}
			var err error
			h.s, err = New(h.s.cfg, cs, dk, WithClock(h.clock))
			require.NoError(t, err)

			res, err := h.s.Scan(context.Background())
			require.NoError(t, err)
			assert.Equal(t, ScanResult{Handled: 40}, res)
			assert.Empty(t, dk.unsafe, "requests sent before their SUBMITTING write was committed")
			require.Len(t, h.kl.payments, 40)
			for _, id := range ids {
				assert.Equal(t, storage.AttemptSubmitted, h.attempt(id, 0, 0).State, id)
			}
			if workers == 1 {
				// 40 entries in chunks of 16: three SUBMITTING transactions of 16, 16
				// and 8 changes, each answer recorded alone.
				assert.Equal(t, []int{16, 16, 8}, cs.submitting, "SUBMITTING commits")
				assert.Equal(t, 40, cs.applies, "inline: each answer recorded alone")
			} else {
				// The committer takes what was decided while its last transaction ran:
				// every SUBMITTING write goes through ApplyAll, in groups of any size.
				sum := 0
				for _, n := range cs.submitting {
					sum += n
				}
				assert.Equal(t, 40, sum, "SUBMITTING commits %v", cs.submitting)
			}
			assertExactlyOnce(t, h)
		})
	}
}

// One change of a chunk that the store refuses (a version moved on) fails only its
// own entry: the chunk's other attempts are committed one by one and sent; the
// refused one stays due and goes out on the next scan, once.
func TestScanDue_ChunkWithARefusedChange(t *testing.T) {
	h := newHarness(t, at("2026-01-07", 9, 0), func(c *Config) { c.Workers, c.Batch = 4, 8 })
	ids := addDue(t, h, 8, "refused")
	cs := &commitCounter{Store: h.db, refuse: storage.AttemptKey{ConsentID: ids[3]}}
	var err error
	h.s, err = New(h.s.cfg, cs, h.kl, WithClock(h.clock))
	require.NoError(t, err)

	res, err := h.s.Scan(context.Background())
	require.NoError(t, err)
	assert.Equal(t, ScanResult{Handled: 8, Errors: 1}, res)
	assert.Len(t, h.kl.payments, 7)
	_, ok := h.attemptOK(ids[3], 0, 0)
	assert.False(t, ok, "the refused SUBMITTING write left nothing")

	cs.refuse = storage.AttemptKey{}
	res, err = h.s.Scan(context.Background())
	require.NoError(t, err)
	assert.Equal(t, ScanResult{Handled: 1}, res)
	assert.Len(t, h.kl.payments, 8)
	assertExactlyOnce(t, h)
}

// Two due entries of one consent (an original and a local retry) never sit in one
// chunk: the second is decided after the first's answer is recorded, in the same scan.
func TestScanDue_OneEntryPerConsentInAChunk(t *testing.T) {
	h := newHarness(t, at("2026-01-07", 9, 0), func(c *Config) { c.Workers = 4 })
	ids := addDue(t, h, 3, "twice")
	rec := mustConsent(t, h, ids[0])
	// A stale second entry of ids[0] (cycle 5), due at the same instant.
	require.NoError(t, h.db.Apply(context.Background(), &storage.Change{
		PutDue: []storage.DueItem{{At: rec.NextDue, Key: storage.AttemptKey{ConsentID: ids[0], Cycle: 5}}}}))
	res, err := h.s.Scan(context.Background())
	require.NoError(t, err)
	assert.Equal(t, ScanResult{Handled: 4}, res)
	assert.Len(t, h.kl.payments, 3)
	due, err := h.db.DueBefore(context.Background(), h.clock.Now(), 10)
	require.NoError(t, err)
	assert.Empty(t, due, "the stale entry was handled (removed) in the same scan")
	assertExactlyOnce(t, h)
}

// The first chunk is small (the first requests go out soon after a scan starts);
// each next one doubles, up to Config.Batch.
func TestScanDue_ChunksGrow(t *testing.T) {
	h := newHarness(t, at("2026-01-07", 9, 0), func(c *Config) { c.Workers, c.Batch = 1, 64 })
	addDue(t, h, 200, "grow")
	cs := &commitCounter{Store: h.db}
	var err error
	h.s, err = New(h.s.cfg, cs, h.kl, WithClock(h.clock))
	require.NoError(t, err)
	res, err := h.s.Scan(context.Background())
	require.NoError(t, err)
	assert.Equal(t, ScanResult{Handled: 200}, res)
	assert.Equal(t, []int{16, 32, 64, 64, 24}, cs.submitting, "SUBMITTING commits")
	assertExactlyOnce(t, h)
}

// panickyKlavi panics on its first create: a bug somewhere under the scan.
type panickyKlavi struct {
	*fakeKlavi
	once sync.Once
}

func (p *panickyKlavi) CreatePayment(ctx context.Context, id string, req *klavi.CreatePaymentRequest) (*klavi.Payment, error) {
	p.once.Do(func() { panic("test: a bug under the scan") })
	return p.fakeKlavi.CreatePayment(ctx, id, req)
}

// A panic under a due scan (recovered above it, as cron does) leaves no consent
// locked: the chunk's decided consents are released, and the next scan bills them.
func TestScanDue_PanicReleasesTheChunk(t *testing.T) {
	h := newHarness(t, at("2026-01-07", 9, 0), func(c *Config) { c.Workers = 1 })
	ids := addDue(t, h, 5, "panic")
	h.useKlavi(&panickyKlavi{fakeKlavi: h.kl})
	require.Panics(t, func() { _, _ = h.s.Scan(context.Background()) })
	h.s.locks.mu.Lock()
	held := len(h.s.locks.locks)
	h.s.locks.mu.Unlock()
	assert.Zero(t, held, "consent locks left held")

	res, err := h.s.Scan(context.Background())
	require.NoError(t, err)
	assert.Equal(t, 5, res.Handled)
	assert.Len(t, h.kl.payments, 5)
	for _, id := range ids {
		assert.Equal(t, storage.AttemptSubmitted, h.attempt(id, 0, 0).State, id)
	}
	assertExactlyOnce(t, h)
}

// The client refuses to send a first send because the window closed on its way out
// (klavi.ErrWindowClosed, not wrapped as an unknown outcome: no attempt of the call
// went out): nothing was ever sent with the key, so the cycle is MISSED at once,
// without a lookup.
func TestScanDue_WindowClosedOnTheWayOut(t *testing.T) {
	h := newHarness(t, at("2026-01-07", 9, 0), func(c *Config) { c.Workers = 4 })
	ids := addDue(t, h, 2, "closed")
	h.kl.inject = func(op, crid string) (error, bool) {
		if k, _ := cycleOfCRID(t, crid); k == 0 {
			return fmt.Errorf("create payment: %w (at 2026-01-08T03:00:00Z)", klavi.ErrWindowClosed), false
		}
		return nil, false
	}
	res, err := h.s.Scan(context.Background())
	require.NoError(t, err)
	assert.Equal(t, ScanResult{Handled: 2}, res)
	for _, id := range ids {
		a := h.attempt(id, 0, 0)
		assert.Equal(t, storage.AttemptMissed, a.State, id)
		assert.Contains(t, a.Reason, "closed on 2026-01-08 before billingd could submit")
		assert.Equal(t, 1, mustConsent(t, h, id).NextCycle, "the cursor moved on")
	}
	assert.Zero(t, h.kl.finds, "nothing to look up: nothing was sent")
	assert.Empty(t, h.kl.payments)
}

// A refusal is FAILED with a reason that says what billingd knows: on a first send,
// that nothing was created (no lookup is made); on a re-send, what the orders list,
// looked up, holds.
func TestScanDue_RefusalReason(t *testing.T) {
	h := newHarness(t, at("2026-01-07", 9, 0), func(c *Config) { c.Workers = 4 })
	ids := addDue(t, h, 2, "refused")
	// The second consent's cycle was sent once before a crash: its send is a re-send.
	a := &storage.Attempt{AttemptKey: storage.AttemptKey{ConsentID: ids[1]}, State: storage.AttemptSubmitting,
		ClientRequestID: consent.ClientRequestID(ids[1], 0, 0), Date: d("2026-01-10"), Amount: 9990, Sends: 1}
	require.NoError(t, h.db.Apply(context.Background(), &storage.Change{Attempts: []*storage.Attempt{a}}))
	h.kl.inject = func(op, crid string) (error, bool) {
		return fmt.Errorf("create payment: 422 NOVO_ERRO: %w", klavi.ErrRefused), false
	}
	h.runUntil(at("2026-01-07", 18, 0)) // the re-send's refusal is looked up twice

	first := h.attempt(ids[0], 0, 0)
	assert.Equal(t, storage.AttemptFailed, first.State)
	assert.Contains(t, first.Reason, "refused by Klavi, on the only send of clientRequestId "+first.ClientRequestID+", so nothing was created: ")
	assert.Contains(t, first.Reason, "NOVO_ERRO", "Klavi's answer is kept")
	resent := h.attempt(ids[1], 0, 0)
	assert.Equal(t, storage.AttemptFailed, resent.State)
	assert.Contains(t, resent.Reason, "refused by Klavi, which holds no payment for clientRequestId "+resent.ClientRequestID)
	h.kl.mu.Lock()
	defer h.kl.mu.Unlock()
	assert.Equal(t, 2, h.kl.finds, "the re-send's refusal was looked up (twice), the first send's not")
}

// brokenStore fails the handling of some consents' due entries with a store error:
// their consent read, or their SUBMITTING write, until heal.
type brokenStore struct {
	Store
	mu     sync.Mutex
	broken map[string]bool
	commit bool // fail the SUBMITTING write instead of the consent read
}

var _ Store = (*brokenStore)(nil)

func (b *brokenStore) isBroken(id string) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.broken[id]
}

func (b *brokenStore) heal() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.broken = nil
}

// refuses reports whether ch is a SUBMITTING write of a broken consent.
func (b *brokenStore) refuses(ch *storage.Change) bool {
	if !b.commit {
		return false
	}
	for _, a := range ch.Attempts {
		if a.State == storage.AttemptSubmitting && a.PaymentID == "" && b.isBroken(a.ConsentID) {
			return true
		}
	}
	return false
}

func (b *brokenStore) GetConsent(ctx context.Context, id string) (*storage.ConsentRecord, error) {
	if !b.commit && b.isBroken(id) {
		return nil, fmt.Errorf("store: %w (test)", storage.ErrUnavailable)
	}
	return b.Store.GetConsent(ctx, id)
}

func (b *brokenStore) GetConsentAttempt(ctx context.Context, k storage.AttemptKey) (*storage.ConsentRecord, *storage.Attempt, error) {
	if !b.commit && b.isBroken(k.ConsentID) {
		return nil, nil, fmt.Errorf("store: %w (test)", storage.ErrUnavailable)
	}
	return b.Store.GetConsentAttempt(ctx, k)
}

func (b *brokenStore) GetConsentAttempts(ctx context.Context, keys []storage.AttemptKey, out []storage.ConsentAttempt) ([]storage.ConsentAttempt, error) {
	out, err := b.Store.GetConsentAttempts(ctx, keys, out)
	for i := range out {
		if !b.commit && b.isBroken(out[i].Key.ConsentID) {
			out[i] = storage.ConsentAttempt{Key: out[i].Key, Err: fmt.Errorf("store: %w (test)", storage.ErrUnavailable)}
		}
	}
	return out, err
}

func (b *brokenStore) Apply(ctx context.Context, ch *storage.Change) error {
	if b.refuses(ch) {
		return fmt.Errorf("store: %w (test)", storage.ErrUnavailable)
	}
	return b.Store.Apply(ctx, ch)
}

// ApplyAll commits the changes before the first refused one, as a store whose
// transaction fails at that change.
func (b *brokenStore) ApplyAll(ctx context.Context, chs []*storage.Change) (int, error) {
	for i, ch := range chs {
		if b.refuses(ch) {
			if i == 0 {
				return 0, fmt.Errorf("store: %w (test)", storage.ErrUnavailable)
			}
			n, err := b.Store.ApplyAll(ctx, chs[:i])
			if err != nil {
				return n, err
			}
			return i, fmt.Errorf("store: %w (test)", storage.ErrUnavailable)
		}
	}
	return b.Store.ApplyAll(ctx, chs)
}

// Due entries whose handling fails with a store error stay in the index, at its
// head; the scan reads past them, so one pass still handles every other due entry
// (none waits a scan behind them), and once the store heals the next scan handles
// the failed ones, each sent once.
func TestScanDue_ReadsPastFailedEntries(t *testing.T) {
	cases := []struct {
		name           string
		workers, batch int
		broken, fine   int
	}{
		{"chunks", 1, 16, 40, 24},          // more failures than a chunk holds
		{"chunks growing", 1, 64, 100, 30}, // chunks of 16, 32, 64, 64, …
		{"stream", 4, 8, 20, 12},           // more failures than Batch+Workers
	}
	for _, tc := range cases {
		for _, commit := range []bool{false, true} {
			what := "read"
			if commit {
				what = "commit"
			}
			t.Run(tc.name+"/"+what, func(t *testing.T) {
				h := newHarness(t, at("2026-01-07", 9, 0), func(c *Config) { c.Workers, c.Batch = tc.workers, tc.batch })
				ids := addDue(t, h, tc.broken+tc.fine, "late") // index order: ids order
				bs := &brokenStore{Store: h.db, broken: map[string]bool{}, commit: commit}
				for _, id := range ids[:tc.broken] {
					bs.broken[id] = true
				}
				var err error
				h.s, err = New(h.s.cfg, bs, h.kl, WithClock(h.clock))
				require.NoError(t, err)

				res, err := h.s.Scan(context.Background())
				require.NoError(t, err)
				assert.Equal(t, ScanResult{Handled: tc.broken + tc.fine, Errors: tc.broken}, res)
				assert.Len(t, h.kl.payments, tc.fine, "every entry behind the failed ones sent in the same scan")
				for _, id := range ids[tc.broken:] {
					assert.Equal(t, storage.AttemptSubmitted, h.attempt(id, 0, 0).State, id)
				}
				due, err := h.db.DueBefore(context.Background(), h.clock.Now(), 1000)
				require.NoError(t, err)
				require.Len(t, due, tc.broken, "the failed entries stay due")
				for i, e := range due {
					assert.Equal(t, storage.AttemptKey{ConsentID: ids[i]}, e.Key)
					_, ok := h.attemptOK(ids[i], 0, 0)
					assert.False(t, ok, "%s: nothing written", ids[i])
				}

				bs.heal()
				h.clock.Advance(time.Minute)
				res, err = h.s.Scan(context.Background())
				require.NoError(t, err)
				assert.Equal(t, ScanResult{Handled: tc.broken}, res)
				assert.Len(t, h.kl.payments, tc.broken+tc.fine)
				for _, id := range ids {
					assert.Equal(t, storage.AttemptSubmitted, h.attempt(id, 0, 0).State, id)
					assertNoneStuck(t, h, id)
				}
				assertExactlyOnce(t, h)
			})
		}
	}
}

// The recorder's group: what has arrived, then, while sends are in flight, what
// arrives within Config.RecordWindow, up to Config.RecordBatch.
func TestPipeline_Gather(t *testing.T) {
	answerOf := func(n int) answer { return answer{err: fmt.Errorf("answer %d", n)} }
	pipe := func(batch int, window time.Duration) *pipeline {
		return &pipeline{s: &Scheduler{cfg: Config{RecordBatch: batch, RecordWindow: window}}, answers: make(chan answer, 8)}
	}
	errsOf := func(group []answer) []string {
		var out []string
		for _, a := range group {
			out = append(out, a.err.Error())
		}
		return out
	}

	t.Run("nothing in flight: what has arrived, at once", func(t *testing.T) {
		p := pipe(256, time.Hour) // a wait would outlast the test
		p.answers <- answerOf(2)
		assert.Equal(t, []string{"answer 1", "answer 2"}, errsOf(p.gather(answerOf(1))))
	})
	t.Run("sends in flight: waits for their answers up to the batch", func(t *testing.T) {
		p := pipe(3, time.Hour)
		p.sending.Store(2)
		got := make(chan []answer)
		go func() { got <- p.gather(answerOf(1)) }()
		p.answers <- answerOf(2)
		p.answers <- answerOf(3)
		assert.Equal(t, []string{"answer 1", "answer 2", "answer 3"}, errsOf(<-got))
	})
	t.Run("sends in flight: the window ends the wait", func(t *testing.T) {
		p := pipe(256, time.Nanosecond)
		p.sending.Store(1)
		assert.Equal(t, []string{"answer 1"}, errsOf(p.gather(answerOf(1))))
	})
	t.Run("no window: what has arrived, at once", func(t *testing.T) {
		p := pipe(256, -1)
		p.sending.Store(1)
		p.answers <- answerOf(2)
		assert.Equal(t, []string{"answer 1", "answer 2"}, errsOf(p.gather(answerOf(1))))
	})
	t.Run("the queue closed: what it held", func(t *testing.T) {
		p := pipe(256, time.Hour)
		p.sending.Store(1)
		p.answers <- answerOf(2)
		close(p.answers)
		assert.Equal(t, []string{"answer 1", "answer 2"}, errsOf(p.gather(answerOf(1))))
	})
}

// fencedAfter is a store whose writes fail with storage.ErrFenced once it has
// taken ok of them (a replica whose term ends during a scan), counting the writes
// tried and the due index reads made after that.
type fencedAfter struct {
	Store
	mu                     sync.Mutex
	ok                     int
	triedAfter, readsAfter int
}

func (f *fencedAfter) write(n int) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.ok > 0 {
		f.ok--
		return nil
	}
	f.triedAfter += n
	return fmt.Errorf("store: %w (test)", storage.ErrFenced)
}

func (f *fencedAfter) Apply(ctx context.Context, ch *storage.Change) error {
	if err := f.write(1); err != nil {
		return err
	}
	return f.Store.Apply(ctx, ch)
}

func (f *fencedAfter) ApplyAll(ctx context.Context, chs []*storage.Change) (int, error) {
	if err := f.write(len(chs)); err != nil {
		return 0, err
	}
	return f.Store.ApplyAll(ctx, chs)
}

func (f *fencedAfter) DueBefore(ctx context.Context, t time.Time, limit int) ([]storage.DueItem, error) {
	f.mu.Lock()
	if f.ok == 0 {
		f.readsAfter++
	}
	f.mu.Unlock()
	return f.Store.DueBefore(ctx, t, limit)
}

// A scan whose writes are fenced (the term ended) stops reading and deciding: it
// does not try every due entry of the day, each failing alike, nor read the index
// again past each of them. What it leaves stays due, for the next leader.
func TestScanDue_FencedEndsThePass(t *testing.T) {
	for _, workers := range []int{1, 4} {
		t.Run(fmt.Sprintf("workers %d", workers), func(t *testing.T) {
			h := newHarness(t, at("2026-01-07", 9, 0), func(c *Config) { c.Workers, c.Batch = workers, 16 })
			const n = 200
			ids := addDue(t, h, n, "fenced")
			fs := &fencedAfter{Store: h.db, ok: 2} // the first chunk's SUBMITTING and answers commit
			var err error
			h.s, err = New(h.s.cfg, fs, h.kl, WithClock(h.clock))
			require.NoError(t, err)

			res, err := h.s.Scan(context.Background())
			require.NoError(t, err)
			assert.Less(t, res.Handled, n/2, "%+v: the pass ended", res)
			assert.LessOrEqual(t, fs.triedAfter, 3*16, "writes tried once fenced")
			assert.LessOrEqual(t, fs.readsAfter, 2, "index reads once fenced")
			// An entry leaves the index only with its answer recorded; a sent one whose
			// answer the fence refused stays SUBMITTING, due, for the next leader to
			// look up.
			recorded := 0
			for _, id := range ids {
				if a, ok := h.attemptOK(id, 0, 0); ok && a.State == storage.AttemptSubmitted {
					recorded++
				}
			}
			due, err := h.db.DueBefore(context.Background(), h.clock.Now(), 1000)
			require.NoError(t, err)
			assert.Equal(t, n-recorded, len(due), "every entry not recorded stays due")
			assert.LessOrEqual(t, len(h.kl.payments), 2*16, "payments sent")
		})
	}
}

// failingGroupStore fails every GetConsentAttempts as a whole, as an engine whose
// read transaction failed.
type failingGroupStore struct{ Store }

func (failingGroupStore) GetConsentAttempts(context.Context, []storage.AttemptKey, []storage.ConsentAttempt) ([]storage.ConsentAttempt, error) {
	return nil, fmt.Errorf("store: %w (test)", storage.ErrUnavailable)
}

// readGroup locks a group's consents (the first waited for, the others only if
// free) and reads those it locked in one transaction; the others, and all of them
// when the read fails, are left to handleDue with no lock held.
func TestReadGroup(t *testing.T) {
	h := newHarness(t, at("2026-01-07", 9, 0), func(c *Config) { c.Workers = 1 }) // scanChunks: groups of maxGroup
	ids := addDue(t, h, 4, "late")
	items, err := h.db.DueBefore(context.Background(), h.clock.Now(), 10)
	require.NoError(t, err)
	require.Len(t, items, 4)

	held := h.s.locks.lock(ids[2]) // an operator's action on the third consent
	reads := h.s.readGroup(context.Background(), items, nil)
	require.Len(t, reads, 4)
	for i, r := range reads {
		if i == 2 {
			assert.Nil(t, r.unlock, "a lock held elsewhere is not waited for")
			continue
		}
		require.NotNil(t, r.unlock, ids[i])
		require.NoError(t, r.err)
		rec, att, err := h.db.GetConsentAttempt(context.Background(), items[i].Key)
		require.NoError(t, err)
		assert.Equal(t, rec, r.rec, ids[i])
		assert.Equal(t, att, r.att, ids[i])
		_, free := h.s.locks.tryLock(ids[i])
		assert.False(t, free, "%s: locked by the group", ids[i])
	}
	held()
	releaseReads(reads)
	for _, id := range ids {
		unlock, free := h.s.locks.tryLock(id)
		require.True(t, free, "%s: let go", id)
		unlock()
	}
	assert.Empty(t, h.s.locks.locks, "no lock entry left")

	one := h.s.readGroup(context.Background(), items[:1], reads)
	require.Len(t, one, 1)
	assert.Nil(t, one[0].unlock, "one entry: handleDue reads it")

	h.s.store = failingGroupStore{h.db}
	failed := h.s.readGroup(context.Background(), items, nil)
	for i, r := range failed {
		assert.Nil(t, r.unlock, "%s: left to handleDue", ids[i])
	}
	assert.Empty(t, h.s.locks.locks, "the failed read let every lock go")
	res, err := h.s.Scan(context.Background())
	require.NoError(t, err)
	assert.Equal(t, ScanResult{Handled: 4}, res, "decided one by one")
	assert.Len(t, h.kl.payments, 4)
	assertExactlyOnce(t, h)
}

// An entry whose decision may wait for Klavi (its attempt SUBMITTING or
// UNCONFIRMED: a lookup) is read alone, after the group, its lock let go at once:
// the decider does not hold the group's other consents through a lookup.
func TestReadGroup_LookupDecidedAlone(t *testing.T) {
	for _, state := range []storage.AttemptState{storage.AttemptSubmitting, storage.AttemptUnconfirmed} {
		t.Run(string(state), func(t *testing.T) {
			h := newHarness(t, at("2026-01-07", 9, 0), func(c *Config) { c.Workers = 1 })
			ids := addDue(t, h, 3, "lookup")
			// What a crash or an unknown outcome leaves, for the second consent's
			// cycle: Confirm set, so that its decision looks the payment up.
			a := &storage.Attempt{AttemptKey: storage.AttemptKey{ConsentID: ids[1]}, State: state,
				ClientRequestID: consent.ClientRequestID(ids[1], 0, 0), Date: d("2026-01-10"), Amount: 9990, Sends: 1,
				Confirm: storage.ConfirmLost}
			require.NoError(t, h.db.Apply(context.Background(), &storage.Change{Attempts: []*storage.Attempt{a}}))
			items, err := h.db.DueBefore(context.Background(), h.clock.Now(), 10)
			require.NoError(t, err)
			require.Len(t, items, 3)

			reads := h.s.readGroup(context.Background(), items, nil)
			require.Len(t, reads, 3)
			assert.True(t, reads[1].alone, "decided alone")
			assert.Nil(t, reads[1].unlock)
			unlock, free := h.s.locks.tryLock(ids[1])
			require.True(t, free, "its lock let go at once")
			unlock()
			for _, i := range []int{0, 2} {
				assert.False(t, reads[i].alone, ids[i])
				require.NotNil(t, reads[i].unlock, ids[i])
				assert.Nil(t, reads[i].att, "%s: nothing sent yet", ids[i])
			}
			releaseReads(reads)
			assert.Empty(t, h.s.locks.locks, "no lock entry left")

			res, err := h.s.Scan(context.Background())
			require.NoError(t, err)
			assert.Equal(t, ScanResult{Handled: 3}, res, "each entry decided once")
			h.kl.mu.Lock()
			finds := h.kl.finds
			h.kl.mu.Unlock()
			assert.GreaterOrEqual(t, finds, 1, "the second consent's payment was looked up")
			assertExactlyOnce(t, h)
		})
	}
}

// A decider whose group holds a consent another holds decides the rest of its
// group first, and waits for that one holding none of the group's locks: the other
// consents of the group are not held hostage (scanStream, groups {0,2,4} and
// {1,3,5} with two workers).
func TestScanStream_BusyLockWaitsLast(t *testing.T) {
	h := newHarness(t, at("2026-01-07", 9, 0), func(c *Config) { c.Workers, c.Batch = 2, 6 })
	ids := addDue(t, h, 6, "busy")
	held := h.s.locks.lock(ids[2]) // an operator's action, say, on the third consent
	done := make(chan error, 1)
	var res ScanResult
	go func() {
		var err error
		res, err = h.s.Scan(context.Background())
		done <- err
	}()
	deadline := time.After(30 * time.Second) // a bound on failure only
	for len(h.kl.createCalls()) < 5 {
		select {
		case err := <-done:
			t.Fatalf("the scan ended while %s was held: %v", ids[2], err)
		case <-deadline:
			held()
			t.Fatalf("only %d of the 5 free consents sent while %s was held: its group's others waited for it", len(h.kl.createCalls()), ids[2])
		default:
			runtime.Gosched()
		}
	}
	held()
	require.NoError(t, <-done)
	assert.Equal(t, ScanResult{Handled: 6}, res, "each entry decided once")
	assert.Len(t, h.kl.createCalls(), 6)
	assertExactlyOnce(t, h)
}

// revokingStore writes a revoke of consent id straight to the store, as another
// replica's admin API would (holding no lock of this scheduler's), just before the
// first SUBMITTING commit that carries that consent.
type revokingStore struct {
	Store
	id   string
	once sync.Once
}

func (r *revokingStore) ApplyAll(ctx context.Context, chs []*storage.Change) (int, error) {
	for _, ch := range chs {
		for _, a := range ch.Attempts {
			if a.ConsentID == r.id && a.State == storage.AttemptSubmitting {
				r.once.Do(func() {
					rec, err := r.Store.GetConsent(ctx, r.id)
					if err == nil {
						rec.State, rec.StateReason = storage.ConsentRevoked, "revoked through another replica"
						rec.Consent.Status = klavi.ConsentRevoked
						err = r.Store.Apply(ctx, &storage.Change{Consent: rec})
					}
					if err != nil {
						panic(err)
					}
				})
			}
		}
	}
	return r.Store.ApplyAll(ctx, chs)
}

// A consent revoked between the decision and its SUBMITTING commit, by a writer
// that holds none of this scheduler's locks, is not sent: the commit is guarded by
// the consent's version as the decision read it.
func TestScanDue_RevokedAfterTheDecisionIsNotSent(t *testing.T) {
	for _, workers := range []int{1, 4} {
		t.Run(fmt.Sprintf("workers %d", workers), func(t *testing.T) {
			h := newHarness(t, at("2026-01-07", 9, 0), func(c *Config) { c.Workers = workers })
			ids := addDue(t, h, 6, "guard")
			var err error
			h.s, err = New(h.s.cfg, &revokingStore{Store: h.db, id: ids[3]}, h.kl, WithClock(h.clock))
			require.NoError(t, err)
			_, err = h.s.Scan(context.Background())
			require.NoError(t, err)
			for _, c := range h.kl.createCalls() {
				assert.NotEqual(t, ids[3], c.ConsentID, "a revoked consent was sent")
			}
			assert.Len(t, h.kl.createCalls(), 5)
			_, ok := h.attemptOK(ids[3], 0, 0)
			assert.False(t, ok, "nothing written for it")
			h.clock.Advance(time.Minute)
			_, err = h.s.Scan(context.Background())
			require.NoError(t, err)
			assert.Len(t, h.kl.createCalls(), 5, "nor by the next scan")
		})
	}
}

// groupFenced is a store whose every write fails with storage.ErrFenced, ApplyAll
// after committing the first change of its group (a term that ended mid-commit on
// etcd, whose transactions are chunks), counting the calls.
type groupFenced struct {
	Store
	mu                sync.Mutex
	applies, applyAll int
}

func (f *groupFenced) Apply(context.Context, *storage.Change) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.applies++
	return fmt.Errorf("store: %w (test)", storage.ErrFenced)
}

func (f *groupFenced) ApplyAll(context.Context, []*storage.Change) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.applyAll++
	return 1, fmt.Errorf("store: %w (test)", storage.ErrFenced)
}

// Once a pass knows its term is over (pipeline.deposed), it writes and sends
// nothing more of it: a group of answers the fence refused is not written again one
// by one, the committer tries no SUBMITTING write, and a committed submission is
// not sent. Every consent is let go; each entry is counted failed or left, so the
// index keeps it for the next leader.
func TestPipeline_TermOver(t *testing.T) {
	setup := func(t *testing.T) (*harness, *groupFenced, *pipeline) {
		h := newHarness(t, at("2026-01-07", 9, 0), func(c *Config) { c.Workers = 1 })
		fs := &groupFenced{Store: h.db}
		var err error
		h.s, err = New(h.s.cfg, fs, h.kl, WithClock(h.clock))
		require.NoError(t, err)
		ctx := context.Background()
		return h, fs, h.s.newPipeline(ctx, ctx, h.clock.Now())
	}
	released := map[string]int{}
	var mu sync.Mutex
	subOf := func(id string) *submission {
		return &submission{a: &storage.Attempt{AttemptKey: storage.AttemptKey{ConsentID: id}}, release: func() {
			mu.Lock()
			released[id]++
			mu.Unlock()
		}}
	}

	t.Run("a fenced group of answers is not written again one by one", func(t *testing.T) {
		_, fs, p := setup(t)
		var group []answer
		for _, id := range []string{"a-1", "a-2", "a-3"} {
			group = append(group, answer{sub: subOf(id), ch: &storage.Change{}})
		}
		p.record(group)
		assert.Equal(t, 1, fs.applyAll)
		assert.Zero(t, fs.applies, "no answer written alone")
		assert.True(t, p.deposed.Load())
		assert.Equal(t, int64(2), p.failed.Load(), "the two the fence refused; the first was committed")
		for _, id := range []string{"a-1", "a-2", "a-3"} {
			assert.Equal(t, 1, released[id], id)
		}
	})
	t.Run("the committer tries no SUBMITTING write", func(t *testing.T) {
		_, fs, p := setup(t)
		p.deposed.Store(true)
		p.submit(context.Background(), []*submission{subOf("s-1"), nil, subOf("s-2")})
		assert.Zero(t, fs.applyAll+fs.applies, "writes tried")
		assert.Equal(t, int64(2), p.failed.Load())
		assert.Equal(t, 1, released["s-1"])
		assert.Equal(t, 1, released["s-2"])
	})
	t.Run("a committed submission is not sent", func(t *testing.T) {
		h, fs, p := setup(t)
		p.deposed.Store(true)
		a := p.exchange(subOf("x-1"))
		assert.ErrorIs(t, a.err, errTermOver)
		assert.Nil(t, a.ch)
		assert.Empty(t, h.kl.payments, "nothing sent to Klavi")
		p.record([]answer{a})
		assert.Zero(t, fs.applyAll+fs.applies, "nothing to write")
		assert.Equal(t, int64(1), p.left.Load(), "left SUBMITTING, for the next leader")
		assert.Zero(t, p.failed.Load())
		assert.Equal(t, 1, released["x-1"])
	})
}
