package sandbox_test

import (
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klavi-billing/billingd/klavi"
	"github.com/klavi-billing/billingd/klavi/sandbox"
)

var reUUIDv4 = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func TestServer_IDs(t *testing.T) {
	ids := func(opts sandbox.Options) (consentID, paymentID string) {
		b := newRaw(t, opts)
		c := b.do(http.MethodPost, consentsPath, consentBody(t, "signup-1"))
		require.Equal(t, 201, c.code, c.raw)
		b.seed(monthly, "2026-02-05", 9990)
		p := b.pay(monthly, "p-1", "2026-03-05", "99.90")
		require.Equal(t, 201, p.code, p.raw)
		return str(c.body["id"]), str(p.body["id"])
	}
	t.Run("uuid by default", func(t *testing.T) {
		c, p := ids(sandbox.Options{})
		assert.Regexp(t, reUUIDv4, c)
		assert.Regexp(t, reUUIDv4, p)
		assert.NotEqual(t, c, p)
	})
	t.Run("same seed, same ids", func(t *testing.T) {
		c1, p1 := ids(sandbox.Options{Seed: 7})
		c2, p2 := ids(sandbox.Options{Seed: 7})
		c3, p3 := ids(sandbox.Options{Seed: 8})
		assert.Equal(t, []string{c1, p1}, []string{c2, p2})
		assert.NotEqual(t, c1, c3)
		assert.NotEqual(t, p1, p3)
	})
	t.Run("urn", func(t *testing.T) {
		c, p := ids(sandbox.Options{IDs: sandbox.IDsURN})
		assert.Equal(t, "urn:sandbox:consent-000001", c)
		assert.Equal(t, "urn:sandbox:payment-00000001", p)
	})
	t.Run("a uuid id reads back through its path", func(t *testing.T) {
		b := newRaw(t, sandbox.Options{})
		b.seed(monthly, "2026-02-05", 9990)
		p := b.pay(monthly, "p-1", "2026-03-05", "99.90")
		require.Equal(t, 201, p.code)
		got := b.do(http.MethodGet, paymentsPath(monthly)+"/"+str(p.body["id"]), "")
		require.Equal(t, 200, got.code, got.raw)
		assert.Equal(t, p.body["id"], got.body["id"])
	})
	t.Run("escaped ids are unescaped", func(t *testing.T) {
		b := newRaw(t, sandbox.Options{})
		b.seed(monthly, "2026-02-05", 9990)
		p := b.pay(monthly, "p-1", "2026-03-05", "99.90")
		require.Equal(t, 201, p.code)
		escaped := strings.ReplaceAll(monthly, ":", "%3A")
		got := b.do(http.MethodGet, paymentsPath(escaped)+"/"+str(p.body["id"]), "")
		require.Equal(t, 200, got.code, got.raw)
		assert.Equal(t, monthly, got.body["consentId"])
	})
	t.Run("path ids", func(t *testing.T) {
		b := newRaw(t, sandbox.Options{})
		for _, tc := range []struct {
			name, id string
			want     int
		}{
			{"uuid", "fcb72e3a-b346-4f71-b044-971dc23232c9", 404},
			{"urn", "urn:bancoex:C1DD33123", 404},
			{"opaque", "anything_at-all.42", 404},
			{"non-ascii printable", "pagamento-%C3%A9", 404},
			{"escaped slash", "a%2Fb", 400},
			{"space", "a%20b", 400},
			{"tab", "a%09b", 400},
			{"control", "a%01b", 400},
			{"too long", strings.Repeat("x", 257), 400},
			{"longest", strings.Repeat("x", 256), 404},
		} {
			t.Run(tc.name, func(t *testing.T) {
				got := b.do(http.MethodGet, paymentsPath(tc.id)+"/p", "")
				assert.Equal(t, tc.want, got.code, got.raw)
			})
		}
	})
}

func TestValidID(t *testing.T) {
	for _, tc := range []struct {
		id   string
		want bool
	}{
		{"fcb72e3a-b346-4f71-b044-971dc23232c9", true},
		{"urn:sandbox:payment-00000001", true},
		{"é", true},
		{"", false},
		{"a/b", false},
		{"a b", false},
		{"a\u00a0b", false},
		{"a\x7fb", false},
		{"\xff", false},
		{strings.Repeat("x", 256), true},
		{strings.Repeat("x", 257), false},
	} {
		t.Run(tc.id, func(t *testing.T) { assert.Equal(t, tc.want, sandbox.ValidID(tc.id)) })
	}
}

