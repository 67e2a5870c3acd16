package simulation

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/klavi-billing/billingd/scheduler"
)

// Was wrong: a local retry recorded DROPPED (its request day passed; DESIGN.md,
// Retries: "dropped and reported, never sent") showed nowhere in a run's output: not
// in the timeline (text or JSON) nor in the summary, only in the kept store.
func TestSummary_CountsDroppedRetries(t *testing.T) {
	s := &Summary{}
	for _, k := range []scheduler.EventKind{scheduler.EventRetrySubmitted, scheduler.EventRetryDropped, scheduler.EventRetryDropped, scheduler.EventRetryPlanned} {
		count(s, scheduler.Event{Kind: k})
	}
	assert.Equal(t, 1, s.Retries)
	assert.Equal(t, 2, s.Dropped)
	assert.True(t, timelineKinds[scheduler.EventRetryDropped], "a dropped retry is a line of the timeline (text and JSON)")
	assert.False(t, timelineKinds[scheduler.EventRetryPlanned], "a planned one is not: its request or drop is")
	_, ok := OutcomeOf(string(scheduler.EventRetryDropped))
	assert.False(t, ok, "no payment: no ledger outcome")
}
