package klavi

import (
	"fmt"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klavi-billing/billingd/cycle"
	"github.com/klavi-billing/billingd/internal/problem"
	"github.com/klavi-billing/billingd/retry"
)

func has(l problem.List, path, msg string) bool {
	for _, p := range l {
		if p.Path == path && strings.Contains(p.Message, msg) {
			return true
		}
	}
	return false
}

func TestCreatePaymentRequest_Validate(t *testing.T) {
	ok := CreatePaymentRequest{ClientRequestID: "billingd-abc-1-0", Date: cycle.MustDate(2026, 3, 5), Amount: 9990, Currency: "BRL"}
	require.Empty(t, ok.Validate())

	bad := CreatePaymentRequest{
		ClientRequestID:       "has space",
		Amount:                0,
		Currency:              "brl",
		RemittanceInformation: strings.Repeat("é", 141),
		IBGETownCode:          "123",
		AutoRetryStrategy:     &retry.Strategy{Days: []int{2, 1, 8, 9}},
		CreditorAccount:       &Account{ISPB: "1", Number: "x", AccountType: "CACC"},
	}
	l := bad.Validate()
	for _, w := range [][2]string{
		{"clientRequestId", "printable ASCII"},
		{"date", "is required"},
		{"amount", "more than 0.00"},
		{"currency", "3 upper-case letters"},
		{"remittanceInformation", "141 characters"},
		{"ibgeTownCode", "7-digit"},
		{"autoRetryStrategy.days", "got 4"},
		{"autoRetryStrategy.days[1]", "does not follow"},
		{"autoRetryStrategy.days[2]", "past the 7-day"},
		{"creditorAccount.ispb", "8 digits"},
		{"creditorAccount.number", "1 to 20 digits"},
		{"creditorAccount.issuer", "required for a CACC account"},
	} {
		assert.True(t, has(l, w[0], w[1]), "want %s: %s in %v", w[0], w[1], l)
	}
}

func TestInstantPaymentRequest_Validate(t *testing.T) {
	base := func() InstantPaymentRequest {
		return InstantPaymentRequest{
			ClientRequestID: "order-1", InstitutionID: "bank", InitType: PixDict, Proxy: "+5511999998888",
			Customer: &Customer{IdentifierType: CPF, Identifier: "52998224725"},
			Amount:   1000, Currency: "BRL", RedirectURL: "https://m.example/r",
			ClientMetadata: &ClientMetadata{Platform: Browser, OS: Linux, OSVersion: "6"},
		}
	}
	r := base()
	require.Empty(t, r.Validate())

	r = base()
	r.InitType = PixManu
	l := r.Validate()
	assert.True(t, has(l, "proxy", "must not be set for PIX_MANU"))
	assert.True(t, has(l, "creditorAccount", "required for PIX_MANU"))

	r = base()
	r.InitType = PixQRCode
	r.QRCode = strings.Repeat("0", 513)
	assert.True(t, has(r.Validate(), "qrCode", "513 bytes"))

	r = base()
	r.Customer = &Customer{IdentifierType: CNPJ, Identifier: "11222333000181"}
	assert.True(t, has(r.Validate(), "loggedUserCpf", "required when the customer is a CNPJ"))

	r = base()
	r.Proxy = ""
	r.RedirectURL = ""
	r.ClientMetadata = nil
	l = r.Validate()
	assert.True(t, has(l, "proxy", "required for PIX_DICT"))
	assert.True(t, has(l, "redirectUrl", "is required"))
	assert.True(t, has(l, "clientMetadata", "is required"))
}

func TestEnums_Tolerant(t *testing.T) {
	var s PaymentStatus
	require.NoError(t, s.UnmarshalText([]byte("payment completed")))
	assert.Equal(t, PaymentCompleted, s)
	assert.True(t, s.Final())
	require.NoError(t, s.UnmarshalText([]byte("Payment-Cancelled")))
	assert.Equal(t, PaymentCanceled, s)
	require.NoError(t, s.UnmarshalText([]byte("SOMETHING_NEW")))
	assert.False(t, s.Valid(), "unknown values are kept, not refused")
	var r ReasonCode
	require.NoError(t, r.UnmarshalText([]byte("revoked-user")))
	assert.True(t, r.ConsentGone())
	var cs ConsentStatus
	require.NoError(t, cs.UnmarshalText([]byte("consent revoked")))
	assert.True(t, cs.Terminal())
}

