package scheduler

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/klavi-billing/billingd/cycle"
	"github.com/klavi-billing/billingd/storage"
)

// A submission is a request the due scan decided to send: the attempt (already made
// SUBMITTING in memory), its consent as read under the consent's lock, and that
// lock's release. Nothing is sent before submitting() is durable.
type submission struct {
	rec   *storage.ConsentRecord
	sched cycle.Schedule
	a     *storage.Attempt
	it    storage.DueItem
	// release lets go of the consent's lock (unlock, once: safe to call more than
	// once, from any goroutine).
	release  func()
	released atomic.Bool
	// handed: passed to a sender or the recorder, which release the lock; until
	// then the scan does (a panic on its goroutine included).
	handed bool
	// ch and one hold submitting's change, ans, due and poll exchange's, in the
	// submission's own allocation.
	ch, ans storage.Change
	one     [1]*storage.Attempt
	due     [2]storage.DueItem
	poll    [1]storage.PollItem
}

// unlock lets go of the submission's consent lock; later calls do nothing.
func (sub *submission) unlock() {
	if sub.release != nil && sub.released.CompareAndSwap(false, true) {
		sub.release()
	}
}

// submitting is the change that records the attempt SUBMITTING, made anew at each
// call.
func (sub *submission) submitting() *storage.Change {
	sub.one[0] = sub.a
	// Guard: nothing is sent for a consent changed since the decision read it
	// (an operator's revoke through another replica, which holds no lock of ours).
	sub.ch = storage.Change{Guard: sub.rec, Attempts: sub.one[:]}
	return &sub.ch
}

// scanDue is the due scan's pass. It keeps drain's contract: every entry at or
// before the pass's start is handled once, each decided on the clock's reading when
// it is decided, the clock re-checked against judged before each decision. It runs
// as a pipeline, so that no worker waits for a commit:
//
//  1. Entries are read in index order and decided by up to Config.Workers
//     goroutines (scanStream). A decision to send keeps its consent's lock and goes
//     to the committer at once. Every read starts at the head of the index, and
//     reaches past the entries this pass has in flight or left in place by a failure
//     (pipeline.kept): a head of failing entries holds back nothing behind it.
//  2. The committer commits the SUBMITTING attempts decided while its last
//     transaction ran, up to Config.Batch, together (Store.ApplyAll: one
//     transaction on bolt; transactions within the operation limit on etcd).
//  3. Config.Workers senders send them; each hands its answer to the recorder and
//     takes the next request at once.
//  4. The recorder commits the answers that arrived meanwhile together, at most
//     Config.RecordBatch in one transaction (a group commit), then releases their
//     consents. While sends are in flight it waits up to Config.RecordWindow for
//     more answers before it commits (pipeline.gather).
//
// The protocol is the one of a single entry (send): no request goes out before its
// SUBMITTING write is durable, and a crash anywhere leaves SUBMITTING attempts that
// the next scan sends again with the same clientRequestId or looks up. With
// Config.Workers 1 (the simulations) the stages run in chunks on the caller's
// goroutine, in order (scanChunks).
func (s *Scheduler) scanDue(stop, ctx context.Context, judged time.Time) (handled, failed int, err error) {
	passStart := judged
	if !s.stillTrusted(passStart) && !has(bugMissedOnDoubt) {
		return 0, 0, nil
	}
	// One due scan at a time: a scan holds the locks of the consents it has in flight,
	// and two scans taking theirs in different orders would wait on each other.
	s.scanMu.Lock()
	defer s.scanMu.Unlock()
	p := s.newPipeline(stop, ctx, passStart)
	if p.inline {
		return s.scanChunks(p, passStart.Round(0))
	}
	return s.scanStream(p, passStart.Round(0))
}

