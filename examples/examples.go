// Package examples embeds the example consent files in the binary, so `billingd
// simulate` and the README's main command run anywhere with no files beside them.
package examples

import "embed"

// Consents holds consents/*.json.
//
//go:embed consents/*.json
var Consents embed.FS
