package vopr

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"testing"
)

func TestDebugSeed(t *testing.T) {
	s := os.Getenv("VOPR_DEBUG_SEED")
	if s == "" {
		t.Skip()
	}
	seed, _ := strconv.ParseUint(s, 10, 64)
	w := newWorld(context.Background(), seed, Options{})
	func() {
		defer func() { recover() }()
		w.setup()
		w.loop()
		w.finalChecks()
	}()
	os.Stdout.Write(w.trace.Bytes())
	for _, e := range w.sb.Ledger() {
		fmt.Printf("%+v\n", e)
	}
}
