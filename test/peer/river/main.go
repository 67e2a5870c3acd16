// Command river is billingd's peer in `make bench-peer`: what a Go team would build
// instead of billingd with River on PostgreSQL. One River job per due cycle, whose
// work is the POST billingd makes for it (klavi.Client.CreatePayment, billingd's own
// client, against the same sandbox process), on a PostgreSQL server with durable
// commits.
//
// It is its own Go module (test/peer/river/go.mod) so that billingd's go.mod does not
// depend on River; it imports billingd's klavi package through a replace directive.
// test/peer's harness builds and runs it; by hand:
//
//	river -dsn postgres://postgres@127.0.0.1:5432/postgres -database run1 \
//	  -sandbox http://127.0.0.1:8089 -consents urn:peer:run01-river- -jobs 10000 \
//	  -date 2026-12-04 -amount 9990 -workers 64
//
// It creates the database (which must not exist), runs River's migrations, inserts
// one job per consent -consents+%06d (0 ≤ i < jobs) with InsertMany, all before the
// timing. The timing runs from river.Client.Start to the jobs-th job completed,
// counted on River's side (a subscription to completed events, which River sends
// once the completion is committed). It prints one JSON object (result) on stdout;
// errors go to stderr with exit status 1.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"hash/fnv"
	"log/slog"
	"os"
	"runtime"
	"runtime/debug"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/riverqueue/river"
	"github.com/riverqueue/river/riverdriver/riverpgxv5"
	"github.com/riverqueue/river/rivermigrate"

	"github.com/klavi-billing/billingd/cycle"
	"github.com/klavi-billing/billingd/klavi"
)

// paymentArgs is one job: the fields of billingd's POST for one due cycle.
type paymentArgs struct {
	ConsentID       string      `json:"consentId"`
	ClientRequestID string      `json:"clientRequestId"`
	Date            cycle.Date  `json:"date"`
	Amount          klavi.Cents `json:"amount"`
}

func (paymentArgs) Kind() string { return "klavi_create_payment" }

// paymentWorker sends the payment of a job, as billingd's due scan does for an
// original submission (retry mode off: no autoRetryStrategy).
type paymentWorker struct {
	river.WorkerDefaults[paymentArgs]
	kc *klavi.Client
}

func (w *paymentWorker) Work(ctx context.Context, job *river.Job[paymentArgs]) error {
	a := job.Args
	_, err := w.kc.CreatePayment(ctx, a.ConsentID, &klavi.CreatePaymentRequest{
		ClientRequestID: a.ClientRequestID,
		Date:            a.Date,
		Amount:          a.Amount,
		Currency:        klavi.Currency,
	})
	return err
}

// result is what one run printed.
type result struct {
	Jobs              int     `json:"jobs"`
	Workers           int     `json:"workers"`
	Completed         int     `json:"completed"`
	FailedAttempts    int     `json:"failedAttempts"` // job runs that returned an error (River retries them)
	InsertSeconds     float64 `json:"insertSeconds"`
	Seconds           float64 `json:"seconds"`
	JobsPerSecond     float64 `json:"jobsPerSecond"`
	FetchCooldown     string  `json:"fetchCooldown"`
	FetchPollInterval string  `json:"fetchPollInterval"`
	PoolMaxConns      int32   `json:"poolMaxConns"`
	River             string  `json:"river"`
	Postgres          string  `json:"postgres"`
	Fsync             string  `json:"fsync"`
	SynchronousCommit string  `json:"synchronousCommit"`
	GoVersion         string  `json:"goVersion"`
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintf(os.Stderr, "river: %v\n", err)
		os.Exit(1)
	}
}

