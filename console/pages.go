package console

import (
	"encoding/csv"
	"errors"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/klavi-billing/billingd/admin"
	"github.com/klavi-billing/billingd/consent"
	"github.com/klavi-billing/billingd/cycle"
	"github.com/klavi-billing/billingd/klavi"
	"github.com/klavi-billing/billingd/scheduler"
	"github.com/klavi-billing/billingd/storage"
)

// StateAmountMissing is the attention state of a variable cycle with no amount set
// whose submission is near (admin.StateAmountMissing).
const StateAmountMissing = admin.StateAmountMissing

// Actor is the timeline's actor of a console action by a session of role r.
func Actor(r Role) string { return "console:" + string(r) }

// ---- Overview

type dayView struct {
	Date     cycle.Date
	Count    int
	Amount   klavi.Cents
	NoAmount int
	Retries  int
}

type overviewView struct {
	Today, Tomorrow dayView
	Month           string
	Totals          map[string]scheduler.Sum
	Decided         int
	Success         string
	Attention       []stateCount
	AttentionTotal  int
	HasStatus       bool
	Role            string
	NotReady        string
	Clock           scheduler.ClockState
	Skew            string
	KlaviSeen       string
	HighWater       string
}

type stateCount struct {
	State string
	Count int
}

func (c *Console) overview(w http.ResponseWriter, r *request) {
	today := cycle.DateOf(r.now)
	up, err := c.sched.Upcoming(today, today.AddDays(1))
	if err != nil {
		c.fail(w, r, err)
		return
	}
	v := overviewView{Today: dayView{Date: today}, Tomorrow: dayView{Date: today.AddDays(1)}}
	for _, ch := range up.Items {
		d := &v.Today
		if cycle.DateOf(ch.SubmitAt) != today {
			d = &v.Tomorrow
		}
		d.Count++
		if ch.Amount != nil {
			d.Amount += *ch.Amount
		} else {
			d.NoAmount++
		}
		if ch.Kind != scheduler.ChargeOriginal {
			d.Retries++
		}
	}
	v.Month = today.String()[:7]
	l, err := c.sched.Report(v.Month)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	v.Totals = map[string]scheduler.Sum{}
	for o, sum := range l.Totals {
		v.Totals[string(o)] = sum
	}
	// The success rate counts attempts that reached an end this month: settled
	// against rejected, refused, missed or skipped.
	for _, o := range []scheduler.Outcome{scheduler.OutcomeCompleted, scheduler.OutcomeRejected, scheduler.OutcomeFailed,
		scheduler.OutcomeMissed, scheduler.OutcomeSkipped} {
		v.Decided += l.Totals[o].Count
	}
	v.Success = Percent(l.Totals[scheduler.OutcomeCompleted].Count, v.Decided)
	if v.Attention, v.AttentionTotal, err = c.attentionCounts(r); err != nil {
		c.fail(w, r, err)
		return
	}
	if c.status != nil {
		st := c.status()
		v.HasStatus, v.NotReady, v.Clock = true, st.NotReady, st.Clock
		v.Role = strings.Trim(strings.TrimSpace(st.Role), "()")
		if v.Role == "" {
			v.Role = "single process (no election)"
		}
		if !st.Clock.KlaviSeen.IsZero() {
			v.Skew = st.Clock.KlaviSkew.Round(time.Millisecond).String()
			v.KlaviSeen = Instant(st.Clock.KlaviSeen)
		}
		v.HighWater = Instant(st.Clock.HighWater)
	}
	c.render(w, http.StatusOK, "overview", c.pageOf(r, "Overview", "overview", v))
}

// attentionCounts returns the open items per state (every attention state, then
// AMOUNT_MISSING) and their sum.
func (c *Console) attentionCounts(r *request) ([]stateCount, int, error) {
	counts, err := c.store.AttentionCounts(r.Context())
	if err != nil {
		return nil, 0, err
	}
	missing, err := c.sched.MissingAmounts()
	if err != nil {
		return nil, 0, err
	}
	var out []stateCount
	total := 0
	for _, st := range storage.AttentionStates {
		out = append(out, stateCount{State: string(st), Count: counts[st]})
		total += counts[st]
	}
	out = append(out, stateCount{State: StateAmountMissing, Count: len(missing)})
	return out, total + len(missing), nil
}

