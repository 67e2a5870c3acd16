package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klavi-billing/billingd/clock"
	"github.com/klavi-billing/billingd/cycle"
	"github.com/klavi-billing/billingd/storage"
)

// fakeAPI is an httptest admin API answering each "METHOD /path" with a fixed body;
// a route may answer by query ("GET /v1/x?after=2"). It records every request.
type fakeAPI struct {
	t      *testing.T
	srv    *httptest.Server
	routes map[string]string // "GET /v1/attention" or with "?query" → JSON body
	status map[string]int

	mu   sync.Mutex
	reqs []*http.Request
	body []string
}

func newFakeAPI(t *testing.T, routes map[string]string) *fakeAPI {
	f := &fakeAPI{t: t, routes: routes, status: map[string]int{}}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		f.reqs = append(f.reqs, r)
		f.body = append(f.body, string(b))
		f.mu.Unlock()
		if r.Header.Get("Authorization") != "Bearer "+testToken {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		for _, key := range []string{r.Method + " " + r.URL.Path + "?" + r.URL.RawQuery, r.Method + " " + r.URL.Path} {
			if body, ok := f.routes[key]; ok {
				w.Header().Set("Content-Type", "application/json")
				if code := f.status[key]; code != 0 {
					w.WriteHeader(code)
				}
				io.WriteString(w, body)
				return
			}
		}
		w.WriteHeader(http.StatusNotFound)
		io.WriteString(w, `{"error":"no route `+r.Method+` `+r.URL.Path+`"}`)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

// cli runs billingd against the fake, on a clock at at.
func (f *fakeAPI) cli(at time.Time, extra map[string]string, args ...string) (int, string, string) {
	f.t.Helper()
	var out, errb bytes.Buffer
	getenv := func(k string) string {
		switch k {
		case "BILLINGD_ADDR":
			return f.srv.URL
		case "BILLINGD_ADMIN_TOKEN":
			return testToken
		}
		return extra[k]
	}
	e := &env{stdout: &out, stderr: &errb, getenv: getenv, clock: clock.NewFake(at)}
	code := Main(context.Background(), e, args)
	return code, out.String(), errb.String()
}

func (f *fakeAPI) requests() ([]*http.Request, []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*http.Request(nil), f.reqs...), append([]string(nil), f.body...)
}

var nov26 = cycle.MustDate(2026, 11, 26).At(10, 0)

func TestAttention_List(t *testing.T) {
	f := newFakeAPI(t, map[string]string{
		"GET /v1/attention?limit=1000": `{"items":[
			{"consentId":"urn:c:1","cycle":3,"attempt":0,"state":"MISSED","date":"2026-11-23","amount":"99.90","reason":"the window closed","clientRequestId":"billingd-a-3-0","since":"2026-11-22T12:00:00Z","ageSeconds":302400}],
			"counts":{"MISSED":1,"FAILED":1,"AMOUNT_MISSING":0},"next":"k1"}`,
		"GET /v1/attention?after=k1&limit=999": `{"items":[
			{"consentId":"urn:c:2","cycle":0,"attempt":1,"state":"FAILED","date":"2026-11-25","amount":null,"reason":"refused:\n 422","clientRequestId":"billingd-b-0-1","paymentId":"","since":"2026-11-26T12:40:00Z","ageSeconds":1200}],
			"counts":{"MISSED":1,"FAILED":1},"next":""}`,
	})
	t.Run("table, every page, ages and counts", func(t *testing.T) {
		code, stdout, stderr := f.cli(nov26, nil, "attention", "list")
		require.Equal(t, 0, code, stderr)
		assert.Contains(t, stdout, "open: 1 MISSED, 1 FAILED\n")
		assert.Contains(t, stdout, "ITEM")
		assert.Contains(t, stdout, "AGE")
		assert.Contains(t, stdout, "urn:c:1/3/0")
		assert.Contains(t, stdout, "3d12h")
		assert.Contains(t, stdout, "Sun 2026-11-22 09:00 -03", "since, in Brasília with the zone")
		assert.Contains(t, stdout, "R$ 99,90")
		assert.Contains(t, stdout, "urn:c:2/0/1")
		assert.Contains(t, stdout, "20m")
		assert.Contains(t, stdout, "refused: 422", "a reason on one line")
	})
	t.Run("json: instants with the Brasília offset", func(t *testing.T) {
		code, stdout, stderr := f.cli(nov26, nil, "attention", "list", "--format", "json")
		require.Equal(t, 0, code, stderr)
		var out struct {
			Items  []map[string]any `json:"items"`
			Counts map[string]int   `json:"counts"`
		}
		require.NoError(t, json.Unmarshal([]byte(stdout), &out))
		require.Len(t, out.Items, 2)
		assert.Equal(t, "2026-11-22T09:00:00-03:00", out.Items[0]["since"])
		assert.Equal(t, "99.90", out.Items[0]["amount"])
		assert.Nil(t, out.Items[1]["amount"])
		assert.Equal(t, 1, out.Counts["MISSED"])
	})
	t.Run("nothing open", func(t *testing.T) {
		g := newFakeAPI(t, map[string]string{"GET /v1/attention": `{"items":[],"counts":{"MISSED":0},"next":""}`})
		code, stdout, _ := g.cli(nov26, nil, "attention", "list", "--state", "missed")
		require.Equal(t, 0, code)
		assert.Equal(t, "open: nothing\n", stdout)
		reqs, _ := g.requests()
		assert.Equal(t, "MISSED", reqs[0].URL.Query().Get("state"))
	})
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"bad format", []string{"--format", "xml"}, `attention list: --format "xml": want table or json`},
		{"bad limit", []string{"--limit", "0"}, "--limit 0"},
		{"stray argument", []string{"now"}, `unexpected argument "now"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := f.cli(nov26, nil, append([]string{"attention", "list"}, tc.args...)...)
			assert.Equal(t, 2, code)
			assert.Contains(t, stderr, tc.want)
			assert.Contains(t, stderr, "Run 'billingd attention list --help' for usage.")
		})
	}
}

func TestAttention_Resolve(t *testing.T) {
	f := newFakeAPI(t, map[string]string{"POST /v1/attention/resolve": `{"consentId":"urn:a/b","cycle":3,"attempt":1,"state":"MISSED"}`})
	t.Run("flags after the item; the actor from $USER", func(t *testing.T) {
		code, stdout, stderr := f.cli(nov26, map[string]string{"USER": "alice"}, "attention", "resolve", "urn:a/b/3/1", "--note", "charged by hand")
		require.Equal(t, 0, code, stderr)
		assert.Equal(t, "resolved urn:a/b/3/1 (MISSED) as alice: charged by hand\n", stdout)
		reqs, bodies := f.requests()
		r := reqs[len(reqs)-1]
		assert.Equal(t, "alice", r.Header.Get("X-Billingd-Actor"))
		assert.JSONEq(t, `{"consentId":"urn:a/b","cycle":3,"attempt":1,"note":"charged by hand"}`, bodies[len(bodies)-1])
	})
	t.Run("--actor wins", func(t *testing.T) {
		code, _, stderr := f.cli(nov26, map[string]string{"USER": "root"}, "attention", "resolve", "--actor", "bob", "--note", "x", "urn:a/b/3/1")
		require.Equal(t, 0, code, stderr)
		reqs, _ := f.requests()
		assert.Equal(t, "bob", reqs[len(reqs)-1].Header.Get("X-Billingd-Actor"))
	})
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no item", []string{"--note", "x"}, "want exactly one item CONSENT_ID/CYCLE/ATTEMPT"},
		{"not an item", []string{"urn:a", "--note", "x"}, `"urn:a" is not CONSENT_ID/CYCLE/ATTEMPT`},
		{"cycle not a number", []string{"urn:a/x/0", "--note", "x"}, "is not CONSENT_ID/CYCLE/ATTEMPT"},
		{"no note", []string{"urn:a/1/0"}, "--note is required"},
		{"no actor", []string{"urn:a/1/0", "--note", "x"}, "set --actor NAME"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := f.cli(nov26, nil, append([]string{"attention", "resolve"}, tc.args...)...)
			assert.Equal(t, 2, code)
			assert.Contains(t, stderr, tc.want)
		})
	}
	t.Run("the daemon refuses: exit 2 with its reason", func(t *testing.T) {
		g := newFakeAPI(t, map[string]string{"POST /v1/attention/resolve": `{"error":"urn:a/1/0 is not open"}`})
		g.status["POST /v1/attention/resolve"] = http.StatusConflict
		code, _, stderr := g.cli(nov26, map[string]string{"USER": "alice"}, "attention", "resolve", "urn:a/1/0", "--note", "x")
		assert.Equal(t, 2, code)
		assert.Contains(t, stderr, "urn:a/1/0 is not open (HTTP 409)")
	})
}

const upcomingJSON = `{"from":"2026-11-26","to":"2026-11-28",
 "items":[
  {"consentId":"urn:c:1","cycle":4,"attempt":0,"kind":"original","submitAt":"2026-11-26T12:00:00Z","dueDate":"2026-11-29","amount":"1234.56","interval":"MONTHLY","mode":"attach"},
  {"consentId":"urn:c:2","cycle":1,"attempt":2,"kind":"retry","submitAt":"2026-11-26T12:00:00Z","dueDate":"2026-11-27","amount":"10.00","interval":"WEEKLY","mode":"local"},
  {"consentId":"urn:c:3","cycle":7,"attempt":0,"kind":"original","submitAt":"2026-11-28T12:00:00Z","dueDate":"2026-12-01","amount":null,"interval":"MONTHLY","mode":"off"}],
 "days":[{"date":"2026-11-26","count":2,"amount":"1244.56","noAmount":0},{"date":"2026-11-28","count":1,"amount":"0.00","noAmount":1}],
 "total":{"count":3,"amount":"1244.56","noAmount":1}}`

func TestPayments_Upcoming(t *testing.T) {
	f := newFakeAPI(t, map[string]string{"GET /v1/upcoming": upcomingJSON})
	t.Run("table by day, day totals, R$", func(t *testing.T) {
		code, stdout, stderr := f.cli(nov26, nil, "payments", "upcoming", "--from", "2026-11-26", "--to", "2026-11-28")
		require.Equal(t, 0, code, stderr)
		assert.Contains(t, stdout, "charges submitted Thu 2026-11-26 → Sat 2026-11-28 (Brasília)")
		assert.Contains(t, stdout, "Thu 2026-11-26  2 charges, R$ 1.244,56")
		assert.Contains(t, stdout, "Sat 2026-11-28  1 charge, R$ 0,00")
		assert.Contains(t, stdout, "09:00 -03")
		assert.Contains(t, stdout, "R$ 1.234,56")
		assert.Contains(t, stdout, "retry 2")
		assert.Contains(t, stdout, "(variable, not set)")
		assert.Contains(t, stdout, "total: 3 charges, R$ 1.244,56 (and 1 charge of a variable cycle with no amount set yet)")
		assert.Less(t, strings.Index(stdout, "urn:c:2"), strings.Index(stdout, "\nSat 2026-11-28  1 charge"), "each charge under its day")
		reqs, _ := f.requests()
		assert.Equal(t, "from=2026-11-26&to=2026-11-28", reqs[len(reqs)-1].URL.RawQuery)
	})
	t.Run("csv", func(t *testing.T) {
		code, stdout, _ := f.cli(nov26, nil, "payments", "upcoming", "--format", "csv")
		require.Equal(t, 0, code)
		lines := strings.Split(strings.TrimSpace(stdout), "\n")
		require.Len(t, lines, 4)
		assert.Equal(t, "submitAt,dueDate,consentId,cycle,attempt,kind,amount,interval,mode", lines[0])
		assert.Equal(t, "2026-11-26T09:00:00-03:00,2026-11-29,urn:c:1,4,0,original,1234.56,MONTHLY,attach", lines[1])
		assert.Equal(t, "2026-11-28T09:00:00-03:00,2026-12-01,urn:c:3,7,0,original,,MONTHLY,off", lines[3])
	})
	t.Run("json", func(t *testing.T) {
		code, stdout, _ := f.cli(nov26, nil, "payments", "upcoming", "--format", "json")
		require.Equal(t, 0, code)
		assert.Contains(t, stdout, `"submitAt": "2026-11-26T09:00:00-03:00"`)
		assert.Contains(t, stdout, `"amount": null`)
		assert.Contains(t, stdout, `"noAmount": 1`)
	})
	for _, tc := range []struct {
		name, want string
		args       []string
	}{
		{"bad from", "payments upcoming: --from", []string{"--from", "2026-2-3"}},
		{"to before from", "--to 2026-11-01 is before --from 2026-11-26", []string{"--from", "2026-11-26", "--to", "2026-11-01"}},
		{"bad format", "want table, json or csv", []string{"--format", "yaml"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, _, stderr := f.cli(nov26, nil, append([]string{"payments", "upcoming"}, tc.args...)...)
			assert.Equal(t, 2, code)
			assert.Contains(t, stderr, tc.want)
		})
	}
	t.Run("answers that fail", func(t *testing.T) {
		g := newFakeAPI(t, map[string]string{"GET /v1/upcoming": `{"error":"boom"}`})
		g.status["GET /v1/upcoming"] = http.StatusInternalServerError
		code, _, stderr := g.cli(nov26, nil, "payments", "upcoming")
		assert.Equal(t, 1, code, "a 5xx is a runtime failure")
		assert.Contains(t, stderr, "boom (HTTP 500)")
		h := newFakeAPI(t, map[string]string{"GET /v1/upcoming": `{"items": [`})
		code, _, _ = h.cli(nov26, nil, "payments", "upcoming")
		assert.Equal(t, 1, code, "bad JSON")
	})
}

const reportJSON = `{"month":"2026-11","from":"2026-11-01","to":"2026-11-30",
 "rows":[{"interval":"MONTHLY","outcome":"submitted","count":2,"amount":"1099.80"},
         {"interval":"MONTHLY","outcome":"completed","count":1,"amount":"99.90"}],
 "totals":{"completed":{"count":1,"amount":"99.90"},"submitted":{"count":2,"amount":"1099.80"}}}`

func TestReport(t *testing.T) {
	f := newFakeAPI(t, map[string]string{"GET /v1/report": reportJSON})
	t.Run("table with totals in the rows' order", func(t *testing.T) {
		code, stdout, stderr := f.cli(nov26, nil, "report")
		require.Equal(t, 0, code, stderr)
		reqs, _ := f.requests()
		assert.Equal(t, "month=2026-11", reqs[len(reqs)-1].URL.RawQuery, "this month in Brasília by default")
		assert.Contains(t, stdout, "ledger of 2026-11 (Brasília)")
		assert.Contains(t, stdout, "R$ 1.099,80")
		assert.Regexp(t, `(?s)total +submitted +2 +R\$ 1.099,80\ntotal +completed +1 +R\$ 99,90\n`, stdout)
	})
	t.Run("csv", func(t *testing.T) {
		code, stdout, _ := f.cli(nov26, nil, "report", "--month", "2026-11", "--format", "csv")
		require.Equal(t, 0, code)
		assert.Equal(t, "month,interval,outcome,count,amount\n2026-11,MONTHLY,submitted,2,1099.80\n2026-11,MONTHLY,completed,1,99.90\n", stdout)
	})
	t.Run("json", func(t *testing.T) {
		code, stdout, _ := f.cli(nov26, nil, "report", "--format", "json")
		require.Equal(t, 0, code)
		var rep map[string]any
		require.NoError(t, json.Unmarshal([]byte(stdout), &rep))
		assert.Equal(t, "2026-11", rep["month"])
		assert.Contains(t, rep, "totals")
	})
	t.Run("bad month", func(t *testing.T) {
		code, _, stderr := f.cli(nov26, nil, "report", "--month", "2026-13")
		assert.Equal(t, 2, code)
		assert.Contains(t, stderr, `report: --month "2026-13": want YYYY-MM`)
	})
}

func TestPayments_ListByRange(t *testing.T) {
	att := func(id string, k int) string {
		return `{"consentId":"` + id + `","cycle":` + string(rune('0'+k)) + `,"attempt":0,"state":"COMPLETED","clientRequestId":"billingd-x-` +
			string(rune('0'+k)) + `-0","date":"2026-11-0` + string(rune('1'+k)) + `","amount":"99.90","paymentId":"p` + string(rune('0'+k)) +
			`","createdAt":"2026-10-29T12:00:00Z","updatedAt":"2026-11-02T09:00:00Z"}`
	}
	f := newFakeAPI(t, map[string]string{
		"GET /v1/payments?format=json&from=2026-11-01&limit=500&state=COMPLETED&to=2026-11-30":           `{"payments":[` + att("urn:c:1", 0) + `],"next":"c1"}`,
		"GET /v1/payments?cursor=c1&format=json&from=2026-11-01&limit=500&state=COMPLETED&to=2026-11-30": `{"payments":[` + att("urn:c:1", 1) + `,` + att("urn:c:2", 2) + `],"next":""}`,
	})
	t.Run("every page, csv", func(t *testing.T) {
		code, stdout, stderr := f.cli(nov26, nil, "payments", "list", "--from", "2026-11-01", "--to", "2026-11-30", "--state", "completed", "--format", "csv")
		require.Equal(t, 0, code, stderr)
		lines := strings.Split(strings.TrimSpace(stdout), "\n")
		require.Len(t, lines, 4)
		assert.Equal(t, "consentId,cycle,attempt,state,date,amount,clientRequestId,paymentId,status,reason", lines[0])
		assert.Equal(t, "urn:c:2,2,0,COMPLETED,2026-11-03,99.90,billingd-x-2-0,p2,,", lines[3])
	})
	t.Run("json with Brasília instants", func(t *testing.T) {
		code, stdout, stderr := f.cli(nov26, nil, "payments", "list", "--from", "2026-11-01", "--to", "2026-11-30", "--state", "COMPLETED", "--format", "json")
		require.Equal(t, 0, code, stderr)
		assert.Contains(t, stdout, `"createdAt": "2026-10-29T09:00:00-03:00"`)
		assert.NotContains(t, stdout, `Z"`)
	})
	t.Run("a daemon without the range API", func(t *testing.T) {
		g := newFakeAPI(t, nil)
		code, _, stderr := g.cli(nov26, nil, "payments", "list", "--from", "2026-11-01")
		assert.Equal(t, 1, code)
		assert.Contains(t, stderr, "this daemon does not list payments by date")
	})
	t.Run("one consent's attempts of one state", func(t *testing.T) {
		g := newFakeAPI(t, map[string]string{"GET /v1/consents/urn:c:1/attempts": `{"attempts":[` + att("urn:c:1", 0) +
			`,{"consentId":"urn:c:1","cycle":1,"attempt":0,"state":"MISSED","date":"2026-11-02","amount":"99.90"}]}`})
		code, stdout, stderr := g.cli(nov26, nil, "payments", "list", "--consent", "urn:c:1", "--state", "MISSED")
		require.Equal(t, 0, code, stderr)
		assert.Contains(t, stdout, "MISSED")
		assert.NotContains(t, stdout, "COMPLETED")
	})
}

// TestPayments_ListState: a --state payments list cannot ask for is refused before
// any request, naming the valid states and when a date range is needed.
func TestPayments_ListState(t *testing.T) {
	tests := []struct {
		name string
		args []string
		want []string
	}{
		{"a settled state without a range", []string{"--state", "COMPLETED"},
			[]string{"--state COMPLETED needs a date range (--from, --to) or --consent", "UNCONFIRMED, STUCK, MISSED, FAILED or SKIPPED"}},
		{"lower case, without a range", []string{"--state", "rejected"}, []string{"--state REJECTED needs a date range"}},
		{"not a state, with a range", []string{"--state", "BOGUS", "--from", "2026-11-01", "--to", "2026-11-30"},
			[]string{`--state "BOGUS": want one of SUBMITTING, SUBMITTED, COMPLETED, REJECTED, UNCONFIRMED, STUCK, FAILED, MISSED, SKIPPED, PLANNED or DROPPED`}},
		{"not a state, without a range", []string{"--state", "BOGUS"}, []string{`--state "BOGUS": want one of SUBMITTING,`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeAPI(t, nil)
			code, _, stderr := f.cli(nov26, nil, append([]string{"payments", "list"}, tt.args...)...)
			assert.Equal(t, exitUsage, code)
			for _, w := range tt.want {
				assert.Contains(t, stderr, w)
			}
			reqs, _ := f.requests()
			assert.Empty(t, reqs, "refused before asking the daemon")
		})
	}
	t.Run("an attention state without a range is asked for", func(t *testing.T) {
		f := newFakeAPI(t, map[string]string{"GET /v1/attempts": `{"attempts":[]}`})
		code, _, stderr := f.cli(nov26, nil, "payments", "list", "--state", "missed")
		require.Equal(t, 0, code, stderr)
	})
	t.Run("the help says which states need a range", func(t *testing.T) {
		_, stdout, _ := runCLI(t, nil, "payments", "list", "-h")
		for _, st := range storage.AttemptStates {
			assert.Contains(t, stdout, string(st))
		}
		assert.Contains(t, stdout, "--state takes any attempt state with --from, --to or --consent")
	})
}

func TestConsent_ListFields(t *testing.T) {
	for name, body := range map[string]string{
		"old field name": `{"consents":[{"id":"urn:c:1","state":"active","interval":"MONTHLY","amount":"99.90","nextCycle":2,"nextDue":"2026-11-27T12:00:00Z"}]}`,
		"new field names": `{"consents":[{"id":"urn:c:1","state":"active","interval":"MONTHLY","amount":"99.90","nextCycle":2,` +
			`"nextSubmitAt":"2026-11-27T09:00:00-03:00","nextDueDate":"2026-11-30","nextDue":"2026-11-27T12:00:00Z"}]}`,
	} {
		t.Run(name, func(t *testing.T) {
			f := newFakeAPI(t, map[string]string{"GET /v1/consents": body})
			code, stdout, stderr := f.cli(nov26, nil, "consent", "list")
			require.Equal(t, 0, code, stderr)
			assert.Contains(t, stdout, "NEXT DUE")
			assert.Contains(t, stdout, "Fri 2026-11-27 09:00 -03")
			code, stdout, _ = f.cli(nov26, nil, "consent", "list", "--format", "json")
			require.Equal(t, 0, code)
			assert.Contains(t, stdout, `"nextSubmitAt": "2026-11-27T09:00:00-03:00"`)
			assert.NotContains(t, stdout, `"nextDue"`)
			if name == "new field names" {
				assert.Contains(t, stdout, `"nextDueDate": "2026-11-30"`)
			} else {
				assert.Contains(t, stdout, `"nextDueDate": null`)
			}
		})
	}
}

func TestConsent_AddWindowClosed(t *testing.T) {
	file := "../../examples/consents/weekly-retries.json" // Mondays from Mon 2026-01-05
	tests := []struct {
		name string
		at   time.Time
		rec  string
		want string
	}{
		{"planned", cycle.MustDate(2026, 1, 1).At(8, 0), `{"consent":{"id":"urn:klavi:consent-weekly-0002"},"state":"active","nextCycle":0,"nextDue":"2026-01-02T12:00:00Z"}`,
			"added urn:klavi:consent-weekly-0002: active, next cycle 0, submitted Fri 2026-01-02 09:00 -03\n"},
		{"late: submitted at the next scan", cycle.MustDate(2026, 1, 3).At(8, 0), `{"consent":{"id":"urn:klavi:consent-weekly-0002"},"state":"active","nextCycle":0,"nextSubmitAt":"2026-01-02T09:00:00-03:00"}`,
			"added urn:klavi:consent-weekly-0002: active, next cycle 0 (due Mon 2026-01-05), submitted at the next scan: its submit day Fri 2026-01-02 has passed and the window is open until Sat 2026-01-03\n"},
		{"missed: says so and names the next cycle billed", cycle.MustDate(2026, 1, 4).At(8, 0), `{"consent":{"id":"urn:klavi:consent-weekly-0002"},"state":"active","nextCycle":0,"nextDue":"2026-01-02T12:00:00Z"}`,
			"added urn:klavi:consent-weekly-0002: active, cycle 0 (due Mon 2026-01-05) will be MISSED: its window closed on Sat 2026-01-03; the next cycle billed is 1 (due Mon 2026-01-12), submitted Fri 2026-01-09 09:00 -03\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeAPI(t, map[string]string{"POST /v1/consents": tt.rec})
			code, stdout, stderr := f.cli(tt.at, nil, "consent", "add", file)
			require.Equal(t, 0, code, stderr)
			assert.Equal(t, tt.want, stdout)
			if strings.HasPrefix(tt.name, "missed") {
				assert.NotContains(t, stdout, "submitted Fri 2026-01-02", "never a past day as the next submission")
			}
		})
	}
}

func TestConsent_Show(t *testing.T) {
	c, err := os.ReadFile("../../examples/consents/monthly-31st.json")
	require.NoError(t, err)
	rec := `{"consent":` + string(c) + `,"state":"active","addedAt":"2026-11-20T12:00:00Z","updatedAt":"2026-11-26T12:00:00Z","billFrom":"2026-11-20","nextCycle":1,` +
		`"nextSubmitAt":"2026-11-27T09:00:00-03:00","nextDueDate":"2026-11-30"}`
	plan := `{"consentId":"urn:klavi:consent-monthly-31st-0001","interval":"MONTHLY","retryMode":"attach","cycles":[
		{"index":1,"start":"2026-11-30","end":"2026-12-30","dueDate":"2026-11-30","submitOn":"2026-11-27","state":"planned","amount":"99.90","retries":[],"droppedRetries":[]}]}`
	events := `{"events":[{"at":"2026-11-20T12:00:00Z","kind":"added","consentId":"urn:klavi:consent-monthly-31st-0001","actor":"alice"},
		{"at":"2026-11-26T12:00:00Z","kind":"amount_set","consentId":"urn:klavi:consent-monthly-31st-0001","cycle":1,"amount":"99.90","actor":"bob","reason":"new price"}],"next":"7"}`
	routes := map[string]string{
		"GET /v1/consents/urn:klavi:consent-monthly-31st-0001":                   rec,
		"GET /v1/consents/urn:klavi:consent-monthly-31st-0001/preview":           plan,
		"GET /v1/consents/urn:klavi:consent-monthly-31st-0001/events?limit=1000": events,
		"GET /v1/consents/urn:klavi:consent-monthly-31st-0001/events?after=7&limit=1000": `{"events":[{"at":"2026-11-27T12:00:05Z","kind":"submitted","consentId":"urn:klavi:consent-monthly-31st-0001",` +
			`"cycle":1,"attempt":0,"date":"2026-11-30","amount":"99.90","paymentId":"pay-1","actor":"billingd"}],"next":""}`,
	}
	personal := []string{"52998224725", "Maria da Silva", "11222333000181", "Academia Exemplo", "1234567890"}
	t.Run("tables, personal data masked", func(t *testing.T) {
		f := newFakeAPI(t, routes)
		code, stdout, stderr := f.cli(nov26, nil, "consent", "show", "urn:klavi:consent-monthly-31st-0001")
		require.Equal(t, 0, code, stderr)
		for _, p := range personal {
			assert.NotContains(t, stdout, p)
		}
		for _, want := range []string{"consent urn:klavi:consent-monthly-31st-0001", "debtor:", "CPF *********25, M**** d* S****",
			"next:", "cycle 1, due Mon 2026-11-30, submitted Fri 2026-11-27 09:00 -03", "R$ 99,90 (fixed)", "days +1, +3, +5, skipping weekends",
			"upcoming plan", "CYCLE", "planned", "timeline", "Fri 2026-11-20 09:00 -03", "amount_set", "bob", "new price", "submitted", "pay-1"} {
			assert.Contains(t, stdout, want)
		}
	})
	t.Run("json", func(t *testing.T) {
		f := newFakeAPI(t, routes)
		code, stdout, stderr := f.cli(nov26, nil, "consent", "show", "--format", "json", "urn:klavi:consent-monthly-31st-0001")
		require.Equal(t, 0, code, stderr)
		for _, p := range personal {
			assert.NotContains(t, stdout, p)
		}
		var out struct {
			Consent map[string]any    `json:"consent"`
			Plan    map[string]any    `json:"plan"`
			Events  []json.RawMessage `json:"events"`
		}
		require.NoError(t, json.Unmarshal([]byte(stdout), &out))
		assert.Equal(t, "2026-11-27T09:00:00-03:00", out.Consent["nextSubmitAt"])
		assert.Equal(t, "2026-11-30", out.Consent["nextDueDate"])
		assert.Equal(t, "2026-11-20T09:00:00-03:00", out.Consent["addedAt"])
		assert.Len(t, out.Events, 3)
		assert.NotNil(t, out.Plan["cycles"])
	})
	t.Run("a daemon without timelines", func(t *testing.T) {
		old := map[string]string{}
		for k, v := range routes {
			if !strings.Contains(k, "/events") {
				old[k] = v
			}
		}
		f := newFakeAPI(t, old)
		code, stdout, stderr := f.cli(nov26, nil, "consent", "show", "urn:klavi:consent-monthly-31st-0001")
		require.Equal(t, 0, code, stderr)
		assert.Contains(t, stdout, "this daemon keeps no timeline")
	})
	t.Run("unknown consent", func(t *testing.T) {
		f := newFakeAPI(t, map[string]string{"GET /v1/consents/urn:x": `{"error":"consent urn:x: not found"}`})
		f.status["GET /v1/consents/urn:x"] = http.StatusNotFound
		code, _, stderr := f.cli(nov26, nil, "consent", "show", "urn:x")
		assert.Equal(t, 2, code)
		assert.Contains(t, stderr, "not found (HTTP 404)")
	})
}
