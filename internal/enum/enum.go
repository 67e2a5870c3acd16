package enum

import (
	"strings"
	"unicode"
)

// Normalize folds an API enum spelling to its canonical UPPER_SNAKE_CASE form:
// surrounding space trimmed; letters upper-cased (Unicode-aware) with their
// diacritics dropped ("não informado" → "NAO_INFORMADO", "ç" → "C", "é" → "E");
// every run of separators (space, tab or any other Unicode space, '_', '-') becomes
// one '_', and separators at either end are dropped ("payment__completed",
// "Payment - Completed" → "PAYMENT_COMPLETED"). Other characters are kept, so an
// unknown value stays recognizable.
func Normalize(s string) string {
	if canonical(s) {
		return s // the usual case (billingd's own records, Klavi's usual spelling): no copy
	}
	return fold(s)
}

// fold is Normalize without its shortcut.
func fold(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	sep := false
	for _, r := range s {
		if r == '_' || r == '-' || unicode.IsSpace(r) {
			sep = b.Len() > 0
			continue
		}
		if sep {
			b.WriteByte('_')
			sep = false
		}
		if r < 0x80 {
			b.WriteRune(unicode.ToUpper(r))
			continue
		}
		b.WriteString(foldLetter(r))
	}
	return b.String()
}

// canonical reports whether s is already what Normalize returns for it: ASCII
// upper-case letters, digits and other printable ASCII but separators, words joined
// by single underscores, none at either end.
func canonical(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 0x80 || c <= ' ' || c == '-' || c == 0x7f || ('a' <= c && c <= 'z'):
			return false
		case c == '_' && (i == 0 || i == len(s)-1 || s[i-1] == '_'):
			return false
		}
	}
	return true
}

func foldLetter(r rune) string {
	if r < 0x80 {
		return string(unicode.ToUpper(r))
	}
	u := unicode.ToUpper(r)
	if base, ok := latinBase[u]; ok {
		return base
	}
	return string(u)
}

// latinBase maps accented upper-case Latin letters to their base letters.
var latinBase = func() map[rune]string {
	m := map[rune]string{'Æ': "AE", 'Œ': "OE", 'ẞ': "SS", 'ß': "SS", 'Ø': "O", 'Đ': "D", 'Ł': "L", 'Ð': "D", 'Þ': "TH"}
	for base, letters := range map[string]string{
		"A": "ÀÁÂÃÄÅĀĂĄ", "C": "ÇĆĈĊČ", "D": "Ď", "E": "ÈÉÊËĒĔĖĘĚ", "G": "ĜĞĠĢ", "H": "ĤĦ",
		"I": "ÌÍÎÏĨĪĬĮİ", "J": "Ĵ", "K": "Ķ", "L": "ĹĻĽĿ", "N": "ÑŃŅŇ", "O": "ÒÓÔÕÖŌŎŐ",
		"R": "ŔŖŘ", "S": "ŚŜŞŠ", "T": "ŢŤŦ", "U": "ÙÚÛÜŨŪŬŮŰŲ", "W": "Ŵ", "Y": "ÝŶŸ", "Z": "ŹŻŽ",
	} {
		for _, r := range letters {
			m[r] = base
		}
	}
	return m
}()
