package main

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/klavi-billing/billingd/consent"
	"github.com/klavi-billing/billingd/cycle"
	"github.com/klavi-billing/billingd/internal/gcpercent"
	"github.com/klavi-billing/billingd/internal/redact"
	"github.com/klavi-billing/billingd/klavi"
	"github.com/klavi-billing/billingd/scheduler"
	"github.com/klavi-billing/billingd/storage/bolt"
	"github.com/klavi-billing/billingd/webhook"
)

// defaultConfigPath is where `billingd run` looks without --config; BILLINGD_CONFIG
// overrides it.
const defaultConfigPath = "/etc/billingd/billingd.yaml"

// maxRateLimit bounds klavi.rate_limit, in requests per second: far above any rate
// Klavi answers; a larger value would only mean no limit.
const maxRateLimit = 1_000_000

// Config is billingd's whole configuration. config.example.yaml lists every key with
// its default; DefaultConfig is the same in code.
type Config struct {
	Billing   BillingConfig   `yaml:"billing"`
	Storage   StorageConfig   `yaml:"storage"`
	Klavi     KlaviConfig     `yaml:"klavi"`
	Scheduler SchedulerConfig `yaml:"scheduler"`
	HTTP      HTTPConfig      `yaml:"http"`
	Log       LogConfig       `yaml:"log"`
	Leader    LeaderConfig    `yaml:"leader"`
	Webhooks  WebhooksConfig  `yaml:"webhooks"`
	Runtime   RuntimeConfig   `yaml:"runtime"`

	src *configSource // where it was read from; nil for the defaults
}

// BillingConfig holds the billing rules every consent shares unless its own billing
// object overrides them.
type BillingConfig struct {
	LeadDays         int      `yaml:"lead_days"`
	SubmitTime       string   `yaml:"submit_time"`
	RetryMode        string   `yaml:"retry_mode"`
	DueDateAdjust    string   `yaml:"due_date_adjust"`
	ExtraHolidays    []string `yaml:"extra_holidays"`
	RetryableReasons []string `yaml:"retryable_reasons"`
}

// StorageConfig chooses the store: one bbolt file (backend bolt, the default) or an
// etcd cluster shared by several replicas (backend etcd).
type StorageConfig struct {
	// Backend is "bolt" or "etcd".
	Backend     string        `yaml:"backend"`
	Path        string        `yaml:"path"`
	OpenTimeout time.Duration `yaml:"open_timeout"`
	// VerifyOnStart makes `billingd run` check the file's structure (every page)
	// before its first submission; /readyz waits for it. bolt only.
	VerifyOnStart bool `yaml:"verify_on_start"`
	// MappedBudgetMiB bounds, in MiB, the file pages the daemon keeps mapped beyond
	// what it mapped after its last release (bolt.Options.MappedBudget); 0: no bound.
	MappedBudgetMiB int `yaml:"mapped_budget_mib"`
	// CompactAtStart is when `billingd run` compacts the database file as it opens
	// it (bolt.ParseCompactMode): auto (the default), always or never. bolt only.
	CompactAtStart string     `yaml:"compact_at_start"`
	Etcd           EtcdConfig `yaml:"etcd"`
}

// EtcdConfig is how billingd reaches its etcd cluster (storage.backend: etcd).
type EtcdConfig struct {
	// Endpoints are the cluster's client URLs (http:// or https://).
	Endpoints []string `yaml:"endpoints"`
	// Prefix is the key prefix of billingd's records and of its election
	// (<prefix>leader/); two deployments on one cluster need two prefixes.
	Prefix   string `yaml:"prefix"`
	Username string `yaml:"username"`
	// Password: write ${ETCD_PASSWORD} and give it as a credential, never inline.
	Password string `yaml:"password"`
	// CertFile and KeyFile are the client certificate (mutual TLS); CAFile the CA
	// that signed the cluster's certificates. Any of them turns TLS on.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	CAFile   string `yaml:"ca_file"`
	// DialTimeout bounds the first contact; RequestTimeout every read and commit.
	DialTimeout    time.Duration `yaml:"dial_timeout"`
	RequestTimeout time.Duration `yaml:"request_timeout"`
	// MaxTxnOps is the cluster's --max-txn-ops (etcd's default 128): billingd
	// chunks bulk writes to stay within it.
	MaxTxnOps int `yaml:"max_txn_ops"`
}

