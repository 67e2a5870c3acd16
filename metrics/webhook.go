package metrics

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/klavi-billing/billingd/webhook"
)

// WebhookSource is what the webhook gauges read at scrape time (*webhook.Dispatcher).
type WebhookSource interface {
	Endpoints() []string
	Status(ctx context.Context) ([]webhook.EndpointStatus, error)
}

var _ WebhookSource = (*webhook.Dispatcher)(nil)

// webhookCollector holds billingd_webhook_deliveries_total and reads the gauges
// billingd_webhook_backlog, billingd_webhook_oldest_undelivered_seconds and
// billingd_webhook_dead_letters from a WebhookSource at scrape time.
type webhookCollector struct {
	deliveries            *prometheus.CounterVec // endpoint, outcome
	backlog, oldest, dead *prometheus.Desc
	mu                    sync.Mutex
	src                   WebhookSource
	now                   func() time.Time
}

func (m *Metrics) webhookMetrics() *webhookCollector {
	m.webhooksOnce.Do(func() {
		d := func(name, help string) *prometheus.Desc {
			return prometheus.NewDesc(prometheus.BuildFQName(namespace, "webhook", name), help, []string{"endpoint"}, nil)
		}
		c := &webhookCollector{
			deliveries: factory{m.reg}.counterVec("webhook_deliveries_total",
				"Webhook deliveries by endpoint and outcome: delivered (2xx), failed (anything else; retried), dead (failed past max_age: dead-lettered).", "endpoint", "outcome"),
			backlog: d("backlog", "Events the endpoint has not received yet (not yet published, after its cursor, or waiting behind a failed delivery)."),
			oldest:  d("oldest_undelivered_seconds", "Age of the oldest event the endpoint has not received; 0 when none."),
			dead:    d("dead_letters", "Consents whose events for the endpoint are dead-lettered (WEBHOOK_DEAD), waiting for an operator."),
			now:     m.clock.Now,
		}
		m.reg.MustRegister(c)
		m.webhooks = c
	})
	return m.webhooks
}

// WebhookHooks returns the dispatcher's hooks: every delivery counts in
// billingd_webhook_deliveries_total{endpoint,outcome}. On a nil *Metrics the hooks
// do nothing.
func (m *Metrics) WebhookHooks() webhook.Hooks {
	if m == nil {
		return webhook.Hooks{}
	}
	c := m.webhookMetrics()
	return webhook.Hooks{OnDelivery: func(endpoint, outcome string, _ time.Duration) {
		c.deliveries.WithLabelValues(endpoint, outcome).Inc()
	}}
}

// WatchWebhooks makes every scrape read src for the webhook gauges (by endpoint),
// and creates the delivery counters of its endpoints at zero. A nil src stops the
// readings. It does nothing on a nil *Metrics.
func (m *Metrics) WatchWebhooks(src WebhookSource) {
	if m == nil {
		return
	}
	c := m.webhookMetrics()
	c.mu.Lock()
	c.src = src
	c.mu.Unlock()
	if src == nil {
		return
	}
	for _, ep := range src.Endpoints() {
		for _, o := range []string{webhook.OutcomeDelivered, webhook.OutcomeFailed, webhook.OutcomeDead} {
			c.deliveries.WithLabelValues(ep, o)
		}
	}
}

func (c *webhookCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.backlog
	ch <- c.oldest
	ch <- c.dead
}

func (c *webhookCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	src := c.src
	c.mu.Unlock()
	if src == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	sts, err := src.Status(ctx)
	if err != nil {
		for _, d := range []*prometheus.Desc{c.backlog, c.oldest, c.dead} {
			ch <- prometheus.NewInvalidMetric(d, err)
		}
		return
	}
	now := c.now()
	for _, st := range sts {
		age := 0.0
		if st.Oldest != nil && now.After(*st.Oldest) {
			age = now.Sub(*st.Oldest).Seconds()
		}
		ch <- prometheus.MustNewConstMetric(c.backlog, prometheus.GaugeValue, float64(st.Backlog), st.Name)
		ch <- prometheus.MustNewConstMetric(c.oldest, prometheus.GaugeValue, age, st.Name)
		ch <- prometheus.MustNewConstMetric(c.dead, prometheus.GaugeValue, float64(st.Dead), st.Name)
	}
}
