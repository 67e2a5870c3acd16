package klavi

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klavi-billing/billingd/internal/enum"
)

func TestCanonicalValues_AreCanonical(t *testing.T) {
	require.NotEmpty(t, canonicalValues)
	for k, v := range canonicalValues {
		assert.Equal(t, k, v)
		assert.Equal(t, k, enum.Normalize(k), "%q is not canonical: normalize would not return what enum.Normalize does", k)
	}
	for _, v := range []string{"BRL", "AUTOMATIC_PIX", "PAYMENT_COMPLETED", "NAO_INFORMADO", "CONSENT_AUTHORIZED", "CACC"} {
		assert.Contains(t, canonicalValues, v)
	}
}

var enumCases = []string{
	"PAYMENT_COMPLETED", "payment completed", "Payment-Completed", "PAYMENT__COMPLETED", " PAYMENT_COMPLETED",
	"CANCELLED", "PAYMENT_CANCELED", "não informado", "NAO_INFORMADO", "BRL", "brl", "AUTOMATIC_PIX", "automatic pix",
	"INSTITUTION", "NEW_STATUS_FROM_KLAVI", "", "_", "CPF", "cpf", "CNPJ ",
}

// sameEnum checks that the interning paths return what enum.Normalize and the
// decoder did before them.
func sameEnum(t *testing.T, s string) {
	t.Helper()
	assert.Equal(t, enum.Normalize(s), normalize([]byte(s)), "normalize(%q)", s)

	quoted, err := json.Marshal(s) // as an answer carries it, escapes and all
	require.NoError(t, err)
	for _, b := range [][]byte{quoted, []byte(`"` + s + `"`), []byte(s)} { // and as it may come, valid or not
		var got, want string
		gotErr := answerEnum{&got}.UnmarshalJSON(b)
		ws, ok, wantErr := answerString(b, "enum")
		if ok {
			want = enum.Normalize(ws)
		}
		assert.Equal(t, errString(wantErr), errString(gotErr), "%s", b)
		assert.Equal(t, want, got, "%s", b)
	}
}

func TestNormalize_SameAsEnum(t *testing.T) {
	for _, s := range enumCases {
		sameEnum(t, s)
	}
}

func FuzzNormalize_SameAsEnum(f *testing.F) {
	for _, s := range enumCases {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) { sameEnum(t, s) })
}

func TestNormalize_KnownValuesAreNotCopied(t *testing.T) {
	var st PaymentStatus
	b := []byte("PAYMENT_PENDING")
	assert.Zero(t, testing.AllocsPerRun(100, func() { require.NoError(t, st.UnmarshalText(b)) }))
	assert.Equal(t, PaymentPending, st)
	var s string
	q := []byte(`"BRL"`)
	assert.Zero(t, testing.AllocsPerRun(100, func() { require.NoError(t, answerEnum{&s}.UnmarshalJSON(q)) }))
	assert.Equal(t, "BRL", s)
	require.NoError(t, answerEnum{&s}.UnmarshalJSON([]byte(`"automatic pix"`)))
	assert.Equal(t, "AUTOMATIC_PIX", s, "other spellings are still folded")
}
