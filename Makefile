# billingd — make targets. `make run` shows billingd's main job on its built-in
# defaults (no Klavi account, no network); `make test` runs every test with -race.

GO       ?= go
PKGS     := ./...
BIN      := bin/billingd
VERSION  ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo devel)
LDFLAGS  := -s -w -X main.version=$(VERSION)
# BENCH selects benchmarks for `make bench` (a regexp); BENCHTIME their length.
BENCH     ?= .
BENCHTIME ?= 1s

.PHONY: all build man test test-short bench-etcd bench-peer bench-history crash ha-crash webhooks-crash envfail e2e vopr deploy-check lint bench run demo fuzz clean

all: lint test build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/billingd

# Man pages, one per command (billingd.1, billingd-consent-show.1, …), generated from
# the commands' own help.
MANDIR := bin/man
man: build
	rm -rf $(MANDIR)
	./$(BIN) man $(MANDIR)

# The scheduler's tests run a second time on an embedded etcd (BILLINGD_TEST_STORE=etcd;
# the first run is on bolt), without -race: the detector would instrument the etcd
# server in the test process too (about 4 min instead of 40 s); the bolt run covers
# the scheduler's own races.
test:
	$(GO) test -race -count=1 -timeout 15m $(PKGS)
	BILLINGD_TEST_STORE=etcd $(GO) test -count=1 -timeout 10m ./scheduler/

# The crash test: billingd bills consents of every interval over weeks of a shared
# fast test clock against a sandbox process that rejects, drops answers and fails,
# while billingd is SIGKILLed at random instants all along, SIGSTOPped once past its
# Klavi timeout, and the sandbox is killed once (with --journal). The verdict: no
# duplicate charge, no lost cycle, no attempt left UNCONFIRMED or SUBMITTING, every
# rejection retried as planned. Knobs (see test/crash's package doc): CRASH_CONSENTS
# (1500), CRASH_KILLS (25), CRASH_DAYS (40), CRASH_RATE (17280 virtual s per real s),
# CRASH_SEED, CRASH_RACE=1. The defaults run in about 4 minutes.
crash:
	$(GO) test -tags crash -count=1 -v -timeout 30m ./test/crash/

# The crash test of a replicated deployment: a real 3-member etcd cluster on
# loopback (one process per member), the sandbox process and 3 billingd replicas
# billing 1500 consents over 14 days of a fast clock (a day in 15 s). The leader is
# SIGKILLed 6 times (and restarted), SIGSTOPped past its lease once, and one etcd
# member is killed and restarted. The verdict: no duplicate charge, no lost cycle, no
# attempt left unknown, no payment request from a deposed leader (the sandbox's
# --request-log against the replicas' fences and logs); failover times printed.
# Lease TTL 3s (HA_TTL). Knobs in test/ha's package doc (HA_CONSENTS, HA_KILLS,
# HA_DAYS, HA_RATE, HA_TTL, HA_SEED). About 5 minutes.
ha-crash:
	$(GO) test -tags ha -count=1 -v -timeout 30m ./test/ha/
# The webhooks' crash test: billingd bills consents against a sandbox process on a
# fast test clock and delivers every event to a receiver on loopback that answers 500
# to 30 % of deliveries and is down for a stretch, while billingd is SIGKILLed 20
# times. The verdict: every event of the store delivered at least once, in order per
# consent, every signature valid, duplicates only of the same event id. Knobs (see
# test/webhooks's package doc): WEBHOOKS_CONSENTS (150), WEBHOOKS_KILLS (20),
# WEBHOOKS_DAYS (21), WEBHOOKS_RATE (17280), WEBHOOKS_SEED.
webhooks-crash:
	$(GO) test -tags webhooks -count=1 -v -timeout 20m ./test/webhooks/

# The machine misleads billingd: its database file replaced while it runs, truncated
# and damaged copies, a full disk and a read-only state directory (small tmpfs
# mounts: root only, skipped otherwise), a listen address that cannot work. The real
# binary each time; exit codes, readiness, metrics and the sandbox's ledger checked.
envfail:
	$(GO) test -tags envfail -count=1 -v -timeout 5m ./test/envfail/