// scanStream is the due scan with Config.Workers > 1: entries are read in index
// order and each is decided as soon as a worker is free, with no barrier between
// chunks (a decision that waits, on a lookup at Klavi that met a 429 or on a
// consent a poll holds, holds back nothing else). At most Config.Workers decisions
// run at once; a consent with an entry being decided or in flight is not decided
// again until it is let go (its next entry is read again then).
func (s *Scheduler) scanStream(p *pipeline, now time.Time) (handled, failed int, err error) {
	var (
		counts   sync.Mutex
		seen     = map[storage.AttemptKey]bool{}
		todo     = make(chan []storage.Entry) // a group of entries, to a free decider
		deciding sync.WaitGroup
	)
	defer func() {
		close(todo)
		deciding.Wait()
		rfailed, left := p.close()
		failed += rfailed
		handled -= left
	}()
	// Config.Workers deciders for the whole pass (a goroutine per entry grew its
	// stack anew for every decision). Each takes a group of entries, reads their
	// records in one transaction (readGroup) and decides them in turn: first those
	// whose locks it holds, then, holding none of the group's, each whose lock was
	// busy (handleDue waits for it), so that no decider waits for a lock while it
	// holds another. Once the pass stops, or the replica is deposed, the rest of
	// the group is let go undecided.
	decide := func(items []storage.Entry, reads []lockedRead) []lockedRead {
		reads = s.readGroup(p.ctx, items, reads)
		inRounds(reads, func(i int, r lockedRead) bool {
			it := items[i]
			if p.stop.Err() != nil || p.deposed.Load() || !s.stillTrusted(p.passStart) && !has(bugMissedOnDoubt) {
				if r.unlock != nil {
					r.unlock()
				}
				p.letGo(it.Key.ConsentID)
				return true // left for the next pass, which judges the clock again
			}
			var sub *submission
			if err := s.decideEntry(p.ctx, it, r, &sub); err != nil {
				p.fail(it.Key, err) // before the let-go (kept)
			}
			counts.Lock()
			handled++
			counts.Unlock()
			if sub != nil {
				p.decide(sub) // let go once its answer is recorded
			} else {
				p.letGo(it.Key.ConsentID)
			}
			return true
		})
		return reads
	}
	for range s.cfg.Workers {
		deciding.Add(1)
		go func() {
			defer deciding.Done()
			var reads []lockedRead
			for items := range todo {
				reads = decide(items, reads)
			}
		}()
	}
	stop := p.stop
	for stop.Err() == nil && !p.deposed.Load() {
		// Entries being decided or in flight, and those a failure left in place, are
		// still in the index: read past them. busy first: an entry is counted kept
		// before its consent is let go, so none is missed between the two.
		busy := p.busyCount()
		items, rerr := s.store.DueBefore(stop, now, s.cfg.Batch+busy+p.kept())
		if rerr != nil {
			err = rerr
			return // decisions still running count themselves in (deferred wait)
		}
		var fresh []storage.Entry
		for _, it := range items {
			if len(fresh) == s.cfg.Batch {
				break
			}
			if seen[it.Key] || !p.take(it.Key.ConsentID) {
				continue // done in this pass, or its consent is busy: read again later
			}
			seen[it.Key] = true
			fresh = append(fresh, it)
		}
		if len(fresh) == 0 {
			if p.busyCount() > 0 {
				p.waitProgress() // a consent let go may have an entry left: read again
				continue
			}
			break
		}
		// Groups of up to maxGroup entries, while every decider gets several: one
		// read transaction serves a group; a decision that waits holds back the rest
		// of its group only. A group takes every m-th entry (m groups): the deciders,
		// each at its group's k-th entry, decide neighbours in index order, and a
		// commit's attempts share more of bbolt's pages than with consecutive groups
		// (fresh[0:8], fresh[8:16], …). make bench-history on the as-built store with
		// a year of history, peak RSS: 367 MiB one entry a decider, 437 MiB
		// consecutive groups, 418 MiB these (docs/BENCHMARKS.md).
		g := max(1, min(maxGroup, len(fresh)/s.cfg.Workers))
		m := (len(fresh) + g - 1) / g
		for j := 0; j < m; j++ {
			group := make([]storage.Entry, 0, g)
			for i := j; i < len(fresh); i += m {
				group = append(group, fresh[i])
			}
			if p.deposed.Load() {
				letGoFrom(p, fresh, j, m)
				return
			}
			select {
			case todo <- group:
			case <-stop.Done():
				letGoFrom(p, fresh, j, m)
				return
			}
		}
	}
	return
}

