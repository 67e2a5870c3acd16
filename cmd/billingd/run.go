package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/klavi-billing/billingd/admin"
	"github.com/klavi-billing/billingd/clock"
	"github.com/klavi-billing/billingd/console"
	"github.com/klavi-billing/billingd/internal/gcpercent"
	"github.com/klavi-billing/billingd/internal/redact"
	"github.com/klavi-billing/billingd/klavi"
	"github.com/klavi-billing/billingd/leader"
	"github.com/klavi-billing/billingd/metrics"
	"github.com/klavi-billing/billingd/scheduler"
	"github.com/klavi-billing/billingd/storage"
	"github.com/klavi-billing/billingd/storage/bolt"
	etcdstore "github.com/klavi-billing/billingd/storage/etcd"
	"github.com/klavi-billing/billingd/storage/kv"
	"github.com/klavi-billing/billingd/webhook"
)

func newRunCmd(a *app) *cobra.Command {
	var rf runFlags
	cmd := &cobra.Command{
		Use:   "run [flags]",
		Short: "run the billing daemon",
		Long: `Run the billing daemon: bill every authorized consent on its cycles, serve /metrics,
/healthz, /readyz and the admin API. SIGINT or SIGTERM stops it gracefully; a
second signal forces the exit. A database made by 'billingd simulate' is refused
(exit 3): its payments are a simulation's.

With --read-only the daemon bills nothing: it opens the database read-only (never
writing it), starts no scheduling, sends nothing to Klavi or to webhook endpoints,
and answers the admin API's and the console's reads (report, consent show,
payments upcoming, ...) while refusing every change (403). It is how the operator
commands read a database made by 'billingd simulate', or a backup.

The config is --config, else $BILLINGD_CONFIG, else ` + defaultConfigPath + `.`,
		Example: "  billingd run --config /etc/billingd/billingd.yaml\n" +
			"  billingd run --config sim.yaml --read-only   # storage.path: a database kept by simulate --db",
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runDaemon(cmd.Context(), a, rf)
		},
	}
	cmd.Flags().BoolVar(&rf.readOnly, "read-only", false, "open the database read-only and bill nothing: serve its reads, refuse every change (storage.backend bolt)")
	return cmd
}

// runFlags are billingd run's flags: how this start runs, not the config.
type runFlags struct {
	// readOnly (--read-only): the database opened read-only, no scheduler, no
	// webhook deliveries, no store probe; the admin API and the console answer
	// reads and refuse changes (readOnlyHTTP).
	readOnly bool
}

func runDaemon(ctx context.Context, a *app, rf runFlags) error {
	e := a.e
	cfg, err := LoadConfig(configPath(a.config, e.getenv, defaultConfigPath), e.getenv)
	if err != nil {
		return usageErrorf("%v", err)
	}
	if err := cfg.validateForRun(); err != nil {
		return usageErrorf("%v", err)
	}
	cfg.Log.Level = a.logLevelOr(cfg.Log.Level)
	log := newLogger(cfg.Log, e.stderr)
	switch gc, gogc := gcpercent.Apply(cfg.Runtime.GCPercent); {
	case gogc == "":
	case gcpercent.EnvValid(gogc):
		log.Info("garbage collector target from GOGC; runtime.gc_percent ignored", "gc_percent", gc)
	default:
		log.Warn("GOGC is neither a whole number nor off: Go's runtime reads it as 100; runtime.gc_percent ignored",
			"GOGC", gogc, "gc_percent", gc)
	}

	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	d, err := startDaemon(cfg, rf, log, e.clock)
	if err != nil {
		return err
	}
	var fatal error
	select {
	case <-ctx.Done():
	case fatal = <-d.fatal:
		// The store cannot be trusted with another write (its file was replaced):
		// stop; nothing more is written or sent. systemd does not restart it (exit 3).
		log.Error("stopping: the database cannot take writes", "db", cfg.Storage.Path, "err", fatal)
	}
	stop()
	// A second signal forces the exit; the attempts in flight stay SUBMITTING and are
	// re-sent with the same key on the next start.
	force := make(chan os.Signal, 1)
	signal.Notify(force, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-force
		log.Error("second signal: exiting now")
		os.Exit(1)
	}()
	log.Info("shutting down", "timeout", cfg.Scheduler.ShutdownTimeout)
	sctx, cancel := context.WithTimeout(context.Background(), cfg.Scheduler.ShutdownTimeout)
	defer cancel()
	if err := d.Close(sctx); err != nil && fatal == nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	log.Info("stopped")
	return fatal
}