# The deterministic simulator (package vopr): first the test that each deliberate
# protocol mistake (build tag voprbugs) is caught, then seeded worlds for
# VOPR_BUDGET: the seeds that once failed (vopr/testdata/seeds.txt), then fresh ones.
# A violation prints its seed; `billingd vopr --seed N` replays it exactly.
VOPR_BUDGET ?= 60s
vopr: build
	$(GO) test -tags voprbugs -count=1 -run '^TestBugs$$' ./vopr/
	./$(BIN) vopr --budget $(VOPR_BUDGET) --seeds vopr/testdata/seeds.txt

# A real Prometheus server scrapes billingd driving the sandbox (both processes);
# PromQL over its API must return billingd's payment counts. Needs prometheus and
# promtool (Debian's prometheus package).
e2e:
	$(GO) test -tags e2e -count=1 -v -timeout 5m ./test/e2e/

# The web console in a real browser: headless Chromium (Debian's chromium package;
# $$CHROMIUM overrides /usr/bin/chromium) driven by chromedp over a daemon billing the
# example consents against the sandbox: login, every page with assertions on its
# content, a read-only session refused, an attention item resolved, a CSV export.
# Screenshots and the CSV go to bin/browser/ (go test -artifacts); `make
# screenshots` also refreshes docs/console/*.png.
.PHONY: browser screenshots
browser:
	mkdir -p bin/browser
	$(GO) test -tags browser -count=1 -v -timeout 5m -run '^TestBrowser_' -artifacts -outputdir $(CURDIR)/bin/browser ./cmd/billingd/

screenshots:
	BILLINGD_SCREENSHOTS=docs $(MAKE) browser

# Alert rules (promtool check/test rules) and the systemd unit (systemd-analyze verify).
deploy-check:
	deploy/prometheus/check.sh
	deploy/systemd/verify.sh

# End-to-end durable submissions/s on bolt and on a 3-member etcd cluster (embedded,
# loopback), the same load against the same sandbox, runs interleaved; RPCs per
# submission on etcd. See docs/BENCHMARKS.md ("etcd beside bolt") and test/scale.
bench-etcd:
	$(GO) test -tags scale -run '^TestEngines$$' -count=1 -v -timeout 30m ./test/scale/

# billingd beside River on PostgreSQL (test/peer/river, a Go module of its own): the
# same POST per due cycle against the same sandbox process, PEER_DUE (10000) cycles a
# run with PEER_WORKERS (64) workers, PEER_ROUNDS (2) pairs of runs interleaved, and
# the machine's ceiling (bbolt group commit, fdatasync, loopback HTTP, the sandbox)
# measured in the same run. PostgreSQL is Debian's, started on loopback in a temporary
# directory (installed with apt-get if missing and root; skipped otherwise). The log
# is kept in bin/bench-peer.log; the last line is `billingd/river ratio: X.XX`.
# About 30 s with a warm build cache (building River and its dependencies from an
# empty cache took 83 s more). See docs/BENCHMARKS.md ("billingd beside River on
# PostgreSQL").
bench-peer:
	@mkdir -p bin; rm -f bin/bench-peer.failed
	@{ $(GO) test -tags peer -run '^TestPeer$$' -count=1 -v -timeout 12m ./test/peer/ 2>&1 || touch bin/bench-peer.failed; } | tee bin/bench-peer.log
	@if [ -e bin/bench-peer.failed ]; then rm -f bin/bench-peer.failed; echo "bench-peer: failed (log: bin/bench-peer.log)"; exit 1; fi
	@grep -h '^billingd/river ratio: ' bin/bench-peer.log | tail -n 1 | grep . || { grep -h -m1 'bench-peer: ' bin/bench-peer.log || echo "bench-peer: no ratio (log: bin/bench-peer.log)"; }

