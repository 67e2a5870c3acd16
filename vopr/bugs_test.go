//go:build voprbugs

package vopr_test

import (
	"bytes"
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klavi-billing/billingd/scheduler"
	"github.com/klavi-billing/billingd/vopr"
)

// TestBugs injects each deliberate mistake of scheduler/bugs.go (build tag
// voprbugs) and shows that the simulator finds it within a bounded number of
// seeds, names the invariant it breaks and the seed, and that the seed replays to
// the same trace.
func TestBugs(t *testing.T) {
	for _, tc := range []struct {
		bug        string
		invariants []string // any of these may catch it
		within     int      // seeds
	}{
		{"post-before-durable", []string{"postAfterDurableSubmitting"}, 50},
		{"new-key-on-resend", []string{"clientRequestIDDerived"}, 100},
		{"retry-past-window", []string{"retryWithinWindow", "previewCameTrue"}, 200},
		{"missed-on-doubt", []string{"noDecisionOnDoubtedClock"}, 200},
		{"409-is-created", []string{"recordedPaymentExists", "klaviAndBillingdAgree"}, 200},
	} {
		t.Run(tc.bug, func(t *testing.T) {
			undo, err := scheduler.InjectBug(tc.bug)
			require.NoError(t, err)
			defer undo()
			sum := vopr.Explore(context.Background(), vopr.ExploreOptions{Count: tc.within})
			require.NotEmpty(t, sum.Failed, "bug %s not found in %d seeds", tc.bug, sum.Seeds)
			res := sum.Failed[0]
			for _, f := range sum.Failed { // the first seed, whichever worker found it first
				if f.Seed < res.Seed {
					res = f
				}
			}
			t.Logf("bug %s: seed %d after %d seeds: %v", tc.bug, res.Seed, sum.Seeds, res.Violation)
			assert.Contains(t, tc.invariants, res.Violation.Invariant, "seed %d:\n%s", res.Seed, vopr.Tail(res.Trace, 30))
			again := vopr.Run(context.Background(), res.Seed, vopr.Options{})
			require.NotNil(t, again.Violation, "seed %d replayed without a violation", res.Seed)
			assert.Equal(t, *res.Violation, *again.Violation)
			assert.True(t, bytes.Equal(res.Trace, again.Trace), "seed %d replayed to another trace", res.Seed)
		})
	}
}