// WebhooksConfig is the merchant's webhook endpoints and how events are delivered
// to them (package webhook).
type WebhooksConfig struct {
	Endpoints []WebhookEndpointConfig `yaml:"endpoints"`
	// MaxAge: how long an event is retried before it is dead-lettered (WEBHOOK_DEAD).
	MaxAge time.Duration `yaml:"max_age"`
	// BackoffMin and BackoffMax bound the wait between two tries of an event
	// (exponential, with jitter).
	BackoffMin time.Duration `yaml:"backoff_min"`
	BackoffMax time.Duration `yaml:"backoff_max"`
	// Timeout bounds one delivery; Workers the deliveries in flight per endpoint.
	Timeout time.Duration `yaml:"timeout"`
	Workers int           `yaml:"workers"`
	// Interval is how often new events are published and delivered.
	Interval time.Duration `yaml:"interval"`
}

// WebhookEndpointConfig is one receiver.
type WebhookEndpointConfig struct {
	// Name names it in metrics, logs and commands ([a-z0-9_-]).
	Name string `yaml:"name"`
	URL  string `yaml:"url"`
	// Secret signs its deliveries (HMAC-SHA256): write ${NAME} and give it as a
	// credential, never inline.
	Secret string `yaml:"secret"`
	// Events are the event kinds it receives; empty: all.
	Events []string `yaml:"events"`
}

// LeaderConfig tunes the election of the replica that schedules (etcd only).
type LeaderConfig struct {
	// LeaseTTL is the election lease: a leader that cannot renew it for this long
	// stops scheduling, and another replica takes over about this long after a
	// leader dies (whole seconds, at least 2s).
	LeaseTTL time.Duration `yaml:"lease_ttl"`
	// Identity names this replica in the election and in logs (default
	// hostname:pid).
	Identity string `yaml:"identity"`
}

// KlaviConfig is how billingd reaches Klavi.
type KlaviConfig struct {
	BaseURL            string        `yaml:"base_url"`
	AccessKey          string        `yaml:"access_key"`
	SecretKey          string        `yaml:"secret_key"`
	Timeout            time.Duration `yaml:"timeout"`
	MaxAttempts        int           `yaml:"max_attempts"`
	BackoffMin         time.Duration `yaml:"backoff_min"`
	BackoffMax         time.Duration `yaml:"backoff_max"`
	RateLimit          float64       `yaml:"rate_limit"`
	RateBurst          int           `yaml:"rate_burst"`
	TokenRefreshBefore time.Duration `yaml:"token_refresh_before"`
	// AppID is the merchant application's id in Klavi's management API (the orders
	// list reconciliation reads); empty: discovered when the keys have exactly one app.
	AppID string `yaml:"app_id"`
	// Canceller is the document scheduled payments are canceled in the name of
	// (cancel payment's cancelledBy); empty: the consent's creditorAccount holder.
	Canceller CancellerConfig `yaml:"canceller"`
}

// CancellerConfig is a CPF or CNPJ (personal data: never logged).
type CancellerConfig struct {
	IdentifierType string `yaml:"identifier_type"`
	Identifier     string `yaml:"identifier"`
}

// RuntimeConfig tunes the Go runtime of the daemon (billingd run).
type RuntimeConfig struct {
	// GCPercent is the garbage collector's target (GOGC), gcpercent.Min to
	// gcpercent.Max; the GOGC environment variable, when set, wins.
	GCPercent int `yaml:"gc_percent"`
}