# Submissions/s and peak memory with and without a year of history: two bolt stores
# of SCALE_HISTORY_CONSENTS (100,000) consents, SCALE_HISTORY_DUE (10,000) due now,
# one with 12 settled monthly cycles per consent; each run a durable due scan in a
# child process against an in-process sandbox, runs interleaved. SCALE_DIR keeps the
# stores between runs, SCALE_HISTORY_DATE (YYYY-MM-DD) the day they are built for
# (default today), so that stores built on another day serve again. See
# docs/BENCHMARKS.md ("History off the hot path") and
# test/scale's TestHistory.
bench-history:
	$(GO) test -tags scale -run '^TestHistory$$' -count=1 -v -timeout 90m ./test/scale/

test-short:
	$(GO) test -race -short -count=1 $(PKGS)

# gofmt, and go vet for amd64 and for 386, where an int has 32 bits and a constant
# that overflows it does not compile.
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	 if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)
	GOARCH=386 $(GO) vet $(PKGS)

bench:
	$(GO) test -run '^$$' -bench '$(BENCH)' -benchtime $(BENCHTIME) -benchmem $(PKGS)

# Short fuzzing of every fuzz target (FUZZTIME each).
FUZZTIME ?= 10s
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzParseDate$$' -fuzztime $(FUZZTIME) ./cycle
	$(GO) test -run '^$$' -fuzz '^FuzzPlan$$' -fuzztime $(FUZZTIME) ./retry
	$(GO) test -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZTIME) ./consent
	$(GO) test -run '^$$' -fuzz '^FuzzParseAmount$$' -fuzztime $(FUZZTIME) ./klavi
	$(GO) test -run '^$$' -fuzz '^FuzzParseAnswerAmount$$' -fuzztime $(FUZZTIME) ./klavi
	$(GO) test -run '^$$' -fuzz '^FuzzCheckID$$' -fuzztime $(FUZZTIME) ./klavi
	$(GO) test -run '^$$' -fuzz '^FuzzDecodePayment$$' -fuzztime $(FUZZTIME) ./klavi
	$(GO) test -run '^$$' -fuzz '^FuzzPlainString$$' -fuzztime $(FUZZTIME) ./klavi
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeJSON$$' -fuzztime $(FUZZTIME) ./internal/problem
	$(GO) test -run '^$$' -fuzz '^FuzzNormalize$$' -fuzztime $(FUZZTIME) ./internal/enum

# The main job on built-in defaults: the real scheduler and store billing the example
# consents against the in-process Klavi sandbox, 120 simulated days.
run demo: build
	./$(BIN) simulate

clean:
	rm -rf bin

# Container image (deploy/docker/Dockerfile): static, non-root, tzdata embedded.
.PHONY: docker install install-etcd
docker:
	docker build -f deploy/docker/Dockerfile --build-arg VERSION=$(VERSION) -t billingd:$(VERSION) .

