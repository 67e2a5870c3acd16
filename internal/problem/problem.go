package problem

import (
	"fmt"
	"strings"
)

// A Problem is one thing wrong with the input at Path ("paymentMethodConfig.interval",
// "billing.autoRetryStrategy.days[1]"; "" for the whole document).
type Problem struct {
	Path    string `json:"path"`
	Message string `json:"message"`
}

func (p Problem) String() string {
	if p.Path == "" {
		return p.Message
	}
	return p.Path + ": " + p.Message
}

// A List is an ordered collection of problems. Its zero value is empty and ready.
// A non-empty List is an error.
type List []Problem

// Addf appends a problem at path.
func (l *List) Addf(path, format string, args ...any) {
	*l = append(*l, Problem{Path: path, Message: fmt.Sprintf(format, args...)})
}

// Merge appends the problems of other, each under the prefix path.
func (l *List) Merge(prefix string, other List) {
	for _, p := range other {
		*l = append(*l, Problem{Path: Join(prefix, p.Path), Message: p.Message})
	}
}

// Err returns l as an error, or nil when it is empty.
func (l List) Err() error {
	if len(l) == 0 {
		return nil
	}
	return l
}

// Error lists every problem, separated by "; ".
func (l List) Error() string {
	parts := make([]string, len(l))
	for i, p := range l {
		parts[i] = p.String()
	}
	return strings.Join(parts, "; ")
}

// Join joins a parent path and a child field name or index ("[3]").
func Join(parent, child string) string {
	switch {
	case parent == "":
		return child
	case child == "":
		return parent
	case strings.HasPrefix(child, "["):
		return parent + child
	}
	return parent + "." + child
}

// Index returns the path of element i of the array at path.
func Index(path string, i int) string { return fmt.Sprintf("%s[%d]", path, i) }
