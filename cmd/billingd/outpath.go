package main

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/klavi-billing/billingd/storage/bolt"
)

// A liveDB is a database file a command that writes files must leave alone, and how
// the command line or the config named it (for the error).
type liveDB struct {
	path string
	from string // "storage.path of the config", "--db", "--from", ...
}

// configDB is storage.path of the config the daemon on this host reads: --config,
// $BILLINGD_CONFIG, else the host's config file if there is one. A command that
// does not need the config otherwise still asks for it, so that none of its output
// files is the live database; a config that does not load gives the default path.
func (a *app) configDB() liveDB {
	cfg, err := loadConfigFor(a.e, a.config, true)
	if err != nil {
		cfg = DefaultConfig()
	}
	return liveDB{path: cfg.Storage.Path, from: "storage.path of the config"}
}

// checkOutputs refuses, as a usage error, a file a command is about to write,
// replace or remove (outs) when it is one of dbs or the lock file of one, or an
// existing directory; label names the output in the error ("db backup: FILE",
// "simulate: --svg"). The same file is the same cleaned absolute path, or
// os.SameFile of the two (a hard link, a symlink, a bind mount, a relative path),
// or, for a path that does not exist yet, the same name in the same directory: a
// file renamed over the database would unlink the one billingd has open, and the
// writes it takes after the copy would be lost.
func checkOutputs(label string, dbs []liveDB, outs ...string) error {
	for _, out := range outs {
		if fi, err := os.Stat(out); err == nil && fi.IsDir() {
			return usageErrorf("%s %s is a directory; name a file", label, out)
		}
		for _, db := range dbs {
			if db.path == "" {
				continue
			}
			if sameFile(out, db.path, 0) {
				return usageErrorf("%s %s is the database %s (%s): writing it would replace the file under billingd; name another file",
					label, out, db.path, db.from)
			}
			if lock := bolt.LockPath(db.path); sameFile(out, lock, 0) {
				return usageErrorf("%s %s is the lock file %s of the database %s (%s); name another file",
					label, out, lock, db.path, db.from)
			}
			if arch := bolt.ArchivePath(db.path); sameFile(out, arch, 0) {
				return usageErrorf("%s %s is the archive file %s of the database %s (%s); name another file",
					label, out, arch, db.path, db.from)
			}
		}
	}
	return nil
}

// sameFile reports whether the paths a and b name one file (see checkOutputs);
// depth bounds the dangling symlinks followed from a.
func sameFile(a, b string, depth int) bool {
	absA, errA := filepath.Abs(a)
	absB, errB := filepath.Abs(b)
	if errA == nil && errB == nil && absA == absB {
		return true
	}
	fa, err := os.Stat(a)
	if err == nil {
		fb, err := os.Stat(b)
		return err == nil && os.SameFile(fa, fb)
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return false
	}
	// a does not resolve: a dangling symlink is followed (writing through it creates
	// its target); else a is new, the same file as b if it would be b's name in b's
	// directory.
	if li, err := os.Lstat(a); err == nil && li.Mode()&fs.ModeSymlink != 0 {
		target, err := os.Readlink(a)
		if err != nil || depth >= 8 {
			return false
		}
		if !filepath.IsAbs(target) {
			target = filepath.Join(filepath.Dir(a), target)
		}
		return sameFile(target, b, depth+1)
	}
	if filepath.Base(a) != filepath.Base(b) {
		return false
	}
	da, errA := os.Stat(filepath.Dir(a))
	db, errB := os.Stat(filepath.Dir(b))
	return errA == nil && errB == nil && os.SameFile(da, db)
}

// guardDB is what a db command must not write over: the database it works on (dbFlag
// when given, else storage.path of cfg) and storage.path of cfg.
func guardDB(path, dbFlag string, cfg Config) []liveDB {
	if dbFlag == "" {
		return []liveDB{{path: path, from: "storage.path of the config"}}
	}
	return []liveDB{{path: path, from: "--db"}, {path: cfg.Storage.Path, from: "storage.path of the config"}}
}