# Install under systemd: binary, man pages, units (the daemon; the daily backup
# service, its timer and script, its directory by tmpfiles.d), config (kept if
# present), secrets file and empty credential files (kept if present), and the
# billingd system user. With DESTDIR set (packaging), only files are staged: no user
# is created and systemd is not told.
DESTDIR ?=
CREDENTIALS := klavi_access_key klavi_secret_key billingd_admin_token
install: build man
	install -D -m 0755 $(BIN) $(DESTDIR)/usr/local/bin/billingd
	install -d -m 0755 $(DESTDIR)/usr/local/share/man/man1
	install -m 0644 $(MANDIR)/*.1 $(DESTDIR)/usr/local/share/man/man1/
	install -D -m 0644 deploy/systemd/billingd.service $(DESTDIR)/etc/systemd/system/billingd.service
	install -D -m 0644 deploy/systemd/billingd-backup.service $(DESTDIR)/etc/systemd/system/billingd-backup.service
	install -D -m 0644 deploy/systemd/billingd-backup.timer $(DESTDIR)/etc/systemd/system/billingd-backup.timer
	install -D -m 0755 deploy/systemd/billingd-backup $(DESTDIR)/usr/local/libexec/billingd-backup
	install -D -m 0644 deploy/systemd/billingd.tmpfiles $(DESTDIR)/etc/tmpfiles.d/billingd.conf
	install -d -m 0755 $(DESTDIR)/etc/billingd
	install -d -m 0700 $(DESTDIR)/etc/billingd/credentials
	@for c in $(CREDENTIALS); do \
	   f=$(DESTDIR)/etc/billingd/credentials/$$c; \
	   if [ -e $$f ]; then echo "keeping $$f"; \
	   else echo "install -m 0600 /dev/null $$f"; install -m 0600 /dev/null $$f; fi; \
	 done
	@if [ -e $(DESTDIR)/etc/billingd/billingd.yaml ]; then \
	   echo "keeping $(DESTDIR)/etc/billingd/billingd.yaml"; \
	 else \
	   echo "install -m 0640 config.example.yaml $(DESTDIR)/etc/billingd/billingd.yaml"; \
	   install -m 0640 config.example.yaml $(DESTDIR)/etc/billingd/billingd.yaml; \
	 fi
	@if [ -e $(DESTDIR)/etc/billingd/billingd.env ]; then \
	   echo "keeping $(DESTDIR)/etc/billingd/billingd.env"; \
	 else \
	   echo "install -m 0600 deploy/systemd/billingd.env.example $(DESTDIR)/etc/billingd/billingd.env"; \
	   install -m 0600 deploy/systemd/billingd.env.example $(DESTDIR)/etc/billingd/billingd.env; \
	 fi
	@if [ -z "$(DESTDIR)" ]; then \
	   if ! getent passwd billingd >/dev/null; then \
	     echo "useradd --system billingd"; \
	     useradd --system --user-group --no-create-home --home-dir /var/lib/billingd --shell /usr/sbin/nologin billingd; \
	   fi; \
	   chgrp billingd /etc/billingd/billingd.yaml; \
	   if command -v systemd-tmpfiles >/dev/null; then systemd-tmpfiles --create /etc/tmpfiles.d/billingd.conf; fi; \
	   if [ -d /run/systemd/system ]; then systemctl daemon-reload; fi; \
	   echo "next: put the Klavi keys and the admin token in /etc/billingd/credentials/ (or"; \
	   echo "      /etc/billingd/billingd.env), review /etc/billingd/billingd.yaml, then:"; \
	   echo "      systemctl enable --now billingd billingd-backup.timer (see docs/OPERATIONS.md)"; \
	 fi

# A replica on etcd (storage.backend: etcd; docs/OPERATIONS.md, "Running several
# replicas"): `make install`, plus the drop-in deploy/systemd/billingd.service.d/etcd.conf
# (Type=exec, no watchdog, after etcd.service, the etcd password as a credential), an
# empty credential file etcd_password (kept if present) and /etc/billingd/etcd/ for
# the client certificate. billingd.yaml still needs storage.backend: etcd and the
# cluster's endpoints.
install-etcd: install
	install -D -m 0644 deploy/systemd/billingd.service.d/etcd.conf $(DESTDIR)/etc/systemd/system/billingd.service.d/etcd.conf
	install -d -m 0750 $(DESTDIR)/etc/billingd/etcd
	@f=$(DESTDIR)/etc/billingd/credentials/etcd_password; \
	 if [ -e $$f ]; then echo "keeping $$f"; \
	 else echo "install -m 0600 /dev/null $$f"; install -m 0600 /dev/null $$f; fi
	@if [ -z "$(DESTDIR)" ]; then \
	   chgrp billingd /etc/billingd/etcd; \
	   if [ -d /run/systemd/system ]; then systemctl daemon-reload; fi; \
	   echo "next: set storage.backend: etcd and storage.etcd in /etc/billingd/billingd.yaml, the"; \
	   echo "      password in /etc/billingd/credentials/etcd_password, the client certificate in"; \
	   echo "      /etc/billingd/etcd/, then: systemctl enable --now billingd (not billingd-backup.timer)"; \
	 fi
