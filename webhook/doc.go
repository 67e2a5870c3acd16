// Package webhook delivers each consent's timeline to the merchant's endpoints:
// signed HTTP POSTs, at least once, in order per consent, retried with exponential
// backoff and jitter for up to a maximum age, then dead-lettered for an operator.
// The same events are the feed that consumers who pull read (GET /v1/events).
//
// How an event travels (storage/feed.go has the layout):
//
//  1. The scheduler's Change writes the event and an outbox entry in one
//     transaction (storage.putEvents): a committed state change always has its
//     event queued, a failed one none.
//  2. The Dispatcher (on the leader only, its writes fenced) publishes the outbox
//     into the feed: positions 1, 2, 3, … in one transaction per batch. A position
//     is final; within a consent, positions follow the timeline's order.
//  3. For each endpoint it reads the feed after the endpoint's cursor, POSTs each
//     event (one consent's events one after the other, consents in parallel), and
//     moves the cursor past the batch in one transaction. A delivery that fails
//     parks the consent's events (a backlog: that event and every later one of the
//     consent, in order) with a retry time; other consents go on.
//  4. A backlog is retried at its time; its events go in order until one fails.
//     Its first event failing for longer than MaxAge dead-letters it: the consent
//     waits for an operator (Replay, or Resolve to give the first event up), and
//     shows in the attention list as WEBHOOK_DEAD.
//
// Contracts:
//   - At least once: the cursor moves, and a backlog shrinks, only after the
//     deliveries it covers were answered 2xx. A crash in between delivers them
//     again, with the same event id (Payload.ID, the EventIDHeader): receivers
//     dedupe on it.
//   - In order per consent: an endpoint never receives an event of a consent
//     before every earlier event of that consent was answered 2xx (or given up by
//     an operator, or filtered out by the endpoint's event kinds). Across
//     consents there is no order.
//   - Signed: every request carries SignatureHeader, "t=<unix>,v1=<hex>", the
//     HMAC-SHA256 with the endpoint's secret of the timestamp, a dot and the body
//     (Stripe's scheme). Verify is the receiver's check; docs/WEBHOOKS.md shows it.
//   - A 2xx answer is a delivery; anything else (410 Gone included: an endpoint is
//     configuration, and an answer does not remove it), a timeout or a refused
//     connection is a failure. Redirects are not followed.
//   - No personal data: a payload carries ids, amounts, dates and states; an
//     operator's name and free text are not sent.
//   - Events written before the feed existed (an older billingd) are in their
//     timelines but not in the feed, and are not delivered. An endpoint added to
//     the config starts at the feed's head: it receives the events not yet
//     published then, and all later ones (Replay From 0 sends it the whole feed).
//   - Time (signatures, retries, ages) is the injected clock; the jitter's source
//     is injectable (WithRand).
package webhook
