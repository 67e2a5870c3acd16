package main

import (
	"fmt"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// A configProblem is one key of the config whose value cannot work.
type configProblem struct {
	Line int    // line of the key in the file; 0 when the file does not set it
	Key  string // billing.lead_days, billing.extra_holidays[0]
	Msg  string
}

// A ConfigError lists every problem of a configuration, each with its YAML key and,
// when the file sets that key, its line:
//
//	billingd.yaml:12: billing.lead_dayz: unknown key (did you mean lead_days?)
type ConfigError struct {
	Path     string // the file; "" for the built-in defaults
	Problems []configProblem
	// UnsetEnv are the ${NAME} references of the file (outside comments) whose
	// variable is not set and that have no default.
	UnsetEnv []string
}

func (e *ConfigError) Error() string {
	var b strings.Builder
	line := func(p configProblem) string {
		switch {
		case e.Path == "":
			return "config: " + p.Key + ": " + p.Msg
		case p.Line > 0 && p.Key == "":
			return fmt.Sprintf("%s:%d: %s", e.Path, p.Line, p.Msg)
		case p.Line > 0:
			return fmt.Sprintf("%s:%d: %s: %s", e.Path, p.Line, p.Key, p.Msg)
		case p.Key == "":
			return e.Path + ": " + p.Msg
		}
		return e.Path + ": " + p.Key + ": " + p.Msg
	}
	if len(e.Problems) == 1 {
		b.WriteString(line(e.Problems[0]))
	} else {
		fmt.Fprintf(&b, "%d config problems:", len(e.Problems))
		for _, p := range e.Problems {
			b.WriteString("\n  " + line(p))
		}
	}
	if len(e.UnsetEnv) > 0 {
		if len(e.UnsetEnv) == 1 {
			fmt.Fprintf(&b, "\nnote: the environment variable %s, used in the file, is not set", e.UnsetEnv[0])
		} else {
			fmt.Fprintf(&b, "\nnote: the environment variables %s, used in the file, are not set", strings.Join(e.UnsetEnv, ", "))
		}
	}
	return b.String()
}

// configSource is where a Config was read from: the line of every key the file
// sets, and the variables it references that are not set.
type configSource struct {
	path  string
	lines map[string]int
	unset []string
}

// errorOf returns the ConfigError of problems, with the lines of their keys.
func (s *configSource) errorOf(ps []configProblem) *ConfigError {
	ce := &ConfigError{}
	if s != nil {
		ce.Path, ce.UnsetEnv = s.path, s.unset
	}
	for _, p := range ps {
		if p.Line == 0 && s != nil {
			p.Line = s.lines[p.Key]
		}
		ce.Problems = append(ce.Problems, p)
	}
	sort.SliceStable(ce.Problems, func(i, j int) bool {
		a, b := ce.Problems[i], ce.Problems[j]
		if (a.Line == 0) != (b.Line == 0) {
			return a.Line != 0 // the lines of the file first, in file order
		}
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Key < b.Key
	})
	return ce
}

// keyLines records the line of every key (and list element) under n, by its dotted
// path.
func keyLines(n *yaml.Node, prefix string, into map[string]int) {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			keyLines(c, prefix, into)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := joinKey(prefix, n.Content[i].Value)
			into[k] = n.Content[i].Line
			keyLines(n.Content[i+1], k, into)
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			k := fmt.Sprintf("%s[%d]", prefix, i)
			into[k] = c.Line
			keyLines(c, k, into)
		}
	}
}

func joinKey(prefix, key string) string {
	if prefix == "" {
		return key
	}
	return prefix + "." + key
}

// unsetRefs returns the variables referenced as ${NAME} in the values and keys of n
// (so never in a comment) that getenv does not set and that have no default, once
// each, in order of appearance.
func unsetRefs(n *yaml.Node, getenv func(string) string) []string {
	var out []string
	seen := map[string]bool{}
	var walk func(*yaml.Node)
	walk = func(n *yaml.Node) {
		if n.Kind == yaml.ScalarNode {
			for _, m := range envRef.FindAllStringSubmatch(n.Value, -1) {
				if name := m[1]; m[2] == "" && getenv(name) == "" && !seen[name] {
					seen[name] = true
					out = append(out, name)
				}
			}
		}
		for _, c := range n.Content {
			walk(c)
		}
	}
	walk(n)
	return out
}

var (
	durationType = reflect.TypeFor[time.Duration]()
	yamlLine     = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)
)

// syntaxProblem turns a YAML syntax error into a problem with its line.
func syntaxProblem(err error) configProblem {
	msg := err.Error()
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		return configProblem{Line: line, Msg: "not valid YAML: " + m[2]}
	}
	return configProblem{Msg: "not valid YAML: " + strings.TrimPrefix(msg, "yaml: ")}
}

// msgNoValue is checkNode's problem for a setting written with no value.
const msgNoValue = "no value: write one, or leave the key out for its default"

