// Package storage is billingd's durable state: one bbolt file.
//
// Buckets (schema version 1):
//
//	meta       application marker, schema version, consent counts per state
//	consents   consent id → the consent (JSON), written when added or its status changes
//	cursors    consent id → its billing state and cursor (JSON), rewritten every cycle
//	attempts   consent id ‖ 0 ‖ cycle ‖ attempt → Attempt (JSON)
//	due        instant ‖ attempt key → nil: work to do at that instant
//	poll       instant ‖ attempt key → nil: a payment status to fetch at that instant
//	amounts    consent id ‖ 0 ‖ cycle → centavos: amounts of variable cycles
//	attention  state ‖ 0 ‖ attempt key → nil: UNCONFIRMED, MISSED, FAILED, SKIPPED items
//
// Contracts:
//   - The due and poll indexes are ordered by instant, so a scan reads only what is
//     due (DueBefore) and never the whole consent set.
//   - Every write is a Change applied atomically and durably (fsync) by Apply;
//     concurrent Applies share a transaction and a sync (group commit). A Change only
//     puts and deletes, so it is safe for bbolt's Batch to run it twice.
//   - Read transactions are short and never span a network call: callers read, let
//     go, call Klavi, then Apply.
//   - Open fails fast and clearly instead of hanging or touching the file: ErrLocked
//     when another process holds it, ErrNotBillingd for a foreign bbolt file,
//     ErrCorrupt for a damaged or non-bbolt file, ErrSchema for a newer layout.
//
// Everything bbolt-specific stays in this package; the scheduler consumes it through
// an interface of its own, so another backend can replace it.
package storage
