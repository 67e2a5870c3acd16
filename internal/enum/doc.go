// Package enum folds the spellings of API enum values to one canonical form, so
// "payment completed", "Payment-Completed" and "não informado" compare equal to
// PAYMENT_COMPLETED and NAO_INFORMADO.
//
// Normalize is pure, idempotent and never fails: a value it does not recognise is
// only folded, never rejected; deciding whether a value is known is the caller's
// job (klavi's Valid methods, cycle's parsers).
package enum
