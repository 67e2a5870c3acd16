package jsonstr

import (
	"testing"

	json "github.com/go-json-experiment/json/v1"
)

// Append writes what the codec writes for any string, plain or not.
func FuzzAppend(f *testing.F) {
	for _, s := range []string{"", "a", "billingd-urn:c:1-0-0", `a"b`, `a\b`, "<&>", "ção", "\u2028", "\x00", "\xff", "\x7f", "tab\t"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		if got := Append([]byte("x"), s); string(got) != "x"+string(want) {
			t.Fatalf("Append(%q) = %s, the codec writes %s", s, got[1:], want)
		}
	})
}
