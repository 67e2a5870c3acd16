package klavi

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klavi-billing/billingd/cycle"
)

// The patterns the hand-written matchers replace, and the parsers as they were
// written on them: the oracle the matchers and parsers are compared with.
var (
	reAnswerDate = regexp.MustCompile(`^(\d{4})-(\d{1,2})-(\d{1,2})$`)
	reAnswerTime = regexp.MustCompile(`^(\d{4})-(\d{1,2})-(\d{1,2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(?:([Zz])|([+-])(\d{2}):?(\d{2}))?$`)
)

func regexpAnswerDate(s string) (cycle.Date, error) {
	if s == "" {
		return cycle.Date{}, nil
	}
	m := reAnswerDate.FindStringSubmatch(s)
	if m == nil {
		return cycle.Date{}, fmt.Errorf("%w %q: want YYYY-MM-DD", cycle.ErrDate, truncate(s, 40))
	}
	return regexpCivil(s, m[1], m[2], m[3])
}

func regexpCivil(s, ys, ms, ds string) (cycle.Date, error) {
	y, _ := strconv.Atoi(ys)
	mo, _ := strconv.Atoi(ms)
	d, _ := strconv.Atoi(ds)
	dt, ok := cycle.NewDate(y, time.Month(mo), d)
	if !ok {
		return cycle.Date{}, fmt.Errorf("%w %q: no such day", cycle.ErrDate, truncate(s, 40))
	}
	return dt, nil
}

func regexpAnswerTime(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	bad := func(why string) (time.Time, error) {
		return time.Time{}, fmt.Errorf("invalid date-time %q: %s", truncate(s, 40), why)
	}
	m := reAnswerTime.FindStringSubmatch(s)
	if m == nil {
		return bad("want YYYY-MM-DDThh:mm:ss[.fraction][Z|±hh:mm]")
	}
	d, err := regexpCivil(s, m[1], m[2], m[3])
	if err != nil {
		return bad("no such day")
	}
	hh, _ := strconv.Atoi(m[4])
	mm, _ := strconv.Atoi(m[5])
	ss, _ := strconv.Atoi(m[6])
	if hh > 23 || mm > 59 || ss > 59 {
		return bad("no such time of day")
	}
	ns := 0
	if f := m[7]; f != "" {
		ns, _ = strconv.Atoi(f + strings.Repeat("0", 9-len(f)))
	}
	loc := time.UTC
	if m[9] != "" {
		oh, _ := strconv.Atoi(m[10])
		om, _ := strconv.Atoi(m[11])
		if oh > 23 || om > 59 {
			return bad("no such zone offset")
		}
		off := oh*3600 + om*60
		if m[9] == "-" {
			off = -off
		}
		loc = time.FixedZone("", off)
	}
	y, mo, dd := d.Civil()
	return time.Date(y, mo, dd, hh, mm, ss, ns, loc).UTC(), nil
}

// dateGroups and timeGroups are the matchers' answers in FindStringSubmatch's shape.
func dateGroups[T text](s T) []string { m, ok := matchAnswerDate(s); return groups(m, ok, 4) }
func timeGroups[T text](s T) []string { m, ok := matchAnswerTime(s); return groups(m, ok, 12) }

// groups is m[:n] as strings, nil when there was no match.
func groups[T text](m [12]T, ok bool, n int) []string {
	if !ok {
		return nil
	}
	out := make([]string, n)
	for i := range out {
		out[i] = string(m[i])
	}
	return out
}

// errString is err's text, "" for nil.
func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// sameAsRegexp checks that the matchers find what the patterns find, group by
// group, and that the parsers, on a string and on bytes, return what the regexp
// parsers did: the same value (==, zone and all) and the same error text.
func sameAsRegexp(t *testing.T, s string) {
	t.Helper()
	assert.Equal(t, reAnswerDate.FindStringSubmatch(s), dateGroups(s), "date groups of %q", s)
	assert.Equal(t, reAnswerDate.FindStringSubmatch(s), dateGroups([]byte(s)), "date groups of %q as bytes", s)
	assert.Equal(t, reAnswerTime.FindStringSubmatch(s), timeGroups(s), "date-time groups of %q", s)
	assert.Equal(t, reAnswerTime.FindStringSubmatch(s), timeGroups([]byte(s)), "date-time groups of %q as bytes", s)

	wantD, wantDErr := regexpAnswerDate(s)
	for _, f := range []func(string) (cycle.Date, error){ParseAnswerDate, func(s string) (cycle.Date, error) { return parseAnswerDate([]byte(s)) }} {
		got, err := f(s)
		assert.Equal(t, wantD, got, "date %q", s)
		assert.Equal(t, errString(wantDErr), errString(err), "date %q", s)
		assert.Equal(t, errors.Is(wantDErr, cycle.ErrDate), errors.Is(err, cycle.ErrDate), "date %q wraps cycle.ErrDate", s)
	}
	wantT, wantTErr := regexpAnswerTime(s)
	for _, f := range []func(string) (time.Time, error){ParseAnswerTime, func(s string) (time.Time, error) { return parseAnswerTime([]byte(s)) }} {
		got, err := f(s)
		assert.True(t, wantT == got, "date-time %q: got %#v, want %#v", s, got, wantT)
		assert.Equal(t, errString(wantTErr), errString(err), "date-time %q", s)
	}
}

