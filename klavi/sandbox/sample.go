package sandbox

import (
	"crypto/sha256"
	"encoding/hex"

	"github.com/klavi-billing/billingd/cycle"
	"github.com/klavi-billing/billingd/klavi"
)

// SampleConsent returns a valid, authorized consent for tests and simulations: id,
// interval iv, reference date ref, a fixed amount (or, when fixed is 0, variable
// amounts up to R$ 1.000,00), retries accepted, no expiry. Its personal data is
// made up (valid check digits, no real person). A caller that bills it wraps it in
// a consent.Consent.
func SampleConsent(id string, iv cycle.Interval, ref cycle.Date, fixed klavi.Cents) *klavi.CreatedConsent {
	yes := true
	pmc := &klavi.PaymentMethodConfig{
		ContractID:         "SAMPLE1",
		Currency:           klavi.Currency,
		Interval:           iv,
		ReferenceStartDate: ref,
		ContractDebtor:     &klavi.Person{IdentifierType: klavi.CPF, Identifier: "52998224725", Name: "Maria da Silva"},
		IsRetryAccepted:    &yes,
	}
	if fixed > 0 {
		pmc.FixedAmount = &fixed
	} else {
		hi := klavi.Cents(100000)
		pmc.MaximumVariableAmount = &hi
	}
	return &klavi.CreatedConsent{
		ID:     id,
		Status: klavi.ConsentAuthorized,
		CreateConsentRequest: klavi.CreateConsentRequest{
			ClientRequestID: "signup-" + idHash(id),
			InstitutionID:   "bank-sample",
			CreditorAccount: &klavi.Account{
				ISPB: "12345678", Issuer: "0001", Number: "1234567890", AccountType: klavi.CACC,
				Holder: &klavi.Person{IdentifierType: klavi.CNPJ, Identifier: "11222333000181", Name: "Academia Exemplo Ltda"},
			},
			ClientMetadata:      &klavi.ClientMetadata{Platform: klavi.Browser, OS: klavi.Linux, OSVersion: "6.1"},
			PaymentMethodConfig: pmc,
		},
	}
}

// idHash is 16 hex digits of the SHA-256 of id: the same digest billingd puts in
// its clientRequestIds (consent.Hash), so a sample's sign-up key looks like one.
func idHash(id string) string {
	sum := sha256.Sum256([]byte(id))
	return hex.EncodeToString(sum[:8])
}