// SchedulerConfig drives the due scan and the status poll.
type SchedulerConfig struct {
	ScanSchedule string `yaml:"scan_schedule"`
	PollSchedule string `yaml:"poll_schedule"`
	Workers      int    `yaml:"workers"`
	// Batch: due entries read, decided and written SUBMITTING in one transaction by
	// a due scan; RecordBatch: answers recorded in one transaction at most.
	Batch       int `yaml:"batch"`
	RecordBatch int `yaml:"record_batch"`
	// RecordWindow: how long the recorder waits for more answers to commit with
	// one (0: none).
	RecordWindow      time.Duration `yaml:"record_window"`
	PollMinInterval   time.Duration `yaml:"poll_min_interval"`
	PollMaxInterval   time.Duration `yaml:"poll_max_interval"`
	ResendMinInterval time.Duration `yaml:"resend_min_interval"`
	ResendMaxInterval time.Duration `yaml:"resend_max_interval"`
	ShutdownTimeout   time.Duration `yaml:"shutdown_timeout"`
	// ReconcileEvery: how often an UNCONFIRMED attempt is looked up again in Klavi's
	// orders list. StuckAfter: how long a payment's status may stay unknown (404 or
	// an unknown status) before it is looked up and, if still unknown, STUCK.
	// ClockTolerance: how far the clock may be from Klavi's time, or behind the
	// latest instant billingd acted on, before decisions pause (0s: no check).
	ClockTolerance time.Duration `yaml:"clock_tolerance"`
	ReconcileEvery time.Duration `yaml:"reconcile_every"`
	// ConfirmAfter: a "not found" in Klavi's orders list is trusted only when a second
	// read this much later agrees (a create may still be in flight at Klavi).
	ConfirmAfter time.Duration `yaml:"confirm_after"`
	// AmountWarningDays: a variable cycle with no amount set this many days before its
	// submission is an attention item (AMOUNT_MISSING) and counts in
	// billingd_variable_amount_missing.
	AmountWarningDays int           `yaml:"amount_warning_days"`
	StuckAfter        time.Duration `yaml:"stuck_after"`
	// RefreshSchedule drives the consent refresh (get consent at Klavi; "off"
	// disables it); RefreshEvery is how often an active consent is read again;
	// RefreshBeforeSubmit reads it before a submission when that is older.
	RefreshSchedule     string        `yaml:"refresh_schedule"`
	RefreshEvery        time.Duration `yaml:"refresh_every"`
	RefreshBeforeSubmit bool          `yaml:"refresh_before_submit"`
}

// HTTPConfig is the one listener: /metrics, /healthz, /readyz, the admin API and the
// web console. ReadOnlyToken opens console sessions that can look but not act.
type HTTPConfig struct {
	Listen        string `yaml:"listen"`
	AdminToken    string `yaml:"admin_token"`
	ReadOnlyToken string `yaml:"readonly_token"`
}

// LogConfig sets the slog handler.
type LogConfig struct {
	Level  string `yaml:"level"`
	Format string `yaml:"format"`
}

// DefaultConfig returns the configuration billingd uses for every key a file leaves out.
func DefaultConfig() Config {
	reasons := make([]string, len(klavi.DefaultRetryableReasons))
	for i, r := range klavi.DefaultRetryableReasons {
		reasons[i] = string(r)
	}
	return Config{
		Billing: BillingConfig{
			LeadDays:         3,
			SubmitTime:       "09:00",
			RetryMode:        string(consent.Attach),
			DueDateAdjust:    cycle.AdjustNone.String(),
			ExtraHolidays:    []string{},
			RetryableReasons: reasons,
		},
		Storage: StorageConfig{Backend: "bolt", Path: "/var/lib/billingd/billingd.db", OpenTimeout: 5 * time.Second, VerifyOnStart: true, CompactAtStart: "auto",
			Etcd: EtcdConfig{Endpoints: []string{}, Prefix: "/billingd/", DialTimeout: 5 * time.Second, RequestTimeout: 5 * time.Second, MaxTxnOps: 128}},
		Leader: LeaderConfig{LeaseTTL: 10 * time.Second},
		Klavi: KlaviConfig{
			BaseURL:            "https://api-sandbox.klavi.ai",
			Timeout:            15 * time.Second,
			MaxAttempts:        4,
			BackoffMin:         500 * time.Millisecond,
			BackoffMax:         10 * time.Second,
			RateLimit:          50,
			RateBurst:          100,
			TokenRefreshBefore: 60 * time.Second,
		},
		Scheduler: SchedulerConfig{
			ScanSchedule:        "@every 1m",
			PollSchedule:        "@every 1m",
			Workers:             16,
			Batch:               scheduler.DefaultBatch,
			RecordBatch:         scheduler.DefaultRecordBatch,
			RecordWindow:        scheduler.DefaultRecordWindow,
			PollMinInterval:     5 * time.Minute,
			PollMaxInterval:     6 * time.Hour,
			ResendMinInterval:   time.Minute,
			ResendMaxInterval:   30 * time.Minute,
			ShutdownTimeout:     30 * time.Second,
			ClockTolerance:      5 * time.Minute,
			ReconcileEvery:      time.Hour,
			ConfirmAfter:        10 * time.Minute,
			AmountWarningDays:   2,
			StuckAfter:          24 * time.Hour,
			RefreshSchedule:     "@every 5m",
			RefreshEvery:        24 * time.Hour,
			RefreshBeforeSubmit: true,
		},
		HTTP:    HTTPConfig{Listen: "127.0.0.1:8080"},
		Runtime: RuntimeConfig{GCPercent: gcpercent.Default},
		Log:     LogConfig{Level: "info", Format: "auto"},
		Webhooks: WebhooksConfig{Endpoints: []WebhookEndpointConfig{}, MaxAge: webhook.DefaultMaxAge,
			BackoffMin: webhook.DefaultBackoffMin, BackoffMax: webhook.DefaultBackoffMax, Timeout: webhook.DefaultTimeout,
			Workers: webhook.DefaultWorkers, Interval: webhook.DefaultInterval},
	}
}

var envRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(:-([^}]*))?\}`)

// expandEnv replaces ${NAME} and ${NAME:-default} in raw config bytes. A plain $ is
// left alone (a secret may contain one). It returns the names that were not set and
// had no default; they expand to "".
func expandEnv(raw []byte, getenv func(string) string) ([]byte, []string) {
	var undefined []string
	out := envRef.ReplaceAllFunc(raw, func(m []byte) []byte {
		sub := envRef.FindSubmatch(m)
		name := string(sub[1])
		if v := getenv(name); v != "" {
			return []byte(v)
		}
		if sub[2] != nil {
			return sub[3]
		}
		undefined = append(undefined, name)
		return nil
	})
	return out, undefined
}

// LoadConfig reads the configuration at path through the pipeline DefaultConfig →
// ${ENV} expansion → YAML (unknown keys are errors) → Validate. An empty path returns
// the defaults. A config that cannot work returns a *ConfigError naming each key,
// and its line when the file sets it.
func LoadConfig(path string, getenv func(string) string) (Config, error) {
	cfg := DefaultConfig()
	if path == "" {
		return cfg, cfg.Validate()
	}
	raw, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return cfg, fmt.Errorf("read config: %w (give one with --config FILE or $BILLINGD_CONFIG: config.example.yaml lists every key, examples/local.yaml runs billingd against billingd sandbox on this machine)", err)
	}
	if err != nil {
		return cfg, fmt.Errorf("read config: %w", err)
	}
	src := &configSource{path: path, lines: map[string]int{}}
	cfg.src = src
	// Only references in values count: a ${NAME} in a comment is not used.
	var rawDoc yaml.Node
	if yaml.Unmarshal(raw, &rawDoc) == nil {
		src.unset = unsetRefs(&rawDoc, getenv)
	}
	blank, known := blankKeys(raw)
	expanded, _ := expandEnv(raw, getenv)
	var doc yaml.Node
	if err := yaml.Unmarshal(expanded, &doc); err != nil {
		return cfg, src.errorOf([]configProblem{syntaxProblem(err)})
	}
	if len(doc.Content) == 0 {
		return cfg, cfg.Validate() // an empty file: the defaults
	}
	keyLines(&doc, "", src.lines)
	var probs []configProblem
	top := doc.Content[0]
	if top.Kind != yaml.MappingNode {
		probs = append(probs, configProblem{Line: top.Line, Msg: "want a mapping of sections (billing:, storage:, klavi:, …)"})
	} else {
		checkNode(top, reflect.TypeFor[Config](), "", func(p configProblem) {
			if p.Msg == msgNoValue && known && !blank[p.Key] {
				return // ${NAME} of an unset variable: the note on unset variables names it
			}
			probs = append(probs, p)
		})
	}
	if len(probs) > 0 {
		return cfg, src.errorOf(probs)
	}
	if err := doc.Decode(&cfg); err != nil {
		return cfg, src.errorOf([]configProblem{{Msg: cleanYAMLError(err).Error()}})
	}
	if err := cfg.Validate(); err != nil {
		return cfg, err
	}
	return cfg, nil
}

func cleanYAMLError(err error) error {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		return errors.New(strings.Join(te.Errors, "; "))
	}
	return err
}

// Validate names every key whose value cannot work (a *ConfigError).
func (c *Config) Validate() error {
	var errs []configProblem
	bad := func(key, format string, args ...any) {
		errs = append(errs, configProblem{Key: key, Msg: fmt.Sprintf(format, args...)})
	}
	b := c.Billing
	if b.LeadDays < 2 || b.LeadDays > 10 {
		bad("billing.lead_days", "%d is outside 2..10: a payment must be created 2 to 10 days before its date", b.LeadDays)
	}
	if _, _, err := parseClock(b.SubmitTime); err != nil {
		bad("billing.submit_time", "%v", err)
	}
	if _, err := consent.ParseRetryMode(b.RetryMode); err != nil {
		bad("billing.retry_mode", "%v", err)
	}
	if _, err := cycle.ParseDueAdjust(b.DueDateAdjust); err != nil {
		bad("billing.due_date_adjust", "%v", err)
	}
	for i, h := range b.ExtraHolidays {
		if _, err := cycle.ParseDate(h); err != nil {
			bad(fmt.Sprintf("billing.extra_holidays[%d]", i), "%v", err)
		}
	}
	for i, r := range b.RetryableReasons {
		var code klavi.ReasonCode
		_ = code.UnmarshalText([]byte(r))
		if !code.Valid() {
			bad(fmt.Sprintf("billing.retryable_reasons[%d]", i), "%q is not a Klavi status reason code (one of %s)", r, klavi.ReasonCodeList())
		} else if code.ConsentGone() {
			bad(fmt.Sprintf("billing.retryable_reasons[%d]", i), "%s means the consent is revoked; it cannot be retried", code)
		}
	}
	switch c.Storage.Backend {
	case "bolt":
	case "etcd":
		e := c.Storage.Etcd
		if len(e.Endpoints) == 0 {
			bad("storage.etcd.endpoints", "is empty: name the cluster's client URLs (storage.backend is etcd)")
		}
		for i, ep := range e.Endpoints {
			if u, err := url.Parse(ep); err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
				bad(fmt.Sprintf("storage.etcd.endpoints[%d]", i), "%q must be an http(s) URL with a host and port", redact.URL(ep))
			}
		}
		if !strings.HasPrefix(e.Prefix, "/") || !strings.HasSuffix(e.Prefix, "/") || len(e.Prefix) < 2 {
			bad("storage.etcd.prefix", "%q must begin and end with / and name something (e.g. /billingd/)", e.Prefix)
		}
		if (e.CertFile == "") != (e.KeyFile == "") {
			bad("storage.etcd.cert_file", "cert_file and key_file go together")
		}
		if e.Password != "" && e.Username == "" {
			bad("storage.etcd.username", "is empty while a password is set")
		}
		if e.DialTimeout <= 0 {
			bad("storage.etcd.dial_timeout", "must be more than 0")
		}
		if e.RequestTimeout <= 0 {
			bad("storage.etcd.request_timeout", "must be more than 0")
		}
		if e.MaxTxnOps < 16 {
			bad("storage.etcd.max_txn_ops", "must be at least 16 (etcd's default is 128)")
		}
		if c.Leader.LeaseTTL < 2*time.Second {
			bad("leader.lease_ttl", "must be at least 2s")
		} else if c.Leader.LeaseTTL > time.Minute {
			bad("leader.lease_ttl", "must be at most 1m: a dead leader's cycles wait this long")
		}
	default:
		bad("storage.backend", "%q: want bolt or etcd", c.Storage.Backend)
	}
	if p := c.Storage.Path; p == "" {
		bad("storage.path", "is empty")
	} else if strings.HasSuffix(p, "/") {
		bad("storage.path", "%q names a directory; name the database file in it", p)
	} else if fi, err := os.Stat(p); err == nil && fi.IsDir() {
		bad("storage.path", "%q is a directory; name the database file in it", p)
	} else if strings.HasSuffix(p, ".lock") {
		bad("storage.path", "%q ends in .lock, the suffix of billingd's lock files", p)
	}
	if c.Storage.OpenTimeout <= 0 {
		bad("storage.open_timeout", "must be more than 0")
	}
	if m := c.Storage.MappedBudgetMiB; m < 0 || m > 1<<20 {
		bad("storage.mapped_budget_mib", "%d is outside 0..1048576 (0: no bound)", m)
	}
	if _, err := bolt.ParseCompactMode(c.Storage.CompactAtStart); err != nil {
		bad("storage.compact_at_start", "%v", err)
	}
	k := c.Klavi
	if u, err := url.Parse(k.BaseURL); err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		bad("klavi.base_url", "%q must be an absolute http(s) URL", redact.URL(k.BaseURL))
	} else if u.RawQuery != "" || u.Fragment != "" {
		bad("klavi.base_url", "%q must not have a query or a fragment", redact.URL(k.BaseURL))
	} else if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			bad("klavi.base_url", "%q: port %q is not a number in 1..65535", redact.URL(k.BaseURL), p)
		}
	}
	if k.Timeout <= 0 {
		bad("klavi.timeout", "must be more than 0")
	}
	if k.MaxAttempts < 1 || k.MaxAttempts > 10 {
		bad("klavi.max_attempts", "%d is outside 1..10", k.MaxAttempts)
	}
	if k.BackoffMin <= 0 || k.BackoffMax < k.BackoffMin {
		bad("klavi.backoff_min", "must be more than 0 and at most klavi.backoff_max")
	}
	if !(k.RateLimit > 0 && k.RateLimit <= maxRateLimit) { // NaN fails both
		bad("klavi.rate_limit", "%v: want a number of requests per second above 0 and at most %d", k.RateLimit, maxRateLimit)
	}
	if k.RateBurst < 1 {
		bad("klavi.rate_burst", "must be at least 1")
	}
	if k.TokenRefreshBefore < 0 {
		bad("klavi.token_refresh_before", "must not be negative")
	}
	if g := c.Runtime.GCPercent; g < gcpercent.Min || g > gcpercent.Max {
		bad("runtime.gc_percent", "%d is outside %d..%d", g, gcpercent.Min, gcpercent.Max)
	}
	s := c.Scheduler
	for key, spec := range map[string]string{"scheduler.scan_schedule": s.ScanSchedule, "scheduler.poll_schedule": s.PollSchedule} {
		if _, err := scheduler.ParseSchedule(spec); err != nil {
			bad(key, "%q %v", spec, err)
		}
	}
	if s.Workers < 1 || s.Workers > 1024 {
		bad("scheduler.workers", "%d is outside 1..1024", s.Workers)
	}
	if s.Batch < 1 || s.Batch > 10000 {
		bad("scheduler.batch", "%d is outside 1..10000", s.Batch)
	}
	if s.RecordBatch < 1 || s.RecordBatch > 10000 {
		bad("scheduler.record_batch", "%d is outside 1..10000", s.RecordBatch)
	}
	if s.RecordWindow < 0 || s.RecordWindow > time.Second {
		bad("scheduler.record_window", "%s is outside 0s..1s", s.RecordWindow)
	}
	if s.PollMinInterval <= 0 || s.PollMaxInterval < s.PollMinInterval {
		bad("scheduler.poll_min_interval", "must be more than 0 and at most scheduler.poll_max_interval")
	}
	if s.ResendMinInterval <= 0 || s.ResendMaxInterval < s.ResendMinInterval {
		bad("scheduler.resend_min_interval", "must be more than 0 and at most scheduler.resend_max_interval")
	}
	if s.ShutdownTimeout <= 0 {
		bad("scheduler.shutdown_timeout", "must be more than 0")
	}
	if s.ClockTolerance < 0 || s.ClockTolerance > 0 && s.ClockTolerance < 10*time.Second {
		bad("scheduler.clock_tolerance", "%s: want 0s (no check) or at least 10s", s.ClockTolerance)
	}
	if inFlight := c.Klavi.Timeout * time.Duration(max(c.Klavi.MaxAttempts, 1)); s.ConfirmAfter <= inFlight {
		bad("scheduler.confirm_after", "%s: want more than klavi.timeout × klavi.max_attempts (%s), how long a create can stay in flight at Klavi", s.ConfirmAfter, inFlight)
	}
	if s.AmountWarningDays < 1 || s.AmountWarningDays > 60 {
		bad("scheduler.amount_warning_days", "%d is outside 1..60", s.AmountWarningDays)
	}
	if s.ReconcileEvery < time.Minute {
		bad("scheduler.reconcile_every", "%s: want at least 1m", s.ReconcileEvery)
	}
	if s.StuckAfter < time.Minute {
		bad("scheduler.stuck_after", "%s: want at least 1m", s.StuckAfter)
	}
	if s.RefreshEvery < time.Minute {
		bad("scheduler.refresh_every", "%s: want at least 1m", s.RefreshEvery)
	}
	if s.RefreshSchedule != "off" {
		if _, err := scheduler.ParseSchedule(s.RefreshSchedule); err != nil {
			bad("scheduler.refresh_schedule", "%q %v (or write off)", s.RefreshSchedule, err)
		}
	}
	if cn := c.Klavi.Canceller; cn.Identifier != "" || cn.IdentifierType != "" {
		var it klavi.IdentifierType
		_ = it.UnmarshalText([]byte(cn.IdentifierType))
		switch {
		case it != klavi.CPF && it != klavi.CNPJ:
			bad("klavi.canceller.identifier_type", "%q must be CPF or CNPJ", cn.IdentifierType)
		case it == klavi.CPF && !allDigits(cn.Identifier, 11), it == klavi.CNPJ && !allDigits(cn.Identifier, 14):
			bad("klavi.canceller.identifier", "must be %s digits (the value is not shown)", map[klavi.IdentifierType]string{klavi.CPF: "11", klavi.CNPJ: "14"}[it])
		}
	}
	if strings.ContainsAny(c.Klavi.AppID, "/ \t\n") {
		bad("klavi.app_id", "must not contain '/' or whitespace")
	} else if c.Klavi.AppID != "" {
		if err := klavi.CheckID(c.Klavi.AppID); err != nil {
			bad("klavi.app_id", "%v", err)
		}
	}
	if err := checkListen(c.HTTP.Listen); err != nil {
		bad("http.listen", "%v", err)
	}
	if t := c.HTTP.AdminToken; t != "" && len(t) < 16 {
		bad("http.admin_token", "is shorter than 16 characters; use a long random token")
	}
	switch t := c.HTTP.ReadOnlyToken; {
	case t == "":
	case len(t) < 16:
		bad("http.readonly_token", "is shorter than 16 characters; use a long random token")
	case c.HTTP.AdminToken == "":
		bad("http.readonly_token", "needs http.admin_token: the console is off without it")
	case t == c.HTTP.AdminToken:
		bad("http.readonly_token", "must differ from http.admin_token")
	}
	switch strings.ToLower(c.Log.Level) {
	case "debug", "info", "warn", "error":
	default:
		bad("log.level", "%q must be debug, info, warn or error", c.Log.Level)
	}
	switch c.Log.Format {
	case "auto", "json", "text":
	default:
		bad("log.format", "%q must be auto, json or text", c.Log.Format)
	}
	c.Webhooks.validate(bad)
	if len(errs) == 0 {
		return nil
	}
	return c.src.errorOf(errs)
}

func allDigits(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// checkListen accepts host:port with a numeric port in 0..65535 (0: any free port)
// and a host that is empty, an IP address or a host name.
func checkListen(addr string) error {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("%q is not host:port", addr)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("%q: port %q is not a number in 0..65535", addr, port)
	}
	if host != "" && net.ParseIP(host) == nil && !hostName.MatchString(host) {
		return fmt.Errorf("%q: host %q is neither an IP address nor a host name", addr, host)
	}
	return nil
}

var hostName = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]{0,62}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,62}[A-Za-z0-9])?)*\.?$`)

