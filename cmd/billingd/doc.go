// Command billingd runs recurring billing for Klavi Automatic Pix consents: a daemon
// that charges every cycle of every authorized consent exactly once, and the tools
// around it (preview, simulate, sandbox, operator commands).
//
// Usage: billingd <command> [flags]; billingd --help lists the commands, and
// billingd <command> --help the flags of one.
//
// # Environment
//
// BILLINGD_CONFIG names the config file when --config is not given.
//
// BILLINGD_TEST_CLOCK is for process-level tests only and is never needed in
// production: when set, every command (run, sandbox, consent import, preview, …)
// reads time from a clock that runs faster than real time from a fixed origin,
//
//	BILLINGD_TEST_CLOCK=start=2026-12-01T03:00:00Z,epoch=1764558000000,rate=3600
//
// reads 2026-12-01T03:00:00Z at the real instant epoch (Unix milliseconds) and moves
// rate seconds per real second (see clock.ParseScaled). Processes given the same value
// share one timeline, so a daemon restarted many times and a sandbox agree on the
// date. Cron schedules still tick in real time; every decision uses this clock. A
// malformed value exits 2. billingd says on stderr when it runs on this clock.
package main
