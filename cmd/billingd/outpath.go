package main

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

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
//
// Any other database is refused too (notADatabase): dbs name only the databases
// the command knows of, and another config's, a copy's or a backup's is as much
// lost when a picture or a ledger replaces it.
func checkOutputs(label string, dbs []liveDB, outs ...string) error {
	for _, out := range outs {
		if err := checkOutput(label, dbs, out, outReplace); err != nil {
			return err
		}
	}
	return nil
}

// An outFlag is one of a command's output files: its flag and path ("" when unset).
type outFlag struct{ flag, path string }

// distinctOutputs refuses, as a usage error, two of one command's output flags that
// name the same file (as given, or through links: sameFile): the second write would
// replace the first (a picture over the database simulate --db just made, the
// ledger over the sandbox's journal). sameFile follows its first name's links only,
// so each pair is asked both ways.
func distinctOutputs(cmd string, outs ...outFlag) error {
	for i, a := range outs {
		for _, b := range outs[i+1:] {
			if a.path != "" && b.path != "" && (sameFile(a.path, b.path, 0) || sameFile(b.path, a.path, 0)) {
				return usageErrorf("%s: %s and %s name the same file %s", cmd, a.flag, b.flag, a.path)
			}
		}
	}
	return nil
}

// checkNewOutput is checkOutputs for a file the command makes a database in and
// refuses itself when it exists (db compact OUT, db migrate --to, simulate --db):
// an existing one is left to that refusal, which names it.
func checkNewOutput(label string, dbs []liveDB, out string) error {
	return checkOutput(label, dbs, out, outNew)
}

// checkBackupOutput is checkOutputs for the FILE of db backup, a database too: with
// --force it replaces an earlier backup, a bbolt file, and may. It still refuses
// what a daemon uses or used (a file with a lock file or archive file beside it, a
// lock file) and an archive file, which holds history kept nowhere else.
func checkBackupOutput(label string, dbs []liveDB, out string) error {
	return checkOutput(label, dbs, out, outBackup)
}

// An outKind is what a command does with an output file that exists.
type outKind int

const (
	outReplace outKind = iota // replaces it: a picture, a ledger, a page; appends to it: a journal, a log
	outNew                    // refuses it (checkNewOutput)
	outBackup                 // replaces it with --force (checkBackupOutput)
)

// checkOutput is checkOutputs for one file of the kind.
func checkOutput(label string, dbs []liveDB, out string, kind outKind) error {
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
	return notADatabase(label, out, kind)
}

// notADatabase refuses out, as a usage error naming it and why, when writing it
// would destroy a database, billingd's or not, whatever the config says, or a file
// a database needs:
//   - a lock file: <db>.lock beside <db> or <db>.archive, or one a writer marked
//     (bolt.IsLockFile), wherever it is: a file moved over it drops the lock of
//     the daemon holding it;
//   - an archive file beside its database (<db>.archive beside <db>);
//   - an existing file with <out>.lock or <out>.archive beside it: a database, or
//     a file that was one;
//   - a missing file with <out>.archive beside it, or a <out>.lock a writer marked:
//     the path of a database that was moved or lost, which billingd refuses to
//     start anew at (a file written there would be opened as a damaged database
//     instead). An unmarked lock file beside a missing file is a simulation's or a
//     copy's (bolt marks only a kept database's), as bolt's own check reads it;
//   - a bbolt file (bolt.IsBoltFile: bbolt's magic in a meta page): a database, an
//     archive file, a backup or another copy; read without a lock, so a file a
//     daemon holds is told at once. For outBackup only an archive file among them
//     (bolt.IsArchiveFile, asked only of a file nothing above marks as live).
//
// An existing file of kind outNew is left to the command's own refusal after the
// first two checks. Each name is checked as given and as its symbolic links lead
// (a dangling link too: writing through it creates its target). A file that is
// there but cannot be read is refused: it cannot be told not to be a database.
func notADatabase(label, out string, kind outKind) error {
	names := outputNames(out)
	for _, name := range names {
		if base, ok := strings.CutSuffix(name, ".lock"); ok && filepath.Base(name) != ".lock" {
			if isFile(base) || isFile(bolt.ArchivePath(base)) {
				return usageErrorf("%s %s is the lock file of the database %s beside it; name another file", label, out, base)
			}
		}
		if bolt.IsLockFile(name) {
			return usageErrorf("%s %s is the lock file of a billingd database (it holds the mark a writer leaves there); name another file", label, out)
		}
		if base, ok := strings.CutSuffix(name, bolt.ArchiveSuffix); ok && filepath.Base(name) != bolt.ArchiveSuffix && isFile(base) {
			return usageErrorf("%s %s is the archive file of the database %s beside it; name another file", label, out, base)
		}
	}
	if kind == outNew && present(out) {
		return nil
	}
	for _, name := range names {
		lock, arch := bolt.LockPath(name), bolt.ArchivePath(name)
		switch {
		case present(name) && present(lock):
			return usageErrorf("%s %s has the lock file %s beside it: it is a billingd database, or was one; name another file", label, out, lock)
		case present(name) && present(arch):
			return usageErrorf("%s %s has the archive file %s beside it: it is a billingd database, or was one; name another file", label, out, arch)
		case present(arch):
			return usageErrorf("%s %s has the archive file %s beside it: the database there is missing (moved or lost), and a file written in its place would be opened as a damaged database; name another file",
				label, out, arch)
		case bolt.IsLockFile(lock):
			return usageErrorf("%s %s has the lock file %s beside it, marked by billingd: the database there is missing (moved or lost), and a file written in its place would be opened as a damaged database; name another file",
				label, out, lock)
		}
	}
	isBolt, err := bolt.IsBoltFile(out)
	switch {
	case err != nil:
		return usageErrorf("%s %s cannot be read to make sure it is not a database (%v); name another file", label, out, err)
	case !isBolt:
		return nil
	case kind != outBackup:
		return usageErrorf("%s %s is a bbolt database file (a billingd database, an archive file, or a backup or copy of one): writing it would destroy it; name another file",
			label, out)
	case bolt.IsArchiveFile(out):
		return usageErrorf("%s %s is the archive file of a billingd database (history kept nowhere else); name another file", label, out)
	}
	return nil
}

// outputNames are the names out stands for: out, and where its symbolic links
// lead when that is another name (those of its directories too; a dangling link
// as far as it goes, at most 8 links).
func outputNames(out string) []string {
	names := []string{out}
	t := out
	for range 8 {
		li, err := os.Lstat(t)
		if err != nil || li.Mode()&fs.ModeSymlink == 0 {
			break
		}
		next, err := os.Readlink(t)
		if err != nil {
			break
		}
		if !filepath.IsAbs(next) {
			next = filepath.Join(filepath.Dir(t), next)
		}
		t = next
	}
	if dir, err := filepath.EvalSymlinks(filepath.Dir(t)); err == nil {
		t = filepath.Join(dir, filepath.Base(t))
	}
	if abs, err := filepath.Abs(out); err != nil || filepath.Clean(t) != abs {
		names = append(names, t)
	}
	return names
}

// isFile reports whether path names a regular file (through symbolic links).
func isFile(path string) bool {
	fi, err := os.Stat(path)
	return err == nil && fi.Mode().IsRegular()
}

// present reports whether anything is at path (a dangling symbolic link too).
func present(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
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
