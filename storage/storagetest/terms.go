package storagetest

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"hash/crc32"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klavi-billing/billingd/consent"
	"github.com/klavi-billing/billingd/klavi"
	"github.com/klavi-billing/billingd/storage"
	"github.com/klavi-billing/billingd/storage/kv"
)

// testTerms: a decision's read (GetConsentAttempt) goes through the consent's terms,
// a partial record that writes its cursor and its status and nothing else, and a
// body written without its terms (an older writer) is read whole until the next
// cursor write writes them again.
func testTerms(t *testing.T, open Opener) {
	db := open(t)
	ctx := context.Background()
	rec := Record(t, "urn:t:a", storage.ConsentActive)
	require.NoError(t, db.Apply(ctx, &storage.Change{Consent: rec, NewConsent: true}))
	key := storage.AttemptKey{ConsentID: "urn:t:a"}

	part, _, err := db.GetConsentAttempt(ctx, key)
	require.NoError(t, err)
	require.True(t, part.Partial())
	assert.Equal(t, rec.Consent.Terms(), part.Consent, "the terms, and nothing else")
	assert.Nil(t, part.Consent.PaymentMethodConfig.ContractDebtor, "no personal data of the debtor")
	assert.Nil(t, part.Consent.CreditorAccount, "nor the accounts")
	assert.Equal(t, rec.AddedAt, part.AddedAt)
	assert.Equal(t, rec.Version, part.Version)
	whole, err := db.GetConsent(ctx, "urn:t:a")
	require.NoError(t, err)
	assert.False(t, whole.Partial())
	assert.Equal(t, rec.Consent, whole.Consent)
	listed, err := db.ListConsentTerms(ctx, "", 10, storage.ConsentActive)
	require.NoError(t, err)
	require.Len(t, listed, 1)
	assert.True(t, listed[0].Partial())
	assert.Equal(t, part, listed[0], "the listing reads what the decision reads")
	db.ReleaseMapped() // a walk's pages given back: nothing read changes
	listed, err = db.ListConsents(ctx, "", 10, storage.ConsentActive)
	require.NoError(t, err)
	require.Len(t, listed, 1)
	assert.Equal(t, whole, listed[0])

	t.Run("a partial record writes its cursor", func(t *testing.T) {
		part.NextCycle = 1
		require.NoError(t, db.Apply(ctx, &storage.Change{Cursor: part}))
		got, err := db.GetConsent(ctx, "urn:t:a")
		require.NoError(t, err)
		assert.Equal(t, rec.Consent, got.Consent)
		assert.Equal(t, 1, got.NextCycle)
	})
	t.Run("a partial record writes its status into the whole consent", func(t *testing.T) {
		part.Consent.Status = klavi.ConsentRevoked
		part.State = storage.ConsentRevoked
		require.NoError(t, db.Apply(ctx, &storage.Change{Consent: part}))
		got, err := db.GetConsent(ctx, "urn:t:a")
		require.NoError(t, err)
		want := *rec.Consent
		want.Status = klavi.ConsentRevoked
		assert.Equal(t, &want, got.Consent, "every other field kept")
		again, _, err := db.GetConsentAttempt(ctx, key)
		require.NoError(t, err)
		assert.True(t, again.Partial())
		assert.Equal(t, klavi.ConsentRevoked, again.Consent.Status)
		assert.Equal(t, storage.ConsentRevoked, again.State)
		part = again
	})
	t.Run("any other change of a partial consent fails, and writes nothing", func(t *testing.T) {
		before, err := db.GetConsent(ctx, "urn:t:a")
		require.NoError(t, err)
		changed := *part
		c := *part.Consent
		c.Billing.RemittanceInformation = "changed"
		changed.Consent = &c
		err = db.Apply(ctx, &storage.Change{Consent: &changed})
		require.Error(t, err)
		assert.Contains(t, err.Error(), "terms only")
		after, err := db.GetConsent(ctx, "urn:t:a")
		require.NoError(t, err)
		assert.Equal(t, before, after)
		fresh := *part
		fresh.Consent = &c
		assert.Error(t, db.Apply(ctx, &storage.Change{Consent: &fresh, NewConsent: true}), "nor is one added")
	})
	t.Run("a change of a field the terms leave out fails too, and writes nothing", func(t *testing.T) {
		before, err := db.GetConsent(ctx, "urn:t:a")
		require.NoError(t, err)
		for _, tt := range []struct {
			name   string
			change func(c *consent.Consent)
		}{
			{"creditor account", func(c *consent.Consent) { c.CreditorAccount = &klavi.Account{ISPB: "87654321", Number: "1"} }},
			{"information", func(c *consent.Consent) { c.AdditionalInformation = "changed" }},
			{"redirect url", func(c *consent.Consent) { c.RedirectURL = "https://elsewhere.example/" }},
		} {
			changed := *part
			c := *part.Consent
			tt.change(&c)
			changed.Consent = &c
			err = db.Apply(ctx, &storage.Change{Consent: &changed})
			require.Error(t, err, "%s: the store would not write it", tt.name)
			assert.Contains(t, err.Error(), "terms only", tt.name)
		}
		after, err := db.GetConsent(ctx, "urn:t:a")
		require.NoError(t, err)
		assert.Equal(t, before, after)
	})
	t.Run("terms edited by hand never serve", func(t *testing.T) {
		// The same checksum header, other terms: a damaged or edited record. The
		// checksum covers the terms too, so the decision reads the body whole, never
		// an amount or a date the body does not hold.
		whole, err := db.GetConsent(ctx, "urn:t:a")
		require.NoError(t, err)
		wider := whole.Consent.Terms()
		wider.CreditorAccount = whole.Consent.CreditorAccount
		fixed := klavi.Cents(1_300_00)
		wider.PaymentMethodConfig.FixedAmount = &fixed
		writeTerms(t, db.Engine(), "urn:t:a", map[string]any{"consent": wider, "addedAt": whole.AddedAt})
		got, _, err := db.GetConsentAttempt(ctx, key)
		require.NoError(t, err)
		assert.False(t, got.Partial(), "read whole")
		assert.Equal(t, whole.Consent, got.Consent)
		require.NoError(t, db.Check(ctx), "terms that do not serve are no damage to the store")
		got.UpdatedAt = T0.Add(4)
		require.NoError(t, db.Apply(ctx, &storage.Change{Cursor: got}))
		part, _, err = db.GetConsentAttempt(ctx, key)
		require.NoError(t, err)
		require.True(t, part.Partial(), "the cursor's write wrote the terms again")
		assert.Equal(t, whole.Consent.Terms(), part.Consent)
	})
	t.Run("terms of another layout never serve", func(t *testing.T) {
		whole, err := db.GetConsent(ctx, "urn:t:a")
		require.NoError(t, err)
		raw, err := json.Marshal(map[string]any{"consent": whole.Consent.Terms(), "addedAt": whole.AddedAt})
		require.NoError(t, err)
		require.NoError(t, db.Engine().Update(ctx, kv.Write{}, func(tx kv.Tx) error {
			// Summed over the body alone, as no layout of this billingd sums them.
			sum := crc32.Checksum(tx.Bucket([]byte("consents")).Get([]byte("urn:t:a")), crc32.MakeTable(crc32.Castagnoli))
			return tx.Bucket([]byte("consent_terms")).Put([]byte("urn:t:a"), append(binary.BigEndian.AppendUint32(nil, sum), raw...))
		}))
		got, _, err := db.GetConsentAttempt(ctx, key)
		require.NoError(t, err)
		assert.False(t, got.Partial(), "read whole")
		got.UpdatedAt = T0.Add(3)
		require.NoError(t, db.Apply(ctx, &storage.Change{Cursor: got}))
		got, _, err = db.GetConsentAttempt(ctx, key)
		require.NoError(t, err)
		assert.True(t, got.Partial(), "written again in this layout")
		part = got
	})
	t.Run("terms that do not decode: read whole, then written again", func(t *testing.T) {
		whole, err := db.GetConsent(ctx, "urn:t:a")
		require.NoError(t, err)
		writeTerms(t, db.Engine(), "urn:t:a", json.RawMessage(`{"consent":{"id":1}}`))
		got, _, err := db.GetConsentAttempt(ctx, key)
		require.NoError(t, err, "the body is sound: damaged terms do not stop its billing")
		assert.False(t, got.Partial())
		assert.Equal(t, whole.Consent, got.Consent)
		got.UpdatedAt = T0.Add(2)
		require.NoError(t, db.Apply(ctx, &storage.Change{Cursor: got}))
		got, _, err = db.GetConsentAttempt(ctx, key)
		require.NoError(t, err)
		assert.True(t, got.Partial(), "the cursor's write wrote the terms again")
		part = got
	})
	for _, how := range []string{"written by an older writer", "missing"} {
		t.Run("terms "+how+": read whole, then written again", func(t *testing.T) {
			rewriteBody(t, db.Engine(), "urn:t:a", how == "missing", func(c map[string]any) {
				c["billing"].(map[string]any)["remittanceInformation"] = "by hand " + how
			})
			got, _, err := db.GetConsentAttempt(ctx, key)
			require.NoError(t, err)
			assert.False(t, got.Partial(), "stale terms never serve")
			assert.Equal(t, "by hand "+how, got.Consent.Billing.RemittanceInformation)
			assert.NotNil(t, got.Consent.PaymentMethodConfig.ContractDebtor, "whole")
			got.UpdatedAt = T0.Add(1)
			require.NoError(t, db.Apply(ctx, &storage.Change{Cursor: got}))
			got, _, err = db.GetConsentAttempt(ctx, key)
			require.NoError(t, err)
			assert.True(t, got.Partial(), "the cursor's write wrote the terms again")
			assert.Equal(t, "by hand "+how, got.Consent.Billing.RemittanceInformation)
			require.NoError(t, db.Check(ctx))
		})
	}
	require.NoError(t, db.Check(ctx))
}

