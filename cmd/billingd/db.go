package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/klavi-billing/billingd/internal/redact"
	"github.com/klavi-billing/billingd/storage"
	"github.com/klavi-billing/billingd/storage/bolt"
	"github.com/klavi-billing/billingd/storage/etcd"
	"github.com/klavi-billing/billingd/storage/kv"
)

func newDBCmd(a *app) *cobra.Command {
	return group("db", "check, back up, compact or migrate the database", "Check, back up, compact or migrate the database.",
		newDBCheckCmd(a), newDBBackupCmd(a), newDBCompactCmd(a), newDBMigrateCmd(a))
}

// dbPath picks --db, else storage.path of the config.
func dbPath(e *env, dbFlag, cfgFlag string) (string, Config, error) {
	cfg, err := loadConfigFor(e, cfgFlag, true)
	if err != nil {
		return "", cfg, err
	}
	if dbFlag != "" {
		// As storage.path is checked with the configuration (exit 2).
		if fi, err := os.Stat(dbFlag); err == nil && fi.IsDir() {
			return "", cfg, usageErrorf("--db %s is a directory; name the database file in it", dbFlag)
		}
		return dbFlag, cfg, nil
	}
	return cfg.Storage.Path, cfg, nil
}

func newDBCheckCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "check [flags]",
		Short: "verify every page and index of the database",
		Long:  "Verify every page and index of the database and report on it (read-only; a running\ndaemon holds the file: check a backup of it instead).",
	}
	fs := cmd.Flags()
	dbFlag := fs.String("db", "", "database `PATH` (default: storage.path of the config)")
	cmd.Args = noArgs
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		e := a.e
		path, _, err := dbPath(e, *dbFlag, a.config)
		if err != nil {
			return err
		}
		rep, err := bolt.Inspect(path, 2*time.Second)
		if rep != nil {
			printReport(e.stdout, rep)
		}
		switch {
		case errors.Is(err, storage.ErrLocked):
			return fmt.Errorf("%w; take a backup with 'billingd db backup FILE' and check that file", err)
		case errors.Is(err, bolt.ErrArchiveMissing):
			return fmt.Errorf("%s: %w: put %s back beside the database (restoring a backup instead would lose what was written since it; docs/OPERATIONS.md, \"The archive file\")",
				path, bolt.ErrArchiveMissing, bolt.ArchivePath(path))
		case errors.Is(err, storage.ErrCorrupt):
			what := fmt.Sprintf("%d problems", len(rep.Problems))
			if len(rep.Problems) == 1 {
				what = "1 problem"
			}
			return fmt.Errorf("%s: %w: %s (listed above); restore the newest good backup (docs/OPERATIONS.md, \"Back up and restore\")",
				path, storage.ErrCorrupt, what)
		}
		return err
	}
	return cmd
}

// printReport prints what db check found: sizes (the file size is what ls -l
// shows), records per bucket, consents per state, and every problem.
func printReport(w io.Writer, r *bolt.Report) {
	fmt.Fprintf(w, "database:   %s\n", r.Path)
	fmt.Fprintf(w, "file size:  %d bytes\n", r.FileBytes)
	if r.ArchivePath != "" {
		fmt.Fprintf(w, "archive:    %s, %d bytes (settled attempts and older events)\n", r.ArchivePath, r.ArchiveBytes)
	}
	if r.PageSize > 0 {
		fmt.Fprintf(w, "pages:      %d bytes each; %d in the file, %d used (high-water mark), %d of them free\n",
			r.PageSize, r.FileBytes/int64(r.PageSize), r.UsedPages, r.FreePages)
	}
	if r.Schema > 0 {
		fmt.Fprintf(w, "schema:     %d (this billingd reads %d)\n", r.Schema, storage.SchemaVersion)
	}
	if r.Simulated {
		fmt.Fprintln(w, "simulated:  yes, made by billingd simulate: billingd run refuses to bill on it (billingd run --read-only serves its reads)")
	}
	if len(r.Records) > 0 {
		names := make([]string, 0, len(r.Records))
		for n := range r.Records {
			names = append(names, n)
		}
		sort.Strings(names)
		fmt.Fprint(w, "records:   ")
		for i, n := range names {
			if i > 0 {
				fmt.Fprint(w, ",")
			}
			fmt.Fprintf(w, " %s %d", n, r.Records[n])
		}
		fmt.Fprintln(w)
	}
	var states []string
	for _, s := range storage.ConsentStates {
		if r.Consents[s] > 0 {
			states = append(states, fmt.Sprintf("%d %s", r.Consents[s], s))
		}
	}
	if len(states) > 0 {
		fmt.Fprintf(w, "consents:   %s\n", strings.Join(states, ", "))
	}
	if len(r.Problems) == 0 {
		fmt.Fprintln(w, "problems:   none")
		fmt.Fprintln(w, "result:     ok")
		return
	}
	fmt.Fprintf(w, "problems:   %d\n", len(r.Problems))
	for _, p := range r.Problems {
		fmt.Fprintf(w, "  - %s\n", p)
	}
	if r.ArchiveMissing {
		fmt.Fprintln(w, "result:     the archive file is missing (the database file was not checked further)")
		return
	}
	fmt.Fprintln(w, "result:     database file is corrupt")
}

func newDBCompactCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "compact OUT [flags]",
		Short: "write a compacted, verified copy of the database",
		Long: "Write a compacted, verified copy of the database to the new file OUT, and of its\n" +
			"archive file to OUT.archive, with billingd stopped (the live file is locked while\n" +
			"it runs, and only read). Then replace the database file with OUT and its archive\n" +
			"file with OUT.archive. In the copy, settled attempts and older events still in the live\n" +
			"buckets (a file written before schema 3) move to the archive, and every bucket is\n" +
			"written in contiguous pages, as a year of commits does not leave it\n" +
			"(docs/BENCHMARKS.md, \"History off the hot path\").",
	}
	fs := cmd.Flags()
	dbFlag := fs.String("db", "", "database `PATH` (default: storage.path of the config)")
	cmd.Args = cobra.ArbitraryArgs
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		e := a.e
		if len(args) != 1 || args[0] == "" {
			return argErrorf("db compact: want exactly one OUT file")
		}
		path, cfg, err := dbPath(e, *dbFlag, a.config)
		if err != nil {
			return err
		}
		if err := checkNewOutput("db compact: OUT", guardDB(path, *dbFlag, cfg), args[0]); err != nil {
			return err
		}
		for _, p := range []string{args[0], bolt.ArchivePath(args[0])} {
			if _, err := os.Lstat(p); err == nil {
				return usageErrorf("db compact: %s exists; compact into a new file", p)
			}
		}
		before, after, err := bolt.Compact(args[0], path)
		if err != nil {
			if errors.Is(err, storage.ErrLocked) {
				return fmt.Errorf("%w; stop billingd before compacting", err)
			}
			return err
		}
		// The live file is only read: settled records are archived in the copy, which
		// is then compacted once more so that its buckets stay contiguous.
		moved, events, drained, err := archiveSettled(cmd.Context(), args[0])
		if err != nil {
			return fmt.Errorf("db compact: archive settled records in %s: %w", args[0], err)
		}
		fmt.Fprintf(e.stdout, "archived %d settled attempts and %d older events; moved %d records to the archive file\n", moved, events, drained)
		if moved+events+drained > 0 {
			tmp := args[0] + ".compact"
			_ = os.Remove(tmp)
			_ = os.Remove(bolt.ArchivePath(tmp))
			if _, after, err = bolt.Compact(tmp, args[0]); err != nil {
				return fmt.Errorf("db compact: %w", err)
			}
			// The archive file first: a database file beside an archive file of
			// the same identifier reads the same history from either copy.
			if _, err := os.Stat(bolt.ArchivePath(tmp)); err == nil {
				if err := os.Rename(bolt.ArchivePath(tmp), bolt.ArchivePath(args[0])); err != nil {
					return fmt.Errorf("db compact: %w", err)
				}
			}
			if err := os.Rename(tmp, args[0]); err != nil {
				return fmt.Errorf("db compact: %w", err)
			}
			_ = os.Remove(tmp + ".lock")
		}
		_ = os.Remove(args[0] + ".lock") // the copy's, from archiving in it: not the live file's
		fmt.Fprintf(e.stdout, "compacted %s (%d bytes with its archive file) into %s (%d bytes with its archive file), verified\n", path, before, args[0], after)
		if _, err := os.Stat(bolt.ArchivePath(args[0])); err == nil {
			fmt.Fprintf(e.stdout, "its archive file is %s: replace the database file and its archive file together\n", bolt.ArchivePath(args[0]))
		}
		return nil
	}
	return cmd
}