func TestCheckID(t *testing.T) {
	tests := []struct {
		name, id, msg string // msg "" means valid
	}{
		// seed 004 example ids are UUIDs; its schema gives the urn: pattern, maxLength 256.
		{"uuid", "06c26b65-497d-431e-8b50-c86ece05114a", ""},
		{"seed 004 example payment id", "fcb72e3a-b346-4f71-b044-971dc23232c9", ""},
		{"urn", "urn:bancoex:C1DD33123", ""},
		{"urn with the schema's punctuation", "urn:klavi:a(b)+c,d=e@f;g$h!i*j'k%l?m#n", ""},
		{"256 characters", strings.Repeat("a", 256), ""},
		{"256 multi-byte characters", strings.Repeat("é", 256), ""},
		{"empty", "", "empty"},
		{"257 characters", strings.Repeat("a", 257), "257 characters long, the limit is 256"},
		{"slash", "a/b", "'/'"},
		{"space", "a b", "whitespace"},
		{"tab", "a\tb", "whitespace"},
		{"newline", "a\nb", "whitespace"},
		{"no-break space", "a\u00a0b", "whitespace"},
		{"NUL", "a\x00b", "non-printable"},
		{"escape", "a\x1bb", "non-printable"},
		{"non-printable unicode: zero-width space", "a\u200bb", "non-printable"},
		{"non-printable unicode: bidi override", "a\u202eb", "non-printable"},
		{"invalid UTF-8", "a\xffb", "UTF-8"},
		{"dot", ".", "relative path segment"},
		{"dot dot", "..", "relative path segment"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckID(tt.id)
			if tt.msg == "" {
				require.NoError(t, err)
				assert.True(t, ValidResourceID(tt.id))
				return
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.msg)
			assert.False(t, ValidResourceID(tt.id))
			assert.LessOrEqual(t, len(err.Error()), 200, "the id is echoed truncated")
		})
	}
}

func FuzzCheckID(f *testing.F) {
	for _, s := range []string{"06c26b65-497d-431e-8b50-c86ece05114a", "urn:x:y", "", "a/b", "a b", "\x00", "..", strings.Repeat("z", 300)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		err := CheckID(id)
		if err != nil {
			require.LessOrEqual(t, utf8.RuneCountInString(err.Error()), 160, "bounded echo")
			return
		}
		n := utf8.RuneCountInString(id)
		require.True(t, n >= 1 && n <= 256)
		require.True(t, utf8.ValidString(id))
		require.NotContains(t, id, "/")
		for _, r := range id {
			require.True(t, unicode.IsPrint(r) && !unicode.IsSpace(r), "%U", r)
		}
		// One path segment: escaping and unescaping gives the id back, with no '/'.
		esc := url.PathEscape(id)
		require.NotContains(t, esc, "/")
		back, err := url.PathUnescape(esc)
		require.NoError(t, err)
		require.Equal(t, id, back)
	})
}

