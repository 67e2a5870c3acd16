package sandbox

import (
	"container/heap"
	"encoding/base64"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/klavi-billing/billingd/cycle"
	"github.com/klavi-billing/billingd/internal/problem"
	"github.com/klavi-billing/billingd/klavi"
)

// Section 7 of klavi-api.md: cancel a payment, and the management API. Klavi
// publishes the paths and parameters, not the answers' shapes; the shapes here are
// the sandbox's choices, documented in the package doc.

// pathManagement is the management API's root.
const pathManagement = "/payment/management/v1/merchants"

// Management list paging (the orders list beside it in Klavi's reference).
const defaultPageSize = 20

// handleCancel serves POST .../consents/{consentId}/payments/{paymentId}/cancel: a
// payment not yet final whose date is after the sandbox's today (Brasília) becomes
// CANCELED, with cancellation {cancelledFrom INITIATOR, cancelledAt, cancelledBy};
// the answer is 200 with the payment. A final payment is refused (416
// cancel_final), so is one dated today or earlier (416 cancel_too_late). Canceling
// a retry Klavi runs for an autoRetryStrategy ends its original PAYMENT_REJECTED.
func (s *Server) handleCancel(r *http.Request) reply {
	ids, l := pathIDs(r, "consentId", "paymentId")
	var b klavi.CancelPaymentRequest
	if l = append(l, readValid(r, &b)...); len(l) > 0 {
		return invalid(l)
	}
	now := s.lockNow()
	defer s.unlock()
	_, p, nf := s.lookup(ids[0], ids[1])
	if nf != nil {
		return *nf
	}
	st := p.statusAt(now)
	if p.failed() || st == klavi.PaymentCompleted || st == klavi.PaymentError {
		return errReply(refuse(RuleCancelFinal, "payment %s is %s: only a payment not yet settled can be canceled", p.id, st))
	}
	if t := today(now); !p.date.After(t) {
		return errReply(refuse(RuleCancelTooLate, "payment %s is dated %s, not after today %s: only a payment scheduled for a later date can be canceled", p.id, p.date, t))
	}
	if p.heapIndex >= 0 {
		heap.Remove(&s.queue, p.heapIndex)
	}
	p.settleAt = time.Time{}
	s.setStatus(p, klavi.PaymentCanceled)
	p.reason, p.updatedAt = nil, now
	p.cancel = &cancellation{from: "INITIATOR", at: now, by: b.CancelledBy, byType: string(b.IdentifierType)}
	s.touchPayment(p)
	if root := p.original; p.kind == KindAutoRetry && root != nil {
		s.setStatus(root, klavi.PaymentRejected)
		root.updatedAt, root.plan = now, nil
		s.touchPayment(root)
	}
	s.log.Debug("sandbox payment canceled", "payment_id", p.id, "consent_id", p.consentID)
	return reply{status: 200, body: s.view(p, now)}
}

// handleApps serves GET /payment/management/v1/merchants/apps:
// {"data":[{"id":"<AppID>","name":"sandbox"}]}.
func (s *Server) handleApps(r *http.Request) reply {
	return reply{status: 200, body: map[string]any{"data": []wireApp{{ID: s.opts.AppID, Name: "sandbox"}}}}
}

// pageQuery is a management list's query.
type pageQuery struct {
	size       int
	after      int // the seq (consents: creation number) of the last item of the previous page; 0: from the start
	start, end cycle.Date
}

// readPage reads pageSize (default 20, 1..200, served at most PageSizeMax), cursor (one this list gave)
// and startDate/endDate (YYYY-MM-DD, inclusive) from r's query; list names the list,
// so a cursor of another list is refused.
func (s *Server) readPage(r *http.Request, list string) (pageQuery, problem.List) {
	q := r.URL.Query()
	pq := pageQuery{size: defaultPageSize}
	var l problem.List
	if v := q.Get("pageSize"); v != "" {
		n, err := strconv.Atoi(v)
		if limit := max(DefaultPageSizeMax, s.opts.PageSizeMax); err != nil || n < 1 || n > limit {
			l.Addf("pageSize", "must be a whole number from 1 to %d", limit)
		}
		// A list whose pages are smaller than asked (PageSizeMax under the documented
		// 200) serves what it can: the caller follows the cursor.
		pq.size = min(n, s.opts.PageSizeMax)
	}
	if v := q.Get("cursor"); v != "" {
		after, ok := decodeCursor(v, list)
		if !ok {
			l.Addf("cursor", "is not a cursor of this list")
		}
		pq.after = after
	}
	for _, f := range []struct {
		name string
		d    *cycle.Date
	}{{"startDate", &pq.start}, {"endDate", &pq.end}} {
		if v := q.Get(f.name); v != "" {
			d, err := cycle.ParseDate(v)
			if err != nil {
				l.Addf(f.name, "must be a date YYYY-MM-DD")
			}
			*f.d = d
		}
	}
	if !pq.start.IsZero() && !pq.end.IsZero() && pq.end.Before(pq.start) {
		l.Addf("endDate", "is before startDate")
	}
	return pq, l
}

