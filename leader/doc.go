// Package leader elects the one billingd replica that runs the scheduler when
// several replicas share an etcd cluster.
//
// The election is etcd's (go.etcd.io/etcd/client/v3/concurrency): every replica
// holds a lease (a Session) and campaigns by creating a key under the election
// prefix bound to that lease; the candidate whose key has the lowest create
// revision leads, and the others wait for the keys before theirs to go away.
//
// Contract:
//   - Run calls lead(ctx, fence) each time this replica becomes leader, one call at
//     a time: it never calls lead again before the previous call has returned.
//   - lead's ctx is cancelled as soon as this replica cannot prove it still leads:
//     the session's lease expired, was revoked or its keepalive failed; the election
//     key was deleted; the watch on that key failed; or no keepalive response arrived
//     for a whole TTL (etcd unreachable: the lease may still live on the server, but
//     a leader that cannot prove it must stop). lead must return promptly once its
//     ctx is done. The ctx may already be done when lead is called.
//   - After lead returns, Run resigns (deletes its key, when it still holds it),
//     revokes the lease and campaigns again with a new session, hence a new fence.
//     When Run's ctx ends it resigns too, so a clean stop hands over at once rather
//     than after the TTL.
//   - The fence (kv.Fence) is the election key and its create revision. etcd's
//     revisions only grow, so a later leader always holds a greater Rev. The etcd
//     storage engine commits a fenced write only if the fence key still exists with
//     that create revision, in the same transaction; a deposed leader's writes
//     therefore fail with kv.ErrFenced, however late they arrive.
//
// What the fence guarantees and what cancellation does not: two replicas may both
// be inside lead for a moment (a replica learns it was deposed from the same etcd
// events that elect its successor, and a paused process learns nothing until it
// wakes). Cancellation makes such overlaps short; the fence makes them harmless,
// because only writes carrying the current fence commit. This is the fencing token
// of Martin Kleppmann, "How to do distributed locking" (2016), and of etcd's own
// advice on the concurrency package: a lock alone does not protect a resource from
// a holder that lost it without noticing.
package leader