// validateForRun adds what only the daemon needs: Klavi credentials.
func (c *Config) validateForRun() error {
	var errs []configProblem
	if c.Klavi.AccessKey == "" {
		errs = append(errs, configProblem{Key: "klavi.access_key", Msg: "is empty"})
	}
	if c.Klavi.SecretKey == "" {
		errs = append(errs, configProblem{Key: "klavi.secret_key", Msg: "is empty"})
	}
	if len(errs) == 0 {
		return nil
	}
	return c.src.errorOf(errs)
}

// parseClock parses "HH:MM" (24-hour).
func parseClock(s string) (hour, minute int, err error) {
	t, perr := time.Parse("15:04", s)
	if perr != nil || len(s) != 5 {
		return 0, 0, fmt.Errorf("%q must be HH:MM (24-hour, Brasília time)", s)
	}
	return t.Hour(), t.Minute(), nil
}

// calendar builds the business calendar of the config's extra holidays.
func (c *Config) calendar() *cycle.Calendar {
	extra := make([]cycle.Date, 0, len(c.Billing.ExtraHolidays))
	for _, h := range c.Billing.ExtraHolidays {
		if d, err := cycle.ParseDate(h); err == nil {
			extra = append(extra, d)
		}
	}
	return cycle.NewCalendar(extra...)
}

