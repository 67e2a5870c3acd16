package mem_test

import (
	"testing"

	"github.com/klavi-billing/billingd/storage/kv"
	"github.com/klavi-billing/billingd/storage/kv/kvtest"
	"github.com/klavi-billing/billingd/storage/kv/mem"
)

func TestEngine_Conformance(t *testing.T) {
	kvtest.Run(t, func(t *testing.T, buckets [][]byte) kv.Engine { return mem.New(buckets) })
}
