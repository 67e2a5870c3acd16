package bolt

import (
	"sync"
	"time"
)

// mappedCheckEvery bounds how often a write reads the process's mapped memory.
const mappedCheckEvery = 5 * time.Millisecond

// A mappedBudget keeps the file pages a process maps while it works through a
// scattered file within a budget (Options.MappedBudget, storage.mapped_budget_mib).
// bbolt reads the file through a shared mapping, and every page fault maps up to 16
// neighbouring pages of the page cache besides the one read (Linux's fault-around,
// which madvise(MADV_RANDOM) does not turn off): on a file whose buckets a year of
// copy-on-write has spread, a due scan of 10,000 consents came to map 340 MiB,
// about 36 KB per page fault (9,500 faults), where a new store's scan mapped 76 MiB.
// Past the budget, the pages are given back: they stay in
// the page cache, and those read again are mapped again, at a cost: with 64 MiB,
// peak RSS fell from 3.49x to 1.06-1.12x that of a scan of a new store, and
// submissions/s from 0.96x to 0.89-0.94x (docs/BENCHMARKS.md, "Issue 13, third pass").
type mappedBudget struct {
	budget int64 // bytes; 0: no bound

	mu      sync.Mutex
	base    int64 // mapped after the last release (or the first look)
	checked time.Time
	// released counts the releases, for tests and figures.
	released int
}

// boundMapped gives back the mapping's pages when the process maps more than the
// budget beyond the base. It looks at most every mappedCheckEvery.
func (db *engine) boundMapped() {
	m := &db.mapped
	if m.budget <= 0 {
		return
	}
	if !m.mu.TryLock() {
		return // another write is looking
	}
	defer m.mu.Unlock()
	now := time.Now()
	if now.Sub(m.checked) < mappedCheckEvery {
		return
	}
	m.checked = now
	cur := mappedFile()
	if cur < 0 {
		return
	}
	if m.base == 0 || cur < m.base {
		m.base = cur
		return
	}
	if cur-m.base <= m.budget {
		return
	}
	db.release()
	m.released++
	if after := mappedFile(); after >= 0 {
		m.base = after
	}
}
