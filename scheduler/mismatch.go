package scheduler

import (
	"context"
	"log/slog"
	"strings"
	"time"

	"github.com/klavi-billing/billingd/consent"
	"github.com/klavi-billing/billingd/cycle"
	"github.com/klavi-billing/billingd/klavi"
	"github.com/klavi-billing/billingd/storage"
)

// mismatch says how Klavi's account of an attempt's payment (its amount in
// centavos, and when withDate its Brasília date) differs from what billingd asked
// for, as "amount: sent 99.90, Klavi's payment has 9999.99" (and "; date: sent
// 2026-12-07, Klavi's payment has 2026-12-08"); "" when it does not. A field the
// answer leaves out (a zero amount, no date) is not compared: seed 004's answers
// carry both, but a reading that omits one tells nothing about it.
//
// The date is compared only where the payment is created or found (the create and
// retry answers, the orders list): the status poll of an attach-mode original is
// not held to its first date, since the digest does not say whether Klavi's own
// retries move it.
func mismatch(a *storage.Attempt, amount klavi.Cents, date cycle.Date, withDate bool) string {
	var parts []string
	if amount != 0 && amount != a.Amount {
		parts = append(parts, "amount: sent "+a.Amount.String()+", Klavi's payment has "+amount.String())
	}
	if withDate && !date.IsZero() && date != a.Date {
		parts = append(parts, "date: sent "+a.Date.String()+", Klavi's payment has "+date.String())
	}
	return strings.Join(parts, "; ")
}

// noteMismatch tells operators that Klavi's payment for attempt a is not the one
// billingd asked for (what says how, from mismatch): an error log line, a
// payment_mismatch event in the consent's timeline (for webhooks too) and
// billingd_payment_mismatches_total, which BillingdPaymentMismatch alerts on. The
// attempt itself is followed as Klavi tells it: billingd does not cancel or re-send
// a payment Klavi holds on its own guess (OPERATIONS.md, BillingdPaymentMismatch,
// says what an operator does). ch nil logs and counts without a timeline event.
func (s *Scheduler) noteMismatch(ctx context.Context, ch *storage.Change, now time.Time, c *consent.Consent, a *storage.Attempt, paymentID, what string) {
	s.log.LogAttrs(ctx, slog.LevelError, "Klavi's payment differs from the request", slog.String("consent_id", c.ID),
		slog.Int("cycle", a.Cycle), slog.Int("attempt", a.Attempt), slog.String("client_request_id", a.ClientRequestID),
		slog.String("payment_id", paymentID), slog.String("mismatch", what))
	s.emit(ch, EventMismatch, now, c, a, what)
}
