package main

import (
	"bufio"
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/klavi-billing/billingd/vopr"
)

func newVoprCmd(a *app) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "vopr [flags]",
		Short: "run seeded simulated worlds of the money path and check its invariants",
		Long: "Run deterministic simulated worlds: each seed decides consents, Klavi's answers,\n" +
			"network faults, crashes of billingd and of Klavi, clock steps and operator actions,\n" +
			"and drives the real scheduler, store and Klavi client against the in-process\n" +
			"sandbox on a virtual clock, checking the exactly-once invariants as it goes (see\n" +
			"the vopr package). Seeds run for --budget, the ones in --seeds first; on a\n" +
			"violation it prints the seed, the invariant and the end of the trace, and exits 1.\n" +
			"--seed N replays one world exactly, with its whole trace.",
		Example: "  billingd vopr --budget 60s\n" +
			"  billingd vopr --seeds vopr/testdata/seeds.txt --budget 2m\n" +
			"  billingd vopr --seed 1234",
	}
	fl := cmd.Flags()
	budget := fl.Duration("budget", 60*time.Second, "how long to run seeds")
	seed := fl.Uint64("seed", 0, "replay this one seed and print its trace")
	seedsFile := fl.String("seeds", "", "`FILE` of seeds to run first, one a line (# comments)")
	first := fl.Uint64("first", 0, "draw seeds counting up from this one (default: fresh random seeds)")
	count := fl.Int("count", 0, "stop after this many seeds (default: the budget decides)")
	parallel := fl.Int("parallel", 0, "worlds run at once (default: the number of CPUs)")
	traceLines := fl.Int("trace-lines", 40, "lines of trace printed with a violation")
	cmd.Args = noArgs
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		e := a.e
		ctx := cmd.Context()
		if *budget <= 0 && *count <= 0 && !fl.Changed("seed") {
			return argErrorf("vopr: --budget %s: want more than 0 (or --count)", *budget)
		}
		if fl.Changed("seed") {
			res := vopr.Run(ctx, *seed, vopr.Options{})
			e.stdout.Write(res.Trace)
			if res.Violation != nil {
				return fmt.Errorf("vopr: seed %d: %w", *seed, res.Violation)
			}
			fmt.Fprintf(e.stdout, "billingd vopr: seed %d: %d simulated days, no violation\n", *seed, res.Days)
			return nil
		}
		var seeds []uint64
		if *seedsFile != "" {
			s, err := readSeeds(*seedsFile)
			if err != nil {
				return argErrorf("vopr: --seeds: %v", err)
			}
			seeds = s
		}
		o := vopr.ExploreOptions{Budget: *budget, Count: *count, Seeds: seeds, Parallel: *parallel}
		if *count > 0 && !fl.Changed("budget") {
			o.Budget = 0
		}
		start := *first
		if !fl.Changed("first") {
			start = rand.Uint64() >> 1 // fresh seeds each run; any failing one is printed
		}
		next := start
		o.Next = func() uint64 { s := next; next++; return s }
		fmt.Fprintf(e.stdout, "billingd vopr: %d listed seeds, then seeds from %d, for %s\n", len(seeds), start, o.Budget)
		sum := vopr.Explore(ctx, o)
		fmt.Fprintf(e.stdout, "billingd vopr: %d seeds, %d simulated days (%.1f years), %d payment requests in %s: %.1f seeds/s, %.0f simulated days/s\n",
			sum.Seeds, sum.SimDays, float64(sum.SimDays)/365.25, sum.Posts, sum.Elapsed.Round(time.Millisecond), sum.SeedsPerSecond(), sum.DaysPerSecond())
		if len(sum.Failed) == 0 {
			if err := ctx.Err(); err != nil {
				return err
			}
			fmt.Fprintln(e.stdout, "billingd vopr: no violation")
			return nil
		}
		for _, f := range sum.Failed {
			fmt.Fprintf(e.stdout, "\nVIOLATION seed %d: %s\n%s", f.Seed, f.Violation, vopr.Tail(f.Trace, *traceLines))
			fmt.Fprintf(e.stdout, "replay: billingd vopr --seed %d\n", f.Seed)
		}
		return fmt.Errorf("vopr: %d of %d seeds broke an invariant (first: seed %d, %s)", len(sum.Failed), sum.Seeds, sum.Failed[0].Seed, sum.Failed[0].Violation.Invariant)
	}
	return cmd
}

// readSeeds reads one seed a line; blank lines and # comments are skipped.
func readSeeds(path string) ([]uint64, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []uint64
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line, _, _ := strings.Cut(sc.Text(), "#")
		if line = strings.TrimSpace(line); line == "" {
			continue
		}
		s, err := strconv.ParseUint(line, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %q is not a seed", path, n, line)
		}
		out = append(out, s)
	}
	return out, sc.Err()
}
