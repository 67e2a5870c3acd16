package vopr_test

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klavi-billing/billingd/vopr"
)

// knownSeeds reads testdata/seeds.txt: the seeds that once failed.
func knownSeeds(t *testing.T) []uint64 {
	f, err := os.Open("testdata/seeds.txt")
	require.NoError(t, err)
	defer f.Close()
	var out []uint64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line, _, _ := strings.Cut(sc.Text(), "#")
		if line = strings.TrimSpace(line); line != "" {
			s, err := strconv.ParseUint(line, 10, 64)
			require.NoError(t, err, line)
			out = append(out, s)
		}
	}
	return out
}

func TestRun_Seeds(t *testing.T) {
	n := 6 // fresh seeds; `make vopr` runs thousands
	if testing.Short() {
		n = 2
	}
	sum := vopr.Explore(t.Context(), vopr.ExploreOptions{Seeds: knownSeeds(t), Count: len(knownSeeds(t)) + n, KeepGoing: true})
	for _, f := range sum.Failed {
		t.Errorf("seed %d: %v\n%s", f.Seed, f.Violation, vopr.Tail(f.Trace, 30))
	}
	assert.Positive(t, sum.SimDays)
	assert.Positive(t, sum.Posts, "the worlds sent no payment at all")
}

func TestRun_SameSeedSameTrace(t *testing.T) {
	for _, seed := range []uint64{3, 2026} {
		a := vopr.Run(context.Background(), seed, vopr.Options{})
		b := vopr.Run(context.Background(), seed, vopr.Options{})
		require.NotEmpty(t, a.Trace)
		assert.Nil(t, a.Violation)
		assert.True(t, bytes.Equal(a.Trace, b.Trace), "seed %d: two runs of one seed differ", seed)
		assert.Equal(t, a.Days, b.Days)
	}
}

func TestRun_SeedsDiffer(t *testing.T) {
	a := vopr.Run(context.Background(), 10, vopr.Options{Days: 30})
	b := vopr.Run(context.Background(), 11, vopr.Options{Days: 30})
	assert.NotEqual(t, string(a.Trace), string(b.Trace))
}

func TestTail(t *testing.T) {
	trace := []byte("a\nb\nc\nd\n")
	assert.Equal(t, "c\nd\n", string(vopr.Tail(trace, 2)))
	assert.Equal(t, "a\nb\nc\nd\n", string(vopr.Tail(trace, 10)))
}
