// Package retry validates Pix Automático retry strategies and plans retry dates.
//
// A Strategy {days, skipWeekend} says on which days after a failed payment's
// settlement date a new attempt is made. The rules (Klavi's autoRetryStrategy and the
// Pix Automático arrangement): 1 to 3 days, each ≥ 1, strictly increasing, each within
// the retry window (5 days for WEEKLY consents, 7 otherwise), and only for consents
// with isRetryAccepted.
//
// Plan turns a strategy into dates. Day n falls on D+n; with SkipWeekend a Saturday or
// Sunday moves to the next weekday that no earlier retry holds (D = Thu 5 Mar,
// [1,2,3] → Fri 6, Mon 9, Tue 10). A date past the window, on or after the next
// cycle's start, or after the consent's expiry is dropped and reported, never planned.
// The package does no I/O and never reads the clock.
package retry
