package problem

import (
	"bytes"
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"sort"
	"strings"
	"sync"

	"github.com/go-json-experiment/json/jsontext"
)

// DecodeJSON decodes the JSON document data into v, a non-nil pointer to a struct,
// the way encoding/json does (json tags, exact then case-insensitive field names,
// json.Unmarshaler and encoding.TextUnmarshaler honoured), but it does not stop at the
// first problem: every value of the wrong type, every value a field's unmarshaler
// refuses, and every unknown field is reported with its path, and every other field
// is still decoded. A document that is not JSON at all is one problem with its line
// and column.
//
// Unlike encoding/json, it refuses a member name that appears twice in one object, at
// any depth (the first such name is the problem, at its path): encoding/json would
// keep the last, so {"amount":"50.00","amount":"499.00"} would read 499.00 where
// whoever reviewed the document may have read 50.00.
func DecodeJSON(data []byte, v any) List {
	var l List
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer || rv.IsNil() {
		l.Addf("", "internal: DecodeJSON needs a non-nil pointer, got %T", v)
		return l
	}
	if err := syntaxCheck(data); err != nil {
		l.Addf("", "%v", err)
		return l
	}
	if path, name, ok := duplicateName(data); ok {
		l.Addf(path, "duplicate member name %q: a name may appear only once in an object", name)
	}
	decode("", bytes.TrimSpace(data), rv.Elem(), &l)
	return l
}

// duplicateName finds the first member name that appears twice in one object of data,
// a syntactically valid document, with jsontext's own check (it compares names after
// unescaping, so "a\u0062" and "ab" are the same name). path is the problem path of
// the second occurrence ("paymentMethodConfig.fixedAmount", "[1].id").
func duplicateName(data []byte) (path, name string, ok bool) {
	// Invalid UTF-8 is encoding/json's business here (it replaces it): only names count.
	d := jsontext.NewDecoder(bytes.NewReader(data), jsontext.AllowInvalidUTF8(true))
	for {
		_, err := d.ReadToken()
		if err == nil {
			continue
		}
		var se *jsontext.SyntacticError
		if err == io.EOF || !errors.Is(err, jsontext.ErrDuplicateName) || !errors.As(err, &se) {
			return "", "", false
		}
		// One pointer token per open container; the container's kind says whether the
		// token is an array index or a member name.
		i := 0
		for tok := range se.JSONPointer.Tokens() {
			i++
			if k, _ := d.StackIndex(i); k == '[' {
				path = Join(path, "["+tok+"]")
			} else {
				path = Join(path, tok)
			}
			name = tok
		}
		return path, name, true
	}
}

// syntaxCheck reports the first syntax error with its line and column.
func syntaxCheck(data []byte) error {
	if len(bytes.TrimSpace(data)) == 0 {
		return errors.New("empty document: want a JSON object")
	}
	var x json.RawMessage
	err := json.Unmarshal(data, &x)
	var se *json.SyntaxError
	if errors.As(err, &se) {
		line, col := 1, 1
		for _, c := range data[:min(int(se.Offset), len(data))] {
			if c == '\n' {
				line, col = line+1, 1
			} else {
				col++
			}
		}
		return fmt.Errorf("not valid JSON at line %d, column %d: %s", line, col, strings.TrimPrefix(se.Error(), "json: "))
	}
	if err != nil {
		return fmt.Errorf("not valid JSON: %s", strings.TrimPrefix(err.Error(), "json: "))
	}
	return nil
}

var (
	unmarshalerType     = reflect.TypeFor[json.Unmarshaler]()
	textUnmarshalerType = reflect.TypeFor[encoding.TextUnmarshaler]()
	rawMessageType      = reflect.TypeFor[json.RawMessage]()
)