// daemon is a running billingd: store, Klavi client, scheduler and HTTP listener.
type daemon struct {
	cfg    Config
	log    *slog.Logger
	db     storage.Store
	file   *bolt.Store // the bbolt store; nil on etcd
	sched  *scheduler.Scheduler
	srv    *http.Server
	ln     net.Listener
	health *storeHealth
	// started is set once the database is verified and the scheduler runs;
	// stopping once Close has begun.
	started, stopping atomic.Bool
	// readOnly: started with --read-only (runFlags); nothing is scheduled.
	readOnly bool
	// fatal receives the error that must stop the daemon (ErrReplaced).
	fatal chan error
	probe context.CancelFunc
	bg    sync.WaitGroup
	sd    *sdNotifier // systemd readiness and watchdog; nil when not under systemd

	// elector campaigns for the leadership of the scheduling (etcd only); elect
	// ends its campaign, and elected is closed when it has returned.
	elector *leader.Elector
	elect   context.CancelFunc
	elected chan struct{}

	// webhooks publishes the feed and delivers it; it runs where the scheduler runs.
	webhooks *webhook.Dispatcher
}

// startDaemon opens everything and starts serving and scheduling. What is built
// from the config alone (the Klavi client, the scheduler's and the webhooks'
// settings) comes first, then the listener is bound, then the database is opened,
// so a config or an address that cannot work leaves the state directory untouched. HTTP is served while the database is verified
// (/healthz answers, /readyz says why it is not ready, the admin API answers 503).
// On error, whatever was opened is closed again. With rf.readOnly the database is
// opened read-only and nothing is started that decides or writes (runFlags).
func startDaemon(cfg Config, rf runFlags, log *slog.Logger, clk clock.Clock) (_ *daemon, err error) {
	if rf.readOnly && cfg.Storage.Backend == "etcd" { // before anything is opened, as a config problem
		return nil, usageErrorf("run --read-only: storage.backend is etcd; --read-only opens a bolt file (storage.path) read-only. Read an etcd store through a copy: billingd db migrate --from etcd:... --to bolt:FILE")
	}
	d := &daemon{cfg: cfg, log: log, fatal: make(chan error, 1), sd: newSDNotifier(log), readOnly: rf.readOnly}
	defer func() {
		if err != nil {
			_ = d.Close(context.Background())
		}
	}()
	// What is built from the config alone comes first: a value it refuses (one
	// Validate let through) is a config error, exit 2, with nothing opened or created.
	ver, rev := buildVersion()
	m := metrics.New(ver, rev, metrics.WithClock(clk), metrics.WithLogger(log))
	kc, err := klavi.New(cfg.klaviConfig(), klaviOptions(log, clk, d.klaviHooks(m))...)
	if err != nil {
		return nil, usageErrorf("klavi client: %v", err)
	}
	sc, err := cfg.schedulerConfig()
	if err != nil {
		return nil, usageErrorf("%v", err)
	}
	if err := cfg.webhookConfig().Validate(); err != nil {
		return nil, usageErrorf("webhooks: %v", err)
	}
	started := time.Now()
	d.ln, err = net.Listen("tcp", cfg.HTTP.Listen)
	if errors.Is(err, syscall.EADDRINUSE) {
		return nil, fmt.Errorf("http.listen: %w (another process listens on %s: a billingd already running? `billingd healthcheck --url %s` asks it)", err, cfg.HTTP.Listen, healthURL(cfg.HTTP.Listen))
	}
	if err != nil {
		return nil, fmt.Errorf("http.listen: %w", err)
	}
	d.health = newStoreHealth(log, m, d.stop)
	if err := d.openStore(cfg, log, rf.readOnly); err != nil {
		return nil, err
	}
	m.WatchStore(d.db, clk.Now)
	m.SetStoreEngine(d.db.Engine().Name())

	sopts := []scheduler.Option{scheduler.WithClock(clk), scheduler.WithLogger(log), scheduler.WithObserver(m.Observe), scheduler.WithObserver(d.sd.observe)}
	if cfg.Storage.Backend == "etcd" {
		identity := cfg.Leader.Identity
		if identity == "" {
			host, _ := os.Hostname()
			identity = fmt.Sprintf("%s:%d", host, os.Getpid())
		}
		d.elector, err = leader.New(leader.Options{
			Client:   d.db.(*etcdstore.Store).Client(),
			Prefix:   cfg.Storage.Etcd.Prefix + "leader",
			TTL:      cfg.Leader.LeaseTTL,
			Identity: identity,
			Logger:   log,
			OnChange: m.SetLeader,
		})
		if err != nil {
			return nil, err
		}
		m.SetLeader(d.elector.Status()) // a follower until elected: billingd_leader 0
		sopts = append(sopts, scheduler.WithLeadership(d.elector))
	}
	d.sched, err = scheduler.New(sc, d.db, kc, sopts...)
	if err != nil {
		return nil, err
	}
	if d.webhooks, err = webhook.New(cfg.webhookConfig(), d.db, webhook.WithClock(clk), webhook.WithLogger(log), webhook.WithHooks(m.WebhookHooks())); err != nil {
		return nil, err
	}
	m.WatchWebhooks(d.webhooks)
	m.SetAmountWarningDays(d.sched.AmountWarningDays())
	m.WatchClock(func() (time.Duration, bool, bool) {
		st := d.sched.ClockState()
		return st.KlaviSkew, !st.KlaviSeen.IsZero(), st.Doubt
	})

	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if why := d.notReady(); why != "" {
			http.Error(w, "not ready: "+why, http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready"+d.role())
	})
	mux.Handle("GET /metrics", m.Handler())
	api := admin.New(cfg.HTTP.AdminToken, d.db, d.sched, admin.WithKlavi(kc), admin.WithClock(clk), admin.WithLogger(log), admin.WithWebhooks(d.webhooks))
	if h := api.Handler(); h != nil {
		if rf.readOnly {
			h = readOnlyHTTP(h)
		}
		mux.Handle("/v1/", d.afterStart(h))
	} else {
		mux.HandleFunc("/v1/", func(w http.ResponseWriter, _ *http.Request) {
			http.Error(w, `{"error":"the admin API is off: no http.admin_token is configured"}`, http.StatusNotFound)
		})
	}
	ui := console.New(cfg.HTTP.AdminToken, d.db, d.sched, console.WithReadOnlyToken(cfg.HTTP.ReadOnlyToken), console.WithClock(clk),
		console.WithLogger(log), console.WithStatus(func() console.Status {
			return console.Status{Role: d.role(), NotReady: d.notReady(), Clock: d.sched.ClockState()}
		}))
	if h := ui.Handler(); h != nil {
		if rf.readOnly {
			h = readOnlyHTTP(h)
		}
		mux.Handle(console.Prefix, d.afterStart(h))
	}
	d.srv = &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       2 * time.Minute,
	}
	go func() {
		if err := d.srv.Serve(d.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("http server stopped", "err", err)
		}
	}()
	// bbolt keeps no page checksums: a damaged page would be found only when the
	// scheduler reads it. Walk every page before the first submission instead.
	if cfg.Storage.VerifyOnStart && d.file != nil {
		vstart := time.Now()
		if err := d.file.Verify(context.Background()); err != nil {
			return nil, fmt.Errorf("%s: %w", cfg.Storage.Path, err)
		}
		log.Info("database verified", "db", cfg.Storage.Path, "took", time.Since(vstart).String())
	}
	if rf.readOnly {
		d.started.Store(true)
		ctx, cancel := context.WithCancel(context.Background())
		d.probe = cancel // no probe (it writes): the context ends the watchdog's feed at Close
		d.sd.serving(ctx, "read-only: serving the database's reads, billing nothing", func() bool { return true })
		log.Warn("read-only: the database is opened read-only; nothing is scheduled, sent or written, and the API refuses every change",
			"db", cfg.Storage.Path)
		log.Info("billingd started", "version", ver, "revision", rev, "store", d.storeName(cfg), "listen", d.ln.Addr().String(),
			"admin_api", cfg.HTTP.AdminToken != "", "read_only", true, "startup", time.Since(started).String())
		return d, nil
	}
	hooks := d.sd.hooks(m.SchedulerHooks())
	if d.elector == nil {
		if err := d.sched.Start(context.Background(), kv.Fence{}, cfg.Scheduler.ScanSchedule, cfg.Scheduler.PollSchedule, hooks); err != nil {
			return nil, err
		}
		if err := d.webhooks.Start(context.Background(), kv.Fence{}); err != nil {
			return nil, err
		}
	} else if err := d.campaign(cfg, hooks); err != nil {
		return nil, err
	}
	d.started.Store(true)
	pctx, cancel := context.WithCancel(context.Background())
	d.probe = cancel
	d.bg.Add(1)
	go func() {
		defer d.bg.Done()
		d.health.probeLoop(pctx, d.db.Probe)
	}()
	log.Info("billingd started", "version", ver, "revision", rev, "store", d.storeName(cfg), "listen", d.ln.Addr().String(),
		"admin_api", cfg.HTTP.AdminToken != "", "klavi", redact.URL(cfg.Klavi.BaseURL), "startup", time.Since(started).String())
	return d, nil
}

