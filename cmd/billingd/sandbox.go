package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/klavi-billing/billingd/klavi"
	"github.com/klavi-billing/billingd/klavi/sandbox"
)

// sandboxShutdown bounds how long the sandbox waits for requests in flight at exit.
const sandboxShutdown = 5 * time.Second

func newSandboxCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "sandbox [flags]",
		Short: "run a fake Klavi (rules, payment state machine, faults) on a local port",
		Long: "Run a fake Klavi on a local port: the API billingd calls, with Klavi's rules, a payment\n" +
			"state machine on the real clock, scripted outcomes and injected faults. Seed consents\n" +
			"with --consents or POST /_sandbox/consents; read GET /_sandbox/ledger and /_sandbox/stats.\n" +
			"Change a consent as the payer or the bank would with POST /_sandbox/consents/{id}/authorize,\n" +
			"/reject, /revoke[?reason=REVOKED_MERCHANT] or /expire.\n" +
			"SIGINT or SIGTERM stops it (and writes --ledger); a second signal kills it.\n\n" +
			"Where Klavi's documents allow several answers, the reading flags pick one, so a client\n" +
			"can be tested against each: --ids, --amounts, --status-case, --duplicate, --check-order,\n" +
			"--conflict-permissions, --cursor-field, --page-size-max and --clock-offset.\n\n" +
			"With --journal FILE every consent and payment change is on disk before it is answered;\n" +
			"a sandbox restarted on the same FILE (even after SIGKILL) knows every clientRequestId\n" +
			"and payment and goes on from there. --consents already in the journal are skipped.",
	}
	fs := cmd.Flags()
	addr := fs.String("addr", "127.0.0.1:8089", "listen on `HOST:PORT`")
	scenarioFile := fs.String("scenario", "", "scenario `FILE` (JSON) deciding payment outcomes (default: every payment completes)")
	faultsSpec := fs.String("faults", "", "faults to inject, e.g. `latency=20ms,5xx=0.05,429=0.02,timeout=0.01,drop=0.01,seed=42`")
	accessKey := fs.String("access-key", "", "the only access key accepted (default: any non-empty keys)")
	secretKey := fs.String("secret-key", "", "the only secret key accepted, with --access-key")
	consents := fs.String("consents", "", "seed authorized consents from `FILE` or DIR (*.json; one consent or an array per file)")
	ledger := fs.String("ledger", "", "write the ledger as JSON to `FILE` at exit")
	journal := fs.String("journal", "", "append every state change to `FILE`, fsynced before the answer that reveals it, and replay it at start (survives SIGKILL)")
	requestLog := fs.String("request-log", "", "append every payment-creating request (arrival instants, X-Billingd-Fence, clientRequestId, outcome) as a JSON line to `FILE`")
	ttl := fs.Duration("token-ttl", time.Hour, "lifetime of an access token")
	settleHour := fs.Int("settle-hour", 6, "Brasília hour (1..23) at which payments settle on their date")
	seed := fs.Uint64("seed", 0, "seed of the sandbox's draws: the UUIDs it issues and --conflict-permissions")
	ids := fs.String("ids", sandbox.IDsUUID, "`FORM` of the ids issued: uuid (v4, as Klavi's examples) or urn (urn:sandbox:payment-00000001)")
	amounts := fs.String("amounts", sandbox.AmountsString, "`FORM` of amounts in answers: string (\"3109.55\") or number (3109.55)")
	statusCase := fs.String("status-case", sandbox.StatusUpper, "`CASE` of statuses and reason codes in answers: upper (PAYMENT_COMPLETED), lower (payment_completed) or spaced (Payment Completed)")
	duplicate := fs.String("duplicate", sandbox.Duplicate409, "`ANSWER` to a create re-using a clientRequestId: 409 (Conflict) or existing (201 with the payment it created)")
	checkOrder := fs.String("check-order", sandbox.CheckKeyFirst, "`ORDER` of the checks: key-first (the clientRequestId before the rules) or rules-first (after the window, consent and amount rules)")
	conflictPermissions := fs.Float64("conflict-permissions", 0, "`RATE` (0..1) of creates refused with 409 \"Insufficient permissions requested\", creating nothing")
	cursorField := fs.String("cursor-field", "cursor", "`NAME` of the next-page cursor in the management lists' answers: cursor, nextCursor or next")
	pageSizeMax := fs.Int("page-size-max", sandbox.DefaultPageSizeMax, "largest `pageSize` the management lists accept")
	clockOffset := fs.Duration("clock-offset", 0, "the sandbox's clock is the process's plus this `DURATION` (e.g. 360h, -2h); answers carry it in their Date header")
	appID := fs.String("app-id", sandbox.DefaultAppID, "the merchant application's `ID`, listed by GET /payment/management/v1/merchants/apps")
	cmd.Args = noArgs
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		e := a.e
		ctx := cmd.Context()
		if (*accessKey == "") != (*secretKey == "") {
			return argErrorf("sandbox: --access-key and --secret-key go together")
		}
		if *settleHour < 1 || *settleHour > 23 {
			return argErrorf("sandbox: --settle-hour %d: want 1..23", *settleHour)
		}
		if *ttl <= 0 {
			return argErrorf("sandbox: --token-ttl must be more than 0")
		}
		if *pageSizeMax < 1 {
			return argErrorf("sandbox: --page-size-max %d: want 1 or more", *pageSizeMax)
		}
		outs := []outFlag{{"--ledger", *ledger}, {"--journal", *journal}, {"--request-log", *requestLog}}
		if err := distinctOutputs("sandbox", outs...); err != nil {
			return err
		}
		live := []liveDB{a.configDB()}
		for _, f := range outs {
			if f.path == "" {
				continue
			}
			if err := checkOutputs("sandbox: "+f.flag, live, f.path); err != nil {
				return err
			}
		}
		log := a.logger()
		opts := sandbox.Options{
			Clock: e.clock, AccessKey: *accessKey, SecretKey: *secretKey, TokenTTL: *ttl,
			Logger: log, SettleHour: *settleHour, Seed: *seed, IDs: *ids, Amounts: *amounts,
			StatusCase: *statusCase, Duplicate: *duplicate, CheckOrder: *checkOrder,
			ConflictPermissions: *conflictPermissions, CursorField: *cursorField,
			PageSizeMax: *pageSizeMax, ClockOffset: *clockOffset, AppID: *appID, Journal: *journal,
			RequestLog: *requestLog,
		}
		var err error
		if opts.Faults, err = sandbox.ParseFaults(*faultsSpec); err != nil {
			return argErrorf("sandbox: --faults: %v", err)
		}
		if err := opts.Validate(); err != nil {
			return argErrorf("sandbox: %v", err)
		}
		if *scenarioFile != "" {
			if opts.Scenario, err = sandbox.LoadScenario(*scenarioFile); err != nil {
				reportProblems(e.stderr, *scenarioFile, errors.Unwrap(err))
				return errSilent
			}
		}
		sb, err := sandbox.Open(opts)
		if err != nil {
			return fmt.Errorf("sandbox: %w", err)
		}
		defer sb.Close()
		if *consents != "" {
			cs, err := readConsents(e, []string{*consents})
			if err != nil {
				return err
			}
			var fresh []*klavi.CreatedConsent
			for _, c := range cs {
				if !sb.HasConsent(c.ID) { // a replayed journal holds it already
					fresh = append(fresh, &c.CreatedConsent)
				}
			}
			if err := sb.AddConsent(fresh...); err != nil {
				return usageErrorf("sandbox: %v", err)
			}
		}

		ln, err := net.Listen("tcp", *addr)
		if err != nil {
			return fmt.Errorf("sandbox: %w", err)
		}
		srv := &http.Server{Handler: sb, ReadHeaderTimeout: 10 * time.Second}
		ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
		defer stop()
		served := make(chan error, 1)
		go func() { served <- srv.Serve(ln) }()
		log.Info("sandbox listening", "addr", "http://"+ln.Addr().String(),
			"consents", sb.Stats().Consents, "faults", opts.Faults.String(), "scenario", *scenarioFile)

		select {
		case err := <-served:
			return fmt.Errorf("sandbox: %w", err)
		case <-ctx.Done():
		}
		stop() // from here a second signal kills the process
		log.Info("sandbox shutting down")
		sb.Close() // requests held by a timeout fault return now
		sctx, cancel := context.WithTimeout(context.Background(), sandboxShutdown)
		defer cancel()
		if err := srv.Shutdown(sctx); err != nil {
			srv.Close()
		}
		<-served
		l := sb.Ledger()
		if *ledger != "" {
			// Checked again: the ledger is written at exit, and the file may have
			// become a database (a backup, a copy) since the start.
			if err := checkOutputs("sandbox: --ledger", live, *ledger); err != nil {
				return err
			}
			if err := writeLedger(*ledger, l); err != nil {
				return fmt.Errorf("sandbox: %w", err)
			}
			log.Info("sandbox ledger written", "file", *ledger)
		}
		log.Info("sandbox stopped", "requests", sb.Stats().Requests, "payments", len(l))
		return nil
	}
	return cmd
}

// writeLedger writes the ledger as indented JSON, atomically (a temporary file
// renamed over path).
func writeLedger(path string, l []sandbox.LedgerEntry) error {
	if l == nil {
		l = []sandbox.LedgerEntry{}
	}
	data, err := json.MarshalIndent(l, "", "  ")
	if err != nil {
		return fmt.Errorf("write ledger: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".ledger-*.json")
	if err != nil {
		return fmt.Errorf("write ledger: %w", err)
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(append(data, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("write ledger: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("write ledger: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("write ledger: %w", err)
	}
	return nil
}
