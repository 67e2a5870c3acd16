package webhook_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/klavi-billing/billingd/webhook"
)

func TestVerify(t *testing.T) {
	body := []byte(`{"id":"evt_x","type":"completed"}`)
	now := time.Unix(1_800_000_000, 0)
	good := webhook.Sign(secret, now, body)
	other := webhook.Sign("another-secret-0123456789", now, body)
	for _, tc := range []struct {
		name   string
		header string
		body   []byte
		now    time.Time
		want   error
	}{
		{"good", good, body, now, nil},
		{"within the tolerance", good, body, now.Add(4 * time.Minute), nil},
		{"rotated secret: any v1 matches", other + ",v1=" + good[len("t=1800000000,v1="):], body, now, nil},
		{"tampered body", good, []byte(`{"id":"evt_x","type":"rejected"}`), now, webhook.ErrBadSignature},
		{"other secret", other, body, now, webhook.ErrBadSignature},
		{"too old", good, body, now.Add(6 * time.Minute), webhook.ErrTooOld},
		{"from the future", good, body, now.Add(-6 * time.Minute), webhook.ErrTooOld},
		{"empty", "", body, now, webhook.ErrNoSignature},
		{"no v1", "t=1800000000", body, now, webhook.ErrNoSignature},
		{"bad t", "t=soon,v1=00", body, now, webhook.ErrNoSignature},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := webhook.Verify(secret, tc.header, tc.body, 0, tc.now)
			if tc.want == nil {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, tc.want)
		})
	}
}

func FuzzVerify(f *testing.F) {
	f.Add("t=1800000000,v1=abc", []byte("{}"))
	f.Fuzz(func(t *testing.T, header string, body []byte) {
		_ = webhook.Verify(secret, header, body, time.Minute, time.Unix(1_800_000_000, 0))
	})
}