// Addr is the HTTP listener's address.
func (d *daemon) Addr() string { return d.ln.Addr().String() }

// notReady says why the daemon should get no traffic, or "" when it is ready: it
// is starting (verifying the database) or stopping, the path no longer names its
// database file, or the store's writes fail.
func (d *daemon) notReady() string {
	switch {
	case d.stopping.Load():
		return "stopping"
	case !d.started.Load():
		if d.file == nil {
			return "starting: joining the election"
		}
		return "starting: verifying the database"
	}
	if d.file != nil {
		if err := d.file.CheckIdentity(); err != nil {
			return err.Error()
		}
	}
	if p := d.health.problem(); p != "" {
		return p
	}
	if st := d.sched.ClockState(); st.Doubt {
		return "clock in doubt: " + st.Reason
	}
	return ""
}

// klaviHooks are the metrics' Klavi hooks, plus Klavi's time (the Date header of its
// answers) for the scheduler's clock check. The scheduler is built after the client,
// so the hook reads it when it runs.
func (d *daemon) klaviHooks(m *metrics.Metrics) klavi.Hooks {
	h := m.KlaviHooks()
	h.OnServerTime = func(server, local time.Time) {
		if s := d.sched; s != nil {
			s.ObserveKlaviTime(server, local)
		}
	}
	return h
}