func TestServer_Amounts(t *testing.T) {
	for _, tc := range []struct {
		name, amounts string
		fixed         klavi.Cents
		sent, want    string
	}{
		{"string by default", "", 310955, "3109.55", `"amount":"3109.55"`},
		{"string", sandbox.AmountsString, 5, "0.05", `"amount":"0.05"`},
		{"number", sandbox.AmountsNumber, 310955, "3109.55", `"amount":3109.55`},
		{"number, five centavos", sandbox.AmountsNumber, 5, "0.05", `"amount":0.05`},
		{"number, whole reais", sandbox.AmountsNumber, 100000, "1000.00", `"amount":1000.00`},
		{"number, past float precision", sandbox.AmountsNumber, 9007199254740993, "90071992547409.93", `"amount":90071992547409.93`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newRaw(t, sandbox.Options{Amounts: tc.amounts})
			b.seed(monthly, "2026-02-05", tc.fixed)
			p := b.pay(monthly, "p-1", "2026-03-05", tc.sent)
			require.Equal(t, 201, p.code, p.raw)
			assert.Contains(t, p.raw, tc.want, "create")
			got := b.do(http.MethodGet, paymentsPath(monthly)+"/"+str(p.body["id"]), "")
			assert.Contains(t, got.raw, tc.want, "get")
			c := b.do(http.MethodGet, consentsPath+"/"+monthly, "")
			require.Equal(t, 200, c.code, c.raw)
			assert.Contains(t, c.raw, strings.Replace(tc.want, "amount", "fixedAmount", 1), "the consent's amounts too")
		})
	}
}

func TestServer_StatusCase(t *testing.T) {
	for _, tc := range []struct {
		name, statusCase              string
		pending, rejected, reasonCode string
		consent                       string
	}{
		{"upper by default", "", "PAYMENT_PENDING", "PAYMENT_REJECTED", "NOT_INFORMED", "CONSENT_AUTHORIZED"},
		{"lower", sandbox.StatusLower, "payment_pending", "payment_rejected", "not_informed", "consent_authorized"},
		{"spaced", sandbox.StatusSpaced, "Payment Pending", "Payment Rejected", "Not Informed", "Consent Authorized"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newRaw(t, sandbox.Options{StatusCase: tc.statusCase, Scenario: &sandbox.Scenario{Default: sandbox.Rejected}})
			b.seed(monthly, "2026-02-05", 9990)
			p := b.pay(monthly, "p-1", "2026-03-05", "99.90")
			require.Equal(t, 201, p.code, p.raw)
			assert.Equal(t, tc.pending, p.body["status"])
			b.clk.Set(day("2026-03-05").At(12, 0))
			got := b.do(http.MethodGet, paymentsPath(monthly)+"/"+str(p.body["id"])+"/status", "")
			assert.Equal(t, tc.rejected, got.body["status"])
			assert.Equal(t, tc.reasonCode, got.body["statusReason"].(map[string]any)["code"])
			c := b.do(http.MethodGet, consentsPath+"/"+monthly, "")
			assert.Equal(t, tc.consent, c.body["status"])
		})
	}
}

