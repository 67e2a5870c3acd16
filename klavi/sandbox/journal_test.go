package sandbox_test

import (
	"bytes"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klavi-billing/billingd/clock"
	"github.com/klavi-billing/billingd/cycle"
	"github.com/klavi-billing/billingd/klavi/sandbox"
)

// crash copies the journal as it is on disk now, as a SIGKILL would leave it: the
// running sandbox is neither closed nor flushed.
func crash(t *testing.T, journal string) string {
	t.Helper()
	data, err := os.ReadFile(journal)
	require.NoError(t, err)
	copyPath := filepath.Join(t.TempDir(), "after-crash.journal")
	require.NoError(t, os.WriteFile(copyPath, data, 0o600))
	return copyPath
}

// reopen starts a sandbox on journal, with b's clock and opts.
func reopen(t *testing.T, b *rawBox, opts sandbox.Options, journal string) *rawBox {
	t.Helper()
	opts.Clock, opts.Journal = b.clk, journal
	sb, err := sandbox.Open(opts)
	require.NoError(t, err)
	ts := httptest.NewServer(sb)
	t.Cleanup(func() {
		sb.Close()
		ts.Close()
	})
	return &rawBox{t: t, clk: b.clk, sb: sb, ts: ts}
}

// journaled builds a sandbox with a journal and some history: a seeded consent, a
// consent created and authorized through the API, payments (one rejected and
// retried, one canceled, one settled, one still scheduled).
func journaled(t *testing.T, opts sandbox.Options) (*rawBox, string, map[string]string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "sandbox.journal")
	opts.Journal = path
	opts.Scenario = &sandbox.Scenario{Rules: []sandbox.Rule{{ConsentID: monthly, Attempt: new(int), Outcome: sandbox.Rejected}}}
	b := newRaw(t, opts)
	b.seed(monthly, "2026-02-05", 9990)
	c := b.do(http.MethodPost, consentsPath, consentBody(t, "signup-1"))
	require.Equal(t, 201, c.code, c.raw)
	created := str(c.body["id"])
	require.Equal(t, 200, b.do(http.MethodPost, "/_sandbox/consents/"+created+"/authorize", "").code)

	ids := map[string]string{"consent": created}
	for _, p := range []struct{ key, consent, crid, date, amount string }{
		{"rejected", monthly, "m-1", "2026-03-05", "99.90"},
		{"canceled", created, "c-1", "2026-03-05", "99.90"},
		{"settled", created, "c-0", "2026-02-27", "99.90"},
	} {
		a := b.pay(p.consent, p.crid, p.date, p.amount)
		require.Equal(t, 201, a.code, a.raw)
		ids[p.key] = str(a.body["id"])
	}
	require.Equal(t, 200, b.do(http.MethodPost, paymentsPath(created)+"/"+ids["canceled"]+"/cancel", `{"cancelledBy":"52998224725","identifierType":"CPF"}`).code)
	b.clk.Set(day("2026-03-05").At(12, 0))
	r := b.retry(monthly, ids["rejected"], "m-1-r1", "2026-03-07")
	require.Equal(t, 201, r.code, r.raw)
	ids["retry"] = str(r.body["id"])
	later := b.pay(created, "c-2", "2026-03-12", "99.90") // a later cycle: scheduled at the crash
	require.Equal(t, 201, later.code, later.raw)
	ids["scheduled"] = str(later.body["id"])
	return b, path, ids
}

