// Package bolt keeps billingd's store in one bbolt file: the kv.Engine over bbolt,
// and a Store (a storage.DB over that engine) with what only a file has: a backup
// and a snapshot, size figures, page verification (`billingd db check`) and the
// file's identity.
//
// Guarantees: one writer process per file (an exclusive flock on <path>.lock;
// readers share it), a commit is fsynced before Apply returns (unless NoSync, which
// is for throwaway databases), writes are group-committed, a file replaced or
// removed under a running daemon is detected (ErrReplaced) before the next write,
// and a damaged page is an error (ErrCorrupt), never a crash. It passes the kv and
// storage conformance suites (kvtest, storagetest).
//
// It does not share a file between machines or replicate it: several replicas use
// storage/etcd.
package bolt