// within reports whether d is inside the query's dates.
func (pq pageQuery) within(d cycle.Date) bool {
	return (pq.start.IsZero() || !d.Before(pq.start)) && (pq.end.IsZero() || !d.After(pq.end))
}

// cursorPrefix starts every cursor; the rest names the list and the last item.
const cursorPrefix = "sbx1|"

func encodeCursor(list string, after int) string {
	return base64.RawURLEncoding.EncodeToString([]byte(cursorPrefix + list + "|" + strconv.Itoa(after)))
}

func decodeCursor(c, list string) (int, bool) {
	raw, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil {
		return 0, false
	}
	rest, ok := strings.CutPrefix(string(raw), cursorPrefix+list+"|")
	if !ok {
		return 0, false
	}
	n, err := strconv.Atoi(rest)
	if err != nil || n < 1 || strconv.Itoa(n) != rest {
		return 0, false
	}
	return n, true
}

// pageOf answers one page: up to pq.size of the items (in creation order, each with
// its key) after pq.after, and the cursor of the next page under CursorField when
// more items follow.
func (s *Server) pageOf(list string, pq pageQuery, keys []int, items []any) reply {
	i := 0
	for i < len(keys) && keys[i] <= pq.after {
		i++
	}
	j := min(i+pq.size, len(keys))
	page := make([]any, 0, j-i)
	body := map[string]any{"data": append(page, items[i:j]...)}
	if j < len(keys) {
		body[s.opts.CursorField] = encodeCursor(list, keys[j-1])
	}
	return reply{status: 200, body: body}
}

// appOf checks the path's appId.
func (s *Server) appOf(r *http.Request) *reply {
	id := r.PathValue("appId")
	if !ValidID(id) {
		var l problem.List
		l.Addf("appId", "is not a valid id: want 1..256 printable characters, no '/' or white space")
		rep := invalid(l)
		return &rep
	}
	if id != s.opts.AppID {
		rep := notFound("no application %s", id)
		return &rep
	}
	return nil
}

// handleListConsents serves GET .../automatic/{appId}/consents: every consent
// (created or seeded) in creation order, as GET .../consents/{id} shows it;
// startDate/endDate filter on the Brasília date of its createAt.
func (s *Server) handleListConsents(r *http.Request) reply {
	if rep := s.appOf(r); rep != nil {
		return *rep
	}
	const list = "consents"
	pq, l := s.readPage(r, list)
	if len(l) > 0 {
		return invalid(l)
	}
	now := s.lockNow()
	defer s.unlock()
	var keys []int
	var items []any
	for i, cs := range s.consentList {
		if pq.within(today(cs.created)) {
			keys = append(keys, i+1)
			items = append(items, s.consentView(cs, now, r, true))
		}
	}
	return s.pageOf(list, pq, keys, items)
}

// handleListOrders serves GET .../automatic/{appId}/consents/{consentId}/orders:
// every payment created under the consent (originals, retries and the retries
// Klavi runs), in creation order; startDate/endDate filter on the payment's date.
func (s *Server) handleListOrders(r *http.Request) reply {
	if rep := s.appOf(r); rep != nil {
		return *rep
	}
	ids, l := pathIDs(r, "consentId")
	list := "orders/" + ids[0]
	pq, ql := s.readPage(r, list)
	if l = append(l, ql...); len(l) > 0 {
		return invalid(l)
	}
	now := s.lockNow()
	defer s.unlock()
	cs := s.consents[ids[0]]
	if cs == nil {
		return notFound("no consent %s", ids[0])
	}
	var keys []int
	var items []any
	for _, p := range cs.payments {
		if pq.within(p.date) {
			keys = append(keys, p.seq)
			items = append(items, wireOrder{
				ID: p.id, ClientRequestID: p.crid, Date: p.date.String(), Amount: s.amount(p.amount),
				Currency: klavi.Currency, Status: s.enum(string(p.statusAt(now))), StatusReason: s.reason(p.reason),
				CreateAt: dateTime(p.createdAt),
			})
		}
	}
	return s.pageOf(list, pq, keys, items)
}

// routeManagement adds section 7's endpoints to m.
func (s *Server) routeManagement(m *http.ServeMux) {
	m.Handle("POST "+pathConsents+"/{consentId}/payments/{paymentId}/cancel", s.api(true, s.handleCancel))
	m.Handle("GET "+pathManagement+"/apps", s.api(true, s.handleApps))
	m.Handle("GET "+pathManagement+"/automatic/{appId}/consents", s.api(true, s.handleListConsents))
	m.Handle("GET "+pathManagement+"/automatic/{appId}/consents/{consentId}/orders", s.api(true, s.handleListOrders))
}
