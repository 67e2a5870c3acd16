// Package bolt keeps billingd's store in one bbolt file (go.etcd.io/bbolt), for one
// process: the kv.Engine under storage.DB, and what only a file has: backup and
// snapshot, size figures, a walk of every page (Verify, Check), Inspect and Compact.
//
// Contracts:
//   - Open fails fast and clearly instead of hanging or touching the file: ErrLocked
//     when another process holds it, ErrNotBillingd for a foreign bbolt file,
//     ErrCorrupt for a damaged or non-bbolt file, ErrSchema for a newer layout, and
//     with Options.RefuseSimulated storage.ErrSimulated for a file billingd simulate
//     made.
//   - One writer per path. A writer holds an flock on <path>.lock (created beside the
//     database, never removed) from before bbolt opens the file until Close. The lock
//     belongs to the path, not to the file's inode, so a database file moved over the
//     path does not let a second writer in. The lock is this engine's fence: a Change's
//     Fence is accepted as it is, since no other process can write.
//   - Every write transaction first checks that the path still names the open file
//     (device and inode, one stat(2)); when it does not, the write fails with
//     ErrReplaced, nothing is written anywhere, and every later write fails too.
//   - A damaged file never panics the process: bbolt's panics and memory faults while
//     reading it become ErrCorrupt ("database file is corrupt: ..."), and a file
//     shorter than its header says is refused before a page of it is read. bbolt
//     keeps no page checksums, so Verify walks every page before a daemon relies on
//     the file, and Check adds billingd's own invariants (storage.DB.Check).
//   - Concurrent Applies share one transaction and one fsync (bbolt's DB.Batch), which
//     may run a change twice after a rollback; storage's changes are idempotent.
package bolt