func run() error {
	var (
		dsn          = flag.String("dsn", "", "PostgreSQL `URL` of a database to connect to first (the new one is created from it)")
		database     = flag.String("database", "", "`NAME` of the database to create for this run")
		sandboxURL   = flag.String("sandbox", "", "Klavi (sandbox) base `URL`")
		accessKey    = flag.String("access-key", "ak", "Klavi access key")
		secretKey    = flag.String("secret-key", "sk", "Klavi secret key")
		prefix       = flag.String("consents", "", "consent id `PREFIX`: job i pays consent PREFIX%06d")
		jobs         = flag.Int("jobs", 10000, "number of jobs")
		workers      = flag.Int("workers", 64, "River MaxWorkers of the queue")
		dateFlag     = flag.String("date", "", "payment `DATE` (YYYY-MM-DD)")
		amount       = flag.Int64("amount", 9990, "payment amount in centavos")
		cooldown     = flag.Duration("fetch-cooldown", 2*time.Millisecond, "River FetchCooldown (River's default is 100ms; 2ms is riverbench's throughput setting)")
		pollInterval = flag.Duration("fetch-poll-interval", 20*time.Millisecond, "River FetchPollInterval (default 1s; 20ms in riverbench)")
		poolConns    = flag.Int("pool-max-conns", 0, "connections of the pgx pool (0: pgx's default, max(4, CPUs))")
		limit        = flag.Duration("timeout", 5*time.Minute, "give up after this long")
	)
	flag.Parse()
	if *dsn == "" || *database == "" || *sandboxURL == "" || *prefix == "" || *dateFlag == "" || *jobs < 1 || *workers < 1 {
		flag.Usage()
		return errors.New("-dsn, -database, -sandbox, -consents, -date, -jobs and -workers are required")
	}
	date, err := cycle.ParseDate(*dateFlag)
	if err != nil {
		return fmt.Errorf("-date: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), *limit)
	defer cancel()
	quiet := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))

	// A database of its own for the run.
	admin, err := pgx.Connect(ctx, *dsn)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	res := result{Jobs: *jobs, Workers: *workers, FetchCooldown: cooldown.String(), FetchPollInterval: pollInterval.String(),
		River: moduleVersion("github.com/riverqueue/river"), GoVersion: runtime.Version()}
	for _, q := range []struct {
		sql string
		out *string
	}{{"SHOW server_version", &res.Postgres}, {"SHOW fsync", &res.Fsync}, {"SHOW synchronous_commit", &res.SynchronousCommit}} {
		if err := admin.QueryRow(ctx, q.sql).Scan(q.out); err != nil {
			return fmt.Errorf("%s: %w", q.sql, err)
		}
	}
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{*database}.Sanitize()); err != nil {
		return fmt.Errorf("create database: %w", err)
	}
	admin.Close(ctx)
	cfg, err := pgxpool.ParseConfig(*dsn)
	if err != nil {
		return fmt.Errorf("-dsn: %w", err)
	}
	cfg.ConnConfig.Database = *database
	if *poolConns > 0 {
		cfg.MaxConns = int32(*poolConns)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
	}
	defer pool.Close()
	res.PoolMaxConns = cfg.MaxConns
	driver := riverpgxv5.New(pool)
	mig, err := rivermigrate.New(driver, &rivermigrate.Config{Logger: quiet})
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if _, err := mig.Migrate(ctx, rivermigrate.DirectionUp, nil); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}

	kc, err := klavi.New(klavi.Config{BaseURL: *sandboxURL, AccessKey: *accessKey, SecretKey: *secretKey,
		Timeout: 30 * time.Second, MaxAttempts: 3, BackoffMin: time.Millisecond, BackoffMax: 10 * time.Millisecond,
		RateLimit: 1e6, RateBurst: 10000}, klavi.WithLogger(quiet))
	if err != nil {
		return err
	}
	ws := river.NewWorkers()
	river.AddWorker(ws, &paymentWorker{kc: kc})
	client, err := river.NewClient(driver, &river.Config{
		FetchCooldown:     *cooldown,
		FetchPollInterval: *pollInterval,
		Logger:            quiet,
		Queues:            map[string]river.QueueConfig{river.QueueDefault: {MaxWorkers: *workers}},
		Workers:           ws,
	})
	if err != nil {
		return err
	}

	// The jobs, all inserted before the timing.
	istart := time.Now()
	const chunk = 5000
	for from := 0; from < *jobs; from += chunk {
		var ps []river.InsertManyParams
		for i := from; i < min(from+chunk, *jobs); i++ {
			id := fmt.Sprintf("%s%06d", *prefix, i)
			ps = append(ps, river.InsertManyParams{Args: paymentArgs{
				ConsentID: id, ClientRequestID: clientRequestID(id), Date: date, Amount: klavi.Cents(*amount),
			}})
		}
		if _, err := client.InsertMany(ctx, ps); err != nil {
			return fmt.Errorf("insert jobs: %w", err)
		}
	}
	res.InsertSeconds = time.Since(istart).Seconds()

	events, stop := client.SubscribeConfig(&river.SubscribeConfig{ChanSize: *jobs + 1000,
		Kinds: []river.EventKind{river.EventKindJobCompleted, river.EventKindJobFailed, river.EventKindJobCancelled}})
	defer stop()
	start := time.Now()
	if err := client.Start(ctx); err != nil {
		return fmt.Errorf("start: %w", err)
	}
	for res.Completed < *jobs {
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d of %d jobs completed (%d failed runs): %w", res.Completed, *jobs, res.FailedAttempts, ctx.Err())
		case e, ok := <-events:
			if !ok {
				return fmt.Errorf("subscription closed after %d of %d jobs", res.Completed, *jobs)
			}
			switch e.Kind {
			case river.EventKindJobCompleted:
				res.Completed++
			default:
				res.FailedAttempts++
			}
		}
	}
	took := time.Since(start)
	res.Seconds = took.Seconds()
	res.JobsPerSecond = float64(*jobs) / took.Seconds()
	sctx, scancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer scancel()
	if err := client.Stop(sctx); err != nil {
		return fmt.Errorf("stop: %w", err)
	}
	enc := json.NewEncoder(os.Stdout)
	return enc.Encode(res)
}

// clientRequestID is the job's key at Klavi, shaped like billingd's
// (billingd-<16 hex>-<cycle>-<attempt>): river-<16 hex of the consent id>-0-0.
func clientRequestID(consentID string) string {
	h := fnv.New64a()
	h.Write([]byte(consentID))
	return fmt.Sprintf("river-%016x-0-0", h.Sum64())
}

// moduleVersion is the version of a module the binary was built with.
func moduleVersion(path string) string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, d := range bi.Deps {
			if d.Path == path {
				return d.Version
			}
		}
	}
	return "unknown"
}
