// Package admin is billingd's operator API, served under /v1/ on the daemon's one
// listener. Every request needs the configured bearer token; with no token configured
// the API is off (Handler returns nil).
//
// Routes:
//
//	GET    /v1/consents?state=&after=&limit=      list consents (summaries)
//	POST   /v1/consents?billFrom=YYYY-MM-DD        add a consent (body: a consent file); no billFrom: today, 409 while the clock is in doubt
//	POST   /v1/klavi/consents                       create a consent at Klavi; returns the redirect URL (409 while the clock is in doubt)
//	GET    /v1/consents/{id}                        one consent with its billing state
//	POST   /v1/consents/{id}/authorize              the payer authorized it (Klavi must confirm: 409 otherwise)
//	POST   /v1/consents/{id}/revoke                 stop billing ({"reason": "..."})
//	PUT    /v1/consents/{id}/cycles/{k}/amount      amount of a variable cycle ({"amount": "123.45"})
//	GET    /v1/consents/{id}/attempts               its attempts and payments
//	GET    /v1/consents/{id}/preview?from=&cycles=  its plan (the preview JSON contract)
//	POST   /v1/consents/{id}/payments/{pid}/cancel  cancel at Klavi a payment scheduled for a later date
//	GET    /v1/consents/{id}/events?limit=&after=   its timeline, oldest first: {"events": [...], "next": "cursor or empty"}
//	GET    /v1/attempts?state=UNCONFIRMED&limit=    items needing an operator (UNCONFIRMED, STUCK, MISSED, FAILED, SKIPPED)
//	GET    /v1/attention?state=&limit=&after=       open attention items with their age, counts per state, next cursor
//	POST   /v1/attention/resolve                    close an item ({"consentId", "cycle", "attempt", "note"}): 404 unknown, 409 not open
//	GET    /v1/upcoming?from=&to=                   every charge whose request goes out in [from, to] (default 8 days, at most 92)
//	GET    /v1/report?month=YYYY-MM                 the month's ledger by interval and outcome (attempts by payment date)
//	GET    /v1/payments?from=&to=&state=&consent=&limit=&cursor=&format=json|csv   attempts by payment date, paged
//	POST   /v1/reconcile?consent=ID                 look UNCONFIRMED and STUCK attempts up in Klavi's orders list now
//	GET    /v1/backup                               a consistent copy of the database
//	POST   /v1/scheduler/scan, /v1/scheduler/poll   run a due scan or a status poll now
//	POST   /v1/scheduler/refresh?consent=ID         run the consent refresh now (those due a read), or read one consent at Klavi now
//
// Ids ({id}, {pid}) are Klavi's opaque ids (UUIDs or urn: ids), escaped in the path.
// Writes are recorded in the consent's timeline in the name of the X-Billingd-Actor
// header (printable, at most 64 characters; "operator" when absent). Dates are
// Brasília civil dates (YYYY-MM-DD); instants are RFC 3339 with the Brasília
// offset; amounts are strings of reais with two decimals ("1234.56").
//
// Errors are JSON {"error": "...", "problems": [{"path", "message"}]} with a 4xx for
// the caller's mistakes: 400 invalid input, 401 no or wrong token, 404 unknown id, 409
// a state conflict, 413 a body over 1 MiB, 415 not JSON.
//
// Writes go through the scheduler, which serializes them with the billing of the
// same consent; reads come from the store. Answers are the package's own types
// (ConsentDetail, ConsentSummary, Attempt, Event, AttentionItem), never the store's
// records, so a field the store adds is not an API change. Lists carry no personal
// data. The package does not serve /metrics or the health endpoints, and does not
// listen: cmd/billingd mounts Handler on its own server.
package admin