// archiveSettled moves what the archive rule allows out of the live buckets of the
// database at path (storage.DB.Compact), with the file locked.
func archiveSettled(ctx context.Context, path string) (attempts, events, drained int, err error) {
	db, err := bolt.Open(path, bolt.Options{Timeout: time.Second})
	if err != nil {
		if errors.Is(err, storage.ErrLocked) {
			return 0, 0, 0, fmt.Errorf("%w; stop billingd before compacting", err)
		}
		return 0, 0, 0, err
	}
	defer db.Close()
	attempts, events, err = db.Compact(ctx, 0, nil)
	if err == nil {
		// Counted since the open: its background drain may have begun (a file holding
		// its history in itself, as a backup does, moves it all to the archive file).
		_, err = db.DrainArchive()
		drained = int(db.ArchiveDrained())
	}
	return attempts, events, drained, err
}

func newDBBackupCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "backup FILE [flags]",
		Short: "write a consistent, verified copy of the database",
		Long: "Write a consistent copy of the database to FILE. Works while billingd runs: the file\n" +
			"is locked then, and the copy is taken through the admin API (GET /v1/backup).\n" +
			"The copy is one file holding everything, the history kept in the archive file\n" +
			"(<database>.archive) included. It is verified before it is put in place. To\n" +
			"restore it, move the old archive file away (docs/OPERATIONS.md, \"Back up and\n" +
			"restore\").",
	}
	fs := cmd.Flags()
	dbFlag := fs.String("db", "", "database `PATH` (default: storage.path of the config)")
	force := fs.Bool("force", false, "overwrite FILE if it exists")
	af := addAdminFlags(cmd, a)
	cmd.Args = cobra.ArbitraryArgs
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		e := a.e
		if len(args) != 1 || args[0] == "" {
			return argErrorf("db backup: want exactly one FILE")
		}
		out := args[0]
		path, cfg, err := dbPath(e, *dbFlag, a.config)
		if err != nil {
			return err
		}
		// FILE is replaced by a rename: never the database itself, whatever --force says.
		if err := checkBackupOutput("db backup: FILE", guardDB(path, *dbFlag, cfg), out); err != nil {
			return err
		}
		if _, err := os.Stat(out); err == nil && !*force {
			return usageErrorf("db backup: %s exists; use --force to overwrite it", out)
		}
		tmp, err := os.CreateTemp(filepath.Dir(out), ".billingd-backup-*")
		if err != nil {
			return fmt.Errorf("backup: %w", err)
		}
		defer os.Remove(tmp.Name())
		via := "file"
		db, err := bolt.Open(path, bolt.Options{ReadOnly: true, Timeout: time.Second})
		switch {
		case err == nil:
			_, err = db.Backup(cmd.Context(), tmp)
			_ = db.Close()
		case errors.Is(err, storage.ErrLocked):
			via = "admin API"
			var c *adminClient
			if c, err = af.client(); err == nil {
				err = c.do("GET", "/v1/backup", nil, tmp)
			}
		}
		if err == nil {
			err = tmp.Sync()
		}
		if cerr := tmp.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("backup of %s: %w", path, err)
		}
		// Verify the copy before it replaces anything.
		cp, err := bolt.Open(tmp.Name(), bolt.Options{ReadOnly: true, Timeout: time.Second})
		if err != nil {
			return fmt.Errorf("backup copy does not open: %w", err)
		}
		err = cp.Check(cmd.Context())
		_ = cp.Close()
		if err != nil {
			return fmt.Errorf("backup copy fails its check: %w", err)
		}
		if err := os.Rename(tmp.Name(), out); err != nil {
			return fmt.Errorf("backup: %w", err)
		}
		fi, _ := os.Stat(out)
		fmt.Fprintf(e.stdout, "backed up %s to %s (%d bytes, via the %s, verified)\n", path, out, fi.Size(), via)
		return nil
	}
	return cmd
}

