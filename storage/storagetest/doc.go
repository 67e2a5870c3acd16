// Package storagetest is the conformance suite of billingd's store: Run exercises
// a storage.DB (records and indexes, Change and Apply, counts, amounts, events,
// attention items, the dates index, record versions and conflicting writers, bulk
// loads, fences, the archive) through an Opener, one subtest per behaviour. Every
// engine (storage/bolt, storage/etcd) runs it unchanged from its own tests, and an
// engine is done when it passes. What only some engines have (a fence that can be
// lost) is a Caps field; the subtests that need it are skipped without it.
//
// It is imported by tests only. It checks behaviour through the storage API, never
// an engine's keys or files; where the archive keeps a record, it reads through the
// engine's kv buckets by the layout's bucket names.
package storagetest
