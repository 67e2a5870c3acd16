package redact

import (
	"fmt"
	"net/url"
	"strings"
	"unicode/utf8"
)

// ID masks an identifier (CPF, CNPJ, account number, phone) keeping its last two
// characters: "52998224725" → "*********25". Inputs of four characters or fewer are
// fully masked.
func ID(s string) string {
	n := len(s)
	if n <= 4 {
		return strings.Repeat("*", n)
	}
	return strings.Repeat("*", n-2) + s[n-2:]
}

// Name masks a person's or company's name keeping the first letter of each word:
// "Maria da Silva" → "M**** d* S****".
func Name(s string) string {
	words := strings.Fields(s)
	for i, w := range words {
		r := []rune(w)
		words[i] = string(r[0]) + strings.Repeat("*", len(r)-1)
	}
	return strings.Join(words, " ")
}

// Email masks the local part and the domain name of an address, keeping their first
// letters and the top-level domain: "maria@example.com" → "m****@e******.com".
func Email(s string) string {
	local, domain, ok := strings.Cut(s, "@")
	if !ok {
		return ID(s)
	}
	host, tld := domain, ""
	if i := strings.LastIndexByte(domain, '.'); i > 0 {
		host, tld = domain[:i], domain[i:]
	}
	return Name(local) + "@" + Name(host) + tld
}

// Secret hides a key or a token entirely, keeping only whether it is set.
func Secret(s string) string {
	if s == "" {
		return ""
	}
	return "[redacted]"
}

// Text stands for free text an operator or an API client wrote (a revoke reason, a
// resolve note, an actor's name), or Klavi's own words: it keeps only its length,
// "[redacted: 42 characters]", and is "" for "". Names cannot be told by their shape,
// so such text never reaches a log line as it is; the store keeps it for the record.
func Text(s string) string {
	if s == "" {
		return ""
	}
	return fmt.Sprintf("[redacted: %d characters]", utf8.RuneCountInString(s))
}

// urlMask replaces a URL's user information and its query's values.
const urlMask = "xxxxx"

// URL hides what a URL may carry of a secret: its user information, name and
// password alike ("https://xxxxx@api.example.com/": a user name alone may be a token),
// and the value of each query parameter ("?token=xxxxx"; a bare value is masked whole). Scheme, host, port and path
// are kept. A string url.Parse refuses, or an opaque one, has anything up to an '@'
// after its scheme masked and its query cut the same way.
func URL(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.Opaque != "" {
		return urlFallback(s)
	}
	if u.User != nil {
		u.User = url.User(urlMask)
	}
	if u.RawQuery != "" {
		q := strings.Split(u.RawQuery, "&")
		for i, kv := range q {
			if k, _, ok := strings.Cut(kv, "="); ok {
				q[i] = k + "=" + urlMask
			} else if kv != "" {
				q[i] = urlMask // a bare value: it may be a token
			}
		}
		u.RawQuery = strings.Join(q, "&")
	}
	return u.String()
}

// URLs is URL of each of list, joined by ",".
func URLs(list []string) string {
	out := make([]string, len(list))
	for i, s := range list {
		out[i] = URL(s)
	}
	return strings.Join(out, ",")
}

// urlFallback masks a string that does not parse as a URL: the user information an
// '@' may end, and the query.
func urlFallback(s string) string {
	if i := strings.IndexByte(s, '?'); i >= 0 {
		s = s[:i+1] + urlMask
	}
	start := 0
	if i := strings.Index(s, "://"); i >= 0 {
		start = i + 3
	}
	end := len(s)
	if i := strings.IndexAny(s[start:], "/?#"); i >= 0 {
		end = start + i
	}
	if at := strings.LastIndexByte(s[start:end], '@'); at >= 0 {
		return s[:start] + urlMask + s[start+at:]
	}
	return s
}
