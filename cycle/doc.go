// Package cycle is billingd's calendar: civil Brasília dates, the five Pix
// Automático intervals, the billing cycles of a consent and the Brazilian business
// calendar. It does no I/O and never reads the clock; callers pass instants in.
//
// Invariants the rest of billingd relies on:
//
//   - Every billing date is a civil Date in Brasília (America/Sao_Paulo). Brazil had
//     daylight saving time until 2019 and some days had no midnight (2018-11-04), so
//     dates are never represented as time.Time at midnight. DateOf turns an instant
//     into its Brasília date; the tz database is embedded (time/tzdata).
//   - Cycle k of a Schedule starts at Reference + k·period, computed from the reference
//     date every time (no drift). A day missing from the target month clamps to the
//     month's last day and later cycles return to the reference day: reference 31 Oct
//     gives 31/10–29/11, 30/11–30/12, 31/12–30/01, 31/01–27/02, 28/02–30/03. A 29 Feb
//     yearly reference gives 28 Feb in common years.
//   - Cycle k ends the day before cycle k+1 starts: cycles are contiguous, never
//     overlap, and every date on or after the reference belongs to exactly one.
//   - The due date is the start date, or with AdjustNextBusinessDay the first business
//     day on or after it (weekends, NationalHolidays and a Calendar's extra dates).
//   - A cycle whose due date is after the Schedule's Expiry does not exist.
package cycle
