// Package redact masks personal data and secrets before they reach a log line or an
// error. Every log call site that could carry a tax id, an account number, a name, an
// e-mail, a phone, a key or a token passes it through here first.
//
// Free text (an operator's reason or note, Klavi's message) cannot be masked: a name
// has no shape to find. Text keeps only its length. URL hides a URL's user
// information and query values. The rules are in docs/OPERATIONS.md ("Logs: what
// they never hold").
//
// Every function is pure and total: any input, even empty or malformed, gives a
// masked string, never an error. It masks; it does not decide what is personal
// (the call site does).
package redact
