package storage

import (
	"bytes"
	stdjson "encoding/json"
	"fmt"
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

// The store's records are read and written with go-json-experiment's v1 package
// (json in this package), the implementation encoding/json takes in later Go
// releases, for its speed. It must write the bytes encoding/json writes, and read
// what encoding/json reads, for every record the store keeps: records written by
// either stay readable by both, in an upgrade and in a rollback. Its error texts
// differ (a field in an embedded struct is named without it, Attempt.cycle for
// Attempt.AttemptKey.cycle; a type error may add "JSON value must be string type"):
// they reach ErrCorrupt's message and the log, and nothing matches on them.
func TestCodec_AsEncodingJSON(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 2026))
	texts := []string{"", "a", `quote " and \ backslash`, "<script>&amp;</script>", "line\nbreak\ttab", "ção ü 日本", "\u2028\u2029", "\x00\x1f",
		"\x7f del", "~ }{ ] [ / ' `", "urn:c:00000000-0000-4000-8000-000000000001", "\b\f\r"}
	text := func() string { return texts[rng.IntN(len(texts))] }
	at := func() time.Time {
		if rng.IntN(4) == 0 {
			return time.Time{}
		}
		zones := []*time.Location{cycle.Brasilia, cycle.Brasilia, time.UTC, time.FixedZone("", 5*3600+1800), time.FixedZone("LMT", -(3*3600 + 6*60 + 28))}
		ns := rng.Int64N(1e9)
		switch rng.IntN(4) {
		case 0:
			ns = 0
		case 1:
			ns -= ns % 1000 // trailing zeros, which RFC 3339 with nanoseconds drops
		}
		return time.Unix(1_700_000_000+rng.Int64N(100_000_000), ns).In(zones[rng.IntN(len(zones))])
	}
	date := func() cycle.Date {
		if rng.IntN(4) == 0 {
			return cycle.Date{}
		}
		return cycle.MustDate(2025, 1, 1).AddDays(rng.IntN(2000))
	}
	states := []AttemptState{AttemptSubmitting, AttemptSubmitted, AttemptCompleted, AttemptRejected, AttemptUnconfirmed, AttemptStuck, AttemptFailed, AttemptMissed, AttemptSkipped, AttemptPlanned, AttemptDropped}
	attempt := func() *Attempt {
		a := &Attempt{AttemptKey: AttemptKey{ConsentID: "urn:c:" + text(), Cycle: rng.IntN(500), Attempt: rng.IntN(4)},
			State: states[rng.IntN(len(states))], ClientRequestID: text(), Date: date(), Amount: klavi.Cents(rng.Int64N(int64(klavi.MaxCents))),
			PaymentID: text(), OriginalPaymentID: text(), Status: klavi.PaymentStatus(text()), Reason: text(), Sends: rng.IntN(3), Polls: rng.IntN(40),
			DueAt: at(), NextPoll: at(), CreatedAt: at(), SubmittedAt: at(), UpdatedAt: at(), LastRetryDate: date(), PlannedRetries: rng.IntN(3),
			Lookups: rng.IntN(3), Confirm: text(), UnknownSince: at(), Version: rng.Uint64() >> rng.IntN(64)}
		if rng.IntN(2) == 0 {
			a.Mode = []consent.RetryMode{consent.Attach, consent.Local, consent.Off}[rng.IntN(3)]
			a.Strategy = &retry.Strategy{Days: []int{1, 3, 7}[:rng.IntN(4)], SkipWeekend: rng.IntN(2) == 0}
		}
		if rng.IntN(3) == 0 {
			a.Resolved = &Resolution{At: at(), By: text(), Note: text(), State: states[rng.IntN(len(states))], Since: at()}
		}
		return a
	}
	event := func() *Event {
		a := attempt()
		e := AttemptEvent(text(), at(), a, text(), text())
		if rng.IntN(3) == 0 {
			e = Event{At: at(), Kind: text(), ConsentID: text(), Actor: text(), Reason: text()}
		}
		return &e
	}
	same := func(t *testing.T, v any, fresh func() any) {
		t.Helper()
		want, werr := stdjson.Marshal(v)
		got, gerr := json.Marshal(v)
		require.Equal(t, werr == nil, gerr == nil, "marshal errors: %v / %v", werr, gerr)
		require.Equal(t, string(want), string(got), "marshal")
		a, b := fresh(), fresh()
		require.NoError(t, stdjson.Unmarshal(want, a))
		require.NoError(t, json.Unmarshal(want, b))
		require.Equal(t, a, b, "unmarshal of %s", want)
	}
	// The hand encoders of the hot path (encode.go) write encoding/json's bytes too.
	byHand := func(t *testing.T, v any, got []byte, err error) {
		t.Helper()
		want, werr := stdjson.Marshal(v)
		require.NoError(t, werr)
		require.NoError(t, err)
		require.Equal(t, string(want), string(got), "hand encoder")
	}
	for i := range 2000 {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			a := attempt()
			same(t, a, func() any { return new(Attempt) })
			same(t, a, func() any { return new(attemptHead) })
			raw, err := marshalAttempt(a)
			byHand(t, a, raw, err)
			e := event()
			same(t, e, func() any { return new(Event) })
			raw, err = marshalEvent(e)
			byHand(t, e, raw, err)
			c := &consentCursor{State: ConsentState(text()), StateReason: text(), UpdatedAt: at(), BillFrom: date(), NextCycle: rng.IntN(1000),
				NextDue: at(), RefreshedAt: at(), Version: rng.Uint64()}
			same(t, c, func() any { return new(consentCursor) })
			raw, err = marshalCursor(c)
			byHand(t, c, raw, err)
		})
	}
	// Consent bodies and their terms, from every interval the sandbox builds.
	for i, iv := range []cycle.Interval{cycle.Weekly, cycle.Monthly, cycle.Quarterly, cycle.Semiannual, cycle.Yearly} {
		c := &consent.Consent{CreatedConsent: *sandbox.SampleConsent(fmt.Sprintf("urn:c:%d", i), iv, date(), klavi.Cents(rng.Int64N(1_000_000)))}
		raw, err := stdjson.Marshal(c)
		require.NoError(t, err)
		same(t, consentBody{Consent: raw, AddedAt: at(), RedirectURL: text()}, func() any { return new(decodedBody) })
		same(t, decodedBody{Consent: c.Terms(), AddedAt: at()}, func() any { return new(decodedBody) })
	}
}

