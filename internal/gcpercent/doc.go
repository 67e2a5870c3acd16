// Package gcpercent sets the Go garbage collector's target for billingd's daemon:
// the percentage the heap may grow over the live heap before a collection (GOGC).
// The config's runtime.gc_percent (default Default) applies unless the GOGC
// environment variable is set.
package gcpercent
