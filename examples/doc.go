// Package examples embeds the example consent files in the binary, so `billingd
// simulate` and the README's main command run anywhere with no files beside them.
//
// The files are valid consent files (consent.Decode accepts each) with made-up
// personal data. The package only embeds them; it does not decode them.
package examples
