package cycle

import (
	"fmt"
	"strings"
	"unicode"
)

// An Interval is the periodicity of a consent's billing cycles. The zero Interval is
// not valid.
type Interval uint8

// The five intervals of Pix Automático.
const (
	Weekly Interval = iota + 1
	Monthly
	Quarterly
	Semiannual
	Yearly
)

// Intervals lists every valid Interval in increasing period.
var Intervals = []Interval{Weekly, Monthly, Quarterly, Semiannual, Yearly}

var intervalNames = [...]string{"", "WEEKLY", "MONTHLY", "QUARTERLY", "SEMIANNUAL", "YEARLY"}

// Valid reports whether iv is one of the five intervals.
func (iv Interval) Valid() bool { return iv >= Weekly && iv <= Yearly }

// String returns the API name (UPPER_SNAKE_CASE), or "Interval(n)" for an invalid value.
func (iv Interval) String() string {
	if iv.Valid() {
		return intervalNames[iv]
	}
	return fmt.Sprintf("Interval(%d)", uint8(iv))
}

// Months returns the number of months in one period, or 0 for Weekly.
func (iv Interval) Months() int {
	switch iv {
	case Monthly:
		return 1
	case Quarterly:
		return 3
	case Semiannual:
		return 6
	case Yearly:
		return 12
	}
	return 0
}

// RetryWindowDays is how many days after the original settlement date a retry may
// still settle: 5 for Weekly, 7 for every other interval (inclusive).
func (iv Interval) RetryWindowDays() int {
	if iv == Weekly {
		return 5
	}
	return 7
}

// NormalizeEnum folds an API enum spelling to its canonical UPPER_SNAKE_CASE form:
// surrounding space trimmed; letters upper-cased (Unicode-aware) with their
// diacritics dropped ("não informado" → "NAO_INFORMADO", "ç" → "C", "é" → "E");
// every run of separators (space, tab or any other Unicode space, '_', '-') becomes
// one '_', and separators at either end are dropped ("payment__completed",
// "Payment - Completed" → "PAYMENT_COMPLETED"). Other characters are kept, so an
// unknown value stays recognizable.
func NormalizeEnum(s string) string {
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
		b.WriteString(foldLetter(r))
	}
	return b.String()
}

// foldLetter upper-cases r and drops its diacritic: the Latin-1 and Latin
// Extended-A letters Portuguese and Spanish use map to their base letter (Æ and ß
// to two letters); other letters are only upper-cased.
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

// ParseInterval parses an interval name case-insensitively, treating '_', ' ' and
// '-' alike ("monthly", "Semi-Annual", "SEMIANNUAL").
func ParseInterval(s string) (Interval, error) {
	key := strings.ReplaceAll(NormalizeEnum(s), "_", "")
	for _, iv := range Intervals {
		if key == iv.String() {
			return iv, nil
		}
	}
	return 0, fmt.Errorf("%w %q: want one of WEEKLY, MONTHLY, QUARTERLY, SEMIANNUAL, YEARLY", ErrInterval, s)
}

// MarshalText implements encoding.TextMarshaler.
func (iv Interval) MarshalText() ([]byte, error) {
	if !iv.Valid() {
		return nil, fmt.Errorf("%w: %d", ErrInterval, uint8(iv))
	}
	return []byte(iv.String()), nil
}

// UnmarshalText implements encoding.TextUnmarshaler with ParseInterval.
func (iv *Interval) UnmarshalText(b []byte) error {
	v, err := ParseInterval(string(b))
	if err != nil {
		return err
	}
	*iv = v
	return nil
}
