package redact

import "strings"

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
