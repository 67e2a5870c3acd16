// Package vopr is billingd's deterministic simulator of the money path: thousands of
// seeded worlds per CI run, each one the real scheduler, the real store (over an
// in-memory kv.Engine, storage/kv/mem) and the real Klavi client talking to the
// in-process sandbox, on a virtual clock.
//
// # One seed decides everything
//
// A world is built from one uint64 seed (math/rand/v2 PCG): the consents (every
// interval, month-end reference dates, expiry, fixed and variable amounts, retry
// strategies and modes), the scheduler's settings, how Klavi answers (outcomes and
// reason codes, 409 or idempotent replays, rule order, permission refusals), the
// network between them (drops before and after Klavi commits, 5xx, 429, timeouts,
// duplicated deliveries, latency), operator actions (revoke, set amount, resolve),
// revocations at the bank, clock steps within and beyond the tolerance, and crashes
// of billingd at any store write (before it, after it is durable, or in the middle,
// which the engine's atomic commit turns into "before") and at any Klavi call, and
// of the sandbox. Nothing runs on another goroutine and nothing sleeps: a run is a
// function of its seed, and Run returns the same trace, byte for byte, every time.
//
// # Invariants
//
// Checked as the world runs (each a named function, see invariants.go): no POST
// without its durable SUBMITTING record; every clientRequestId derived from
// (consent, cycle, attempt) and never sent with other contents; payments dated in
// their window, on their due date, before expiry; retries only for consents that
// accept them, inside the 5/7-day window and before the next cycle, after a
// retryable rejection; amounts the fixed one or the one set, within the limits; no
// decision while the clock is off Klavi's beyond the tolerance; a payment billingd
// records is one Klavi holds under that key. At the end of the run, after a quiet
// tail: at most one settled payment per cycle; Klavi's charges and billingd's
// records agree; every cycle reached a final state or an attention item; and the
// preview computed before the run equals what the run did for every cycle nothing
// disturbed.
//
// `billingd vopr` runs seeds for a time budget; `--seed N` replays one.
package vopr