// scanChunks is the due scan with Config.Workers 1 (the simulations): chunks of
// entries decided in order, then their SUBMITTING attempts committed together, then
// each sent and its answer recorded, all on the caller's goroutine. The first chunk
// holds 16 entries, each next one twice the last, up to Config.Batch; each read
// reaches that many past the entries the pass has left in place (pipeline.kept).
func (s *Scheduler) scanChunks(p *pipeline, now time.Time) (handled, failed int, err error) {
	var (
		chunk []*submission // the chunk being decided or committed
		reads []lockedRead  // the group being decided: the locks not yet handed on
	)
	defer func() {
		if r := recover(); r != nil {
			releaseReads(reads)
			// A bug, recovered above (cron): the chunk's consents must not stay
			// locked for the life of the process.
			for _, sub := range chunk {
				if sub != nil && !sub.handed {
					sub.unlock()
				}
			}
			panic(r)
		}
		rfailed, left := p.close()
		failed += rfailed
		handled -= left
	}()
	seen := map[storage.AttemptKey]bool{}
	size := min(s.cfg.Batch, 16)
	stop := p.stop
	for stop.Err() == nil && !p.deposed.Load() {
		items, err := s.store.DueBefore(stop, now, size+p.kept())
		if err != nil {
			return handled, failed, err
		}
		// One entry per consent in a chunk: a second one (a retry beside an
		// original) waits for a later read, when the first has let go of the lock.
		var fresh []storage.Entry
		inChunk := map[string]bool{}
		for _, it := range items {
			if len(fresh) == size {
				break // a kept entry was removed meanwhile: the read held more
			}
			if seen[it.Key] || inChunk[it.Key.ConsentID] {
				continue
			}
			inChunk[it.Key.ConsentID] = true
			seen[it.Key] = true
			fresh = append(fresh, it)
		}
		if len(fresh) == 0 {
			break
		}
		subs := make([]*submission, len(fresh))
		chunk = subs
		// maxGroup entries at a time, their records read in one transaction: first
		// those whose locks readGroup took, then those whose locks were busy.
		for g0 := 0; g0 < len(fresh); g0 += maxGroup {
			group := fresh[g0:min(g0+maxGroup, len(fresh))]
			reads = s.readGroup(p.ctx, group, reads)
			stopped := false
			inRounds(reads, func(j int, r lockedRead) bool {
				if stop.Err() != nil || p.deposed.Load() {
					if r.unlock != nil {
						r.unlock()
					}
					releaseReads(reads)
					stopped = true
					return false
				}
				if !s.stillTrusted(p.passStart) && !has(bugMissedOnDoubt) {
					if r.unlock != nil {
						r.unlock()
					}
					return true // left for the next pass, which judges the clock again
				}
				if err := s.decideEntry(p.ctx, group[j], r, &subs[g0+j]); err != nil {
					p.fail(group[j].Key, err)
				}
				handled++
				return true
			})
			if stopped {
				break
			}
		}
		p.submit(p.ctx, subs)
		size = min(s.cfg.Batch, 2*size)
	}
	return handled, failed, nil
}

// inRounds visits a group read by readGroup in the order it is decided: the
// entries whose locks readGroup took, then those alone (handleDue waits for each
// lock, the decider holding none of the group's). A visited entry's read is fn's:
// its unlock is cleared in reads first, so that releaseReads (on a stop, or a
// panic's recovery) lets go only of those not yet visited. fn returns false to end
// the visit.
func inRounds(reads []lockedRead, fn func(j int, r lockedRead) bool) {
	for _, alone := range []bool{false, true} {
		for j := range reads {
			if reads[j].alone != alone {
				continue // visited in the other round
			}
			r := reads[j]
			reads[j].unlock = nil
			if !fn(j, r) {
				return
			}
		}
	}
}

// fail counts due entry k failed, its handling having ended in err, and logs it; an
// err saying this replica's term is over ends the pass's reading (noteDeposed).
func (p *pipeline) fail(k storage.AttemptKey, err error) {
	p.s.log.Error("due entry left for the next scan", "consent_id", k.ConsentID,
		"cycle", k.Cycle, "attempt", k.Attempt, "err", err)
	p.failed.Add(1)
	p.noteDeposed(err)
}

// letGoFrom lets go of the consents of the groups j..m-1 of fresh (group j holds
// every m-th entry from j), which were not handed to a decider.
func letGoFrom(p *pipeline, fresh []storage.Entry, j, m int) {
	for i, it := range fresh {
		if i%m >= j {
			p.letGo(it.Key.ConsentID)
		}
	}
}

// releaseReads lets go of the locks reads hold (entries not to be decided).
func releaseReads(reads []lockedRead) {
	for i := range reads {
		if reads[i].unlock != nil {
			reads[i].unlock()
			reads[i].unlock = nil
		}
	}
}

