// Package harness holds what the process-level fault suites (test/crash: one
// billingd on a bbolt file; test/ha: replicas on an etcd cluster) share: the
// generated world of consents and the sandbox's scenario (Generate), billingd's
// config for a run (Config), the sandbox process (StartSandbox), the admin-API
// nudges that keep billingd's cadence finer than the fast clock's hour (Nudge),
// the settle loop (Settle, Pending) and the verdict that reads the sandbox's ledger
// and billingd's records (Judge): no duplicate charge, no lost cycle, no attempt
// left UNCONFIRMED or SUBMITTING, retries as planned, records agreeing with Klavi.
package harness
