// Package proc holds what the process-level suites (test/crash, test/scale,
// test/e2e) share: building the billingd binary, free loopback ports, waiting for a
// process's HTTP endpoint, reading JSON from one, and the knobs of the environment.
//
// It is imported by tests only. Helpers given a testing.TB fail the test when they
// cannot do their job; the others return the error. It starts no billingd process
// itself: each suite owns the processes it runs.
package proc