// Edge cases of every group: lengths one short and one long, each separator and
// its neighbours, zones, the ends of the year, day and offset ranges.
var answerPatternCases = []string{
	"", "2023-01-23", "2023-1-3", "2023-001-23", "2023-01-123", "023-01-23", "20234-01-23", "2023-01-", "2023--23",
	"2023-01-23 ", " 2023-01-23", "2023-01-23\n", "2023/01/23", "２０２３-01-23", "0000-01-01", "0001-01-01", "9999-12-31",
	"2023-02-29", "2024-02-29", "2023-13-01", "2023-00-10", "2023-01-00", "2023-1-32",
	"2023-01-23T10:00:00Z", "2023-01-23t10:00:00z", "2023-01-23 10:00:00Z", "2023-01-23_10:00:00Z", "2023-01-23T10:00:00",
	"2023-01-23T10:00Z", "2023-01-23T1:00:00Z", "2023-01-23T100:00:00Z", "2023-01-23T10:00:000Z", "2023-01-23T10-00-00Z",
	"2023-01-23T10:00:00.Z", "2023-01-23T10:00:00.1Z", "2023-01-23T10:00:00.45Z", "2023-01-23T10:00:00.123456789Z",
	"2023-01-23T10:00:00.1234567890Z", "2023-01-23T10:00:00,5Z", "2023-01-23T10:00:00.5", "2023-01-23T14:17:06.45Z",
	"2023-01-23T10:00:00+00:00", "2023-01-23T10:00:00-03:00", "2023-01-23T10:00:00-0300", "2023-01-23T10:00:00+03",
	"2023-01-23T10:00:00+3:00", "2023-01-23T10:00:00+03:0", "2023-01-23T10:00:00+03::00", "2023-01-23T10:00:00+03:000",
	"2023-01-23T10:00:00+23:59", "2023-01-23T10:00:00+24:00", "2023-01-23T10:00:00-00:60", "2023-01-23T10:00:00Z+01:00",
	"2023-01-23T10:00:00ZZ", "2023-01-23T10:00:00.5+01:30", "2023-01-23T10:00:00 Z", "2023-01-23T23:59:59Z",
	"2023-01-23T24:00:00Z", "2023-01-23T23:60:00Z", "2023-01-23T23:59:60Z", "2023-02-30T10:00:00Z", "2023-1-3T1:0:0Z",
	"0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59.999999999-23:59", "0000-01-01T00:00:00Z", "2023-01-23T",
	"2023-01-23T10:00:00\x00", "2023-01-23T10:00:00é", "T10:00:00Z", "-",
}

func TestAnswerPatterns_SameAsRegexp(t *testing.T) {
	for _, s := range answerPatternCases {
		sameAsRegexp(t, s)
	}
}

func FuzzAnswerPatterns(f *testing.F) {
	for _, s := range answerPatternCases {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) { sameAsRegexp(t, s) })
}

// The usual answer is read where the decoder holds it: parsing allocates nothing.
func TestAnswerTime_PlainIsReadInPlace(t *testing.T) {
	var tm time.Time
	var d cycle.Date
	for _, in := range []string{`"2026-03-05T10:00:00Z"`, `"2023-01-23T14:17:06.45-03:00"`} {
		b := []byte(in)
		assert.Zero(t, testing.AllocsPerRun(100, func() { require.NoError(t, answerTime{&tm}.UnmarshalJSON(b)) }), in)
	}
	b := []byte(`"2026-03-05"`)
	assert.Zero(t, testing.AllocsPerRun(100, func() { require.NoError(t, answerDate{&d}.UnmarshalJSON(b)) }))
	assert.Equal(t, cycle.MustDate(2026, 3, 5), d)
}