// A pipeline sends a scan's committed submissions and records their answers.
type pipeline struct {
	s         *Scheduler
	stop, ctx context.Context
	passStart time.Time // the clock reading the scan judged (stillTrusted)
	inline    bool      // Config.Workers 1: every stage on the caller's goroutine

	decided   chan *submission // to the committer
	committed chan struct{}    // closed when the committer has returned
	work      chan *submission
	answers   chan answer
	senders   sync.WaitGroup
	recorded  chan struct{} // closed when the recorder has returned

	// busy: consents with an entry being decided or in flight (scanStream), let go
	// when the decision sends nothing or the answer is recorded; progress is
	// signaled on every let-go.
	busyMu   sync.Mutex
	busy     map[string]bool
	progress *sync.Cond
	// failed and left count entries the pass leaves in the index (kept), each
	// before its consent is let go.
	failed atomic.Int64 // their handling failed (a store error)
	left   atomic.Int64 // not sent: the scan stopped, or the clock stepped
	// deposed is set once a write failed because this replica's term ended
	// (storage.ErrFenced): the pass reads and decides nothing more, since every write
	// of the term would fail alike, and leaves the rest to the next leader.
	deposed atomic.Bool
	// sending counts submissions handed to the senders whose answer is not yet
	// queued for the recorder.
	sending atomic.Int64
}

// An answer is a sent submission and the change recording what Klavi answered (nil:
// nothing was sent), err what to report once it is written.
type answer struct {
	sub *submission
	ch  *storage.Change
	err error
}

func (s *Scheduler) newPipeline(stop, ctx context.Context, passStart time.Time) *pipeline {
	p := &pipeline{s: s, stop: stop, ctx: ctx, passStart: passStart, inline: s.cfg.Workers == 1, busy: map[string]bool{}}
	p.progress = sync.NewCond(&p.busyMu)
	if p.inline {
		return p
	}
	// A submission holds its consent's lock from its decision to its recorded
	// answer, and a poll or an operator's action on that consent waits that long:
	// the queues are short, a record batch at most (tens of milliseconds at full
	// speed), not a read batch. The deciders' queue holds 4 × Workers (at most a
	// record batch or a read batch; a transaction holds no more than a read batch):
	// the committer takes what it holds when its last transaction ends, and with
	// BenchmarkScanSubmit's 64 workers a queue of 64 held SUBMITTING transactions
	// to about 110 attempts, against 130 with 256 (6 interleaved pairs: page writes
	// a submission 1.58 against 1.42, submissions/s +6 %; a queue of 1024 measured
	// no better; docs/BENCHMARKS.md, "Issue 13, tenth pass"). Bound by Workers, a
	// consent decided while Klavi is slow waits behind a few requests' time of
	// others, not a record batch's.
	p.decided = make(chan *submission, max(s.cfg.Workers, min(4*s.cfg.Workers, s.cfg.Batch, s.cfg.RecordBatch)))
	p.committed = make(chan struct{})
	p.work = make(chan *submission, s.cfg.Workers)
	// The answers' queue holds a full group: senders do not wait for the recorder's
	// window.
	p.answers = make(chan answer, max(s.cfg.Workers, s.cfg.RecordBatch))
	p.recorded = make(chan struct{})
	go func() {
		defer close(p.committed)
		for sub := range p.decided {
			group := []*submission{sub}
		more:
			for len(group) < s.cfg.Batch {
				select {
				case sub, ok := <-p.decided:
					if !ok {
						break more
					}
					group = append(group, sub)
				default:
					break more
				}
			}
			p.submit(ctx, group)
		}
	}()
	for range s.cfg.Workers {
		p.senders.Add(1)
		go func() {
			defer p.senders.Done()
			for sub := range p.work {
				a := p.exchange(sub)
				p.sending.Add(-1)
				p.answers <- a
			}
		}()
	}
	go func() {
		defer close(p.recorded)
		for a := range p.answers {
			p.record(p.gather(a))
		}
	}()
	return p
}

