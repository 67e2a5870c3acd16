package storage

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"time"

	json "github.com/go-json-experiment/json/v1"

	"github.com/klavi-billing/billingd/consent"
	"github.com/klavi-billing/billingd/storage/kv"
)

// Consent terms: what a due entry's decision reads of a consent, kept beside it.
//
//	consent_terms  consent id → CRC-32C of the stored body, termsLayout and the terms
//	               (4 bytes) ‖
//	               the body with the consent's Terms instead of the consent (JSON)
//
// A decision (GetConsentAttempt) decodes the terms, a few fields, not the whole
// consent. The terms are a copy of the body, checked at every read: they serve only
// while the checksum of the body as stored matches theirs, so a body written without
// them (by an older billingd, or a tool) is read whole, never through stale terms.
// Such a read marks the record, and the next write of its cursor writes its terms
// again, so a store fills in its terms as it bills.
//
// A record read through its terms is partial (ConsentRecord.partial). Its cursor is
// written as any other. Its consent can be written with its status changed (a
// consent stopped, or authorized, by a decision) and nothing else: the store merges
// that status into the stored body. Any other change of a partial consent fails the
// write; read the record whole (GetConsent) to change it.
var bucketTerms = []byte("consent_terms")

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// termsLayout names what consent.Consent.Terms keeps. It is summed with the body:
// when Terms keeps another set of fields, change it, and every stored terms record
// stops matching (each consent is read whole until its next cursor write writes its
// terms again), so that no decision reads terms without a field it needs.
var termsLayout = []byte("terms 2: no accounts")

// termsSum is the checksum a terms record carries: CRC-32C of the body it was
// written for, then of termsLayout, then of the terms themselves (raw, their JSON).
// Terms damaged on disk, or edited by hand, stop matching as stale ones do: a
// decision never reads an amount or a date the body does not hold.
func termsSum(body, raw []byte) uint32 {
	c := crc32.Update(crc32.Checksum(body, castagnoli), castagnoli, termsLayout)
	return crc32.Update(c, castagnoli, raw)
}

// termsMatch reports whether the stored terms record t serves for body: it carries
// the checksum of body, the layout and its own JSON.
func termsMatch(t, body []byte) bool {
	return len(t) >= 4 && binary.BigEndian.Uint32(t) == termsSum(body, t[4:])
}

// putTerms writes the terms of consent c, whose body as stored is body.
func putTerms(tx kv.Tx, key, body []byte, c *consent.Consent, addedAt time.Time, redirectURL string) error {
	raw, err := json.Marshal(decodedBody{Consent: c.Terms(), AddedAt: addedAt, RedirectURL: redirectURL})
	if err != nil {
		return err
	}
	v := make([]byte, 4, 4+len(raw))
	binary.BigEndian.PutUint32(v, termsSum(body, raw))
	return tx.Bucket(bucketTerms).Put(key, append(v, raw...))
}

// readTerms reads consent id, whose stored body is body, through its terms: a
// partial record. It falls back to the whole body (readConsent) when the terms are
// missing, were written for another body, or do not decode (the body, not a copy
// of it, says whether the consent is sound); that record is marked for its terms to
// be written again.
func readTerms(tx kv.Tx, id, body []byte) (*ConsentRecord, error) {
	t := tx.Bucket(bucketTerms).Get(id)
	if termsMatch(t, body) {
		if r, err := readRecord(tx, id, t[4:], decodeTermsBody); err == nil {
			r.partial = true
			return r, nil
		}
	}
	r, err := readConsent(tx, id, body)
	if err == nil {
		r.staleTerms = true
	}
	return r, err
}

// mergeTerms returns the consent to store for a partial record r: the stored
// consent with r's status. It fails when r's consent differs in anything but the
// status from the stored consent's Terms, which is what a read through the terms
// gives (their checksum covers the body and termsLayout). r's consent is compared
// whole: a field the terms leave out, set on a partial record, would not be
// written, so its write fails rather than lose it.
func mergeTerms(tx kv.Tx, key []byte, r *ConsentRecord) (*consent.Consent, error) {
	body := tx.Bucket(bucketConsents).Get(key)
	if body == nil {
		return nil, fmt.Errorf("consent %s: %w", key, ErrNotFound)
	}
	stored, err := decodeBody(key, body)
	if err != nil {
		return nil, err
	}
	want := stored.Consent.Terms()
	want.Status = r.Consent.Status
	a, err := json.Marshal(want)
	if err != nil {
		return nil, err
	}
	b, err := json.Marshal(r.Consent)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(a, b) {
		return nil, fmt.Errorf("consent %s was read for its terms only, and was changed in more than its status: read it whole to change it", key)
	}
	full := stored.Consent
	full.Status = r.Consent.Status
	return full, nil
}
