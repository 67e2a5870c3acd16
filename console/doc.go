// Package console is billingd's web console: server-rendered pages for operators,
// served under /ui/ on the daemon's one listener next to the admin API. Templates
// (html/template) and static files are embedded (go:embed): no build step, no Node.
// Every page works without JavaScript; static/console.js only enhances (auto-submit
// filters, one post per click, a note's characters left).
//
// Pages:
//
//	GET  /ui/                    overview: today's and tomorrow's charges (count, amount), the month's
//	                             success rate, open attention items by state, replica role and clock health
//	GET  /ui/upcoming?from=&to=  agenda by day with totals, originals and retries (scheduler.Upcoming)
//	GET  /ui/attention?state=    the attention queue; admin sessions resolve an item with a note
//	POST /ui/attention/resolve   resolve (scheduler.Resolve, actor "console:admin")
//	GET  /ui/consents?q=&state=  consents; search by id, contractId, payment id or clientRequestId
//	GET  /ui/consents/{id}       one consent: details (personal data masked), its plan (the same as
//	                             `billingd preview`), attempts and timeline
//	GET  /ui/payments?from=&to=&state=&consent=  payments by payment date, paged
//	GET  /ui/payments.csv?...    every payment the filters select, in the columns of GET /v1/payments?format=csv
//	GET  /ui/report?month=       the month's ledger (scheduler.Report)
//	GET  /ui/login, POST /ui/login, POST /ui/logout
//
// Nothing here decides anything: the plans, the agenda and the report come from the
// scheduler, the lists from the store, and the one action (resolve) goes through the
// scheduler like the admin API's, so it is serialized with billing and recorded in
// the consent's timeline as "console:admin".
//
// Security. A session starts by typing the admin token (role admin: view and act) or
// the read-only token (role readonly: view only; an action answers 403). The session
// is a cookie (HttpOnly, SameSite=Strict, Path=/ui/, Secure when the request came
// over TLS or X-Forwarded-Proto says https) holding the role, the issue and expiry
// times and a random nonce, signed with HMAC-SHA256 under a key derived from both
// tokens: it is stateless, so every replica with the same tokens accepts it (no sticky
// sessions), and rotating either token ends every session. A session ends after
// IdleTimeout without a request (it is renewed while used) and MaxLifetime after its
// login. Logging out clears the cookie; a copy of it taken earlier stays valid until
// it expires, so rotate the token to cut a session off at once. Every POST needs
// the session's CSRF token (an HMAC of its nonce) in the form, and passes Go's
// CrossOriginProtection (Sec-Fetch-Site, Origin); the login form has its own token
// bound to a pre-login cookie. Every answer carries a strict Content-Security-Policy
// (default-src 'self'; no inline script or style; frame-ancestors 'none';
// form-action 'self'; base-uri 'none'), nosniff and X-Frame-Options DENY, and pages
// are not cached. Logins, refusals and actions are logged, never with a token.
//
// Display: amounts as "R$ 1.234,56"; dates are Brasília civil dates with their
// weekday; instants are shown in Brasília with the zone ("2026-01-09 09:00 BRT").
// Personal data (CPF/CNPJ, names, account numbers) is masked as in the logs
// (internal/redact).
package console
