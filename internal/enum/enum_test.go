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