// gather is the recorder's next group: first, the answers that arrived meanwhile,
// up to Config.RecordBatch. While sends are still in flight it then waits up to
// Config.RecordWindow (wall time, from first) for more, so that one commit records
// many answers: at 10,000 submissions/s on 2 CPUs the recorder otherwise committed
// about 17 answers at a time, and each commit's fsync and page writes cost as much
// CPU as the answers it held (docs/BENCHMARKS.md, "Issue 13, third pass").
func (p *pipeline) gather(first answer) []answer {
	group := []answer{first}
	var window <-chan time.Time
	for len(group) < p.s.cfg.RecordBatch {
		select {
		case a, ok := <-p.answers:
			if !ok {
				return group
			}
			group = append(group, a)
			continue
		default:
		}
		if p.s.cfg.RecordWindow <= 0 || p.sending.Load() == 0 {
			return group // nothing more is on its way
		}
		if window == nil {
			t := time.NewTimer(p.s.cfg.RecordWindow)
			defer t.Stop()
			window = t.C
		}
		select {
		case a, ok := <-p.answers:
			if !ok {
				return group
			}
			group = append(group, a)
		case <-window:
			return group
		}
	}
	return group
}

// noteDeposed reports whether err says this replica's term is over, and if so ends
// the pass's reading (pipeline.deposed), logging it once. Only the store's word
// counts (storage.ErrFenced: the fence no longer holds at commit). ErrNotLeader from
// the look before a send does not: Holds can read false for a moment when a
// keepalive is late, and the pass goes on to the entries behind, whose own looks
// may find the term held again.
func (p *pipeline) noteDeposed(err error) bool {
	if !errors.Is(err, storage.ErrFenced) {
		return false
	}
	if !p.deposed.Swap(true) {
		p.s.log.Warn("this replica's term is over: the due scan stops reading; the next leader scans the rest", "err", err)
	}
	return true
}

// take marks a consent busy; false when it already is.
func (p *pipeline) take(id string) bool {
	p.busyMu.Lock()
	defer p.busyMu.Unlock()
	if p.busy[id] {
		return false
	}
	p.busy[id] = true
	return true
}

// letGo marks a consent no longer busy (a no-op outside scanStream).
func (p *pipeline) letGo(id string) {
	p.busyMu.Lock()
	defer p.busyMu.Unlock()
	if p.busy[id] {
		delete(p.busy, id)
		p.progress.Broadcast()
	}
}

// kept is how many entries the pass has handled and left in the index (a failure, a
// request not sent), which each read of the index reaches past. Entries skipped
// because the clock stepped are not counted: every entry after them would be skipped
// too, and the pass ends at the first read that holds nothing new.
func (p *pipeline) kept() int {
	return int(p.failed.Load() + p.left.Load())
}

// busyCount is how many consents are busy.
func (p *pipeline) busyCount() int {
	p.busyMu.Lock()
	defer p.busyMu.Unlock()
	return len(p.busy)
}

// waitProgress returns once a consent has been let go (at once when none is busy).
func (p *pipeline) waitProgress() {
	p.busyMu.Lock()
	defer p.busyMu.Unlock()
	if len(p.busy) > 0 {
		p.progress.Wait()
	}
}

// decide hands a decided submission to the committer.
func (p *pipeline) decide(sub *submission) {
	sub.handed = true
	p.decided <- sub
}

// submit commits subs' SUBMITTING attempts (nil entries are skipped) and hands the
// committed ones to the senders. Those that could not be committed are counted
// failed and their consents released; their entries stay for the next scan.
func (p *pipeline) submit(ctx context.Context, subs []*submission) {
	var (
		ready []*submission
		chs   []*storage.Change
	)
	for _, sub := range subs {
		if sub != nil {
			ready = append(ready, sub)
			chs = append(chs, sub.submitting())
		}
	}
	if len(ready) == 0 {
		return
	}
	s := p.s
	committed := make([]bool, len(ready))
	if has(bugPostBeforeDurable) {
		for i := range committed {
			committed[i] = true
		}
	} else if p.deposed.Load() {
		// The term is over: this write would fail like the one that said so (the
		// entries stay due, for the next leader).
		s.log.Error("due entries left for the next scan: this replica's term is over", "entries", len(ready))
	} else {
		applied, err := s.store.ApplyAll(ctx, chs)
		for i := range applied {
			committed[i] = true
		}
		if err != nil && p.noteDeposed(err) {
			// A fence lost: every other write of this term fails alike.
			s.log.Error("due entries left for the next scan", "entries", len(ready)-applied, "err", err)
		} else if err != nil {
			// One change the store refused (a version moved on) fails its whole
			// transaction: the rest are committed one by one.
			for i := applied; i < len(ready); i++ {
				if err := s.store.Apply(ctx, chs[i]); err != nil {
					k := ready[i].a.AttemptKey
					s.log.Error("due entry left for the next scan", "consent_id", k.ConsentID,
						"cycle", k.Cycle, "attempt", k.Attempt, "err", err)
					continue
				}
				committed[i] = true
			}
		}
	}
	for i, sub := range ready {
		if !committed[i] {
			p.failed.Add(1) // before the let-go (kept)
			sub.handed = true
			sub.unlock()
			p.letGo(sub.a.ConsentID)
			continue
		}
		if p.inline {
			p.record([]answer{p.exchange(sub)}) // releases it (a panic: the scan does)
			continue
		}
		sub.handed = true
		p.sending.Add(1)
		p.work <- sub
	}
}