// ---- Upcoming

type agendaDay struct {
	scheduler.DayTotal
	Originals, Retries int
	Items              []scheduler.Charge
}

type upcomingView struct {
	From, To cycle.Date
	Days     []agendaDay
	Total    scheduler.Total
}

func dateQuery(r *request, name string) (cycle.Date, error) {
	v := strings.TrimSpace(r.URL.Query().Get(name))
	if v == "" {
		return cycle.Date{}, nil
	}
	d, err := cycle.ParseDate(v)
	if err != nil {
		return d, fmt.Errorf("%s: %w", name, err)
	}
	return d, nil
}

func (c *Console) upcoming(w http.ResponseWriter, r *request) {
	from, err := dateQuery(r, "from")
	if err != nil {
		c.errorPage(w, r.Request, http.StatusBadRequest, err)
		return
	}
	to, err := dateQuery(r, "to")
	if err != nil {
		c.errorPage(w, r.Request, http.StatusBadRequest, err)
		return
	}
	if from.IsZero() {
		from = cycle.DateOf(r.now)
	}
	if to.IsZero() {
		to = from.AddDays(7)
	}
	up, err := c.sched.Upcoming(from, to)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	v := upcomingView{From: from, To: to, Total: up.Total}
	byDay := map[cycle.Date]*agendaDay{}
	for _, d := range up.Days {
		v.Days = append(v.Days, agendaDay{DayTotal: d})
	}
	for i := range v.Days {
		byDay[v.Days[i].Date] = &v.Days[i]
	}
	for _, ch := range up.Items {
		d := byDay[cycle.DateOf(ch.SubmitAt)]
		if d == nil {
			continue
		}
		d.Items = append(d.Items, ch)
		if ch.Kind == scheduler.ChargeOriginal {
			d.Originals++
		} else {
			d.Retries++
		}
	}
	c.render(w, http.StatusOK, "upcoming", c.pageOf(r, "Upcoming charges", "upcoming", v))
}

// ---- Attention

type attentionItem struct {
	ConsentID       string
	Cycle, Attempt  int
	State           string
	Date            cycle.Date
	Amount          *klavi.Cents
	Reason          string
	ClientRequestID string
	PaymentID       string
	Since           time.Time
	Age             string
	Resolvable      bool
}

type attentionView struct {
	State  string
	States []stateCount
	Total  int
	Items  []attentionItem
	Next   string
}

const pageSize = 100

func (c *Console) attention(w http.ResponseWriter, r *request) {
	q := r.URL.Query()
	state := strings.ToUpper(q.Get("state"))
	if state != "" && state != StateAmountMissing && !slices.Contains(storage.AttentionStates, storage.AttemptState(state)) {
		c.errorPage(w, r.Request, http.StatusBadRequest, fmt.Errorf("state %q: want one of %v or %s", state, storage.AttentionStates, StateAmountMissing))
		return
	}
	v := attentionView{State: state}
	var err error
	if v.States, v.Total, err = c.attentionCounts(r); err != nil {
		c.fail(w, r, err)
		return
	}
	if state != StateAmountMissing {
		list, next, err := c.store.AttentionItems(r.Context(), storage.AttemptState(state), q.Get("after"), pageSize)
		if errors.Is(err, storage.ErrBadCursor) {
			c.errorPage(w, r.Request, http.StatusBadRequest, err)
			return
		}
		if err != nil {
			c.fail(w, r, err)
			return
		}
		for _, it := range list {
			a := it.Attempt
			ai := attentionItem{ConsentID: a.ConsentID, Cycle: a.Cycle, Attempt: a.Attempt, State: string(a.State), Date: a.Date,
				Reason: a.Reason, ClientRequestID: a.ClientRequestID, PaymentID: a.PaymentID, Since: it.Since,
				Age: Age(it.Since, r.now), Resolvable: true}
			if a.Amount > 0 {
				amt := a.Amount
				ai.Amount = &amt
			}
			v.Items = append(v.Items, ai)
		}
		v.Next = next
	}
	if state == "" && v.Next == "" || state == StateAmountMissing {
		missing, err := c.sched.MissingAmounts()
		if err != nil {
			c.fail(w, r, err)
			return
		}
		for _, m := range missing {
			v.Items = append(v.Items, attentionItem{ConsentID: m.ConsentID, Cycle: m.Cycle, State: StateAmountMissing, Date: m.DueDate,
				Reason:          fmt.Sprintf("variable consent: no amount is set for cycle %d; submitted %s; it will be skipped unless one is set", m.Cycle, Instant(m.SubmitAt)),
				ClientRequestID: m.ClientRequestID, Since: m.Since, Age: Age(m.Since, r.now)})
		}
	}
	c.render(w, http.StatusOK, "attention", c.pageOf(r, "Attention", "attention", v))
}

