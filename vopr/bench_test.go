package vopr_test

import (
	"context"
	"testing"

	"github.com/klavi-billing/billingd/vopr"
)

func BenchmarkRun(b *testing.B) {
	for i := 0; b.Loop(); i++ {
		vopr.Run(context.Background(), uint64(i+1), vopr.Options{})
	}
}
