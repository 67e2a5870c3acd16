// Package storage is billingd's durable state: one bbolt file.
//
// Buckets (schema version 2):
//
//	meta       application marker, schema version, consent counts per state
//	consents   consent id → the consent (JSON), written when added or its status changes
//	cursors    consent id → its billing state and cursor (JSON), rewritten every cycle
//	attempts   consent id ‖ 0 ‖ cycle ‖ attempt → Attempt (JSON)
//	due        instant ‖ attempt key → kind (1 byte) [‖ centavos (8 bytes)]: work to do
//	           at that instant, and what it will charge (DueKind; no amount: a variable
//	           cycle with none set yet, or a lookup)
//	poll       instant ‖ attempt key → nil: a payment status to fetch at that instant
//	amounts    consent id ‖ 0 ‖ cycle → centavos: amounts of variable cycles
//	attention  state ‖ 0 ‖ attempt key → since (Unix ns): open attention items
//	           (UNCONFIRMED, STUCK, MISSED, FAILED, SKIPPED not resolved by an operator)
//	           and the instant each entered its state
//	events     consent id ‖ 0 ‖ sequence → Event (JSON): each consent's timeline
//	dates      date (Rata Die) ‖ attempt key → nil: attempts by payment date (the ledger)
//
// A schema 1 file is migrated in place when a writer opens it; a reader (ReadOnly)
// reads it as it is, with empty timelines and ledger.
//
// Contracts:
//   - The due and poll indexes are ordered by instant, so a scan reads only what is
//     due (DueBefore) and never the whole consent set.
//   - Every write is a Change applied atomically and durably (fsync) by Apply;
//     concurrent Applies share a transaction and a sync (group commit). A Change only
//     puts and deletes (its events take their sequence numbers inside the
//     transaction), so bbolt's Batch may run it again after a rollback and it is
//     still written once.
//   - Read transactions are short and never span a network call: callers read, let
//     go, call Klavi, then Apply.
//   - Open fails fast and clearly instead of hanging or touching the file: ErrLocked
//     when another process holds it, ErrNotBillingd for a foreign bbolt file,
//     ErrCorrupt for a damaged or non-bbolt file, ErrSchema for a newer layout.
//   - One writer per path. A writer holds an flock on <path>.lock (created beside the
//     database, never removed) from before bbolt opens the file until Close. The lock
//     belongs to the path, not to the file's inode, so a database file moved over the
//     path does not let a second writer in.
//   - Every write transaction first checks that the path still names the open file
//     (device and inode, one stat(2)); when it does not, the write fails with
//     ErrReplaced, nothing is written anywhere, and every later write fails too.
//   - A damaged file never panics the process: bbolt's panics and memory faults while
//     reading it become ErrCorrupt ("database file is corrupt: ..."), and a file
//     shorter than its header says is refused before a page of it is read. bbolt
//     keeps no page checksums, so Verify walks every page before a daemon relies on
//     the file, and Check adds billingd's own invariants.
//   - A Change's Events are written in the transaction of the state change they
//     describe: a committed change has its events, a failed one none.
//   - Options.OnWrite hears the outcome of every write, for health and metrics;
//     FailureReason sorts failures into enospc, replaced, readonly and other.
//
// Everything bbolt-specific stays in this package; the scheduler consumes it through
// an interface of its own, so another backend can replace it.
package storage
