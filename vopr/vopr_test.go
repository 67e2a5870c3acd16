package vopr_test

import (
	"bytes"
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klavi-billing/billingd/vopr"
)

func TestRun_Seeds(t *testing.T) {
	n := 200
	if testing.Short() {
		n = 40
	}
	for seed := uint64(1); seed <= uint64(n); seed++ {
		res := vopr.Run(context.Background(), seed, vopr.Options{})
		if res.Violation != nil {
			t.Fatalf("seed %d: %v\n%s", seed, res.Violation, vopr.Tail(res.Trace, 40))
		}
	}
}

func TestRun_SameSeedSameTrace(t *testing.T) {
	for _, seed := range []uint64{3, 17, 99} {
		a := vopr.Run(context.Background(), seed, vopr.Options{})
		b := vopr.Run(context.Background(), seed, vopr.Options{})
		require.NotEmpty(t, a.Trace)
		assert.True(t, bytes.Equal(a.Trace, b.Trace), "seed %d: two runs differ", seed)
	}
}