// A storeSpec is a store named on the command line: bolt:PATH or
// etcd:ENDPOINT[,ENDPOINT...].
type storeSpec struct {
	engine    string // "bolt" or "etcd"
	path      string
	endpoints []string
}

// parseStoreSpec reads the value of --from or --to (flag names it in errors).
func parseStoreSpec(flag, s string) (storeSpec, error) {
	engine, rest, ok := strings.Cut(s, ":")
	switch {
	case s == "":
		return storeSpec{}, argErrorf("db migrate: %s is required: bolt:PATH or etcd:ENDPOINT[,ENDPOINT...]", flag)
	case !ok || (engine != "bolt" && engine != "etcd"):
		return storeSpec{}, argErrorf("db migrate: %s %q: want bolt:PATH or etcd:ENDPOINT[,ENDPOINT...]", flag, redact.URL(s))
	case rest == "":
		return storeSpec{}, argErrorf("db migrate: %s %q: no %s", flag, s, map[string]string{"bolt": "PATH", "etcd": "ENDPOINT"}[engine])
	case engine == "bolt":
		return storeSpec{engine: engine, path: rest}, nil
	}
	eps := strings.Split(rest, ",")
	for _, ep := range eps {
		if ep == "" {
			return storeSpec{}, argErrorf("db migrate: %s %q: an empty ENDPOINT", flag, s)
		}
	}
	return storeSpec{engine: engine, endpoints: eps}, nil
}

// migrateFlags are the etcd settings db migrate shares between source and target.
type migrateFlags struct {
	prefix, user, passwordFile string
	cert, key, ca              string
	dialTimeout                time.Duration
}

// etcdOptions builds the etcd options of a store on endpoints; the password is read
// from its file, never taken from the command line.
func (f *migrateFlags) etcdOptions(endpoints []string) (etcd.Options, error) {
	o := etcd.Options{Endpoints: endpoints, Prefix: f.prefix, Username: f.user, DialTimeout: f.dialTimeout}
	if f.passwordFile != "" {
		b, err := os.ReadFile(f.passwordFile)
		if err != nil {
			return o, fmt.Errorf("--etcd-password-file: %w", err)
		}
		o.Password = strings.TrimRight(string(b), "\r\n")
	}
	https := false
	for _, ep := range endpoints {
		https = https || strings.HasPrefix(ep, "https://")
	}
	if f.cert != "" || f.key != "" || f.ca != "" || https {
		cfg, err := etcd.TLSConfig(f.cert, f.key, f.ca)
		if err != nil {
			return o, err
		}
		o.TLS = cfg
	}
	return o, nil
}

// describe names a store for the summary: bolt:PATH, etcd:ENDPOINTS (prefix P).
func (f *migrateFlags) describe(s storeSpec) string {
	if s.engine == "bolt" {
		return "bolt:" + s.path
	}
	return fmt.Sprintf("etcd:%s (prefix %s)", redact.URLs(s.endpoints), f.prefix)
}

// openSource opens the store to copy from without writing to it: a bolt file
// read-only (a running daemon holds it: ErrLocked), an etcd prefix that must hold
// a billingd store (an empty one is ErrNotBillingd).
func (f *migrateFlags) openSource(ctx context.Context, s storeSpec) (kv.Engine, error) {
	if s.engine == "bolt" {
		st, err := bolt.Open(s.path, bolt.Options{ReadOnly: true, Timeout: time.Second})
		if errors.Is(err, storage.ErrLocked) {
			return nil, fmt.Errorf("%w; stop billingd first: the source must not change while it is copied", err)
		}
		if err != nil {
			return nil, err
		}
		return st.Engine(), nil
	}
	o, err := f.etcdOptions(s.endpoints)
	if err != nil {
		return nil, err
	}
	st, err := etcd.OpenStore(ctx, o, storage.Options{ReadOnly: true})
	if err != nil {
		return nil, err
	}
	return st.Engine(), nil
}