// resolve closes an attention item through the scheduler, in the name of the
// session's role: the timeline records who ("console:admin"), when and the note.
func (c *Console) resolve(w http.ResponseWriter, r *request) {
	id := strings.TrimSpace(r.PostFormValue("consent"))
	k, err1 := strconv.Atoi(r.PostFormValue("cycle"))
	n, err2 := strconv.Atoi(r.PostFormValue("attempt"))
	note := strings.TrimSpace(r.PostFormValue("note"))
	switch {
	case id == "" || err1 != nil || err2 != nil || k < 0 || n < 0:
		c.errorPage(w, r.Request, http.StatusBadRequest, errors.New("consent, cycle and attempt are required"))
		return
	case note == "":
		c.errorPage(w, r.Request, http.StatusBadRequest, errors.New("a note is required: say what was done"))
		return
	case utf8.RuneCountInString(note) > admin.MaxNoteLen:
		c.errorPage(w, r.Request, http.StatusBadRequest, fmt.Errorf("the note is longer than %d characters", admin.MaxNoteLen))
		return
	}
	key := storage.AttemptKey{ConsentID: id, Cycle: k, Attempt: n}
	a, err := c.sched.Resolve(key, note, Actor(r.s.Role))
	if err != nil {
		c.fail(w, r, err)
		return
	}
	c.log.Info("console: attention item resolved", "consent_id", id, "cycle", k, "attempt", n, "state", string(a.State), "actor", Actor(r.s.Role))
	done := key.String()
	back := r.PostFormValue("back")
	if back != "attention" && back != "consent" {
		back = "attention"
	}
	to := c.prefix + "attention?resolved=" + url.QueryEscape(done)
	if back == "consent" {
		to = c.prefix + "consents/" + url.PathEscape(id) + "?resolved=" + url.QueryEscape(done)
	}
	http.Redirect(w, r.Request, to, http.StatusSeeOther)
}

// ---- Consents

type consentRow struct {
	ID, ContractID string
	State          storage.ConsentState
	Interval       cycle.Interval
	Amount         string
	NextCycle      int
	NextSubmit     string
}

type consentsView struct {
	Q, State string
	States   []storage.ConsentState
	Rows     []consentRow
	Next     string
	Searched bool
}

func (c *Console) row(rec *storage.ConsentRecord) consentRow {
	row := consentRow{ID: rec.ID(), State: rec.State, Interval: rec.Consent.Interval(), NextCycle: rec.NextCycle, Amount: "variable"}
	if a, ok := rec.Consent.FixedAmount(); ok {
		row.Amount = a.BRL()
	}
	if pm := rec.Consent.PaymentMethodConfig; pm != nil {
		row.ContractID = pm.ContractID
	}
	row.NextSubmit = Instant(rec.NextDue)
	return row
}