func TestRequestRules_FollowTheSeeds(t *testing.T) {
	cpfHolder := func() *Person { return &Person{IdentifierType: CPF, Identifier: "52998224725", Name: "Maria da Silva"} }
	account := func(h *Person) *Account {
		return &Account{ISPB: "12345678", Issuer: "0001", Number: "1234567", AccountType: CACC, Holder: h}
	}
	consent := func(edit func(r *CreateConsentRequest)) problem.List {
		yes := true
		r := &CreateConsentRequest{
			ClientRequestID: "c-1", InstitutionID: "bank-1",
			ClientMetadata: &ClientMetadata{Platform: App, OS: Android, OSVersion: "14"},
			PaymentMethodConfig: &PaymentMethodConfig{
				ContractID: "C1", Currency: "BRL", Interval: cycle.Monthly, ReferenceStartDate: cycle.MustDate(2026, 3, 5),
				ContractDebtor: &Person{IdentifierType: CPF, Identifier: "52998224725", Name: "Maria da Silva"}, IsRetryAccepted: &yes,
			},
		}
		edit(r)
		return r.Validate()
	}
	payment := func(edit func(r *CreatePaymentRequest)) problem.List {
		r := paymentReqFor()
		edit(r)
		return r.Validate()
	}
	instant := func(edit func(r *InstantPaymentRequest)) problem.List {
		r := &InstantPaymentRequest{
			ClientRequestID: "order-1", InstitutionID: "bank", InitType: PixDict, Proxy: "+5511999998888",
			Customer: &Customer{IdentifierType: CPF, Identifier: "52998224725"},
			Amount:   1000, Currency: "BRL", RedirectURL: "https://m.example/r",
			ClientMetadata: &ClientMetadata{Platform: Browser, OS: Linux, OSVersion: "6"},
		}
		edit(r)
		return r.Validate()
	}
	tests := []struct {
		name       string
		problems   problem.List
		path, want string // want "" means no problem at all
	}{
		// seed 003: creditorAccount.holder is optional; when present its identifierType,
		// identifier and name are required.
		{"seed 003: consent creditorAccount without holder", consent(func(r *CreateConsentRequest) { r.CreditorAccount = account(nil) }), "", ""},
		{"seed 003: consent creditorAccount with a full holder", consent(func(r *CreateConsentRequest) { r.CreditorAccount = account(cpfHolder()) }), "", ""},
		{"seed 003: consent holder without name", consent(func(r *CreateConsentRequest) {
			r.CreditorAccount = account(&Person{IdentifierType: CPF, Identifier: "52998224725"})
		}), "creditorAccount.holder.name", "is required"},
		{"seed 003: consent holder without identifier", consent(func(r *CreateConsentRequest) {
			r.CreditorAccount = account(&Person{IdentifierType: CPF, Name: "X"})
		}), "creditorAccount.holder.identifier", "is required"},
		// seed 002: every child of creditorAccount.holder is optional in a payment.
		{"seed 002: payment holder with a name only", payment(func(r *CreatePaymentRequest) { r.CreditorAccount = account(&Person{Name: "Maria"}) }), "", ""},
		{"seed 002: payment holder with an identifier only", payment(func(r *CreatePaymentRequest) {
			r.CreditorAccount = account(&Person{Identifier: "11222333000181"})
		}), "", ""},
		{"seed 002: payment holder, empty", payment(func(r *CreatePaymentRequest) { r.CreditorAccount = account(&Person{}) }), "", ""},
		{"seed 002: payment holder, bad CPF", payment(func(r *CreatePaymentRequest) {
			r.CreditorAccount = account(&Person{IdentifierType: CPF, Identifier: "123"})
		}), "creditorAccount.holder.identifier", "11 digits"},
		{"seed 002: payment holder, unknown type", payment(func(r *CreatePaymentRequest) { r.CreditorAccount = account(&Person{IdentifierType: "RG"}) }),
			"creditorAccount.holder.identifierType", "CPF or CNPJ"},
		// seed 003 contractDebtor.name: the Open Finance character set.
		{"seed 003: debtor name with : * _", consent(func(r *CreateConsentRequest) {
			r.PaymentMethodConfig.ContractDebtor.Name = "ACME*Serviços_Ltda: filial 2"
		}), "", ""},
		{"seed 003: debtor name with Latin-1 letters", consent(func(r *CreateConsentRequest) {
			r.PaymentMethodConfig.ContractDebtor.Name = "Policarpo Quaresma Ñúñez Ødegård ÿ"
		}), "", ""},
		{"seed 003: debtor name with letters outside Latin-1", consent(func(r *CreateConsentRequest) {
			r.PaymentMethodConfig.ContractDebtor.Name = "Łukasz"
		}), "paymentMethodConfig.contractDebtor.name", "outside Latin-1 letters"},
		{"seed 003: debtor name with a semicolon", consent(func(r *CreateConsentRequest) {
			r.PaymentMethodConfig.ContractDebtor.Name = "A; B"
		}), "paymentMethodConfig.contractDebtor.name", "outside Latin-1 letters"},
		{"seed 003: debtor name of 121 characters", consent(func(r *CreateConsentRequest) {
			r.PaymentMethodConfig.ContractDebtor.Name = strings.Repeat("á", 121)
		}), "paymentMethodConfig.contractDebtor.name", "121 characters"},
		// seeds 000 and 003: redirectUrl is a URL of the merchant's choosing, no scheme set.
		{"seed 003: redirectUrl as an app deep link", consent(func(r *CreateConsentRequest) { r.RedirectURL = "myapp://return" }), "", ""},
		{"seed 003: redirectUrl with an opaque scheme", consent(func(r *CreateConsentRequest) { r.RedirectURL = "myapp:return?x=1" }), "", ""},
		{"seed 000: redirectUrl https", instant(func(r *InstantPaymentRequest) { r.RedirectURL = "https://m.example/r?a=1" }), "", ""},
		{"seed 000: redirectUrl relative", instant(func(r *InstantPaymentRequest) { r.RedirectURL = "/return" }), "redirectUrl", "absolute URI"},
		{"seed 000: redirectUrl with a space", instant(func(r *InstantPaymentRequest) { r.RedirectURL = "myapp://re turn" }), "redirectUrl", "no spaces"},
		// seed 000: proxy maxLength 77, counted in characters.
		{"seed 000: proxy of 77 multi-byte characters", instant(func(r *InstantPaymentRequest) { r.Proxy = strings.Repeat("é", 77) }), "", ""},
		{"seed 000: proxy of 78 characters", instant(func(r *InstantPaymentRequest) { r.Proxy = strings.Repeat("a", 78) }), "proxy", "78 characters long"},
		// seeds 000 and 003: debtorAccount has no holder.
		{"seed 003: consent debtorAccount with a holder", consent(func(r *CreateConsentRequest) { r.DebtorAccount = account(cpfHolder()) }),
			"debtorAccount.holder", "must not be set"},
		{"seed 003: consent debtorAccount without holder", consent(func(r *CreateConsentRequest) { r.DebtorAccount = account(nil) }), "", ""},
		{"seed 000: instant debtorAccount with a holder", instant(func(r *InstantPaymentRequest) { r.DebtorAccount = account(cpfHolder()) }),
			"debtorAccount.holder", "must not be set"},
		// seed 000: PIX_MANU needs a full creditorAccount holder.
		{"seed 000: PIX_MANU holder without name", instant(func(r *InstantPaymentRequest) {
			r.InitType, r.Proxy = PixManu, ""
			r.CreditorAccount = account(&Person{IdentifierType: CPF, Identifier: "52998224725"})
		}), "creditorAccount.holder.name", "is required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.want == "" {
				assert.Empty(t, tt.problems)
				return
			}
			assert.True(t, has(tt.problems, tt.path, tt.want), "want %s: %s in %v", tt.path, tt.want, tt.problems)
			for _, p := range tt.problems {
				assert.NotContains(t, p.Message, "52998224725", "no personal data in problems")
				assert.NotContains(t, p.Message, "Łukasz")
			}
		})
	}
}

func paymentReqFor() *CreatePaymentRequest {
	return &CreatePaymentRequest{ClientRequestID: "billingd-abc-1-0", Date: cycle.MustDate(2026, 3, 5), Amount: 9990, Currency: "BRL"}
}

// visibleASCII accepts exactly what the patterns it replaced accept.
func FuzzVisibleASCII(f *testing.F) {
	for _, s := range []string{"", "a", "billingd-urn:c:1-0-0", "a b", "ç", "\x7f", "\x21\x7e", strings.Repeat("x", 100), strings.Repeat("x", 101), "\xff"} {
		f.Add(s)
	}
	patterns := map[int]*regexp.Regexp{}
	for _, n := range []int{64, 100, 256} {
		patterns[n] = regexp.MustCompile(fmt.Sprintf(`^[\x21-\x7e]{1,%d}$`, n))
	}
	f.Fuzz(func(t *testing.T, s string) {
		for n, re := range patterns {
			if got, want := visibleASCII(s, n), re.MatchString(s); got != want {
				t.Fatalf("visibleASCII(%q, %d) = %v, the pattern says %v", s, n, got, want)
			}
		}
	})
}
