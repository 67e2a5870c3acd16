package bolt

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/klavi-billing/billingd/cycle"
	"github.com/klavi-billing/billingd/klavi"
	"github.com/klavi-billing/billingd/storage"
	"github.com/klavi-billing/billingd/storage/storagetest"
)

// BenchmarkSubmission measures the store's share of one submission: the two
// writes the scheduler makes for it (due.go's send), each op a different consent:
// the SUBMITTING attempt, then the answer (SUBMITTED with its poll entry and
// "submitted" event, the cursor moved to the next cycle and its due entry). The
// file is not synced and a batch does not wait for company (the fsync and the
// group commit window are the disk's costs, not the store's): allocs/op is the
// figure to watch. history=12: every consent already has twelve settled monthly
// cycles, each with its two events.
func BenchmarkSubmission(b *testing.B) {
	for _, months := range []int{0, 12} {
		b.Run(fmt.Sprintf("history=%d", months), func(b *testing.B) {
			ctx := context.Background()
			db, err := Open(filepath.Join(b.TempDir(), "billingd.db"), Options{NoSync: true, MaxBatchDelay: time.Microsecond})
			require.NoError(b, err)
			defer db.Close()
			recs := make([]*storage.ConsentRecord, b.N)
			var chs []*storage.Change
			for i := range recs {
				r := storagetest.Record(b, fmt.Sprintf("urn:bench:%07d", i), storage.ConsentActive)
				r.NextCycle, r.NextDue = months, storagetest.T0
				ch := &storage.Change{Consent: r, NewConsent: true, PutDue: []storage.DueItem{{At: r.NextDue, Key: storage.AttemptKey{ConsentID: r.ID(), Cycle: months}}}}
				for k := 0; k < months; k++ {
					a := storagetest.Attempt(r.ID(), k, 0, storage.AttemptCompleted, cycle.DateOf(storagetest.T0).AddDays(30*(k-months)), storagetest.T0)
					a.PaymentID, a.Status = fmt.Sprintf("pay-%d", k), klavi.PaymentCompleted
					ch.Attempts = append(ch.Attempts, a)
					ch.Events = append(ch.Events, storage.AttemptEvent("submitted", a.CreatedAt, a, storage.ActorBillingd, ""),
						storage.AttemptEvent("completed", a.CreatedAt, a, storage.ActorBillingd, ""))
				}
				recs[i] = r
				chs = append(chs, ch)
				if len(chs) == 1000 {
					_, err := db.ApplyAll(ctx, chs)
					require.NoError(b, err)
					chs = chs[:0]
				}
			}
			_, err = db.ApplyAll(ctx, chs)
			require.NoError(b, err)
			date := cycle.DateOf(storagetest.T0).AddDays(3)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				r := recs[i]
				key := storage.AttemptKey{ConsentID: r.ID(), Cycle: r.NextCycle}
				a := storagetest.Attempt(r.ID(), key.Cycle, 0, storage.AttemptSubmitting, date, storagetest.T0)
				a.Sends = 1
				if err := db.Apply(ctx, &storage.Change{Attempts: []*storage.Attempt{a}}); err != nil {
					b.Fatal(err)
				}
				a.State, a.PaymentID, a.Status, a.SubmittedAt = storage.AttemptSubmitted, "pay-new", klavi.PaymentPending, storagetest.T0
				a.NextPoll = storagetest.T0.Add(5 * time.Minute)
				old := r.NextDue
				r.NextCycle, r.NextDue = key.Cycle+1, old.Add(30*24*time.Hour)
				ch := &storage.Change{Attempts: []*storage.Attempt{a}, Cursor: r,
					DelDue:  []storage.DueItem{{At: old, Key: key}},
					PutDue:  []storage.DueItem{{At: r.NextDue, Key: storage.AttemptKey{ConsentID: r.ID(), Cycle: key.Cycle + 1}}},
					PutPoll: []storage.PollItem{{At: a.NextPoll, Key: key}},
					Events:  []storage.Event{storage.AttemptEvent("submitted", storagetest.T0, a, storage.ActorBillingd, "")}}
				if err := db.Apply(ctx, ch); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
