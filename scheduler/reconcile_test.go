package scheduler

import (
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/klavi-billing/billingd/klavi"
)

// TestResolve is the table of reconciliation's transitions: what an attempt becomes
// from what its send got, what Klavi's orders list said, how many sends were made,
// whether this is a second look, and whether its window is open.
func TestResolve(t *testing.T) {
	rows := []struct {
		name string
		f    facts
		want resolution
	}{
		// Found: whatever the send got, Klavi holds the payment.
		{"lost answer, found", facts{Answer: answerUnknown, Lookup: lookupFound, Sends: 1, WindowOpen: true}, resAdopt},
		{"409, found", facts{Answer: answerConflict, Lookup: lookupFound, Sends: 1, WindowOpen: true}, resAdopt},
		{"refused re-send, found", facts{Answer: answerRefused, Lookup: lookupFound, Sends: 2}, resAdopt},
		{"second look past the window, found", facts{Answer: answerUnknown, Lookup: lookupFound, Sends: 5, Confirming: true}, resAdopt},

		// Not found after a refusal.
		{"first send refused: a refusal", facts{Answer: answerRefused, Lookup: lookupNotFound, Sends: 1, WindowOpen: true}, resFail},
		{"409 on the first send, not found: a refusal (seeds: permissions)", facts{Answer: answerConflict, Lookup: lookupNotFound, Sends: 1, WindowOpen: true}, resFail},
		{"409 on a re-send, not found: look again", facts{Answer: answerConflict, Lookup: lookupNotFound, Sends: 2, WindowOpen: true}, resConfirm},
		{"refused re-send, not found: look again", facts{Answer: answerRefused, Lookup: lookupNotFound, Sends: 3}, resConfirm},
		{"refused re-send, not found twice: a refusal", facts{Answer: answerRefused, Lookup: lookupNotFound, Sends: 3, Confirming: true}, resFail},

		// Not found after a lost answer.
		{"lost, not found, window open: re-send same key", facts{Answer: answerUnknown, Lookup: lookupNotFound, Sends: 1, WindowOpen: true}, resResend},
		{"lost, not found, window closed: look again", facts{Answer: answerUnknown, Lookup: lookupNotFound, Sends: 4}, resConfirm},
		{"lost, not found twice, window closed: lapsed", facts{Answer: answerUnknown, Lookup: lookupNotFound, Sends: 4, Confirming: true}, resLapsed},

		// The list cannot be read.
		{"first send refused, list down: a refusal (nothing was ever sent before)", facts{Answer: answerRefused, Lookup: lookupUnavailable, Sends: 1, WindowOpen: true}, resFail},
		{"409, list down, window open: re-send same key", facts{Answer: answerConflict, Lookup: lookupUnavailable, Sends: 1, WindowOpen: true}, resResend},
		{"lost, list down, window open: re-send same key", facts{Answer: answerUnknown, Lookup: lookupUnavailable, Sends: 2, WindowOpen: true}, resResend},
		{"lost, list down, window closed: UNCONFIRMED", facts{Answer: answerUnknown, Lookup: lookupUnavailable, Sends: 2}, resUnconfirmed},
		{"refused re-send, list down, window closed: UNCONFIRMED", facts{Answer: answerRefused, Lookup: lookupUnavailable, Sends: 2}, resUnconfirmed},
	}
	for _, r := range rows {
		t.Run(r.name, func(t *testing.T) {
			assert.Equal(t, r.want.String(), resolve(r.f).String())
		})
	}
}

func TestAnswerOf(t *testing.T) {
	rows := []struct {
		name string
		err  error
		want sendAnswer
	}{
		{"nil", nil, answerCreated},
		{"409 APIError", &klavi.APIError{StatusCode: 409, Endpoint: "create_payment"}, answerConflict},
		{"ErrDuplicateRequest", fmt.Errorf("x: %w", klavi.ErrDuplicateRequest), answerConflict},
		{"416", &klavi.APIError{StatusCode: 416, Endpoint: "create_payment"}, answerRefused},
		{"invalid", fmt.Errorf("x: %w", klavi.ErrInvalidRequest), answerRefused},
		{"outcome unknown", fmt.Errorf("x: %w", klavi.ErrOutcomeUnknown), answerUnknown},
		{"malformed", fmt.Errorf("x: %w", klavi.ErrMalformedResponse), answerUnknown},
		{"auth", fmt.Errorf("x: %w", klavi.ErrAuth), answerUnknown},
		{"anything else", errors.New("boom"), answerUnknown},
	}
	for _, r := range rows {
		t.Run(r.name, func(t *testing.T) { assert.Equal(t, r.want, answerOf(r.err)) })
	}
}