// openTarget opens the store to copy into as a bare engine, which must be new: a
// bolt file that does not exist yet, an etcd prefix without a key.
func (f *migrateFlags) openTarget(ctx context.Context, s storeSpec) (kv.Engine, error) {
	if s.engine == "bolt" {
		if _, err := os.Stat(s.path); err == nil {
			return nil, usageErrorf("db migrate: --to bolt:%s exists; migrate into a new file", s.path)
		}
		if arch := bolt.ArchivePath(s.path); func() bool { _, err := os.Lstat(arch); return err == nil }() {
			return nil, usageErrorf("db migrate: --to bolt:%s: its archive file %s exists (left by an earlier migrate into that path?); remove it, or migrate into a new file", s.path, arch)
		}
		return bolt.OpenEngine(s.path, bolt.Options{Timeout: time.Second})
	}
	o, err := f.etcdOptions(s.endpoints)
	if err != nil {
		return nil, err
	}
	o.Buckets = storage.Buckets
	e, err := etcd.Open(ctx, o)
	if err != nil {
		return nil, err
	}
	// Any key under the prefix, billingd's or not, makes it not ours to fill.
	resp, err := e.Client().Get(ctx, f.prefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		_ = e.Close()
		return nil, fmt.Errorf("etcd: read %s: %w", f.prefix, err)
	}
	if resp.Count > 0 {
		_ = e.Close()
		return nil, usageErrorf("db migrate: %v: etcd prefix %s holds %d keys; migrate into an empty prefix (--etcd-prefix)",
			kv.ErrNotEmpty, f.prefix, resp.Count)
	}
	return e, nil
}

func newDBMigrateCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "migrate --from SRC --to DST [flags]",
		Short: "copy the database between bolt and etcd, verified record by record",
		Long: "Copy every record of the store SRC into the new store DST, then compare the two\n" +
			"record by record and check that DST opens as a billingd store. SRC and DST are\n" +
			"bolt:PATH (a bbolt file) or etcd:ENDPOINT[,ENDPOINT...] (the keys under --etcd-prefix).\n" +
			"\n" +
			"Stop billingd first (every replica): SRC is read as one snapshot and must not change\n" +
			"until the comparison is done. DST must be new: a bolt file that does not exist yet,\n" +
			"an etcd prefix without a key. Nothing is written to SRC.\n" +
			"\n" +
			"  billingd db migrate --from bolt:/var/lib/billingd/billingd.db --to etcd:https://10.0.0.1:2379 \\\n" +
			"      --etcd-user billingd --etcd-password-file /etc/billingd/etcd-password --etcd-ca /etc/billingd/etcd-ca.pem",
	}
	fs := cmd.Flags()
	from := fs.String("from", "", "source `STORE`: bolt:PATH or etcd:ENDPOINT[,ENDPOINT...]")
	to := fs.String("to", "", "target `STORE`, which must be new: bolt:PATH or etcd:ENDPOINT[,ENDPOINT...]")
	var f migrateFlags
	fs.StringVar(&f.prefix, "etcd-prefix", etcd.DefaultPrefix, "etcd key `PREFIX` of the store")
	fs.StringVar(&f.user, "etcd-user", "", "etcd `USER` (authentication off when empty)")
	fs.StringVar(&f.passwordFile, "etcd-password-file", "", "`FILE` holding the etcd user's password (it is never taken on the command line)")
	fs.StringVar(&f.cert, "etcd-cert", "", "client certificate `FILE` (PEM) for etcd over TLS")
	fs.StringVar(&f.key, "etcd-key", "", "client key `FILE` (PEM) of --etcd-cert")
	fs.StringVar(&f.ca, "etcd-ca", "", "CA bundle `FILE` (PEM) that verifies the etcd servers (default: the system roots)")
	fs.DurationVar(&f.dialTimeout, "dial-timeout", etcd.DefaultDialTimeout, "wait at most `DURATION` for etcd to answer when connecting")
	cmd.Args = noArgs
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		e, ctx := a.e, cmd.Context()
		src, err := parseStoreSpec("--from", *from)
		if err != nil {
			return err
		}
		dst, err := parseStoreSpec("--to", *to)
		if err != nil {
			return err
		}
		switch {
		case f.passwordFile != "" && f.user == "":
			return argErrorf("db migrate: --etcd-password-file needs --etcd-user")
		case f.dialTimeout <= 0:
			return argErrorf("db migrate: --dial-timeout %s: want a positive duration", f.dialTimeout)
		case !strings.HasPrefix(f.prefix, "/") || strings.ContainsRune(f.prefix, 0):
			return argErrorf("db migrate: --etcd-prefix %q: want a key prefix beginning with /", f.prefix)
		case src.engine == "bolt" && dst.engine == "bolt" && filepath.Clean(src.path) == filepath.Clean(dst.path):
			return argErrorf("db migrate: --from and --to name the same file")
		}
		if dst.engine == "bolt" {
			var dbs []liveDB
			if src.engine == "bolt" {
				dbs = append(dbs, liveDB{path: src.path, from: "--from"})
			}
			dbs = append(dbs, a.configDB())
			if err := checkNewOutput("db migrate: --to", dbs, dst.path); err != nil {
				return err
			}
		}

		source, err := f.openSource(ctx, src)
		if err != nil {
			return fmt.Errorf("db migrate: source %s: %w", f.describe(src), err)
		}
		defer source.Close()
		target, err := f.openTarget(ctx, dst)
		if errors.Is(err, errUsage) {
			return err
		}
		if err != nil {
			return fmt.Errorf("db migrate: target %s: %w", f.describe(dst), err)
		}
		closed := false
		defer func() {
			if !closed {
				_ = target.Close()
			}
		}()
		fmt.Fprintf(e.stdout, "source:   %s\n", f.describe(src))
		fmt.Fprintf(e.stdout, "target:   %s\n", f.describe(dst))
		partial := func(err error) error {
			where := "remove " + dst.path + " and " + bolt.ArchivePath(dst.path)
			if dst.engine == "etcd" {
				where = "delete the keys under " + f.prefix
			}
			return fmt.Errorf("%w; the target holds part of the store or a copy that differs: %s before migrating again", err, where)
		}

		since := func(t time.Time) time.Duration { return e.clock.Now().Sub(t).Round(time.Millisecond) }
		counts := map[string]int{}
		start, last := e.clock.Now(), e.clock.Now()
		n, err := kv.Copy(ctx, target, source, storage.Buckets, func(b string, n int) {
			counts[b] = n
			if now := e.clock.Now(); now.Sub(last) >= 10*time.Second {
				fmt.Fprintf(e.stderr, "copying %s: %d keys so far\n", b, n)
				last = now
			}
		})
		if errors.Is(err, kv.ErrNotEmpty) {
			return usageErrorf("db migrate: target %s: %v; migrate into an empty store", f.describe(dst), err)
		}
		if err != nil {
			return partial(fmt.Errorf("db migrate: %w", err))
		}
		for _, b := range storage.Buckets {
			fmt.Fprintf(e.stdout, "  %-14s %9d\n", b, counts[string(b)])
		}
		fmt.Fprintf(e.stdout, "copied:   %d keys in %s\n", n, since(start))

		start = e.clock.Now()
		if err := kv.Compare(ctx, source, target, storage.Buckets); err != nil {
			return partial(fmt.Errorf("db migrate: verify: %w (did billingd run meanwhile?)", err))
		}
		fmt.Fprintf(e.stdout, "verified: %d records identical (compared in %s)\n", n, since(start))

		start = e.clock.Now()
		db, err := storage.New(ctx, target, storage.Options{ReadOnly: true})
		if err != nil {
			return partial(fmt.Errorf("db migrate: the target does not open as a billingd store: %w", err))
		}
		closed = true
		defer db.Close()
		if err := db.Check(ctx); err != nil {
			return partial(fmt.Errorf("db migrate: the target fails billingd's check: %w", err))
		}
		schema, err := db.Schema(ctx)
		if err != nil {
			return fmt.Errorf("db migrate: target: %w", err)
		}
		fmt.Fprintf(e.stdout, "check:    the target opens as a billingd store (schema %d) and passes its check (in %s)\n", schema, since(start))
		return nil
	}
	return cmd
}
