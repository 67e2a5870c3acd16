// Package etcd is the kv.Engine for operators who run several billingd replicas:
// an ordered key-value store with transactions over an etcd v3 cluster
// (go.etcd.io/etcd/client/v3).
//
// # Layout
//
// Every key lives at Options.Prefix + bucket name + "\x00" + key, so a bucket is
// the etcd range [Prefix+name+"\x00", Prefix+name+"\x01"). Keys and values are
// arbitrary bytes; bucket names must not contain a zero byte.
//
// # Transactions
//
// View reads at one etcd revision: the first read fixes it and every later read
// (Get, a Cursor's pages of 256 keys, Last) asks for that revision. The first read
// is linearizable (a read-index round through the leader: nothing committed before
// it began is missed); the later ones are serializable, answered by the member
// from its own store, since a revision's contents never change. A member that has
// not applied that revision yet answers ErrFutureRev, and the read is asked again
// as a linearizable one, which waits for it to catch up.
//
// Update is optimistic, like etcd's STM. fn runs against a transaction that reads
// at one revision (as View does), buffers its puts and deletes in memory, and reads its own writes
// (Get, Cursor and Last overlay the buffer on what etcd holds). It records what it
// read: the ModRevision of every key it got from etcd (0 when absent) and every
// range a Cursor, ForEach or Last walked. The commit is one etcd Txn:
//
//	If(fence holds, each key's ModRevision unchanged,
//	   each walked range's ModRevisions <= the read revision)
//	Then(puts and deletes)
//	Else(get the fence key)
//
// When the Txn fails and the fence still holds, another writer changed what fn
// read: fn runs again on a fresh revision, up to 10 times with a short jittered
// backoff, and then Update returns ErrConflict. A range compare sees keys created
// or changed in the range, not keys deleted from it, which the kv contract admits.
//
// # Limits
//
// etcd refuses a Txn whose compares, or whose operations, number more than its
// --max-txn-ops (128 by default; Options.MaxOps must match it). An Update with more
// than MaxOps puts and deletes fails with kv.ErrTooLarge before writing. When the
// read set needs more than MaxOps compares, the ranges walked in each bucket are
// first merged into one range, then reads of absent keys inside a walked range are
// dropped (the range compare sees their creation); if that is still too many the
// Update fails with kv.ErrTooLarge.
//
// Last sorts its range in descending key order, which etcd serves by reading the
// whole range at the server: keep the prefixes given to Last narrow.
//
// Write.Batch shares no commit: etcd commits each Txn through raft on its own and
// has no group commit to share at this level. It says that fn may run more than
// once, and the engine uses that to read optimistically: the first run of such an
// Update reads serializably from whichever member answers (no read-index round
// through the leader), and its result is kept only when its commit, whose compares
// cover everything it read, succeeds; otherwise fn runs again reading as above
// (see Engine.Update).
//
// # Failure
//
// Each RPC is bounded by Options.RequestTimeout. A failed read makes the read
// return nil and the transaction fail with it (wrapped, "etcd: read: ..."), and
// nothing is committed. A commit that fails with a transport error (a timeout, a
// lost leader) has an unknown outcome: the writes may or may not have been applied;
// the caller learns it by reading again. Writes of package storage are idempotent
// for this reason.
package etcd