// A string that is not valid UTF-8 (none reaches a record: they come from decoded
// JSON or from billingd) is written with U+FFFD for the invalid bytes, as
// encoding/json does, but as the character itself where encoding/json writes the
// escape \ufffd: the same string when read by either.
func TestCodec_InvalidUTF8(t *testing.T) {
	e := Event{Kind: "x", ConsentID: "urn:c:\xff", Actor: "a"}
	want, err := stdjson.Marshal(&e)
	require.NoError(t, err)
	got, err := json.Marshal(&e)
	require.NoError(t, err)
	require.Equal(t, `{"at":"0001-01-01T00:00:00Z","kind":"x","consentId":"urn:c:\ufffd","actor":"a"}`, string(want))
	require.Equal(t, "{\"at\":\"0001-01-01T00:00:00Z\",\"kind\":\"x\",\"consentId\":\"urn:c:\ufffd\",\"actor\":\"a\"}", string(got))
	for _, raw := range [][]byte{want, got} {
		var a, b Event
		require.NoError(t, stdjson.Unmarshal(raw, &a))
		require.NoError(t, json.Unmarshal(raw, &b))
		require.Equal(t, a, b)
		require.Equal(t, "urn:c:\ufffd", a.ConsentID)
	}
}

// What encoding/json refuses, the store's codec refuses: a damaged record is
// ErrCorrupt with either.
func TestCodec_RefusesWhatEncodingJSONRefuses(t *testing.T) {
	good, err := stdjson.Marshal(&Attempt{AttemptKey: AttemptKey{ConsentID: "urn:c:1", Cycle: 2}, State: AttemptSubmitted, Amount: 99_90, Date: cycle.MustDate(2026, 3, 5)})
	require.NoError(t, err)
	bad := []string{"", "{", "null x", `{"amount":99.9}`, `{"amount":"abc"}`, `{"date":"2026-02-30"}`, `{"cycle":"2"}`, `{"state":1}`, `{"version":-1}`, `[1]`}
	for n := 1; n < len(good); n += 7 {
		bad = append(bad, string(good[:n])) // truncated
	}
	for _, raw := range bad {
		var a, b Attempt
		werr := stdjson.Unmarshal([]byte(raw), &a)
		gerr := json.Unmarshal([]byte(raw), &b)
		require.Equal(t, werr != nil, gerr != nil, "%q: encoding/json %v, codec %v", raw, werr, gerr)
	}
}