func TestJournal_ReplayAfterCrash(t *testing.T) {
	for _, ids := range []string{sandbox.IDsUUID, sandbox.IDsURN} {
		t.Run(ids, func(t *testing.T) {
			opts := sandbox.Options{IDs: ids, Seed: 5}
			b, path, got := journaled(t, opts)
			before := b.sb.Ledger()
			consentBefore := b.do(http.MethodGet, consentsPath+"/"+got["consent"], "").raw

			restarted := crash(t, path)
			a := reopen(t, b, opts, restarted)
			assert.Equal(t, before, a.sb.Ledger(), "the same ledger")
			assert.Equal(t, consentBefore, a.do(http.MethodGet, consentsPath+"/"+got["consent"], "").raw, "the same consent")
			assert.Equal(t, 2, a.sb.Stats().Consents)

			t.Run("duplicates are still known", func(t *testing.T) {
				for _, crid := range []string{"m-1", "c-1", "c-2", "m-1-r1", "signup-1"} {
					d := a.pay(got["consent"], crid, "2026-03-12", "99.90")
					assert.Equal(t, 409, d.code, "%s: %s", crid, d.raw)
				}
			})
			t.Run("the canceled payment stays canceled", func(t *testing.T) {
				p := a.do(http.MethodGet, paymentsPath(got["consent"])+"/"+got["canceled"], "")
				assert.Equal(t, "CANCELED", p.body["status"])
				assert.Equal(t, "INITIATOR", p.body["cancellation"].(map[string]any)["cancelledFrom"])
			})
			t.Run("state machines go on", func(t *testing.T) {
				a.clk.Set(day("2026-03-12").At(12, 0))
				p := a.do(http.MethodGet, paymentsPath(got["consent"])+"/"+got["scheduled"], "")
				assert.Equal(t, "PAYMENT_COMPLETED", p.body["status"])
				r := a.do(http.MethodGet, paymentsPath(monthly)+"/"+got["retry"], "")
				assert.Equal(t, "PAYMENT_COMPLETED", r.body["status"], "the retry settled on its date")
			})
			t.Run("new ids do not collide", func(t *testing.T) {
				a.seed("urn:test:new", "2026-02-05", 9990)
				p := a.pay("urn:test:new", "n-1", "2026-03-20", "99.90")
				require.Equal(t, 201, p.code, p.raw)
				for _, id := range got {
					assert.NotEqual(t, id, p.body["id"])
				}
				c := a.do(http.MethodPost, consentsPath, consentBody(t, "signup-2"))
				require.Equal(t, 201, c.code)
				assert.NotEqual(t, got["consent"], c.body["id"])
			})
			t.Run("and survives a second crash", func(t *testing.T) {
				again := reopen(t, a, opts, crash(t, restarted))
				assert.Equal(t, a.sb.Ledger(), again.sb.Ledger())
			})
		})
	}
}

// TestJournal_RecordWrittenBeforeAnswer shows a payment's record is in the journal
// file when its answer arrives. That it was fsynced too cannot be told from here
// (the page cache shows the data either way); the group commit's code says so.
func TestJournal_RecordWrittenBeforeAnswer(t *testing.T) {
	path := filepath.Join(t.TempDir(), "j")
	b := newRaw(t, sandbox.Options{Journal: path})
	b.seed(monthly, "2026-02-05", 9990)
	p := b.pay(monthly, "durable-1", "2026-03-05", "99.90")
	require.Equal(t, 201, p.code)
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	assert.Contains(t, string(data), `"clientRequestId":"durable-1"`, "on disk before the answer")
	assert.Contains(t, string(data), str(p.body["id"]))
}

func TestJournal_TornTail(t *testing.T) {
	for _, tc := range []struct{ name, tail string }{
		{"half a record", `1a2b3c4d {"t":"payment","p":{"seq":9,"id":"x`},
		{"a checksum only", "1a2b"},
		{"zeros", "\x00\x00\x00\x00\x00\x00\x00\x00"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, path, _ := journaled(t, sandbox.Options{})
			before := b.sb.Ledger()
			torn := crash(t, path)
			good, err := os.ReadFile(torn)
			require.NoError(t, err)
			require.NoError(t, os.WriteFile(torn, append(append([]byte(nil), good...), tc.tail...), 0o600))

			var logs bytes.Buffer
			a := reopen(t, b, sandbox.Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))}, torn)
			assert.Equal(t, before, a.sb.Ledger())
			assert.Contains(t, logs.String(), "torn last record")
			a.seed("urn:test:new", "2026-02-05", 9990)
			p := a.pay("urn:test:new", "after-torn", "2026-03-12", "99.90")
			require.Equal(t, 201, p.code, p.raw)
			after, err := os.ReadFile(torn)
			require.NoError(t, err)
			assert.True(t, bytes.HasPrefix(after, good), "the torn bytes were cut off before appending")
			assert.NotContains(t, string(after), tc.tail)

			_, err = sandbox.Open(sandbox.Options{Clock: b.clk, Journal: crash(t, torn)})
			require.NoError(t, err, "and the journal reads cleanly again")
		})
	}
}