func TestServer_Duplicate(t *testing.T) {
	for _, tc := range []struct {
		name, duplicate string
		wantCode        int
	}{
		{"409 by default", "", 409},
		{"409", sandbox.Duplicate409, 409},
		{"existing", sandbox.DuplicateExisting, 201},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newRaw(t, sandbox.Options{Duplicate: tc.duplicate, Scenario: &sandbox.Scenario{Default: sandbox.Rejected}})
			b.seed(monthly, "2026-02-05", 9990)
			b.seed(weekly, "2026-02-05", 9990)
			p := b.pay(monthly, "p-1", "2026-03-05", "99.90")
			require.Equal(t, 201, p.code, p.raw)

			again := b.pay(monthly, "p-1", "2026-03-05", "99.90")
			require.Equal(t, tc.wantCode, again.code, again.raw)
			if tc.wantCode == 201 {
				assert.Equal(t, p.body["id"], again.body["id"], "the payment it created")
			} else {
				assert.Equal(t, "Conflict", again.body["error"])
				assert.Equal(t, float64(409), again.body["statusCode"])
				assert.NotEmpty(t, again.body["message"])
			}

			other := b.pay(weekly, "p-1", "2026-03-05", "99.90")
			assert.Equal(t, 409, other.code, "the clientRequestId of a payment under another consent")
			c := b.do(http.MethodPost, consentsPath, consentBody(t, "signup-x"))
			require.Equal(t, 201, c.code)
			byConsent := b.pay(monthly, "signup-x", "2026-03-05", "99.90")
			assert.Equal(t, 409, byConsent.code, "the clientRequestId of a consent")

			b.clk.Set(day("2026-03-05").At(12, 0)) // rejected: a retry may be asked
			r := b.retry(monthly, str(p.body["id"]), "r-1", "2026-03-06")
			require.Equal(t, 201, r.code, r.raw)
			rAgain := b.retry(monthly, str(p.body["id"]), "r-1", "2026-03-06")
			require.Equal(t, tc.wantCode, rAgain.code, rAgain.raw)
			if tc.wantCode == 201 {
				assert.Equal(t, r.body["id"], rAgain.body["id"])
			}
			assert.Len(t, b.sb.Ledger(), 2, "nothing new was created")
		})
	}
}

func TestServer_CheckOrder(t *testing.T) {
	for _, tc := range []struct {
		name, order, duplicate string
		clock                  string // the re-send's day
		wantCode               int
		wantRule               string
	}{
		{"key-first, in the window", sandbox.CheckKeyFirst, sandbox.Duplicate409, "2026-02-26", 409, sandbox.RuleDuplicate},
		{"key-first, window closed", sandbox.CheckKeyFirst, sandbox.Duplicate409, "2026-03-04", 409, sandbox.RuleDuplicate},
		{"rules-first, in the window", sandbox.CheckRulesFirst, sandbox.Duplicate409, "2026-02-26", 409, sandbox.RuleDuplicate},
		{"rules-first, window closed", sandbox.CheckRulesFirst, sandbox.Duplicate409, "2026-03-04", 416, sandbox.RuleWindow},
		{"rules-first, in the window, existing", sandbox.CheckRulesFirst, sandbox.DuplicateExisting, "2026-02-26", 201, ""},
		{"rules-first, window closed, existing", sandbox.CheckRulesFirst, sandbox.DuplicateExisting, "2026-03-04", 416, sandbox.RuleWindow},
		{"key-first, window closed, existing", sandbox.CheckKeyFirst, sandbox.DuplicateExisting, "2026-03-04", 201, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newRaw(t, sandbox.Options{CheckOrder: tc.order, Duplicate: tc.duplicate})
			b.seed(monthly, "2026-02-05", 9990)
			p := b.pay(monthly, "resend-1", "2026-03-05", "99.90")
			require.Equal(t, 201, p.code, p.raw)
			b.clk.Set(day(tc.clock).At(9, 0))
			again := b.pay(monthly, "resend-1", "2026-03-05", "99.90")
			assert.Equal(t, tc.wantCode, again.code, again.raw)
			if tc.wantRule != "" {
				assert.Equal(t, tc.wantRule, again.body["rule"])
			}
			assert.Len(t, b.sb.Ledger(), 1)
		})
	}
	t.Run("revoked consent, rules-first", func(t *testing.T) {
		b := newRaw(t, sandbox.Options{CheckOrder: sandbox.CheckRulesFirst})
		b.seed(monthly, "2026-02-05", 9990)
		require.Equal(t, 201, b.pay(monthly, "resend-1", "2026-03-05", "99.90").code)
		require.NoError(t, b.sb.RevokeConsent(monthly, ""))
		again := b.pay(monthly, "resend-1", "2026-03-05", "99.90")
		assert.Equal(t, 416, again.code)
		assert.Equal(t, sandbox.RuleConsentNotAuthorized, again.body["rule"])
	})
}

