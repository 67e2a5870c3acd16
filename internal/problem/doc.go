// Package problem collects every problem found in a piece of input, each with the
// path of the field it is about, so a user fixes a file or a request in one go rather
// than one error at a time.
//
// Messages name the rule and, where it is not personal data, the offending value.
// Values of identifiers, account numbers and names are never echoed.
package problem