// loadConfigFor loads the config named by --config, else by $BILLINGD_CONFIG. With
// neither, hostFile says whether to read /etc/billingd/billingd.yaml when it exists
// (operator commands on the daemon's host) or to use the built-in defaults (preview,
// simulate). A config that does not load is a usage error (exit 2).
func loadConfigFor(e *env, flag string, hostFile bool) (Config, error) {
	path := configPath(flag, e.getenv, "")
	if path == "" && hostFile {
		if _, err := os.Stat(defaultConfigPath); err == nil {
			path = defaultConfigPath
		}
	}
	cfg, err := LoadConfig(path, e.getenv)
	if err != nil {
		return cfg, usageErrorf("%v", err)
	}
	return cfg, nil
}

// configPath picks --config, else $BILLINGD_CONFIG, else fallback.
func configPath(flagValue string, getenv func(string) string, fallback string) string {
	if flagValue != "" {
		return flagValue
	}
	if p := getenv("BILLINGD_CONFIG"); p != "" {
		return p
	}
	return fallback
}

// webhookKinds are the event kinds of a consent's timeline, what an endpoint's
// events may name.
var webhookKinds = []scheduler.EventKind{scheduler.EventSubmitted, scheduler.EventRetrySubmitted, scheduler.EventCompleted,
	scheduler.EventRejected, scheduler.EventMissed, scheduler.EventSkipped, scheduler.EventUnconfirmed, scheduler.EventFailed,
	scheduler.EventResend, scheduler.EventRetryPlanned, scheduler.EventRetryDropped, scheduler.EventConsentStopped,
	"adopted", scheduler.EventStuck, scheduler.EventCanceled, scheduler.EventMismatch, scheduler.EventAdded, scheduler.EventAuthorized,
	scheduler.EventRevoked, scheduler.EventAmountSet, scheduler.EventResolved}

