// Package clock is billingd's injectable notion of "now". Code that needs the time
// takes a Clock; production passes Real{} (or nil, read as Real), tests and
// `billingd simulate` pass a *Fake they move by hand. Nothing waits on a Fake: tests
// advance it and then call the code under test, so no test sleeps. A *Scaled clock
// runs a fixed multiple of real time from a fixed origin, so that several processes
// (a daemon killed and restarted, the sandbox it talks to) share one fast timeline;
// `billingd` selects it with the test-only BILLINGD_TEST_CLOCK variable.
//
// Real reads time.Now; a nil Clock reads as Real (Or). A Fake changes only when
// Set or Advance is called and is safe for concurrent use. The package has no
// timers and never sleeps: what waits (cron, backoff) is the caller's.
package clock
