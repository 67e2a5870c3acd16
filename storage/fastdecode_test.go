package storage

import (
	"bytes"
	"math/rand/v2"
	"testing"
	"time"

	json "github.com/go-json-experiment/json/v1"
	"github.com/stretchr/testify/require"

	"github.com/klavi-billing/billingd/consent"
	"github.com/klavi-billing/billingd/cycle"
	"github.com/klavi-billing/billingd/klavi"
	"github.com/klavi-billing/billingd/klavi/sandbox"
	"github.com/klavi-billing/billingd/retry"
)

// The hand readers of terms and cursors (fastdecode.go) give the codec's value and
// error: on random records as the store writes them (every one read by hand), on
// records written otherwise (the codec's), and on damaged ones.
func TestFastDecode(t *testing.T) {
	rng := rand.New(rand.NewPCG(11, 2026))
	texts := []string{"", "a", `quote " and \ backslash`, "<script>&amp;</script>", "line\nbreak", "ção ü 日本", "\u2028", "~ }{ ] [ / ' `"}
	text := func() string { return texts[rng.IntN(len(texts))] }
	at := func() time.Time {
		zones := []*time.Location{cycle.Brasilia, time.UTC, time.FixedZone("", 5*3600+1800)}
		return time.Unix(1_700_000_000+rng.Int64N(100_000_000), rng.Int64N(1e9)*int64(rng.IntN(2))).In(zones[rng.IntN(len(zones))])
	}
	terms := func() []byte {
		iv := cycle.Intervals[rng.IntN(len(cycle.Intervals))]
		amount := klavi.Cents(0)
		if rng.IntN(2) == 0 {
			amount = klavi.Cents(1 + rng.Int64N(1e7))
		}
		c := &consent.Consent{CreatedConsent: *sandbox.SampleConsent("urn:c:"+text(), iv, cycle.MustDate(2025, 1, 1).AddDays(rng.IntN(800)), amount)}
		c.Status = []klavi.ConsentStatus{klavi.ConsentAuthorized, klavi.ConsentAwaitingAuthorization, "consent_revoked", "SOMETHING_NEW"}[rng.IntN(4)]
		c.ClientRequestID, c.InstitutionID = text(), text()
		c.PaymentMethodConfig.ContractID = text()
		if rng.IntN(3) == 0 {
			lo := klavi.Cents(rng.Int64N(1000))
			c.PaymentMethodConfig.MinimumVariableAmount = &lo
		}
		switch rng.IntN(3) {
		case 0:
			c.PaymentMethodConfig.IsRetryAccepted = nil
		case 1:
			no := false
			c.PaymentMethodConfig.IsRetryAccepted = &no
		}
		if rng.IntN(2) == 0 {
			c.ExpirationDateTime = &klavi.DateTime{Time: time.Unix(1_800_000_000+rng.Int64N(1e8), 0).UTC()}
		}
		c.Billing.RetryMode = []consent.RetryMode{"", consent.Attach, consent.Local, consent.Off}[rng.IntN(4)]
		if rng.IntN(3) == 0 {
			c.Billing.AutoRetryStrategy = &retry.Strategy{Days: []int{1, 3, 7}[:rng.IntN(4)], SkipWeekend: rng.IntN(2) == 0}
		}
		if rng.IntN(3) == 0 {
			adj := cycle.DueAdjust(rng.IntN(2))
			c.Billing.DueDateAdjust = &adj
		}
		c.Billing.RemittanceInformation = text()
		raw, err := json.Marshal(decodedBody{Consent: c.Terms(), AddedAt: at(), RedirectURL: text()})
		require.NoError(t, err)
		return raw
	}
	cursor := func() []byte {
		raw, err := marshalCursor(&consentCursor{State: ConsentStates[rng.IntN(len(ConsentStates))], StateReason: text(), UpdatedAt: at(),
			BillFrom: cycle.MustDate(2025, 1, 1).AddDays(rng.IntN(800)), NextCycle: rng.IntN(1000), NextDue: at(), RefreshedAt: at(),
			Version: rng.Uint64() >> rng.IntN(64)})
		require.NoError(t, err)
		return raw
	}
	sameTerms := func(t *testing.T, raw []byte) {
		t.Helper()
		want, werr := decodeBody([]byte("c"), raw)
		got, gerr := decodeTermsBody([]byte("c"), raw)
		require.Equal(t, werr != nil, gerr != nil, "%s: codec %v, by hand %v", raw, werr, gerr)
		if werr != nil {
			require.Equal(t, werr.Error(), gerr.Error(), "%s", raw)
			return
		}
		require.Equal(t, want, got, "%s", raw)
	}
	sameCursor := func(t *testing.T, raw []byte) {
		t.Helper()
		sameAsCodec(t, raw, readCursor)
	}
	damaged := func(raw []byte) [][]byte {
		var out [][]byte
		for n := 1; n < len(raw); n += 1 + len(raw)/40 {
			out = append(out, raw[:n]) // truncated
		}
		for range 40 {
			b := append([]byte(nil), raw...)
			b[rng.IntN(len(b))] = "{}[]\",:0an\\ tf-."[rng.IntN(16)]
			out = append(out, b) // a byte changed
		}
		return out
	}
	for i := range 1000 {
		// A record with no escape in it (the strings billingd writes) is read by
		// hand; one with an escape goes to the codec.
		raw := terms()
		var b decodedBody
		require.Equal(t, !bytes.Contains(raw, []byte(`\`)), termsFast(raw, &b), "read by hand: %s", raw)
		sameTerms(t, raw)
		c := cursor()
		var cur consentCursor
		require.Equal(t, !bytes.Contains(c, []byte(`\`)), cursorFast(c, &cur), "read by hand: %s", c)
		sameCursor(t, c)
		if i < 40 {
			for _, d := range damaged(raw) {
				sameTerms(t, d)
			}
			for _, d := range damaged(c) {
				sameCursor(t, d)
			}
		}
	}
	// Written otherwise: spaced, reordered, another letter case, a name twice,
	// nulls, escapes, a whole body (customer, accounts, contract debtor).
	for _, raw := range []string{
		` { "consent" : { "id" : "urn:c:1" , "status" : "CONSENT_AUTHORIZED" , "paymentMethodConfig" : { "interval" : "MONTHLY" , "fixedAmount" : "1.00" } , "billing" : { } } , "addedAt" : "2026-03-02T09:00:00-03:00" } `,
		`{"addedAt":"2026-03-02T09:00:00Z","consent":{"billing":{},"id":"urn:c:1","paymentMethodConfig":{"fixedAmount":"1.00","interval":"WEEKLY"}}}`,
		`{"Consent":{"id":"urn:c:1"},"addedAt":"2026-03-02T09:00:00Z"}`,
		`{"consent":{"id":"urn:c:1","ID":"urn:c:2"},"addedAt":"2026-03-02T09:00:00Z"}`,
		`{"consent":{"id":"urn:c:1","id":"urn:c:2"},"addedAt":"2026-03-02T09:00:00Z"}`,
		`{"consent":null,"addedAt":"2026-03-02T09:00:00Z"}`,
		`{"consent":{"id":"urn:c:\u0031"},"addedAt":"2026-03-02T09:00:00Z"}`,
		`{"consent":{"id":"urn:c:1","expirationDateTime":null},"addedAt":"2026-03-02T09:00:00Z"}`,
		`{"consent":{"id":"urn:c:1","expirationDateTime":"2026-03-02T09:00:00-03:00"},"addedAt":"2026-03-02T09:00:00Z"}`,
		`{"consent":{"id":"urn:c:1","paymentMethodConfig":{"fixedAmount":1.5}},"addedAt":"2026-03-02T09:00:00Z"}`,
		`{"consent":{"id":"urn:c:1","paymentMethodConfig":{"fixedAmount":null}},"addedAt":"2026-03-02T09:00:00Z"}`,
		`{"consent":{"id":"urn:c:1","paymentMethodConfig":{"interval":"FORTNIGHTLY"}},"addedAt":"2026-03-02T09:00:00Z"}`,
		`{"consent":{"id":"urn:c:1","paymentMethodConfig":{"isRetryAccepted":"yes"}},"addedAt":"2026-03-02T09:00:00Z"}`,
		`{"consent":{"id":"urn:c:1","clientMetadata":{"platform":"BROWSER"}},"addedAt":"2026-03-02T09:00:00Z"}`,
		`{"consent":{"id":"urn:c:1","billing":{"retryMode":"sometimes"}},"addedAt":"2026-03-02T09:00:00Z"}`,
		`{"consent":{"id":"urn:c:1","billing":{"autoRetryStrategy":null}},"addedAt":"2026-03-02T09:00:00Z"}`,
		`{"consent":{"id":"urn:c:1","billing":{"autoRetryStrategy":{"days":"1"}}},"addedAt":"2026-03-02T09:00:00Z"}`,
		`{"consent":{"id":"urn:c:1","billing":{"dueDateAdjust":"sideways"}},"addedAt":"2026-03-02T09:00:00Z"}`,
		`{"consent":{"id":"urn:c:1"},"addedAt":"2026-03-02"}`,
		`{"consent":{"id":"urn:c:1"},"addedAt":"2026-03-02T09:00:00Z","extra":1}`,
		`{"consent":{"id":"urn:c:1"}} {}`,
		`{}`, `{"addedAt":"2026-03-02T09:00:00Z"}`, `{"redirectUrl":"x"}`, // no consent: an error
	} {
		sameTerms(t, []byte(raw))
	}
	full, err := json.Marshal(&consent.Consent{CreatedConsent: *sandbox.SampleConsent("urn:c:full", cycle.Monthly, cycle.MustDate(2026, 3, 5), 99_90)})
	require.NoError(t, err)
	body, err := json.Marshal(consentBody{Consent: full, AddedAt: at()})
	require.NoError(t, err)
	sameTerms(t, body)
	for _, raw := range []string{
		`{"state":"active","nextCycle":-1}`, `{"state":"active","nextCycle":1e2}`, `{"state":"active","nextCycle":12345678901}`,
		`{"state":"active","version":-1}`, `{"state":"active","version":18446744073709551616}`, `{"State":"active"}`,
		`{"state":"active","state":"stopped"}`, `{"state":null}`, `{"state":"act\u0069ve"}`, `{"state":"active","billFrom":"2026-02-30"}`,
		`{"state":"active","updatedAt":null}`, `{"state":"active","other":true}`, `[]`, `null`, ``,
	} {
		sameCursor(t, []byte(raw))
	}
}

// BenchmarkFastDecode: a consent's terms and cursor, as every due entry's decision
// reads them, and the head of the attempt an answer's write replaces, by the codec
// and by hand.
func BenchmarkFastDecode(b *testing.B) {
	now := time.Date(2026, 3, 2, 9, 0, 0, 123456789, cycle.Brasilia)
	c := &consent.Consent{CreatedConsent: *sandbox.SampleConsent("urn:bench:c-0000001", cycle.Monthly, cycle.MustDate(2026, 3, 5), 99_90)}
	terms, err := json.Marshal(decodedBody{Consent: c.Terms(), AddedAt: now})
	require.NoError(b, err)
	cur, err := marshalCursor(&consentCursor{State: ConsentActive, UpdatedAt: now, BillFrom: cycle.MustDate(2026, 1, 5), NextCycle: 4, NextDue: now, Version: 7})
	require.NoError(b, err)
	// The SUBMITTING attempt an answer's write replaces.
	att, err := marshalAttempt(&Attempt{AttemptKey: AttemptKey{ConsentID: "urn:bench:c-0000001", Cycle: 4}, State: AttemptSubmitting,
		ClientRequestID: "billingd-urn:bench:c-0000001-4-0", Date: cycle.MustDate(2026, 3, 5), Amount: 99_90, Sends: 1,
		DueAt: now, CreatedAt: now, UpdatedAt: now, Version: 1})
	require.NoError(b, err)
	for _, r := range []struct {
		name string
		fn   func() error
	}{
		{"terms/codec", func() error { _, err := decodeBody(nil, terms); return err }},
		{"terms/hand", func() error { _, err := decodeTermsBody(nil, terms); return err }},
		{"cursor/codec", func() error { var c consentCursor; return json.Unmarshal(cur, &c) }},
		{"cursor/hand", func() error { var c consentCursor; return readCursor(cur, &c) }},
		{"head/codec", func() error { var h attemptHead; return json.Unmarshal(att, &h) }},
		{"head/hand", func() error { var h attemptHead; return readHead(att, &h) }},
	} {
		b.Run(r.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if err := r.fn(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// readHead gives the codec's head of a stored attempt: on random attempts as
// marshalAttempt writes them (every one read by hand: the strings it skips may hold
// escapes, the ones it reads never do), on damaged copies of them, and on records
// written otherwise.
func TestReadHead(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 2026))
	texts := []string{"", "a", `quote " and \ backslash`, "<b>&amp;</b>", "ção ü 日本", "\u2028"}
	text := func() string { return texts[rng.IntN(len(texts))] }
	at := func() time.Time {
		if rng.IntN(3) == 0 {
			return time.Time{}
		}
		zones := []*time.Location{cycle.Brasilia, time.UTC, time.FixedZone("", 5*3600+1800)}
		return time.Unix(1_700_000_000+rng.Int64N(100_000_000), rng.Int64N(1e9)*int64(rng.IntN(2))).In(zones[rng.IntN(len(zones))])
	}
	attempt := func() []byte {
		a := &Attempt{AttemptKey: AttemptKey{ConsentID: "urn:c:" + text(), Cycle: rng.IntN(200), Attempt: rng.IntN(4)},
			State: AttemptStates[rng.IntN(len(AttemptStates))], ClientRequestID: text(), Date: cycle.MustDate(2025, 1, 1).AddDays(rng.IntN(800)),
			Amount: klavi.Cents(rng.Int64N(1e7)), PaymentID: text(), Status: klavi.PaymentPending, Reason: text(), Sends: rng.IntN(3),
			DueAt: at(), NextPoll: at(), CreatedAt: at(), UpdatedAt: at(), UnknownSince: at(), Version: rng.Uint64() >> rng.IntN(64)}
		if rng.IntN(3) == 0 {
			a.Strategy = &retry.Strategy{Days: []int{1, 3, 7}[:rng.IntN(4)], SkipWeekend: rng.IntN(2) == 0}
		}
		if rng.IntN(3) == 0 {
			a.Resolved = &Resolution{At: at(), By: text(), Note: text(), State: AttemptStates[rng.IntN(len(AttemptStates))], Since: at()}
		}
		raw, err := marshalAttempt(a)
		require.NoError(t, err)
		return raw
	}
	same := func(t *testing.T, raw []byte) {
		t.Helper()
		sameAsCodec(t, raw, readHead)
	}
	// Damaged copies the hand reader still reads (a byte changed inside a string it
	// skips, say): the comparison with the codec is then not the codec's with itself.
	byHand := 0
	damaged := func(t *testing.T, b []byte) {
		t.Helper()
		var h attemptHead
		if headFast(b, &h) {
			byHand++
		}
		same(t, b)
	}
	for i := range 1000 {
		raw := attempt()
		var h attemptHead
		require.True(t, headFast(raw, &h), "read by hand: %s", raw)
		same(t, raw)
		if i < 40 {
			for n := 1; n < len(raw); n += 1 + len(raw)/40 {
				damaged(t, raw[:n]) // truncated
			}
			for range 40 {
				b := append([]byte(nil), raw...)
				b[rng.IntN(len(b))] = "{}[]\",:0an\\ tf-."[rng.IntN(16)]
				damaged(t, b) // a byte changed
			}
		}
	}
	require.Greater(t, byHand, 200, "damaged copies read by hand")
	for _, raw := range []string{
		`{"state":"SUBMITTED","version":3}`, ` { "state" : "SUBMITTED" , "version" : 3 } `, `{"version":3,"state":"SUBMITTED"}`,
		`{"State":"SUBMITTED"}`, `{"state":"SUBMITTED","state":"COMPLETED"}`, `{"state":null}`, `{"state":"SUBM\u0049TTED"}`,
		`{"state":"SUBMITTED","resolved":null}`, `{"state":"STUCK","resolved":{"state":"STUCK","by":"op","at":"2026-03-02T09:00:00Z"}}`,
		`{"state":"STUCK","resolved":{"State":"STUCK"}}`, `{"state":"STUCK","resolved":{"state":"STUCK","state":"UNCONFIRMED"}}`,
		`{"state":"SUBMITTED","version":-1}`, `{"state":"SUBMITTED","version":1.5}`, `{"state":"SUBMITTED","version":18446744073709551616}`,
		`{"state":"SUBMITTED","date":"2026-02-30"}`, `{"state":"SUBMITTED","dueAt":null}`, `{"state":"SUBMITTED","dueAt":"2026-03-02"}`,
		`{"state":"SUBMITTED","amount":null}`, `{"state":"SUBMITTED","other":true}`, `{"state":"SUBMITTED","strategy":{"days":[1,2]}}`,
		`{"state":"SUBMITTED"} {}`, `[]`, `null`, ``, `{}`,
	} {
		same(t, []byte(raw))
	}
}

// sameAsCodec asserts that read gives for raw the value and the error
// json.Unmarshal gives.
func sameAsCodec[T any](t *testing.T, raw []byte, read func([]byte, *T) error) {
	t.Helper()
	var want, got T
	werr := json.Unmarshal(raw, &want)
	gerr := read(raw, &got)
	require.Equal(t, werr != nil, gerr != nil, "%s: codec %v, by hand %v", raw, werr, gerr)
	if werr != nil {
		require.Equal(t, werr.Error(), gerr.Error(), "%s", raw)
		return
	}
	require.Equal(t, want, got, "%s", raw)
}