// blankKeys returns the keys (named as checkNode names them) whose values the file
// raw writes with no value, and false when it cannot tell (the file is not YAML).
// It reads the file with every ${NAME} replaced by a placeholder: a reference,
// whatever it expands to, is not a blank of the writer's (the note on unset
// variables names those that are not set).
func blankKeys(raw []byte) (map[string]bool, bool) {
	filled, _ := expandEnv(raw, func(string) string { return "x" })
	var doc yaml.Node
	if yaml.Unmarshal(filled, &doc) != nil {
		return nil, false
	}
	out := map[string]bool{}
	var walk func(n *yaml.Node, key string)
	walk = func(n *yaml.Node, key string) {
		if n.Kind == yaml.AliasNode && n.Alias != nil {
			n = n.Alias
		}
		switch n.Kind {
		case yaml.DocumentNode:
			for _, c := range n.Content {
				walk(c, key)
			}
		case yaml.ScalarNode:
			if n.Tag == "!!null" {
				out[key] = true
			}
		case yaml.MappingNode:
			for i := 0; i+1 < len(n.Content); i += 2 {
				walk(n.Content[i+1], joinKey(key, n.Content[i].Value))
			}
		case yaml.SequenceNode:
			for i, c := range n.Content {
				walk(c, fmt.Sprintf("%s[%d]", key, i))
			}
		}
	}
	walk(&doc, "")
	return out, true
}

// checkNode compares the YAML under n with the Go type t that will receive it and
// reports unknown keys and values of the wrong kind, named by their YAML key (never
// by a Go type).
func checkNode(n *yaml.Node, t reflect.Type, key string, add func(configProblem)) {
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		// A section with nothing under it keeps its defaults. A setting written with
		// no value (`path:`, `~`, `null`) is refused: YAML would keep the default
		// silently, and an operator who blanked storage.path or klavi.base_url did
		// not mean the built-in one.
		if t.Kind() != reflect.Struct && !(t.Kind() == reflect.Pointer && t.Elem().Kind() == reflect.Struct) {
			add(configProblem{Line: n.Line, Key: key, Msg: msgNoValue})
		}
		return
	}
	switch {
	case t.Kind() == reflect.Struct:
		if n.Kind != yaml.MappingNode {
			add(configProblem{Line: n.Line, Key: key, Msg: fmt.Sprintf("%s is not a section: want keys under it (%s: …)", describeNode(n), firstKey(t))})
			return
		}
		fields := map[string]reflect.Type{}
		var names []string
		for i := range t.NumField() {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if !f.IsExported() || name == "" || name == "-" {
				continue
			}
			fields[name] = f.Type
			names = append(names, name)
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			ft, ok := fields[k.Value]
			if !ok {
				msg := "unknown key"
				if s := closest(k.Value, names); s != "" {
					msg += fmt.Sprintf(" (did you mean %s?)", s)
				} else {
					msg += " (known here: " + strings.Join(names, ", ") + ")"
				}
				add(configProblem{Line: k.Line, Key: joinKey(key, k.Value), Msg: msg})
				continue
			}
			checkNode(v, ft, joinKey(key, k.Value), add)
		}
	case t.Kind() == reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			add(configProblem{Line: n.Line, Key: key, Msg: describeNode(n) + " is not a list: want [a, b] or one \"- item\" a line"})
			return
		}
		for i, c := range n.Content {
			checkNode(c, t.Elem(), fmt.Sprintf("%s[%d]", key, i), add)
		}
	default:
		if n.Kind != yaml.ScalarNode {
			add(configProblem{Line: n.Line, Key: key, Msg: fmt.Sprintf("%s is not a single value: want %s", describeNode(n), want(t))})
			return
		}
		isInt := t.Kind() >= reflect.Int && t.Kind() <= reflect.Uint64 && t != durationType
		// YAML would cut 2.5 down to 2 in a whole-number key: refuse it instead.
		if err := n.Decode(reflect.New(t).Interface()); err != nil || isInt && n.ShortTag() != "!!int" {
			add(configProblem{Line: n.Line, Key: key, Msg: fmt.Sprintf("%q is not %s", n.Value, want(t))})
		}
	}
}

// want names what a value of type t is, for an operator.
func want(t reflect.Type) string {
	switch {
	case t == durationType:
		return "a duration (e.g. 30s, 5m)"
	case t.Kind() == reflect.Bool:
		return "true or false"
	case t.Kind() >= reflect.Int && t.Kind() <= reflect.Uint64:
		return "a whole number"
	case t.Kind() == reflect.Float32 || t.Kind() == reflect.Float64:
		return "a number"
	}
	return "a text value"
}

func describeNode(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a section of keys"
	case yaml.SequenceNode:
		return "a list"
	}
	return strconv.Quote(n.Value)
}

// firstKey is the YAML name of t's first field, for examples.
func firstKey(t reflect.Type) string {
	for i := range t.NumField() {
		if name, _, _ := strings.Cut(t.Field(i).Tag.Get("yaml"), ","); name != "" && name != "-" {
			return name
		}
	}
	return "key"
}

// closest is the known name nearest to s (edit distance at most a third of its
// length, at least 2), or "".
func closest(s string, names []string) string {
	best, bestD := "", max(2, len(s)/3)+1
	for _, n := range names {
		if d := editDistance(s, n); d < bestD {
			best, bestD = n, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance of a and b.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
