package metrics

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/require"

	"github.com/klavi-billing/billingd/clock"
	"github.com/klavi-billing/billingd/webhook"
)

type fakeWebhooks struct{ st []webhook.EndpointStatus }

func (f *fakeWebhooks) Endpoints() []string { return []string{"shop"} }
func (f *fakeWebhooks) Status(context.Context) ([]webhook.EndpointStatus, error) {
	return f.st, nil
}

var _ WebhookSource = (*fakeWebhooks)(nil)

func TestMetrics_Webhooks(t *testing.T) {
	now := time.Date(2027, 3, 1, 12, 0, 0, 0, time.UTC)
	m := New("v", "r", WithClock(clock.NewFake(now)))
	oldest := now.Add(-90 * time.Second)
	m.WatchWebhooks(&fakeWebhooks{st: []webhook.EndpointStatus{{Name: "shop", Backlog: 7, Dead: 2, Oldest: &oldest}}})
	h := m.WebhookHooks()
	h.OnDelivery("shop", webhook.OutcomeDelivered, time.Millisecond)
	h.OnDelivery("shop", webhook.OutcomeFailed, time.Millisecond)
	h.OnDelivery("shop", webhook.OutcomeFailed, time.Millisecond)

	require.NoError(t, testutil.GatherAndCompare(m.Registry(), strings.NewReader(`
# HELP billingd_webhook_backlog Events the endpoint has not received yet (not yet published, after its cursor, or waiting behind a failed delivery).
# TYPE billingd_webhook_backlog gauge
billingd_webhook_backlog{endpoint="shop"} 7
# HELP billingd_webhook_dead_letters Consents whose events for the endpoint are dead-lettered (WEBHOOK_DEAD), waiting for an operator.
# TYPE billingd_webhook_dead_letters gauge
billingd_webhook_dead_letters{endpoint="shop"} 2
# HELP billingd_webhook_deliveries_total Webhook deliveries by endpoint and outcome: delivered (2xx), failed (anything else; retried), dead (failed past max_age: dead-lettered).
# TYPE billingd_webhook_deliveries_total counter
billingd_webhook_deliveries_total{endpoint="shop",outcome="dead"} 0
billingd_webhook_deliveries_total{endpoint="shop",outcome="delivered"} 1
billingd_webhook_deliveries_total{endpoint="shop",outcome="failed"} 2
# HELP billingd_webhook_oldest_undelivered_seconds Age of the oldest event the endpoint has not received; 0 when none.
# TYPE billingd_webhook_oldest_undelivered_seconds gauge
billingd_webhook_oldest_undelivered_seconds{endpoint="shop"} 90
`), "billingd_webhook_backlog", "billingd_webhook_dead_letters", "billingd_webhook_deliveries_total", "billingd_webhook_oldest_undelivered_seconds"))

	var none *Metrics
	none.WatchWebhooks(nil)
	none.WebhookHooks()
}
