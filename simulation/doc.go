// Package simulation runs billingd's real scheduler and store against the in-process
// Klavi sandbox on a virtual clock: months of billing in seconds, with no Klavi
// account and no network beyond loopback. It is `billingd simulate` and the README's
// main command.
//
// The clock jumps from one piece of scheduled work to the next (the earliest entry of
// the due or poll index), the way cron ticks would find it, so the timeline is the
// daemon's own. Scans run with one worker so the output order is deterministic.
//
// A run never reaches a real Klavi: the sandbox is in-process and served on
// loopback. It uses the daemon's own code (scheduler, storage/bolt, the sandbox's
// state machine) and adds no billing logic of its own.
package simulation
