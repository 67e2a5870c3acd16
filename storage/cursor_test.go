package storage

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klavi-billing/billingd/cycle"
)

// cursorFields reads what json.Unmarshal reads, from every cursor putCursor writes.
func TestCursorFields(t *testing.T) {
	for _, c := range []consentCursor{
		{State: ConsentActive, NextCycle: 7, Version: 3, UpdatedAt: t0, BillFrom: cycle.MustDate(2026, 3, 2)},
		{State: ConsentAwaiting},
		{State: ConsentRevoked, StateReason: `said "state":"active","nextCycle":1,"version":2}`, NextCycle: 1 << 20, Version: 1<<63 + 5, NextDue: t0.Add(time.Hour)},
		{State: ConsentExpired, StateReason: `\"state\":\"active\"`, NextCycle: 0, Version: 0},
		{State: "a-state-of-the-future", NextCycle: 2, Version: 9},
	} {
		raw, err := json.Marshal(c)
		require.NoError(t, err)
		st, next, v, err := cursorFields(raw)
		require.NoError(t, err, "%s", raw)
		assert.Equal(t, c.State, st, "%s", raw)
		assert.Equal(t, c.NextCycle, next, "%s", raw)
		assert.Equal(t, c.Version, v, "%s", raw)
	}
	// Not one of putCursor's: decoded in full, or refused.
	st, next, v, err := cursorFields([]byte(`{"nextCycle": 4, "state": "active", "version": 2}`))
	assert.NoError(t, err)
	assert.Equal(t, ConsentActive, st)
	assert.Equal(t, 4, next)
	assert.Equal(t, uint64(2), v)
	_, next, _, err = cursorFields([]byte(`{"state":"active","nextCycle":-1}`))
	assert.NoError(t, err)
	assert.Equal(t, -1, next)
	_, _, _, err = cursorFields([]byte(`not json`))
	var want consentCursor
	assert.EqualError(t, err, json.Unmarshal([]byte(`not json`), &want).Error(), "the codec's error")
}
