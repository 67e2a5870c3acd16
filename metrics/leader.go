package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/klavi-billing/billingd/leader"
)

// leaderMetrics describe this replica's part in the election (etcd only).
type leaderMetrics struct {
	leading    prometheus.Gauge
	elections  prometheus.Counter
	changes    prometheus.Counter
	lastChange prometheus.Gauge
	fence      prometheus.Gauge
}

func newLeaderMetrics(f factory) leaderMetrics {
	return leaderMetrics{
		leading: f.gauge("leader",
			"1 while this replica leads (runs the due scan, the status poll and reconciliation), 0 while it follows. Absent with one process on a bolt file."),
		elections: f.counter("leader_elections_total",
			"Times this replica became the leader."),
		changes: f.counter("leader_changes_total",
			"Role changes of this replica (to leader and back); frequent changes are a flapping election."),
		lastChange: f.gauge("leader_last_change_timestamp_seconds",
			"Unix time of this replica's last role change (time() minus it: time since the last leader change here)."),
		fence: f.gauge("leader_fence_revision",
			"The fencing token (election key's create revision) of the term this replica leads; 0 while it follows."),
	}
}

// SetLeader records this replica's role: once at start (a follower, counters at
// zero) and at every role change (leader.Options.OnChange).
func (m *Metrics) SetLeader(st leader.Status) {
	m.leaderOnce.Do(func() { m.leader = newLeaderMetrics(factory{m.reg}) })
	l := m.leader
	if st.Role == leader.Leader {
		l.leading.Set(1)
		l.elections.Inc()
	} else {
		l.leading.Set(0)
	}
	if st.Changes > 0 { // the first call, before any election, only sets the role
		l.changes.Inc()
	}
	if !st.Since.IsZero() {
		l.lastChange.Set(float64(st.Since.UnixNano()) / 1e9)
	}
	l.fence.Set(float64(st.Fence.Rev))
}

// SetStoreEngine sets billingd_store_info{engine} to 1 for the running engine
// ("bolt" or "etcd").
func (m *Metrics) SetStoreEngine(name string) {
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace:   namespace,
		Name:        "store_info",
		Help:        "A constant 1, labeled with the storage engine billingd runs on (bolt or etcd).",
		ConstLabels: prometheus.Labels{"engine": name},
	})
	g.Set(1)
	_ = m.reg.Register(g)
}