// consents lists consents, or searches one by its id, its contractId, or the id of
// one of its payments (or a payment's clientRequestId). One match opens its page.
func (c *Console) consents(w http.ResponseWriter, r *request) {
	q := r.URL.Query()
	v := consentsView{Q: strings.TrimSpace(q.Get("q")), State: q.Get("state"), States: storage.ConsentStates}
	if v.State != "" && !slices.Contains(storage.ConsentStates, storage.ConsentState(v.State)) {
		c.errorPage(w, r.Request, http.StatusBadRequest, fmt.Errorf("state %q: want one of %v", v.State, storage.ConsentStates))
		return
	}
	if v.Q != "" {
		v.Searched = true
		recs, err := c.search(r, v.Q)
		if err != nil {
			c.fail(w, r, err)
			return
		}
		if len(recs) == 1 {
			http.Redirect(w, r.Request, c.prefix+"consents/"+url.PathEscape(recs[0].ID()), http.StatusSeeOther)
			return
		}
		for _, rec := range recs {
			v.Rows = append(v.Rows, c.row(rec))
		}
	} else {
		recs, err := c.store.ListConsents(r.Context(), q.Get("after"), pageSize, storage.ConsentState(v.State))
		if err != nil {
			c.fail(w, r, err)
			return
		}
		for _, rec := range recs {
			v.Rows = append(v.Rows, c.row(rec))
		}
		if len(recs) == pageSize {
			v.Next = recs[len(recs)-1].ID()
		}
	}
	c.render(w, http.StatusOK, "consents", c.pageOf(r, "Consents", "consents", v))
}

// searchBack and searchAhead bound the payment-id search: the store has no index
// of payment ids, so it reads the attempts dated in that window.
const (
	searchBack  = 400
	searchAhead = 100
	searchMax   = 50
)

// search finds the consents q names: its id; else those with contractId q (a scan
// of the consents); else the consent of the payment whose id, original payment id or
// clientRequestId is q (a scan of the attempts dated from about 13 months ago to 3
// months ahead).
func (c *Console) search(r *request, q string) ([]*storage.ConsentRecord, error) {
	rec, err := c.store.GetConsent(r.Context(), q)
	if err == nil {
		return []*storage.ConsentRecord{rec}, nil
	}
	if !errors.Is(err, storage.ErrNotFound) {
		return nil, err
	}
	var out []*storage.ConsentRecord
	after := ""
	for {
		recs, err := c.store.ListConsents(r.Context(), after, 1000, "")
		if err != nil {
			return nil, err
		}
		for _, rec := range recs {
			if pm := rec.Consent.PaymentMethodConfig; pm != nil && strings.EqualFold(pm.ContractID, q) {
				out = append(out, rec)
			}
		}
		if len(recs) < 1000 || len(out) >= searchMax {
			break
		}
		after = recs[len(recs)-1].ID()
	}
	if len(out) > 0 {
		return out, nil
	}
	today := cycle.DateOf(r.now)
	atts, _, err := c.store.AttemptsBetween(r.Context(), today.AddDays(-searchBack), today.AddDays(searchAhead), "", "", 1,
		func(a *storage.Attempt) bool {
			return a.PaymentID == q || a.OriginalPaymentID == q || a.ClientRequestID == q
		})
	if err != nil || len(atts) == 0 {
		return nil, err
	}
	rec, err = c.store.GetConsent(r.Context(), atts[0].ConsentID)
	if err != nil {
		return nil, err
	}
	return []*storage.ConsentRecord{rec}, nil
}

type consentView struct {
	Row         consentRow
	Rec         *storage.ConsentRecord
	Debtor      string
	Creditor    string
	Account     string
	Variable    string
	Retries     string
	Remittance  string
	Expires     string
	NextDueDate string
	Plan        scheduler.Preview
	Attempts    []*storage.Attempt
	Open        map[storage.AttemptKey]bool
	Events      []storage.Event
	More        bool
}

