package scheduler

// Deliberate mistakes for the simulator's own test (package vopr, build tag
// voprbugs): each names a way the exactly-once protocol can be broken, and vopr's
// tests show that its invariants catch every one within a bounded number of seeds.
// In every other build has (bugs_off.go) is a constant false, and the compiler
// removes the checks and the code they guard: production code carries no test hook.

type bug uint8

const (
	bugPostBeforeDurable bug = iota + 1 // send before the SUBMITTING record is written
	bugNewKeyOnResend                   // a re-send gets a new clientRequestId
	bugRetryPastWindow                  // a local retry dated from the previous try, not the original
	bugMissedOnDoubt                    // MISSED decided while the clock is in doubt
	bugConflictIsCreated                // a 409 taken as "created"
)