func (w *WebhooksConfig) validate(bad func(key, format string, args ...any)) {
	names := map[string]bool{}
	for i, e := range w.Endpoints {
		key := fmt.Sprintf("webhooks.endpoints[%d]", i)
		switch {
		case !webhook.NameRE.MatchString(e.Name):
			bad(key+".name", "%q: want lower-case letters, digits, _ and - (at most 63), e.g. shop", e.Name)
		case names[e.Name]:
			bad(key+".name", "%q names two endpoints", e.Name)
		}
		names[e.Name] = true
		if u, err := url.Parse(e.URL); err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
			bad(key+".url", "%q must be an absolute http(s) URL", redact.URL(e.URL))
		}
		if len(e.Secret) < 16 {
			bad(key+".secret", "must be at least 16 characters (the value is not shown); use ${NAME} and a credential")
		}
		for j, k := range e.Events {
			if !slices.Contains(webhookKinds, scheduler.EventKind(k)) {
				bad(fmt.Sprintf("%s.events[%d]", key, j), "%q is not an event kind (known: %v)", k, webhookKinds)
			}
		}
	}
	if w.MaxAge < time.Minute {
		bad("webhooks.max_age", "%s: want at least 1m", w.MaxAge)
	}
	if w.BackoffMin <= 0 || w.BackoffMax < w.BackoffMin {
		bad("webhooks.backoff_min", "must be more than 0 and at most webhooks.backoff_max")
	}
	if w.Timeout <= 0 {
		bad("webhooks.timeout", "must be more than 0")
	}
	if w.Workers < 1 || w.Workers > 256 {
		bad("webhooks.workers", "%d is outside 1..256", w.Workers)
	}
	if w.Interval <= 0 {
		bad("webhooks.interval", "must be more than 0")
	}
}

// webhookConfig is the dispatcher's share of the config.
func (c *Config) webhookConfig() webhook.Config {
	w := c.Webhooks
	out := webhook.Config{MaxAge: w.MaxAge, BackoffMin: w.BackoffMin, BackoffMax: w.BackoffMax, Timeout: w.Timeout,
		Workers: w.Workers, Interval: w.Interval}
	for _, e := range w.Endpoints {
		out.Endpoints = append(out.Endpoints, webhook.Endpoint{Name: e.Name, URL: e.URL, Secret: e.Secret, Events: e.Events})
	}
	return out
}
