//go:build voprbugs

package scheduler

import (
	"fmt"
	"sync/atomic"
)

// This build (tag voprbugs) can switch on one of the deliberate mistakes of
// bugs.go, for package vopr's tests. Never in a release.

// Bugs names the mistakes InjectBug knows.
var Bugs = map[string]bug{
	"post-before-durable": bugPostBeforeDurable,
	"new-key-on-resend":   bugNewKeyOnResend,
	"retry-past-window":   bugRetryPastWindow,
	"missed-on-doubt":     bugMissedOnDoubt,
	"409-is-created":      bugConflictIsCreated,
}

var injected atomic.Uint32

func has(b bug) bool { return injected.Load() == uint32(b) }

// InjectBug switches on the named mistake for every scheduler in the process until
// the returned function is called.
func InjectBug(name string) (undo func(), err error) {
	b, ok := Bugs[name]
	if !ok {
		return nil, fmt.Errorf("no bug %q", name)
	}
	injected.Store(uint32(b))
	return func() { injected.Store(0) }, nil
}
