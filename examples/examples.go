package examples

import "embed"

// Consents holds consents/*.json.
//
//go:embed consents/*.json
var Consents embed.FS
