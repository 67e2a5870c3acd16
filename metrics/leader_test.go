package metrics

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"

	"github.com/klavi-billing/billingd/leader"
	"github.com/klavi-billing/billingd/storage/kv"
)

func TestSetLeader(t *testing.T) {
	m := New("v", "r")
	m.SetLeader(leader.Status{}) // at start: a follower, nothing counted
	assert.Equal(t, 0.0, testutil.ToFloat64(m.leader.leading))
	assert.Equal(t, 0.0, testutil.ToFloat64(m.leader.changes))
	at := time.Date(2026, 3, 5, 12, 0, 0, 0, time.UTC)
	m.SetLeader(leader.Status{Role: leader.Leader, Fence: kv.Fence{Key: "k", Rev: 42}, Elections: 1, Changes: 1, Since: at})
	assert.Equal(t, 1.0, testutil.ToFloat64(m.leader.leading))
	assert.Equal(t, 1.0, testutil.ToFloat64(m.leader.elections))
	assert.Equal(t, 1.0, testutil.ToFloat64(m.leader.changes))
	assert.Equal(t, 42.0, testutil.ToFloat64(m.leader.fence))
	assert.Equal(t, float64(at.Unix()), testutil.ToFloat64(m.leader.lastChange))
	m.SetLeader(leader.Status{Role: leader.Follower, Elections: 1, Changes: 2, Since: at.Add(time.Minute)})
	assert.Equal(t, 0.0, testutil.ToFloat64(m.leader.leading))
	assert.Equal(t, 0.0, testutil.ToFloat64(m.leader.fence))
	assert.Equal(t, 2.0, testutil.ToFloat64(m.leader.changes))
}
