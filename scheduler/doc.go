// Package scheduler decides and does billingd's work: which cycle of which consent is
// submitted when, what happens to it afterwards, and the plan the preview shows.
//
// # One plan
//
// Policy.Plan is the only function that turns a consent and a day into a decision
// (submit day, state, amount, retry dates). The due scan calls it when it acts and
// `billingd preview` calls it to show what the daemon will do, so the two cannot
// disagree.
//
// # Exactly once
//
// Each cycle's payment is keyed by a clientRequestId derived from (consent, cycle,
// attempt), never random. Before a request is sent its attempt is written as
// SUBMITTING and synced; after the answer it becomes SUBMITTED (with Klavi's payment
// id), FAILED (Klavi refused: nothing exists) or UNCONFIRMED (409: Klavi already holds
// that key). When the answer is lost (a timeout, a 5xx, a crash, a kill at any
// instruction) the attempt is still SUBMITTING and is sent again later with the same
// key: Klavi either creates it now (it never got it) or answers 409. No code path
// sends a second key for the same cycle and attempt, and no cycle is dropped silently:
// every cycle ends SUBMITTED/COMPLETED/REJECTED, or MISSED, SKIPPED, FAILED or
// UNCONFIRMED, the last four listed for operators.
//
// # Work
//
// The store keeps two time-ordered indexes. The due index holds, per active consent,
// its next cycle's submit instant (D − lead days, at the submit time), plus planned
// local retries and re-sends of unknown outcomes. The poll index holds the next status
// check of each submitted payment. Scan and Poll read only entries at or before now,
// so their cost follows the work, not the number of consents. Everything done to one
// consent is serialized by a per-consent lock; at most Config.Workers Klavi calls run
// at once.
//
// # Windows
//
// A payment for date D is created from D−10 to D−2. A cycle whose submit day has
// passed (downtime) is submitted at once while today ≤ D−2, and recorded MISSED after
// that, never sent late. A local retry dated R is requested on R−1; one whose request
// day has passed is DROPPED. Retries are sequential: the next is planned only once the
// previous one is known to be rejected, so a settled cycle is never charged again.
//
// # What operators see
//
// Every event the scheduler emits about a consent is added to the storage.Change that
// records it (emit takes the Change), so a consent's timeline is written in the same
// transaction as its state: a crash leaves both or neither. Operator actions (add,
// authorize, revoke, set amount, cancel, resolve) are recorded the same way with the
// operator's name and reason. Attention items (MISSED, SKIPPED, FAILED, UNCONFIRMED,
// STUCK) stay open until Resolve. Policy.UpcomingOf lists the charges a consent will
// send from what is stored, with Plan; LedgerOf and Report sum the stored attempts of
// a month by the payment's date.
package scheduler
