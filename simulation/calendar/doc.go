// Package calendar draws a simulated run (simulation.Result) as a month-by-month
// calendar: one cell per day with the charges billingd submitted, what came back
// (completed, rejected, retried, failed, missed, skipped, unconfirmed) as a row of
// marks, and the amount settled that day; weekends and holidays of the business
// calendar shaded; totals per month and for the run; a legend. It is `billingd
// simulate --html FILE` and `--svg FILE`.
//
// Contracts:
//
//   - Days are Brasília dates, and an event counts on the day it happened (the
//     timeline's day, simulation.Event.Day): a charge is submitted a few days before
//     its date and settles or is rejected on it. A retry run by Klavi for an
//     attach-mode payment (from the sandbox's ledger) counts on the day Klavi ran it.
//   - The picture's totals are the run's: the sums over its day cells and its
//     totals equal the sums of Result.Summaries (submitted, retries by billingd and
//     by Klavi, completed, rejected, missed, skipped, unconfirmed, failed, billed).
//   - Both outputs are self-contained (no script, no external font, image or style
//     sheet) and deterministic for a given Result; every value is escaped by
//     html/template. They show consent ids, cycles and amounts, never the payer's or
//     the creditor's data (the Result does not carry it).
//   - Colours are the Okabe-Ito palette, and no meaning rests on colour alone: what
//     billingd sent is a hollow mark, what came back a filled one, and every cell
//     prints its counts and carries its events as a tooltip.
package calendar