// afterStart answers 503 until the daemon has started: no admin change reaches a
// database that is still being verified.
func (d *daemon) afterStart(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !d.started.Load() {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintln(w, `{"error":"starting: the database is being verified"}`)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// stop hands the error that must end the daemon to cmdRun (the first one only).
func (d *daemon) stop(err error) {
	select {
	case d.fatal <- err:
	default:
	}
}

// Close stops the daemon: HTTP first (no new admin changes), then the scheduler
// (in-flight submissions finish within ctx), then the store.
func (d *daemon) Close(ctx context.Context) error {
	d.stopping.Store(true)
	d.sd.stopping()
	if d.probe != nil {
		d.probe()
	}
	d.bg.Wait()
	var errs []error
	if d.srv != nil {
		hctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		errs = append(errs, d.srv.Shutdown(hctx))
		cancel()
	} else if d.ln != nil {
		errs = append(errs, d.ln.Close())
	}
	if d.elect != nil {
		d.elect() // the term ends: the scheduler stops, then the replica resigns
		select {
		case <-d.elected:
		case <-ctx.Done():
		}
	}
	if d.webhooks != nil {
		errs = append(errs, d.webhooks.Close(ctx))
	}
	if d.sched != nil {
		errs = append(errs, d.sched.Close(ctx))
	}
	if d.db != nil {
		errs = append(errs, d.db.Close())
	}
	return errors.Join(errs...)
}

// schedulerConfig is the scheduler's share of the config.
func (c *Config) schedulerConfig() (scheduler.Config, error) {
	pol, err := c.policy()
	if err != nil {
		return scheduler.Config{}, err
	}
	h, m, err := parseClock(c.Billing.SubmitTime)
	if err != nil {
		return scheduler.Config{}, err
	}
	reasons := make([]klavi.ReasonCode, len(c.Billing.RetryableReasons))
	for i, r := range c.Billing.RetryableReasons {
		_ = reasons[i].UnmarshalText([]byte(r))
	}
	return scheduler.Config{
		Policy:              pol,
		SubmitHour:          h,
		SubmitMinute:        m,
		Workers:             c.Scheduler.Workers,
		Batch:               c.Scheduler.Batch,
		RecordBatch:         c.Scheduler.RecordBatch,
		RecordWindow:        recordWindow(c.Scheduler.RecordWindow),
		PollMin:             c.Scheduler.PollMinInterval,
		PollMax:             c.Scheduler.PollMaxInterval,
		ResendMin:           c.Scheduler.ResendMinInterval,
		ResendMax:           c.Scheduler.ResendMaxInterval,
		RetryableReasons:    reasons,
		ClockTolerance:      cmp.Or(c.Scheduler.ClockTolerance, -1), // 0s in the file: no check
		ReconcileEvery:      c.Scheduler.ReconcileEvery,
		ConfirmAfter:        c.Scheduler.ConfirmAfter,
		AmountWarningDays:   c.Scheduler.AmountWarningDays,
		StuckAfter:          c.Scheduler.StuckAfter,
		RefreshSchedule:     c.Scheduler.RefreshSchedule,
		RefreshEvery:        c.Scheduler.RefreshEvery,
		RefreshBeforeSubmit: c.Scheduler.RefreshBeforeSubmit,
		Canceller:           c.canceller(),
	}, nil
}

// klaviConfig is the Klavi client's share of the config.
func (c *Config) klaviConfig() klavi.Config {
	k := c.Klavi
	return klavi.Config{
		BaseURL:            k.BaseURL,
		AccessKey:          k.AccessKey,
		SecretKey:          k.SecretKey,
		Timeout:            k.Timeout,
		MaxAttempts:        k.MaxAttempts,
		BackoffMin:         k.BackoffMin,
		BackoffMax:         k.BackoffMax,
		RateLimit:          k.RateLimit,
		RateBurst:          k.RateBurst,
		TokenRefreshBefore: k.TokenRefreshBefore,
		AppID:              k.AppID,
	}
}

// canceller is klavi.canceller, or nil when unset.
func (c *Config) canceller() *klavi.Person {
	if c.Klavi.Canceller.Identifier == "" {
		return nil
	}
	p := &klavi.Person{Identifier: c.Klavi.Canceller.Identifier}
	_ = p.IdentifierType.UnmarshalText([]byte(c.Klavi.Canceller.IdentifierType))
	return p
}

func newHealthcheckCmd(a *app) *cobra.Command {
	var u string
	cmd := &cobra.Command{
		Use:   "healthcheck [flags]",
		Short: "exit 0 when the daemon answers its health URL",
		Long: "Exit 0 when the daemon answers its health URL (container HEALTHCHECK), 1 otherwise.\n" +
			"Without --url, the daemon of the config given (--config or $BILLINGD_CONFIG) is asked at its http.listen; with none, " +
			"http://127.0.0.1:8080/healthz.",
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !cmd.Flags().Changed("url") && configPath(a.config, a.e.getenv, "") != "" {
				cfg, err := loadConfigFor(a.e, a.config, false)
				if err != nil {
					return err
				}
				u = healthURL(cfg.HTTP.Listen)
			}
			c := &http.Client{Timeout: 5 * time.Second}
			resp, err := c.Get(u)
			if err != nil {
				return fmt.Errorf("healthcheck: %s: %w", redact.URL(u), withoutURL(err))
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("healthcheck: %s answered %s", redact.URL(u), resp.Status)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&u, "url", "http://127.0.0.1:8080/healthz", "health `URL`")
	return cmd
}

// healthURL is the health URL of a daemon listening on listen (http.listen): a
// wildcard host is asked on loopback.
func healthURL(listen string) string {
	host, port, err := net.SplitHostPort(listen)
	if err != nil {
		return "http://" + listen + "/healthz"
	}
	switch host {
	case "", "0.0.0.0":
		host = "127.0.0.1"
	case "::":
		host = "::1"
	}
	return "http://" + net.JoinHostPort(host, port) + "/healthz"
}

// openStore opens the configured store: the bbolt file, or the etcd cluster. A
// store billingd simulate made is refused (storage.ErrSimulated, exit 3) before
// anything is written to it, unless readOnly: then the bbolt file is opened
// read-only, whatever made it.
func (d *daemon) openStore(cfg Config, log *slog.Logger, readOnly bool) error {
	so := storage.Options{Logger: log, OnWrite: d.health.wrote, RefuseSimulated: true}
	if cfg.Storage.Backend != "etcd" {
		d.health.dir = filepath.Dir(cfg.Storage.Path)
		compact, err := bolt.ParseCompactMode(cfg.Storage.CompactAtStart)
		if err != nil { // validated with the configuration
			return fmt.Errorf("storage.compact_at_start: %w", err)
		}
		opts := bolt.Options{Timeout: cfg.Storage.OpenTimeout, Logger: log, OnWrite: d.health.wrote,
			MappedBudget: int64(cfg.Storage.MappedBudgetMiB) << 20, CompactAtStart: compact, RefuseSimulated: true}
		if readOnly {
			opts = bolt.Options{Timeout: cfg.Storage.OpenTimeout, Logger: log, ReadOnly: true}
		}
		db, err := bolt.Open(cfg.Storage.Path, opts)
		if errors.Is(err, storage.ErrSimulated) {
			return fmt.Errorf("%w; billingd run refuses it (to serve its reads to the operator commands: billingd run --read-only)", err)
		}
		if err != nil {
			return err
		}
		d.db, d.file = db, db
		return nil
	}
	e := cfg.Storage.Etcd
	o := etcdstore.Options{
		Endpoints: e.Endpoints, Prefix: e.Prefix, Username: e.Username, Password: e.Password,
		DialTimeout: e.DialTimeout, RequestTimeout: e.RequestTimeout, MaxOps: e.MaxTxnOps, Logger: log,
	}
	if e.CertFile != "" || e.CAFile != "" {
		tc, err := etcdstore.TLSConfig(e.CertFile, e.KeyFile, e.CAFile)
		if err != nil {
			return fmt.Errorf("storage.etcd: %w", err)
		}
		o.TLS = tc
	}
	ctx, cancel := context.WithTimeout(context.Background(), e.DialTimeout+e.RequestTimeout)
	defer cancel()
	db, err := etcdstore.OpenStore(ctx, o, so)
	if errors.Is(err, storage.ErrSimulated) {
		return fmt.Errorf("etcd prefix %s: %w; billingd run refuses it", e.Prefix, err)
	}
	if err != nil {
		return err
	}
	d.db = db
	return nil
}

// campaign runs the election: while this replica leads, the scheduler runs in the
// term (its writes fenced by the term's token); when the term ends it stops at once.
// A cluster that grants no lease at start is an error of the environment.
func (d *daemon) campaign(cfg Config, hooks scheduler.Hooks) error {
	ctx, cancel := context.WithCancel(context.Background())
	d.elect, d.elected = cancel, make(chan struct{})
	d.sd.replica(ctx, func() bool {
		st := d.elector.Status()
		return st.Role == leader.Follower && st.Leader != ""
	})
	errc := make(chan error, 1)
	go func() {
		defer close(d.elected)
		errc <- d.elector.Run(ctx, func(term context.Context, fence kv.Fence) {
			if err := d.sched.Start(term, fence, cfg.Scheduler.ScanSchedule, cfg.Scheduler.PollSchedule, hooks); err != nil {
				d.log.Error("scheduler did not start in this term", "fence_rev", fence.Rev, "err", err)
				return
			}
			if err := d.webhooks.Start(term, fence); err != nil {
				d.log.Error("webhooks did not start in this term", "fence_rev", fence.Rev, "err", err)
			}
			<-term.Done()
			sctx, cancel := context.WithTimeout(context.Background(), cfg.Scheduler.ShutdownTimeout)
			defer cancel()
			if err := d.webhooks.Close(sctx); err != nil {
				d.log.Warn("webhooks stopped with deliveries abandoned", "fence_rev", fence.Rev, "err", err)
			}
			if err := d.sched.Close(sctx); err != nil {
				d.log.Warn("scheduler stopped with runs abandoned", "fence_rev", fence.Rev, "err", err)
			}
		})
	}()
	// Run returns early only when etcd grants no lease in time (an error of the
	// environment); once a lease is granted the replica is running.
	select {
	case err := <-errc:
		if err == nil {
			err = errors.New("stopped before it started")
		}
		return fmt.Errorf("leader election: %w", err)
	case <-d.elector.Granted():
	}
	go func() {
		if err := <-errc; err != nil {
			d.stop(fmt.Errorf("leader election: %w", err))
		}
	}()
	return nil
}

// role says, for /readyz, which part this replica plays ("" with one process).
func (d *daemon) role() string {
	if d.readOnly {
		return " (read-only: billing nothing)"
	}
	if d.elector == nil {
		return ""
	}
	st := d.elector.Status()
	if st.Role == leader.Leader {
		return fmt.Sprintf(" (leader, fence %d)", st.Fence.Rev)
	}
	if st.Leader == "" {
		return " (follower; no leader known)"
	}
	return " (follower; leader " + st.Leader + ")"
}

// storeName names the store for logs.
func (d *daemon) storeName(cfg Config) string {
	if cfg.Storage.Backend == "etcd" {
		return "etcd " + cfg.Storage.Etcd.Prefix
	}
	return cfg.Storage.Path
}

// recordWindow is scheduler.record_window for scheduler.Config, where 0 means the
// default: a configured 0 (no wait) is negative there.
func recordWindow(d time.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return d
}

// klaviOptions are the daemon's Klavi client options. Under BILLINGD_TEST_CLOCK
// (a *clock.Scaled) the client waits out a Retry-After on the test's timeline, which
// the sandbox shares: its Retry-After of 1 s is one second of that time. The backoff
// between attempts stays on the real clock, as the process tests configure it.
func klaviOptions(log *slog.Logger, clk clock.Clock, hooks klavi.Hooks) []klavi.Option {
	opts := []klavi.Option{klavi.WithLogger(log), klavi.WithClock(clk), klavi.WithHooks(hooks)}
	if sc, ok := clk.(*clock.Scaled); ok {
		opts = append(opts, klavi.WithRetryAfterSleep(sc.Sleep))
	}
	return opts
}

// readOnlyHTTP answers a request that would change something (any method but GET
// and HEAD) with 403 and why, and passes the others to h: what billingd run
// --read-only serves. The console's sign-in and sign-out (POST /ui/login,
// /ui/logout) pass too: its sessions are signed cookies, not records.
func readOnlyHTTP(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == http.MethodGet, r.Method == http.MethodHead,
			r.Method == http.MethodPost && (r.URL.Path == console.Prefix+"login" || r.URL.Path == console.Prefix+"logout"):
			h.ServeHTTP(w, r)
			return
		}
		const msg = "read-only: billingd run --read-only changes nothing; run billingd without --read-only on a database it may bill on"
		if strings.HasPrefix(r.URL.Path, "/v1/") {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusForbidden)
			fmt.Fprintf(w, "{\"error\":%q}\n", msg)
			return
		}
		http.Error(w, msg, http.StatusForbidden)
	})
}
