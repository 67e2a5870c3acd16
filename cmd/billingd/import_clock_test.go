package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klavi-billing/billingd/clock"
	"github.com/klavi-billing/billingd/consent"
	"github.com/klavi-billing/billingd/cycle"
	"github.com/klavi-billing/billingd/storage"
	"github.com/klavi-billing/billingd/storage/bolt"
)

// runCLIAt is runCLI on a clock reading now.
func runCLIAt(t *testing.T, now time.Time, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	e := &env{stdout: &out, stderr: &errb, getenv: func(string) string { return "" }, clock: clock.NewFake(now)}
	code := Main(context.Background(), e, args)
	return code, out.String(), errb.String()
}

// startImported starts a daemon at now on the database at path, its sandbox holding
// the weekly example, and runs a due scan.
func startImported(t *testing.T, path string, now time.Time) (*daemonEnv, *consent.Consent) {
	t.Helper()
	de := startTestDaemonWith(t, now, nil, func(c *Config) { c.Storage.Path = path })
	c, err := consent.Decode(must(os.ReadFile("../../examples/consents/weekly-retries.json")))
	require.NoError(t, err)
	require.NoError(t, de.sb.AddConsent(&c.CreatedConsent))
	de.post("/v1/scheduler/scan")
	return de, c
}

// `billingd consent import` runs with no Klavi to check its clock against: it takes
// "today" from this host's clock, under the daemon's own rule for that clock.
func TestConsentImport_HostClock(t *testing.T) {
	weekly := "../../examples/consents/weekly-retries.json"
	right := cycle.MustDate(2026, 12, 5).At(9, 0) // a Saturday; cycle 48 is due Mon 7 Dec, late but open

	t.Run("right clock: billed from today, and the daemon bills", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "billingd.db")
		code, stdout, stderr := runCLIAt(t, right.Add(-time.Hour), "consent", "import", "--db", path, weekly)
		require.Equal(t, 0, code, stderr)
		assert.Contains(t, stdout, "billed from Sat 2026-12-05: today by this host's clock (2026-12-05T11:00:00Z)")

		de, c := startImported(t, path, right)
		code, body := readyz(t, de.d)
		assert.Equal(t, http.StatusOK, code, body)
		code, stdout, stderr = de.cli("payments", "list", "--consent", c.ID)
		require.Equal(t, 0, code, stderr)
		assert.Contains(t, stdout, consent.ClientRequestID(c.ID, 48, 0), "cycle 48 (due 7 Dec) is submitted")
	})

	t.Run("clock ahead: a daemon on the right clock doubts it and bills nothing", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "billingd.db")
		var out, errb bytes.Buffer
		e := &env{stdout: &out, stderr: &errb, clock: clock.Real{}, getenv: func(k string) string {
			if k == testClockEnv {
				return fmt.Sprintf("start=2027-03-20T12:00:00Z,epoch=%d,rate=1", time.Now().UnixMilli())
			}
			return ""
		}}
		require.Equal(t, 0, Main(context.Background(), e, []string{"consent", "import", "--db", path, weekly}), errb.String())
		assert.Contains(t, out.String(), "billed from Sat 2027-03-20: today by this host's clock")

		de, c := startImported(t, path, right)
		code, body := readyz(t, de.d)
		assert.Equal(t, http.StatusServiceUnavailable, code)
		assert.Contains(t, body, "clock in doubt: the clock reads 2026-12-05T12:00:00Z")
		assert.Contains(t, body, "before the latest instant billingd acted on (2027-03-20T12:00:")
		assert.Regexp(t, `(?m)^billingd_clock_in_doubt 1$`, de.get("/metrics"), "BillingdClockInDoubt fires")
		code, stdout, stderr := de.cli("payments", "list", "--consent", c.ID)
		require.Equal(t, 0, code, stderr)
		assert.NotContains(t, stdout, consent.ClientRequestID(c.ID, 48, 0), "nothing decided while the clock is in doubt")
	})

	t.Run("clock behind the store's latest instant: refused, nothing written", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "billingd.db")
		code, _, stderr := runCLIAt(t, cycle.MustDate(2026, 12, 1).At(9, 0), "consent", "import", "--db", path, "../../examples/consents/monthly-31st.json")
		require.Equal(t, 0, code, stderr)
		// A daemon acted on 4 Dec, 15:00 UTC (the latest instant it keeps).
		db, err := bolt.Open(path, bolt.Options{})
		require.NoError(t, err)
		latest := time.Date(2026, 12, 4, 15, 0, 0, 0, time.UTC)
		require.NoError(t, db.Apply(context.Background(), &storage.Change{HighWater: latest}))
		require.NoError(t, db.Close())
		before := must(os.ReadFile(path))

		code, stdout, stderr := runCLIAt(t, time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC), "consent", "import", "--db", path, weekly)
		assert.Equal(t, exitFailure, code)
		assert.Empty(t, stdout)
		assert.Contains(t, stderr, "billingd: import: this host's clock is behind the store's latest instant: it reads 2026-11-20T12:00:00Z, 339h0m0s before the latest instant the store holds (2026-12-04T15:00:00Z; tolerance 5m0s); nothing was stored. Fix the clock (NTP), then import again")
		assert.Equal(t, before, must(os.ReadFile(path)), "the database file is untouched")

		// Within the tolerance, as for the daemon, it goes through.
		code, _, stderr = runCLIAt(t, latest.Add(-4*time.Minute), "consent", "import", "--db", path, weekly)
		require.Equal(t, 0, code, stderr)
	})

	t.Run("bill-from after today: taken as given, and said", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "billingd.db")
		code, stdout, stderr := runCLIAt(t, right, "consent", "import", "--db", path, "--bill-from", "2027-01-04", weekly)
		require.Equal(t, 0, code, stderr)
		assert.Contains(t, stderr, "note: --bill-from 2027-01-04 is after today (2026-12-05 by this host's clock): cycles due before it are never billed")
		assert.NotContains(t, stdout, "today by this host's clock")
		db, err := bolt.Open(path, bolt.Options{ReadOnly: true})
		require.NoError(t, err)
		defer db.Close()
		rec, err := db.GetConsent(context.Background(), "urn:klavi:consent-weekly-0002")
		require.NoError(t, err)
		assert.Equal(t, cycle.MustDate(2027, 1, 4), rec.BillFrom)
	})
}
