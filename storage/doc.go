// Package storage is billingd's durable state: the records (consents, attempts,
// amounts, timelines), the indexes the scheduler works from, and the contract every
// storage engine meets. The records and indexes are written once, here, over the
// ordered key-value transaction of package kv; storage/bolt keeps them in one bbolt
// file (one process), storage/etcd in an etcd cluster (several replicas, one of them
// leading). storage/storagetest is the conformance suite both engines pass.
//
// Buckets (schema version 3; on etcd a bucket is a key prefix):
//
//	meta       application marker, schema version, consent counts per state, the high
//	           water, and "simulated" in a store billingd simulate made (ErrSimulated)
//	consents   consent id → the consent (JSON), written when added or its status changes
//	cursors    consent id → its billing state, cursor and record version (JSON)
//	consent_terms  consent id → CRC-32C of its body and layout ‖ the body with only the
//	           consent's Terms (JSON): what a due entry's decision reads (terms.go)
//	attempts   consent id ‖ 0 ‖ cycle ‖ attempt → Attempt (JSON, with its version):
//	           the attempts that can still change (archive.go)
//	archive    the same keys and records: settled attempts
//	due        instant ‖ attempt key → kind (1 byte) [‖ centavos (8 bytes)]: work to do
//	           at that instant, and what it will charge (DueKind; no amount: a variable
//	           cycle with none set yet, or a lookup)
//	poll       instant ‖ attempt key → nil: a payment status to fetch at that instant
//	amounts    consent id ‖ 0 ‖ cycle → centavos: amounts of variable cycles
//	attention  state ‖ 0 ‖ attempt key → since (Unix ns): open attention items
//	           (UNCONFIRMED, STUCK, MISSED, FAILED, SKIPPED not resolved by an operator)
//	           and the instant each entered its state
//	events     consent id ‖ 0 ‖ sequence → Event (JSON): each consent's timeline; the
//	           sequence is the timeline's own (the next after its last event)
//	event_archive  the same keys and records: older events of the timelines (the
//	           newest of each stays in events)
//	dates      date (Rata Die) ‖ attempt key → nil: attempts by payment date (the ledger)
//
// An older file is migrated in place when a writer opens it; a reader (ReadOnly)
// reads it as it is (schema 1: with empty timelines and ledger; schema 2: with
// every attempt and event in the live buckets, which every read also looks in).
//
// History is kept off the hot path: a submission's writes and the due scan's reads
// touch the live buckets and indexes only, which hold what can still change and
// the newest event of each timeline; settled attempts and older events are in the
// archive buckets, read by the timeline, ledger, reports and webhooks (archive.go).
//
// Contracts:
//   - Every method takes a context; on etcd it bounds the calls to the cluster (each
//     also bounded by the engine's request timeout), on bolt reads do not wait.
//   - The due and poll indexes are ordered by instant, so a scan reads only what is
//     due (DueBefore) and never the whole consent set.
//   - Every write is a Change applied atomically and durably by Apply (bolt: fsync,
//     shared by concurrent Applies in a group commit; etcd: one transaction, committed
//     by a quorum). A Change only puts and deletes, so an engine may run it again
//     after a rollback or a conflict and it is still written once.
//   - Records carry a Version. A write of a consent or an attempt succeeds only
//     while the store holds the version the writer read (ErrConflict otherwise, and
//     nothing is written); Apply advances the caller's Version when it commits. Two
//     writers that read the same record cannot both write it, on any replica.
//   - A Change may carry a Fence: the leadership the writer holds. On etcd the write
//     commits only while the election key still has the fence's create revision
//     (ErrFenced otherwise, nothing written), so a deposed leader writes nothing; on
//     bolt the file lock is the fence.
//   - ApplyAll writes many changes in as few transactions as the engine takes (one on
//     bolt; chunks within etcd's operation limit), each atomic, in order.
//   - Read transactions are short and never span a call to Klavi: callers read, let
//     go, call Klavi, then Apply.
//   - A Change's Events are written in the transaction of the state change they
//     describe: a committed change has its events, a failed one none.
//   - An engine that cannot be reached fails with ErrUnavailable; a write's outcome
//     is then unknown, and the protocol treats it as not written (the attempt stays
//     SUBMITTING and is reconciled).
//   - Options.OnWrite hears the outcome of every write, for health and metrics;
//     FailureReason sorts failures into enospc, replaced, readonly, unavailable and
//     other.
//   - Optional capabilities (Snapshotter, Sizer, Verifier) are what some engines
//     have; callers check for them and say plainly when the running engine lacks one.
package storage
