package storage

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var t0 = time.Date(2026, 3, 2, 12, 0, 0, 0, time.UTC)

func TestKeys_RoundTrip(t *testing.T) {
	k := AttemptKey{ConsentID: "urn:bank:abc-123", Cycle: 70000, Attempt: 3}
	got, err := parseAttemptKey(attemptKeyBytes(k))
	require.NoError(t, err)
	assert.Equal(t, k, got)
	at, got2, err := parseTimeKey(timeKey(t0, k))
	require.NoError(t, err)
	assert.Equal(t, k, got2)
	assert.True(t, at.Equal(t0))
	_, err = parseAttemptKey([]byte("short"))
	assert.Error(t, err)
}