// BenchmarkRecordCodec: encoding/json against the store's codec on the records of
// every submission: a SUBMITTED attempt (decoded, encoded) and a consent's terms
// (decoded), from the sandbox's sample consent.
func BenchmarkRecordCodec(b *testing.B) {
	now := time.Date(2026, 3, 2, 9, 0, 0, 123456789, cycle.Brasilia)
	a := &Attempt{AttemptKey: AttemptKey{ConsentID: "urn:bench:c-0000001", Cycle: 3}, State: AttemptSubmitted, ClientRequestID: "urn:bench:c-0000001-3-0",
		Date: cycle.MustDate(2026, 3, 5), Amount: 99_90, PaymentID: "pay-0000001", Status: klavi.PaymentScheduled, Sends: 1,
		CreatedAt: now, SubmittedAt: now, UpdatedAt: now, NextPoll: now, Version: 2}
	attempt, err := stdjson.Marshal(a)
	require.NoError(b, err)
	c := &consent.Consent{CreatedConsent: *sandbox.SampleConsent("urn:bench:c-0000001", cycle.Monthly, cycle.MustDate(2026, 3, 5), 99_90)}
	terms, err := stdjson.Marshal(decodedBody{Consent: c.Terms(), AddedAt: now})
	require.NoError(b, err)
	codecs := []struct {
		name      string
		marshal   func(any) ([]byte, error)
		unmarshal func([]byte, any) error
	}{{"encoding-json", stdjson.Marshal, stdjson.Unmarshal}, {"codec", json.Marshal, json.Unmarshal}}
	for _, cd := range codecs {
		b.Run(cd.name+"/attempt-decode", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				var out Attempt
				require.NoError(b, cd.unmarshal(attempt, &out))
			}
		})
		b.Run(cd.name+"/attempt-encode", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_, err := cd.marshal(a)
				require.NoError(b, err)
			}
		})
		b.Run(cd.name+"/terms-decode", func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				var out decodedBody
				require.NoError(b, cd.unmarshal(terms, &out))
			}
		})
	}
}

