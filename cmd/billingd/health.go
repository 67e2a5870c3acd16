package main

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/klavi-billing/billingd/metrics"
	"github.com/klavi-billing/billingd/storage"
)

// probeEvery is how often an unhealthy store is probed with a write that changes
// nothing, when no other write has been tried meanwhile: readiness comes back by
// itself once the disk has room again, even with no billing work to do.
const probeEvery = 5 * time.Second

// storeHealth follows the outcome of every store write (storage.Options.OnWrite):
// the store is healthy until a write fails and again once one succeeds. It feeds
// /readyz and the billingd_store_* metrics, and stops the daemon when the database
// file was replaced.
type storeHealth struct {
	log  *slog.Logger
	m    *metrics.Metrics
	stop func(error)

	// dir is the database's directory: after a full disk, a write that succeeds is
	// taken as recovery only when the file system has minFree bytes free again (a
	// small write can fit in pages the file already has while the disk is full).
	dir     string
	minFree uint64

	mu      sync.Mutex
	failure error     // the last failure while unhealthy; nil when healthy
	tried   time.Time // the last write attempt (real time: it paces the probe)
}

// diskMinFree is the free space a full disk must get back before the store counts as
// healthy again: room for the file to grow by a few bbolt allocations.
const diskMinFree = 4 << 20

func newStoreHealth(log *slog.Logger, m *metrics.Metrics, stop func(error)) *storeHealth {
	return &storeHealth{log: log, m: m, stop: stop, minFree: diskMinFree}
}

// wrote records one write's outcome. It logs only the changes between healthy and
// failing; each failed write is counted in billingd_store_write_errors_total.
func (h *storeHealth) wrote(err error) {
	h.mu.Lock()
	was := h.failure
	if err == nil && was != nil && storage.FailureReason(was) == "enospc" && h.dir != "" {
		if free, ok := freeBytes(h.dir); ok && free < h.minFree {
			h.tried = time.Now() // still full: the write fit in the file's own pages
			h.mu.Unlock()
			return
		}
	}
	h.failure, h.tried = err, time.Now()
	h.mu.Unlock()
	h.m.StoreWrite(err)
	switch {
	case err != nil && was == nil:
		h.log.Error("store writes fail: not ready until a write succeeds; nothing is sent without its write",
			"reason", storage.FailureReason(err), "err", err)
	case err == nil && was != nil:
		h.log.Info("store writes again: ready")
	}
	if errors.Is(err, storage.ErrReplaced) {
		h.stop(err)
	}
}

// problem is why the store is unhealthy, or "".
func (h *storeHealth) problem() string {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.failure == nil {
		return ""
	}
	return "store writes fail (" + storage.FailureReason(h.failure) + "): " + h.failure.Error()
}

// probeLoop calls probe while the store is unhealthy and no write was tried for
// probeEvery, until ctx ends.
func (h *storeHealth) probeLoop(ctx context.Context, probe func(context.Context) error) {
	t := time.NewTicker(probeEvery / 5)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		h.mu.Lock()
		due := h.failure != nil && time.Since(h.tried) >= probeEvery
		h.mu.Unlock()
		if due {
			_ = probe(ctx) // reported through wrote
		}
	}
}
