package vopr_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/klavi-billing/billingd/vopr"
)

func TestThroughput(t *testing.T) {
	if os.Getenv("VOPR_TPUT") == "" {
		t.Skip()
	}
	s := vopr.Explore(context.Background(), vopr.ExploreOptions{Budget: 20 * time.Second, KeepGoing: true})
	fmt.Printf("seeds=%d days=%d %.1f seeds/s %.0f days/s failed=%d\n", s.Seeds, s.SimDays, s.SeedsPerSecond(), s.DaysPerSecond(), len(s.Failed))
	for _, f := range s.Failed {
		fmt.Printf("seed %d: %v\n", f.Seed, f.Violation)
	}
}