func decode(path string, raw []byte, rv reflect.Value, l *List) {
	if string(raw) == "null" {
		rv.Set(reflect.Zero(rv.Type()))
		return
	}
	t := rv.Type()
	if t == rawMessageType {
		rv.SetBytes(append([]byte(nil), raw...))
		return
	}
	if t.Kind() == reflect.Pointer {
		if rv.IsNil() {
			rv.Set(reflect.New(t.Elem()))
		}
		decode(path, raw, rv.Elem(), l)
		return
	}
	if pt := reflect.PointerTo(t); pt.Implements(unmarshalerType) || pt.Implements(textUnmarshalerType) {
		leaf(path, raw, rv, l)
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		decodeStruct(path, raw, rv, l)
	case reflect.Slice:
		var elems []json.RawMessage
		if err := json.Unmarshal(raw, &elems); err != nil {
			l.Addf(path, "must be an array, got %s", jsonKind(raw))
			return
		}
		s := reflect.MakeSlice(t, len(elems), len(elems))
		for i, e := range elems {
			decode(Index(path, i), e, s.Index(i), l)
		}
		rv.Set(s)
	case reflect.Map:
		if t.Key().Kind() != reflect.String {
			leaf(path, raw, rv, l)
			return
		}
		var members map[string]json.RawMessage
		if err := json.Unmarshal(raw, &members); err != nil {
			l.Addf(path, "must be an object, got %s", jsonKind(raw))
			return
		}
		m := reflect.MakeMapWithSize(t, len(members))
		for _, k := range sortedKeys(members) {
			ev := reflect.New(t.Elem()).Elem()
			decode(Join(path, k), members[k], ev, l)
			m.SetMapIndex(reflect.ValueOf(k).Convert(t.Key()), ev)
		}
		rv.Set(m)
	default:
		leaf(path, raw, rv, l)
	}
}

// leaf decodes a value with encoding/json and turns its error into a problem.
func leaf(path string, raw []byte, rv reflect.Value, l *List) {
	err := json.Unmarshal(raw, rv.Addr().Interface())
	if err == nil {
		return
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		l.Addf(path, "must be %s, got %s", want(rv.Type()), jsonKind(raw))
		return
	}
	l.Addf(path, "%s", strings.TrimPrefix(err.Error(), "json: "))
}

type field struct {
	name  string
	index []int
}

var fieldCache sync.Map // reflect.Type → []field

// fieldsOf lists the JSON fields of struct type t, flattening embedded structs.
func fieldsOf(t reflect.Type) []field {
	if fs, ok := fieldCache.Load(t); ok {
		return fs.([]field)
	}
	var fs []field
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		tag := sf.Tag.Get("json")
		if tag == "-" {
			continue
		}
		name, _, _ := strings.Cut(tag, ",")
		if sf.Anonymous && name == "" && sf.Type.Kind() == reflect.Struct {
			for _, inner := range fieldsOf(sf.Type) {
				fs = append(fs, field{name: inner.name, index: append([]int{i}, inner.index...)})
			}
			continue
		}
		if !sf.IsExported() {
			continue
		}
		if name == "" {
			name = sf.Name
		}
		fs = append(fs, field{name: name, index: []int{i}})
	}
	fieldCache.Store(t, fs)
	return fs
}

func decodeStruct(path string, raw []byte, rv reflect.Value, l *List) {
	var members map[string]json.RawMessage
	if err := json.Unmarshal(raw, &members); err != nil {
		l.Addf(path, "must be an object, got %s", jsonKind(raw))
		return
	}
	used := make(map[string]bool, len(members))
	for _, f := range fieldsOf(rv.Type()) {
		key, ok := f.name, false
		if _, ok = members[key]; !ok {
			for k := range members {
				if !used[k] && strings.EqualFold(k, f.name) {
					key, ok = k, true
					break
				}
			}
		}
		if !ok {
			continue
		}
		used[key] = true
		decode(Join(path, f.name), members[key], rv.FieldByIndex(f.index), l)
	}
	for _, k := range sortedKeys(members) {
		if !used[k] {
			l.Addf(Join(path, k), "unknown field")
		}
	}
}

func sortedKeys(m map[string]json.RawMessage) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// jsonKind names the kind of a raw JSON value for messages.
func jsonKind(raw []byte) string {
	if len(raw) == 0 {
		return "nothing"
	}
	switch c := raw[0]; {
	case c == '"':
		return "a string"
	case c == '{':
		return "an object"
	case c == '[':
		return "an array"
	case c == 't' || c == 'f':
		return "a boolean"
	case c == 'n':
		return "null"
	default:
		return "the number " + string(raw)
	}
}

// want names the JSON a Go type expects.
func want(t reflect.Type) string {
	if reflect.PointerTo(t).Implements(textUnmarshalerType) {
		return "a string"
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return "an integer"
	case reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Struct, reflect.Map:
		return "an object"
	case reflect.Slice, reflect.Array:
		return "an array"
	}
	return "a " + t.String()
}
