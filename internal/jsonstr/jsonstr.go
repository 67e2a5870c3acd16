// Package jsonstr writes a string as JSON the way the codec billingd uses
// (go-json-experiment/json/v1, encoding/json's rules) writes it, without the codec
// for the usual string: the hand encoders of storage's records and of Klavi's
// create-payment request share it.
package jsonstr

import json "github.com/go-json-experiment/json/v1"

// Append appends s to b as a JSON string: printable ASCII other than `"`, `\`, `<`,
// `>` and `&` as it is, between quotes; anything else (those five, control
// characters, non-ASCII text, which the codec escapes as U+2028, U+2029 or invalid
// UTF-8 need) through the codec, so that the bytes are always the codec's.
func Append(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, err := json.Marshal(s) // never fails for a string
			if err != nil {
				panic(err)
			}
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}