// writeTerms writes the terms of a stored consent by hand, keeping the checksum
// header of the record it replaces: body is the terms' JSON.
func writeTerms(t *testing.T, e kv.Engine, id string, body any) {
	t.Helper()
	raw, err := json.Marshal(body)
	require.NoError(t, err)
	require.NoError(t, e.Update(context.Background(), kv.Write{}, func(tx kv.Tx) error {
		// The header of the current record (its checksum covers the terms it
		// replaces, so these never match it).
		cur := tx.Bucket([]byte("consent_terms")).Get([]byte(id))
		require.GreaterOrEqual(t, len(cur), 4, "the consent has current terms")
		return tx.Bucket([]byte("consent_terms")).Put([]byte(id), append(bytes.Clone(cur[:4]), raw...))
	}))
}

// rewriteBody changes a stored consent's body by hand, as a writer that knows no
// terms would (and removes its terms when drop).
func rewriteBody(t *testing.T, e kv.Engine, id string, drop bool, change func(map[string]any)) {
	t.Helper()
	require.NoError(t, e.Update(context.Background(), kv.Write{}, func(tx kv.Tx) error {
		b := tx.Bucket([]byte("consents"))
		var body map[string]any
		require.NoError(t, json.Unmarshal(b.Get([]byte(id)), &body))
		change(body["consent"].(map[string]any))
		raw, err := json.Marshal(body)
		require.NoError(t, err)
		if drop {
			require.NoError(t, tx.Bucket([]byte("consent_terms")).Delete([]byte(id)))
		}
		return b.Put([]byte(id), raw)
	}))
}