func TestJournal_Corrupt(t *testing.T) {
	for _, tc := range []struct {
		name  string
		spoil func(lines []string) []string
		want  string
	}{
		{"a flipped byte in the middle", func(l []string) []string {
			l[2] = strings.Replace(l[2], `"status"`, `"statu5"`, 1)
			return l
		}, "record 3"},
		{"a record cut short in the middle", func(l []string) []string {
			l[2] = l[2][:len(l[2])/2]
			return l
		}, "record 3"},
		{"a bad last line with its newline", func(l []string) []string {
			l[len(l)-2] = "00000000 {}"
			return l
		}, "checksum mismatch"},
		{"no header", func(l []string) []string { return l[1:] }, "header"},
		{"not a journal", func(l []string) []string { return []string{"hello", ""} }, "record 1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, path, _ := journaled(t, sandbox.Options{})
			data, err := os.ReadFile(crash(t, path))
			require.NoError(t, err)
			spoiled := filepath.Join(t.TempDir(), "spoiled")
			require.NoError(t, os.WriteFile(spoiled, []byte(strings.Join(tc.spoil(strings.Split(string(data), "\n")), "\n")), 0o600))
			_, err = sandbox.Open(sandbox.Options{Clock: b.clk, Journal: spoiled})
			require.ErrorIs(t, err, sandbox.ErrJournalCorrupt)
			assert.ErrorContains(t, err, tc.want)
			assert.ErrorContains(t, err, spoiled, "the error names the file")
		})
	}
}

func TestJournal_Concurrent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "j")
	b := newRaw(t, sandbox.Options{Journal: path})
	const n = 24
	for i := range n {
		b.seed(fmt.Sprintf("urn:test:c%02d", i), "2026-02-05", 9990)
	}
	var wg sync.WaitGroup
	codes := make([]int, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			codes[i] = b.pay(fmt.Sprintf("urn:test:c%02d", i), fmt.Sprintf("p-%02d", i), "2026-03-05", "99.90").code
		}()
	}
	wg.Wait()
	for i, c := range codes {
		assert.Equal(t, 201, c, "payment %d", i)
	}
	a := reopen(t, b, sandbox.Options{}, crash(t, path))
	assert.Equal(t, b.sb.Ledger(), a.sb.Ledger())
	assert.Len(t, a.sb.Ledger(), n)
}

func TestJournal_ClosedAnswers500(t *testing.T) {
	path := filepath.Join(t.TempDir(), "j")
	b := newRaw(t, sandbox.Options{Journal: path})
	b.seed(monthly, "2026-02-05", 9990)
	b.sb.Close()
	p := b.pay(monthly, "p-1", "2026-03-05", "99.90")
	assert.Equal(t, 500, p.code, "nothing is answered that the disk does not hold")
	require.Error(t, b.sb.AddConsent(sandbox.SampleConsent(weekly, cycle.Weekly, day("2026-02-05"), 9990)))
}

func TestJournal_OpenErrors(t *testing.T) {
	_, err := sandbox.Open(sandbox.Options{Journal: filepath.Join(t.TempDir(), "missing-dir", "j")})
	require.Error(t, err)
	_, err = sandbox.Open(sandbox.Options{Clock: clock.NewFake(start), Journal: t.TempDir()})
	require.Error(t, err, "a directory")
}
