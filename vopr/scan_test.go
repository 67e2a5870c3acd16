package vopr_test

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/klavi-billing/billingd/vopr"
)

func TestScanSeeds(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("VOPR_SCAN"))
	if n == 0 {
		t.Skip()
	}
	from, _ := strconv.Atoi(os.Getenv("VOPR_FROM"))
	bad := 0
	for seed := uint64(from); seed < uint64(from+n); seed++ {
		st := time.Now()
		res := vopr.Run(context.Background(), seed, vopr.Options{})
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		if os.Getenv("VOPR_MEM") != "" {
			fmt.Printf("seed %d %v heap=%dMB goroutines=%d\n", seed, time.Since(st).Round(time.Millisecond), ms.HeapAlloc>>20, runtime.NumGoroutine())
		}
		if d := time.Since(st); d > 500*time.Millisecond {
			fmt.Printf("slow seed %d %v days=%d consents=%d passes=%d posts=%d crashes=%d faults=%d steps=%d\n", seed, d.Round(time.Millisecond), res.Days, res.Consents, res.Passes, res.Posts, res.Crashes, res.Faults, res.ClockSteps)
		}
		if res.Violation != nil {
			bad++
			fmt.Printf("seed %d: %v\n", seed, res.Violation)
		}
	}
	fmt.Println("bad", bad, "of", n)
}