// consent is one consent's page: its details (personal data masked), its plan
// (the same as `billingd preview` and GET /v1/consents/{id}/preview), its attempts
// and its timeline, newest first.
func (c *Console) consent(w http.ResponseWriter, r *request) {
	ctx := r.Context()
	rec, err := c.store.GetConsent(ctx, r.PathValue("id"))
	if err != nil {
		c.fail(w, r, err)
		return
	}
	amounts, err := c.store.Amounts(ctx, rec.ID())
	if err != nil {
		c.fail(w, r, err)
		return
	}
	atts, err := c.store.Attempts(ctx, rec.ID())
	if err != nil {
		c.fail(w, r, err)
		return
	}
	pol := c.sched.Policy()
	v := consentView{Row: c.row(rec), Rec: rec, Attempts: atts, Open: map[storage.AttemptKey]bool{},
		Plan: pol.PreviewStored(rec, atts, cycle.DateOf(r.now), 12, amounts)}
	for _, a := range atts {
		if a.Open() {
			v.Open[a.AttemptKey] = true
		}
	}
	describe(&v, rec.Consent)
	if !rec.NextDue.IsZero() {
		v.NextDueDate = Day(pol.Schedule(rec.Consent).Due(rec.NextCycle))
	}
	var after uint64
	for range 10 {
		evs, more, err := c.store.Events(ctx, rec.ID(), after, 500)
		if err != nil {
			c.fail(w, r, err)
			return
		}
		v.Events = append(v.Events, evs...)
		v.More = more
		if !more || len(evs) == 0 {
			break
		}
		after = evs[len(evs)-1].Seq
	}
	slices.Reverse(v.Events)
	c.render(w, http.StatusOK, "consent", c.pageOf(r, "Consent "+rec.ID(), "consents", v))
}

// describe fills the consent's details, masking personal data as the logs do.
func describe(v *consentView, c *consent.Consent) {
	v.Debtor, v.Creditor, v.Account = "—", "—", "—"
	if pm := c.PaymentMethodConfig; pm != nil {
		v.Debtor = person(pm.ContractDebtor)
		v.Variable = pm.VariableRange("—")
	}
	if ca := c.CreditorAccount; ca != nil {
		v.Creditor = person(ca.Holder)
		v.Account = ca.Masked()
	}
	if st := c.Strategy(); st != nil {
		v.Retries = st.Describe()
	}
	v.Remittance = c.Billing.RemittanceInformation
	if exp := c.Expiry(); !exp.IsZero() {
		v.Expires = Day(exp)
	}
}

// ---- Payments

type paymentsView struct {
	From, To       cycle.Date
	State, Consent string
	States         []storage.AttemptState
	Rows           []*storage.Attempt
	Next, Cursor   string
	Query          template.URL // the filters (encoded), for the CSV link and the next page
	Count          int
	Sum            klavi.Cents
}

// AttemptStates are the states the payments filter offers.
var AttemptStates = []storage.AttemptState{storage.AttemptPlanned, storage.AttemptSubmitting, storage.AttemptSubmitted,
	storage.AttemptCompleted, storage.AttemptRejected, storage.AttemptUnconfirmed, storage.AttemptStuck, storage.AttemptFailed,
	storage.AttemptMissed, storage.AttemptSkipped, storage.AttemptDropped}

type paymentFilter struct {
	from, to       cycle.Date
	state, consent string
	keep           func(*storage.Attempt) bool
}

// filter reads the payments filters as GET /v1/payments does: dates default to the
// current month, at most 366 days apart.
func (c *Console) filter(r *request) (paymentFilter, error) {
	var f paymentFilter
	var err error
	if f.from, err = dateQuery(r, "from"); err != nil {
		return f, err
	}
	if f.to, err = dateQuery(r, "to"); err != nil {
		return f, err
	}
	today := cycle.DateOf(r.now)
	if f.from.IsZero() {
		f.from = today.AddDays(1 - today.Day())
	}
	if f.to.IsZero() {
		f.to = f.from.AddMonthsClamped(1).AddDays(-1)
	}
	if f.to.Before(f.from) || f.to.DaysSince(f.from) > 366 {
		return f, fmt.Errorf("from %s to %s: want from ≤ to, at most 366 days apart", f.from, f.to)
	}
	q := r.URL.Query()
	f.consent = strings.TrimSpace(q.Get("consent"))
	f.state = strings.ToUpper(q.Get("state"))
	if f.state != "" {
		st := storage.AttemptState(f.state)
		if !slices.Contains(AttemptStates, st) {
			return f, fmt.Errorf("state %q: want an attempt state", f.state)
		}
		f.keep = func(a *storage.Attempt) bool { return a.State == st }
	}
	return f, nil
}

