// Package mem is an in-memory kv.Engine: ordered buckets held in the process, each
// Update committed atomically (all of its writes or none) by swapping in a new
// immutable state. It keeps nothing on disk: it is the engine of the deterministic
// simulator (package vopr), where "the process dies" means dropping everything but
// the engine's committed state, and of tests that want a store without a file.
//
// Contract: one writer at a time (Updates are serialized; fn runs once), readers
// never wait (a View reads the state committed when it began, a snapshot), a value
// handed to Put is copied, and Get returns a slice the caller must not modify.
// It passes the storage/kv/kvtest conformance suite with the zero Caps.
package mem