// errClockStepped: the clock stepped between a submission's decision and its turn to
// be sent.
var errClockStepped = errors.New("the clock stepped during the scan: left for the next scan, which judges it again")

// errTermOver: the pass learned that this replica's term ended (pipeline.deposed)
// before a committed submission's turn to be sent.
var errTermOver = errors.New("this replica's term is over: left SUBMITTING for the next leader")

// exchange sends a committed submission, unless the scan is stopping or the clock
// stepped since the scan judged it: then it stays SUBMITTING, with its due entry, to
// be decided again by the next scan (sent with the same key, or looked up).
func (p *pipeline) exchange(sub *submission) answer {
	if p.stop.Err() != nil {
		return answer{sub: sub, err: p.stop.Err()}
	}
	if p.deposed.Load() {
		// Its answer could not be recorded (the store fences this term's writes):
		// the next leader sends it with the same key, or looks it up.
		return answer{sub: sub, err: errTermOver}
	}
	if !p.s.stillTrusted(p.passStart) && !has(bugMissedOnDoubt) {
		return answer{sub: sub, err: errClockStepped}
	}
	ch, err := p.s.exchange(p.ctx, sub, p.s.clock.Now())
	return answer{sub: sub, ch: ch, err: err}
}

// record commits a group of answers in one transaction where it can (one by one when
// the store refuses the group), then releases their consents. A known outcome is
// recorded even if the scan's context is canceled meanwhile (shutdown).
func (p *pipeline) record(group []answer) {
	s := p.s
	wctx := context.WithoutCancel(p.ctx)
	var (
		chs []*storage.Change
		at  []int // group index of each change
	)
	for i, a := range group {
		if a.ch != nil {
			chs = append(chs, a.ch)
			at = append(at, i)
		}
	}
	errs := make([]error, len(group))
	for i, a := range group {
		errs[i] = a.err
	}
	switch {
	case len(chs) == 1:
		if err := s.store.Apply(wctx, chs[0]); err != nil {
			errs[at[0]] = err
		}
	case len(chs) > 1:
		if applied, err := s.store.ApplyAll(wctx, chs); err != nil && p.noteDeposed(err) {
			// The term is over: each write alone would fail alike. The answers not
			// committed leave their attempts SUBMITTING, for the next leader to
			// look up.
			for j := applied; j < len(chs); j++ {
				errs[at[j]] = err
			}
		} else if err != nil {
			// One change the store refused fails the transaction it was in: those
			// not committed are written one by one, each with its own error.
			for j := applied; j < len(chs); j++ {
				if err := s.store.Apply(wctx, chs[j]); err != nil {
					errs[at[j]] = err
				}
			}
		}
	}
	for i, a := range group {
		// Counted before the let-go (kept).
		switch err := errs[i]; {
		case err == nil:
		case a.ch == nil && (a.err == errClockStepped || a.err == errTermOver || errors.Is(a.err, context.Canceled) && p.stop.Err() != nil):
			// Not sent, and not a failure: left SUBMITTING for the next scan, as an
			// entry the scan had not reached yet.
			p.left.Add(1)
		default:
			p.fail(a.sub.a.AttemptKey, err)
		}
		a.sub.unlock()
		p.letGo(a.sub.a.ConsentID)
	}
}

// close waits for every submission to be answered and recorded, and returns how
// many failed and how many were left unsent (the scan stopped, the clock stepped).
func (p *pipeline) close() (failed, left int) {
	if !p.inline {
		close(p.decided)
		<-p.committed
		close(p.work)
		p.senders.Wait()
		close(p.answers)
		<-p.recorded
	}
	return int(p.failed.Load()), int(p.left.Load())
}
