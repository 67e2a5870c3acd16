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

.PHONY: all build test test-short crash lint bench run demo fuzz clean

all: lint test build

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/billingd

test:
	$(GO) test -race -count=1 -timeout 15m $(PKGS)

# The crash test: billingd killed with SIGKILL many times while it submits thousands
# of payments to a sandbox process; the sandbox's ledger must show exactly one payment
# per cycle. CRASH_CONSENTS, CRASH_KILLS, CRASH_SEED, CRASH_RACE tune it.
crash:
	$(GO) test -tags crash -count=1 -v -timeout 10m ./test/crash/

test-short:
	$(GO) test -race -short -count=1 $(PKGS)

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null || find . -name '*.go')); \
	 if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

bench:
	$(GO) test -run '^$$' -bench '$(BENCH)' -benchtime $(BENCHTIME) -benchmem $(PKGS)

# Short fuzzing of every fuzz target (FUZZTIME each).
FUZZTIME ?= 10s
fuzz:
	$(GO) test -run '^$$' -fuzz '^FuzzParseDate$$' -fuzztime $(FUZZTIME) ./cycle
	$(GO) test -run '^$$' -fuzz '^FuzzPlan$$' -fuzztime $(FUZZTIME) ./retry
	$(GO) test -run '^$$' -fuzz '^FuzzDecode$$' -fuzztime $(FUZZTIME) ./consent
	$(GO) test -run '^$$' -fuzz '^FuzzParseAmount$$' -fuzztime $(FUZZTIME) ./klavi
	$(GO) test -run '^$$' -fuzz '^FuzzDecodeJSON$$' -fuzztime $(FUZZTIME) ./internal/problem

# The main job on built-in defaults: the real scheduler and store billing the example
# consents against the in-process Klavi sandbox, 120 simulated days.
run demo: build
	./$(BIN) simulate

clean:
	rm -rf bin
