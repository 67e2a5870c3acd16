// Package kv is the ordered key-value transaction that billingd's storage engines
// provide and package storage builds its records and indexes on.
//
// Contract (every engine, checked by kvtest):
//   - Keys live in named buckets and are ordered bytewise within a bucket. A bucket
//     is a name, not an object: every bucket named in Options exists, empty or not.
//   - View runs fn on one consistent snapshot. Update runs fn and commits all its
//     writes atomically and durably, or none. fn may run more than once (a group
//     commit's retry, an optimistic transaction's conflict), so it must read and
//     write only through its Tx and keep no effect of an earlier run.
//   - An Update reads its own writes (Get, Cursor and Last see them).
//   - Update is serializable: when a key fn read (present or absent), or a range a
//     Cursor or Last walked, was changed by another writer before the commit, the
//     engine runs fn again on fresh data (engines with one writer never conflict).
//     Deleting a key from a walked range is the one change an engine may miss.
//   - A read that fails (a lost connection, a timeout, a damaged page) returns nil,
//     and the transaction fails with that error: View returns it, Update returns it
//     and commits nothing. fn need not check reads for errors.
//   - Values and keys returned by reads are valid only until fn returns.
//   - Write.Fence, when not zero, must still hold when Update commits; when it does
//     not, nothing is written and Update returns ErrFenced. An engine with one
//     writer process (the flock of storage/bolt) has no other leader to fear and
//     checks only that the fence is not zero.
//   - MaxOps is the most puts and deletes one Update may carry (0: no limit); an
//     Update with more fails with ErrTooLarge before writing anything.
package kv
