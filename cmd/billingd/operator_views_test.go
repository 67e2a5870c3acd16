package main

import (
	"os"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klavi-billing/billingd/consent"
	"github.com/klavi-billing/billingd/cycle"
)

// TestDaemon_OperatorViews runs the operator commands against a real daemon: a
// consent added after its first cycle's window closed is announced as MISSED, and
// the daemon agrees; then the views of the daemon's API (attention, upcoming,
// report, consent show).
func TestDaemon_OperatorViews(t *testing.T) {
	// Sun 4 Jan 2026: cycle 0 of the weekly example (due Mon 5 Jan) closed on Sat 3 Jan.
	de := startTestDaemon(t, cycle.MustDate(2026, 1, 4).At(8, 0))
	file := "../../examples/consents/weekly-retries.json"
	data, err := os.ReadFile(file)
	require.NoError(t, err)
	c, err := consent.Decode(data)
	require.NoError(t, err)
	require.NoError(t, de.sb.AddConsent(&c.CreatedConsent))

	code, stdout, stderr := de.cli("consent", "add", file)
	require.Equal(t, 0, code, stderr)
	assert.Equal(t, "added urn:klavi:consent-weekly-0002: active, cycle 0 (due Mon 2026-01-05) will be MISSED: its window closed on Sat 2026-01-03; "+
		"the next cycle billed is 1 (due Mon 2026-01-12), submitted Fri 2026-01-09 09:00 -03\n", stdout)

	de.tick(cycle.MustDate(2026, 1, 4).At(9, 0))
	code, stdout, stderr = de.cli("payments", "list", "--consent", c.ID)
	require.Equal(t, 0, code, stderr)
	assert.Contains(t, stdout, "MISSED", "the daemon did what the command said")

	code, stdout, stderr = de.cli("consent", "list", "--format", "json")
	require.Equal(t, 0, code, stderr)
	assert.Contains(t, stdout, `"nextSubmitAt": "2026-01-09T09:00:00-03:00"`)

	code, stdout, stderr = de.cli("attention", "list")
	require.Equal(t, 0, code, stderr)
	assert.Contains(t, stdout, "1 MISSED")
	assert.Contains(t, stdout, c.ID+"/0/0")

	code, stdout, stderr = de.cli("attention", "resolve", c.ID+"/0/0", "--note", "joined late; first week free", "--actor", "alice")
	require.Equal(t, 0, code, stderr)
	assert.Contains(t, stdout, "resolved "+c.ID+"/0/0 (MISSED) as alice")
	code, stdout, _ = de.cli("attention", "list", "--state", "MISSED")
	require.Equal(t, 0, code)
	assert.NotContains(t, stdout, c.ID+"/0/0")

	code, stdout, stderr = de.cli("payments", "upcoming", "--from", "2026-01-04", "--to", "2026-01-10")
	require.Equal(t, 0, code, stderr)
	assert.Contains(t, stdout, "Fri 2026-01-09  1 charge")
	assert.Contains(t, stdout, "09:00 -03")

	code, stdout, stderr = de.cli("report", "--month", "2026-01")
	require.Equal(t, 0, code, stderr)
	assert.Contains(t, stdout, "missed")

	code, stdout, stderr = de.cli("consent", "show", c.ID)
	require.Equal(t, 0, code, stderr)
	for _, want := range []string{"timeline", "alice", "joined late; first week free", "upcoming plan"} {
		assert.Contains(t, stdout, want)
	}
	assert.NotContains(t, stdout, "this daemon keeps no timeline")
}