func (f paymentFilter) query() string {
	q := url.Values{"from": {f.from.String()}, "to": {f.to.String()}}
	if f.state != "" {
		q.Set("state", f.state)
	}
	if f.consent != "" {
		q.Set("consent", f.consent)
	}
	return q.Encode()
}

func (c *Console) payments(w http.ResponseWriter, r *request) {
	f, err := c.filter(r)
	if err != nil {
		c.errorPage(w, r.Request, http.StatusBadRequest, err)
		return
	}
	cursor := r.URL.Query().Get("cursor")
	list, next, err := c.store.AttemptsBetween(r.Context(), f.from, f.to, f.consent, cursor, pageSize, f.keep)
	if errors.Is(err, storage.ErrBadCursor) {
		c.errorPage(w, r.Request, http.StatusBadRequest, err)
		return
	}
	if err != nil {
		c.fail(w, r, err)
		return
	}
	v := paymentsView{From: f.from, To: f.to, State: f.state, Consent: f.consent, States: AttemptStates, Rows: list,
		Next: next, Cursor: cursor, Query: template.URL(f.query()), Count: len(list)}
	for _, a := range list {
		v.Sum += a.Amount
	}
	c.render(w, http.StatusOK, "payments", c.pageOf(r, "Payments", "payments", v))
}

// MaxCSVRows bounds one CSV export.
const MaxCSVRows = 200_000

// paymentsCSV exports every payment the filters select (all pages, up to
// MaxCSVRows) in the columns of GET /v1/payments?format=csv (admin.CSVHeader).
func (c *Console) paymentsCSV(w http.ResponseWriter, r *request) {
	f, err := c.filter(r)
	if err != nil {
		c.errorPage(w, r.Request, http.StatusBadRequest, err)
		return
	}
	var rows []*storage.Attempt
	cursor := ""
	for {
		list, next, err := c.store.AttemptsBetween(r.Context(), f.from, f.to, f.consent, cursor, 1000, f.keep)
		if err != nil {
			c.fail(w, r, err)
			return
		}
		rows = append(rows, list...)
		if next == "" || len(rows) >= MaxCSVRows {
			break
		}
		cursor = next
	}
	name := fmt.Sprintf("billingd-payments-%s-%s.csv", f.from, f.to)
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="`+name+`"`)
	cw := csv.NewWriter(w)
	_ = cw.Write(admin.CSVHeader)
	for _, a := range rows {
		_ = cw.Write(admin.CSVRow(a))
	}
	cw.Flush()
	c.log.Info("console: payments exported", "role", string(r.s.Role), "from", f.from.String(), "to", f.to.String(), "rows", len(rows))
}

// ---- Report

type reportView struct {
	L           *scheduler.Ledger
	Outcomes    []scheduler.Outcome
	Prev, Next  string
	ByInterval  []intervalRows
	MonthString string
}

type intervalRows struct {
	Interval cycle.Interval
	Rows     []scheduler.LedgerRow
}

func (c *Console) report(w http.ResponseWriter, r *request) {
	month := strings.TrimSpace(r.URL.Query().Get("month"))
	if month == "" {
		month = cycle.DateOf(r.now).String()[:7]
	}
	from, _, err := scheduler.ParseMonth(month)
	if err != nil {
		c.errorPage(w, r.Request, http.StatusBadRequest, err)
		return
	}
	l, err := c.sched.Report(month)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	v := reportView{L: l, Outcomes: scheduler.Outcomes, MonthString: month,
		Prev: from.AddMonthsClamped(-1).String()[:7], Next: from.AddMonthsClamped(1).String()[:7]}
	for _, row := range l.Rows {
		if n := len(v.ByInterval); n == 0 || v.ByInterval[n-1].Interval != row.Interval {
			v.ByInterval = append(v.ByInterval, intervalRows{Interval: row.Interval})
		}
		g := &v.ByInterval[len(v.ByInterval)-1]
		g.Rows = append(g.Rows, row)
	}
	c.render(w, http.StatusOK, "report", c.pageOf(r, "Report "+month, "report", v))
}
