package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/klavi-billing/billingd/storage"
	"github.com/klavi-billing/billingd/storage/bolt"
)

func newDBCmd(a *app) *cobra.Command {
	return group("db", "check, back up or compact the database", "Check, back up or compact the database.",
		newDBCheckCmd(a), newDBBackupCmd(a), newDBCompactCmd(a))
}

// dbPath picks --db, else storage.path of the config.
func dbPath(e *env, dbFlag, cfgFlag string) (string, Config, error) {
	cfg, err := loadConfigFor(e, cfgFlag, true)
	if err != nil {
		return "", cfg, err
	}
	if dbFlag != "" {
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
	if r.PageSize > 0 {
		fmt.Fprintf(w, "pages:      %d bytes each; %d in the file, %d used (high-water mark), %d of them free\n",
			r.PageSize, r.FileBytes/int64(r.PageSize), r.UsedPages, r.FreePages)
	}
	if r.Schema > 0 {
		fmt.Fprintf(w, "schema:     %d (this billingd reads %d)\n", r.Schema, storage.SchemaVersion)
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
	fmt.Fprintln(w, "result:     database file is corrupt")
}

func newDBCompactCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "compact OUT [flags]",
		Short: "write a compacted, verified copy of the database",
		Long: "Write a compacted, verified copy of the database to the new file OUT, with billingd\n" +
			"stopped (the live file is locked while it runs). Then replace the file with OUT.",
	}
	fs := cmd.Flags()
	dbFlag := fs.String("db", "", "database `PATH` (default: storage.path of the config)")
	cmd.Args = cobra.ArbitraryArgs
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		e := a.e
		if len(args) != 1 {
			return argErrorf("db compact: want exactly one OUT file")
		}
		path, _, err := dbPath(e, *dbFlag, a.config)
		if err != nil {
			return err
		}
		before, after, err := bolt.Compact(args[0], path)
		if err != nil {
			if errors.Is(err, storage.ErrLocked) {
				return fmt.Errorf("%w; stop billingd before compacting", err)
			}
			return err
		}
		fmt.Fprintf(e.stdout, "compacted %s (%d bytes) into %s (%d bytes), verified\n", path, before, args[0], after)
		return nil
	}
	return cmd
}

func newDBBackupCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "backup FILE [flags]",
		Short: "write a consistent, verified copy of the database",
		Long: "Write a consistent copy of the database to FILE. Works while billingd runs: the file\n" +
			"is locked then, and the copy is taken through the admin API (GET /v1/backup).\n" +
			"The copy is verified before it is put in place.",
	}
	fs := cmd.Flags()
	dbFlag := fs.String("db", "", "database `PATH` (default: storage.path of the config)")
	force := fs.Bool("force", false, "overwrite FILE if it exists")
	af := addAdminFlags(cmd, a)
	cmd.Args = cobra.ArbitraryArgs
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		e := a.e
		if len(args) != 1 {
			return argErrorf("db backup: want exactly one FILE")
		}
		out := args[0]
		if _, err := os.Stat(out); err == nil && !*force {
			return usageErrorf("db backup: %s exists; use --force to overwrite it", out)
		}
		path, _, err := dbPath(e, *dbFlag, a.config)
		if err != nil {
			return err
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
