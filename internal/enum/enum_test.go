package enum

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestNormalize(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"spaces", "payment completed", "PAYMENT_COMPLETED"},
		{"hyphens and mixed case", "Payment-Completed", "PAYMENT_COMPLETED"},
		{"canonical", "PAYMENT_COMPLETED", "PAYMENT_COMPLETED"},
		{"lower snake", "payment_completed", "PAYMENT_COMPLETED"},
		{"surrounding space", " monthly ", "MONTHLY"},
		{"repeated underscores", "PAYMENT__COMPLETED", "PAYMENT_COMPLETED"},
		{"repeated spaces", "payment  completed", "PAYMENT_COMPLETED"},
		{"mixed separator run", "payment _- completed", "PAYMENT_COMPLETED"},
		{"leading and trailing separators", "_payment_completed-", "PAYMENT_COMPLETED"},
		{"tab and no-break space", "payment\t\u00a0completed", "PAYMENT_COMPLETED"},
		{"Portuguese with diacritics", "não informado", "NAO_INFORMADO"},
		{"upper-case with diacritics", "NÃO INFORMADO", "NAO_INFORMADO"},
		{"hyphenated Portuguese", "Nao-Informado", "NAO_INFORMADO"},
		{"cedilla and acute", "cobrança recusada é", "COBRANCA_RECUSADA_E"},
		{"non-Latin letters are upper-cased and kept", "статус", "СТАТУС"},
		{"empty", "", ""},
		{"only separators", " _ - ", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, Normalize(tt.in))
			assert.Equal(t, tt.want, Normalize(tt.want), "idempotent")
		})
	}
}

// Canonical spellings come back as they are, without a copy; every other input
// still goes through the fold (the table above), and the fast path agrees with it.
func TestNormalize_CanonicalNoAlloc(t *testing.T) {
	for _, s := range []string{"PAYMENT_COMPLETED", "MONTHLY", "CONSENT_AUTHORIZED", "A1_B2", "X.Y"} {
		assert.Equal(t, s, Normalize(s))
		assert.Zero(t, testing.AllocsPerRun(100, func() { _ = Normalize(s) }), s)
	}
	for _, s := range []string{"_A", "A_", "A__B", "a", "A-B", "A B", "Ã", "A\x7fB"} {
		assert.False(t, canonical(s), "%q", s)
	}
}

func FuzzNormalize(f *testing.F) {
	for _, s := range []string{"payment completed", "NÃO INFORMADO", "A__B", "_x_", "PAYMENT_COMPLETED", "статус"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n := Normalize(s)
		if Normalize(n) != n {
			t.Fatalf("Normalize(%q) = %q is not a fixed point: %q", s, n, Normalize(n))
		}
		if canonical(s) && fold(s) != s {
			t.Fatalf("%q taken as canonical, but the fold makes it %q", s, fold(s))
		}
		if fold(s) != n {
			t.Fatalf("Normalize(%q) = %q, the fold %q", s, n, fold(s))
		}
	})
}