func TestServer_ConflictPermissions(t *testing.T) {
	t.Run("every create refused", func(t *testing.T) {
		b := newRaw(t, sandbox.Options{ConflictPermissions: 1})
		b.seed(monthly, "2026-02-05", 9990)
		for name, a := range map[string]answer{
			"payment": b.pay(monthly, "p-1", "2026-03-05", "99.90"),
			"consent": b.do(http.MethodPost, consentsPath, consentBody(t, "signup-1")),
		} {
			t.Run(name, func(t *testing.T) {
				assert.Equal(t, 409, a.code)
				assert.JSONEq(t, `{"statusCode":409,"error":"Conflict","message":"Insufficient permissions requested"}`, a.raw, "seed 000's example, exactly")
			})
		}
		assert.Empty(t, b.sb.Ledger(), "nothing created")
		assert.Equal(t, 1, b.sb.Stats().Consents, "only the seeded one")
		assert.Equal(t, 2, b.sb.Stats().Refusals[sandbox.RulePermissions])
	})
	t.Run("a refused clientRequestId stays free", func(t *testing.T) {
		b := newRaw(t, sandbox.Options{ConflictPermissions: 0.5, Seed: 1})
		b.seed(monthly, "2026-02-05", 9990)
		codes := map[int]int{}
		for range 40 {
			a := b.pay(monthly, "p-1", "2026-03-05", "99.90")
			codes[a.code]++
			if a.code == 201 {
				break
			}
		}
		assert.Equal(t, 1, codes[201], "created once, after refusals that created nothing: %v", codes)
	})
	t.Run("the draws follow the seed", func(t *testing.T) {
		run := func(seed uint64) []int {
			b := newRaw(t, sandbox.Options{ConflictPermissions: 0.5, Seed: seed})
			var out []int
			for i := range 40 {
				out = append(out, b.do(http.MethodPost, consentsPath, consentBody(t, "signup-"+string(rune('a'+i)))).code)
			}
			return out
		}
		a, again := run(3), run(3)
		assert.Equal(t, a, again)
		n := 0
		for _, c := range a {
			if c == 409 {
				n++
			}
		}
		assert.InDelta(t, 20, n, 12, "about half refused: %v", a)
	})
}

func TestServer_ClockOffsetAndDateHeader(t *testing.T) {
	for _, tc := range []struct {
		name   string
		offset time.Duration
		date   string // a payment date inside the window of the offset clock only
	}{
		{"no offset", 0, "2026-03-07"},
		{"15 days ahead", 360 * time.Hour, "2026-03-22"},
		{"two hours behind", -2 * time.Hour, "2026-03-07"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := newRaw(t, sandbox.Options{ClockOffset: tc.offset})
			b.seed(monthly, "2026-02-07", 9990)
			want := start.Add(tc.offset).UTC().Format(http.TimeFormat)
			for _, path := range []string{"/_sandbox/stats", "/nowhere", paymentsPath(monthly) + "/x"} {
				a := b.do(http.MethodGet, path, "")
				assert.Equal(t, want, a.header.Get("Date"), path)
			}
			p := b.pay(monthly, "p-1", tc.date, "99.90")
			assert.Equal(t, 201, p.code, "today follows the offset: %s", p.raw)
		})
	}
}

func TestOptions_Validate(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts sandbox.Options
		want string
	}{
		{"ids", sandbox.Options{IDs: "int"}, "ids"},
		{"amounts", sandbox.Options{Amounts: "float"}, "amounts"},
		{"status case", sandbox.Options{StatusCase: "camel"}, "status case"},
		{"duplicate", sandbox.Options{Duplicate: "200"}, "duplicate"},
		{"check order", sandbox.Options{CheckOrder: "random"}, "check order"},
		{"cursor field", sandbox.Options{CursorField: "after"}, "cursor field"},
		{"conflict permissions", sandbox.Options{ConflictPermissions: 1.5}, "conflict permissions"},
		{"app id", sandbox.Options{AppID: "a/b"}, "app id"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.ErrorContains(t, tc.opts.Validate(), tc.want)
			_, err := sandbox.Open(tc.opts)
			require.Error(t, err)
		})
	}
	require.NoError(t, sandbox.Options{}.Validate())
}
