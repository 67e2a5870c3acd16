package vopr

import (
	"context"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// ExploreOptions tune Explore.
type ExploreOptions struct {
	// Budget is how long to run seeds (0: only Seeds, or Count seeds).
	Budget time.Duration
	// Count stops after this many seeds (0: no limit but the budget).
	Count int
	// Seeds run first, in order (the seeds that once failed).
	Seeds []uint64
	// Next returns the seeds to draw after Seeds (default: counting up from 1).
	Next func() uint64
	// Parallel is how many worlds run at once (default GOMAXPROCS).
	Parallel int
	// Stop at the first violation (default true via StopOnViolation).
	KeepGoing bool
	Options   Options
}

// Summary is what Explore did.
type Summary struct {
	Seeds   int
	SimDays int
	Elapsed time.Duration
	// Failed holds the results with a violation, in seed order of discovery.
	Failed []*Result
	Posts  int
}

// SeedsPerSecond and DaysPerSecond are the throughput figures.
func (s *Summary) SeedsPerSecond() float64 { return float64(s.Seeds) / s.Elapsed.Seconds() }
func (s *Summary) DaysPerSecond() float64  { return float64(s.SimDays) / s.Elapsed.Seconds() }

// Explore runs worlds until the budget, the count or (unless KeepGoing) the first
// violation. Each world is a function of its seed alone, so running them in
// parallel changes nothing in any of them.
func Explore(ctx context.Context, o ExploreOptions) *Summary {
	par := o.Parallel
	if par <= 0 {
		par = runtime.GOMAXPROCS(0)
	}
	var deadline time.Time
	started := time.Now()
	if o.Budget > 0 {
		deadline = started.Add(o.Budget)
	}
	var (
		mu    sync.Mutex
		sum   = &Summary{}
		i     int
		count = 1
		stop  atomic.Bool
	)
	next := func() (uint64, bool) {
		mu.Lock()
		defer mu.Unlock()
		if stop.Load() || ctx.Err() != nil || (!deadline.IsZero() && time.Now().After(deadline) && i >= len(o.Seeds)) ||
			(o.Count > 0 && i >= o.Count) || (deadline.IsZero() && o.Count == 0 && i >= len(o.Seeds)) {
			return 0, false
		}
		defer func() { i++ }()
		if i < len(o.Seeds) {
			return o.Seeds[i], true
		}
		if o.Next != nil {
			return o.Next(), true
		}
		s := uint64(count)
		count++
		return s, true
	}
	var wg sync.WaitGroup
	for range par {
		wg.Go(func() {
			for {
				seed, ok := next()
				if !ok {
					return
				}
				res := Run(ctx, seed, o.Options)
				mu.Lock()
				sum.Seeds++
				sum.SimDays += res.Days
				sum.Posts += res.Posts
				if res.Violation != nil {
					sum.Failed = append(sum.Failed, res)
					if !o.KeepGoing {
						stop.Store(true)
					}
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	sum.Elapsed = time.Since(started)
	return sum
}