// What the hand encoders leave to the codec gives the codec's bytes or error: a
// string beyond printable ASCII (invalid UTF-8 here, where the codec differs from
// encoding/json; TestCodec_InvalidUTF8), and the times and amounts encoding/json
// refuses.
func TestEncode_Fallback(t *testing.T) {
	now := time.Date(2026, 3, 2, 9, 0, 0, 0, cycle.Brasilia)
	base := func() *Attempt {
		return &Attempt{AttemptKey: AttemptKey{ConsentID: "urn:c:1", Cycle: 2}, State: AttemptSubmitted, Amount: 99_90,
			Date: cycle.MustDate(2026, 3, 5), CreatedAt: now, UpdatedAt: now}
	}
	a := base()
	a.Reason = "bad \xff byte"
	want, err := json.Marshal(a)
	require.NoError(t, err)
	got, err := marshalAttempt(a)
	require.NoError(t, err)
	require.Equal(t, string(want), string(got))

	refused := map[string]func(*Attempt){
		"year 10000":          func(a *Attempt) { a.UpdatedAt = time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC) },
		"year -1":             func(a *Attempt) { a.DueAt = time.Date(-1, 1, 1, 0, 0, 0, 0, time.UTC) },
		"offset of 24 hours":  func(a *Attempt) { a.CreatedAt = now.In(time.FixedZone("", 24*3600)) },
		"resolution's time":   func(a *Attempt) { a.Resolved = &Resolution{At: time.Date(12000, 1, 1, 0, 0, 0, 0, time.UTC)} },
		"amount out of range": func(a *Attempt) { a.Amount = klavi.MaxCents + 1 },
		"negative amount":     func(a *Attempt) { a.Amount = -1 },
	}
	for name, spoil := range refused {
		t.Run(name, func(t *testing.T) {
			a := base()
			spoil(a)
			_, werr := stdjson.Marshal(a)
			require.Error(t, werr)
			_, err := marshalAttempt(a)
			require.Error(t, err)
			_, cerr := json.Marshal(a)
			require.Equal(t, cerr.Error(), err.Error(), "the codec's error")
		})
	}
	// A date whose year has more than four digits: its text holds other characters
	// than digits, which only the codec quotes as encoding/json does.
	far := cycle.MustDate(2026, 3, 5).AddDays(4_000_000) // year 12977
	for _, d := range []cycle.Date{far, cycle.MustDate(2026, 3, 5).AddDays(30_000_000), cycle.MustDate(2026, 3, 5).AddDays(-5_000_000)} {
		a := base()
		a.Date, a.LastRetryDate = d, d
		want, werr := stdjson.Marshal(a)
		got, err := marshalAttempt(a)
		require.Equal(t, werr == nil, err == nil)
		cwant, _ := json.Marshal(a)
		require.Equal(t, string(cwant), string(got), "the codec's bytes")
		if werr == nil && !bytes.Contains(want, []byte(`\ufffd`)) {
			require.Equal(t, string(want), string(got), "encoding/json's bytes")
		}
		e := &Event{At: now, Kind: "x", ConsentID: "c", Actor: "a", Date: d}
		ewant, _ := json.Marshal(e)
		egot, err := marshalEvent(e)
		require.NoError(t, err)
		require.Equal(t, string(ewant), string(egot))
		c := &consentCursor{State: ConsentActive, UpdatedAt: now, BillFrom: d}
		cwant, _ = json.Marshal(c)
		cgot, err := marshalCursor(c)
		require.NoError(t, err)
		require.Equal(t, string(cwant), string(cgot))
	}

	e := &Event{At: time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), Kind: "x", ConsentID: "c", Actor: "a"}
	_, err = marshalEvent(e)
	require.Error(t, err)
	amt := klavi.Cents(-5)
	e = &Event{At: now, Kind: "x", ConsentID: "c", Actor: "a", Amount: &amt}
	_, err = marshalEvent(e)
	require.Error(t, err)
	_, err = marshalCursor(&consentCursor{State: ConsentActive, NextDue: time.Date(-3, 1, 1, 0, 0, 0, 0, time.UTC)})
	require.Error(t, err)
}

// BenchmarkEncode: the hand encoders against the codec on the records of every
// submission.
func BenchmarkEncode(b *testing.B) {
	now := time.Date(2026, 3, 2, 9, 0, 0, 123456789, cycle.Brasilia)
	a := &Attempt{AttemptKey: AttemptKey{ConsentID: "urn:bench:c-0000001", Cycle: 3}, State: AttemptSubmitted, ClientRequestID: "urn:bench:c-0000001-3-0",
		Date: cycle.MustDate(2026, 3, 5), Amount: 99_90, PaymentID: "pay-0000001", Status: klavi.PaymentScheduled, Sends: 1,
		CreatedAt: now, SubmittedAt: now, UpdatedAt: now, NextPoll: now, Version: 2}
	e := AttemptEvent("submitted", now, a, ActorBillingd, "")
	c := &consentCursor{State: ConsentActive, UpdatedAt: now, BillFrom: cycle.MustDate(2026, 1, 5), NextCycle: 4, NextDue: now, Version: 7}
	for _, r := range []struct {
		name        string
		codec, hand func() ([]byte, error)
	}{
		{"attempt", func() ([]byte, error) { return json.Marshal(a) }, func() ([]byte, error) { return marshalAttempt(a) }},
		{"event", func() ([]byte, error) { return json.Marshal(&e) }, func() ([]byte, error) { return marshalEvent(&e) }},
		{"cursor", func() ([]byte, error) { return json.Marshal(c) }, func() ([]byte, error) { return marshalCursor(c) }},
	} {
		for _, enc := range []struct {
			name string
			fn   func() ([]byte, error)
		}{{"codec", r.codec}, {"hand", r.hand}} {
			b.Run(r.name+"/"+enc.name, func(b *testing.B) {
				b.ReportAllocs()
				for b.Loop() {
					if _, err := enc.fn(); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
