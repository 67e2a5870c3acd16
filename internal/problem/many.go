package problem

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
)

// DecodeMany decodes data, one JSON object or a JSON array of them, with one for each
// object, and checks that no two carry the same id. what names the objects in the
// problem reported when data is neither ("consents"). The error, when not nil, is a
// List naming every problem of every object; an object's problems carry its index
// ("[2].id") when data is an array, and an id seen twice is a problem at "[i].id".
// Nothing is returned unless every object is good.
func DecodeMany[T any](data []byte, what string, one func([]byte) (T, error), id func(T) string) ([]T, error) {
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 || trimmed[0] != '[' {
		v, err := one(data)
		if err != nil {
			return nil, asList(err)
		}
		return []T{v}, nil
	}
	var raws []json.RawMessage
	if err := json.Unmarshal(trimmed, &raws); err != nil {
		var l List
		l.Addf("", "not a JSON array of %s: %s", what, strings.TrimPrefix(err.Error(), "json: "))
		return nil, l
	}
	var (
		out  []T
		l    List
		seen = map[string]bool{}
	)
	for i, raw := range raws {
		v, err := one(raw)
		if err != nil {
			l.Merge(Index("", i), asList(err))
			continue
		}
		if k := id(v); seen[k] {
			l.Addf(Join(Index("", i), "id"), "%s appears twice", k)
		} else {
			seen[k] = true
		}
		out = append(out, v)
	}
	if len(l) > 0 {
		return nil, l
	}
	return out, nil
}

// asList returns err as a List: itself when it is one, else one problem about the
// whole document.
func asList(err error) List {
	var l List
	if errors.As(err, &l) {
		return l
	}
	l.Addf("", "%v", err)
	return l
}
