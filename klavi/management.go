package klavi

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	json "github.com/go-json-experiment/json/v1"

	"github.com/klavi-billing/billingd/cycle"
	"github.com/klavi-billing/billingd/internal/problem"
)

// The calls of klavi-api.md section 7: reading a consent, cancelling a payment, and
// Klavi's management API. Their paths are published; their answers' shapes mostly
// are not, so each is read tolerantly and the choices are documented on the type.

const (
	pathApps       = "/payment/management/v1/merchants/apps"
	pathManagement = "/payment/management/v1/merchants/automatic"

	// DefaultPageSize is the pageSize sent when a query leaves it 0: the largest
	// Klavi accepts (section 7: default 20, max 200), so a list takes fewest pages.
	DefaultPageSize = 200
	// MaxPages bounds how many pages FindOrder reads before it gives up on a list
	// that never ends (ErrMalformedResponse).
	MaxPages = 1000
	// maxCursorLen bounds a cursor sent back to Klavi.
	maxCursorLen = 2048
)

// GetConsent reads the consent consentID (GET /payment/customer/v1/automatic/consents/{id},
// section 7): its status (CONSENT_AUTHORIZED once the payer authorized,
// CONSENT_REVOKED after a revocation at the bank, …) and whatever else the answer
// carries. An answer without a status is ErrMalformedResponse; ErrRefused with a 404
// means Klavi has no such consent.
func (c *Client) GetConsent(ctx context.Context, consentID string) (*Consent, error) {
	if err := checkIDs(epGetConsent, [2]string{"consentId", consentID}); err != nil {
		return nil, err
	}
	var out Consent
	if err := c.do(ctx, epGetConsent, http.MethodGet, pathConsents+"/"+url.PathEscape(consentID), nil, &out); err != nil {
		return nil, err
	}
	if out.Status == "" {
		return nil, fmt.Errorf("%s: %w: no status", epGetConsent.op, ErrMalformedResponse)
	}
	return &out, nil
}

// CancelPaymentRequest is the body of POST .../payments/{paymentId}/cancel
// (section 7): the document of whoever cancels. Personal data: never log it.
type CancelPaymentRequest struct {
	// CancelledBy is the canceller's CPF (11 digits) or CNPJ (14 digits).
	CancelledBy    string         `json:"cancelledBy"`
	IdentifierType IdentifierType `json:"identifierType"`
}

// Validate lists every rule r breaks: identifierType CPF or CNPJ, cancelledBy 11
// digits for a CPF or 14 for a CNPJ. The document is never quoted.
func (r *CancelPaymentRequest) Validate() problem.List {
	var l problem.List
	checkIdentifier(&l, "identifierType", "cancelledBy", r.IdentifierType, r.CancelledBy, false)
	return l
}

// CancelPayment cancels the payment paymentID of consentID, scheduled for a later
// date (section 7); the payment then reports CANCELED with its cancellation. A 2xx
// answer with no body returns (nil, nil); one with a body returns the payment as
// Klavi sent it. Cancelling is safe to repeat, so it is retried like a GET; a
// payment that can no longer be cancelled is Klavi's refusal (ErrRefused).
func (c *Client) CancelPayment(ctx context.Context, consentID, paymentID string, r *CancelPaymentRequest) (*Payment, error) {
	if err := checkIDs(epCancelPayment, [2]string{"consentId", consentID}, [2]string{"paymentId", paymentID}); err != nil {
		return nil, err
	}
	if err := checkBody(epCancelPayment, r); err != nil {
		return nil, err
	}
	var p Payment
	out := &optionalBody{v: &p}
	if err := c.do(ctx, epCancelPayment, http.MethodPost, paymentPath(consentID, paymentID)+"/cancel", r, out); err != nil {
		return nil, err
	}
	if out.empty {
		return nil, nil
	}
	return &p, nil
}

// A MerchantApp is a merchant application (GET /payment/management/v1/merchants/apps).
// (App is already the name of the clientMetadata platform.)
type MerchantApp struct {
	ID   string `json:"id"`
	Name string `json:"name,omitempty"`
}

// UnmarshalJSON reads an app; its id may also be named appId.
func (a *MerchantApp) UnmarshalJSON(b []byte) error {
	type plain MerchantApp
	aux := struct {
		*plain
		AppID string `json:"appId"`
	}{plain: (*plain)(a)}
	if err := json.Unmarshal(b, &aux); err != nil {
		return err
	}
	if a.ID == "" {
		a.ID = aux.AppID
	}
	return nil
}

// ListApps lists the merchant's applications. The answer is read as {"data": [...]}
// or as a bare array.
func (c *Client) ListApps(ctx context.Context) ([]MerchantApp, error) {
	var raw json.RawMessage
	if err := c.do(ctx, epListApps, http.MethodGet, pathApps, nil, &raw); err != nil {
		return nil, err
	}
	var apps []MerchantApp
	if _, err := decodePage(raw, &apps); err != nil {
		return nil, fmt.Errorf("%s: %w", epListApps.op, err)
	}
	return apps, nil
}

// appCache holds the app id discovered with ListApps. lock (capacity 1) lets one
// caller discover it while the others wait, each as long as its context allows.
type appCache struct {
	lock chan struct{}
	id   string
}

// appID returns Config.AppID, or the id ListApps gives when it lists exactly one app
// (kept for the client's lifetime). A failure is not kept: the next call asks again.
func (c *Client) appID(ctx context.Context) (string, error) {
	if c.cfg.AppID != "" {
		return c.cfg.AppID, nil
	}
	select {
	case c.app.lock <- struct{}{}:
	case <-ctx.Done():
		return "", ctx.Err()
	}
	defer func() { <-c.app.lock }()
	if c.app.id != "" {
		return c.app.id, nil
	}
	apps, err := c.ListApps(ctx)
	if err != nil {
		return "", fmt.Errorf("discover the app id: %w", err)
	}
	if len(apps) != 1 {
		return "", fmt.Errorf("%w: Config.AppID is empty and Klavi lists %d apps for these keys; set klavi.app_id", ErrNoAppID, len(apps))
	}
	if err := CheckID(apps[0].ID); err != nil {
		return "", fmt.Errorf("%s: %w: the only app's %v", epListApps.op, ErrMalformedResponse, err)
	}
	c.app.id = apps[0].ID
	c.log.Info("klavi app id discovered", "app_id", c.app.id)
	return c.app.id, nil
}

// OrdersQuery selects a page of a consent's orders.
type OrdersQuery struct {
	// PageSize is how many orders a page holds: 1..200; 0 means DefaultPageSize (200).
	PageSize int
	// Cursor is the Next of the previous page; empty for the first page.
	Cursor string
	// StartDate and EndDate, when set, bound the orders' dates (Brasília dates,
	// inclusive as Klavi applies them).
	StartDate, EndDate cycle.Date
}

// An OrdersPage is one page of a consent's orders.
type OrdersPage struct {
	Orders []Order
	// Next is the cursor of the next page; empty when this page is the last.
	Next string
}

// ConsentsQuery selects a page of the merchant's consents.
type ConsentsQuery struct {
	// PageSize is how many consents a page holds: 1..200; 0 means DefaultPageSize.
	PageSize int
	// Cursor is the Next of the previous page; empty for the first page.
	Cursor string
}

// A ConsentsPage is one page of the merchant's consents.
type ConsentsPage struct {
	Consents []Consent
	// Next is the cursor of the next page; empty when this page is the last.
	Next string
}

func checkPaging(l *problem.List, size int, cursor string) {
	if size < 0 || size > 200 {
		l.Addf("pageSize", "%d is outside 1..200 (0 means %d)", size, DefaultPageSize)
	}
	if n := utf8.RuneCountInString(cursor); n > maxCursorLen {
		l.Addf("cursor", "is %d characters long, the limit is %d", n, maxCursorLen)
	}
	if strings.IndexFunc(cursor, unicode.IsControl) >= 0 || !utf8.ValidString(cursor) {
		l.Addf("cursor", "has control characters or is not UTF-8")
	}
}

// Validate lists every rule q breaks.
func (q *OrdersQuery) Validate() problem.List {
	var l problem.List
	checkPaging(&l, q.PageSize, q.Cursor)
	if !q.StartDate.IsZero() && !q.EndDate.IsZero() && q.EndDate.Before(q.StartDate) {
		l.Addf("endDate", "%s is before startDate %s", q.EndDate, q.StartDate)
	}
	return l
}

// Validate lists every rule q breaks.
func (q *ConsentsQuery) Validate() problem.List {
	var l problem.List
	checkPaging(&l, q.PageSize, q.Cursor)
	return l
}

func pageQuery(size int, cursor string) url.Values {
	if size == 0 {
		size = DefaultPageSize
	}
	v := url.Values{"pageSize": {strconv.Itoa(size)}}
	if cursor != "" {
		v.Set("cursor", cursor)
	}
	return v
}

// ListConsentOrders reads one page of the orders (payments) created under consentID
// (GET /payment/management/v1/merchants/automatic/{appId}/consents/{consentId}/orders,
// section 7). Each order is read with the same rules as a Payment. The page's
// next-page cursor is read from whichever of nextCursor, next or cursor is present
// (in that order), at the top level of the answer or inside its meta, pagination or
// links object; a links-style URL gives its cursor query parameter. Absent, null or
// empty means this is the last page. An answer without a data array (or a bare
// array) is ErrMalformedResponse, never an empty page.
func (c *Client) ListConsentOrders(ctx context.Context, consentID string, q OrdersQuery) (*OrdersPage, error) {
	if err := checkIDs(epListOrders, [2]string{"consentId", consentID}); err != nil {
		return nil, err
	}
	if err := checkBody(epListOrders, &q); err != nil {
		return nil, err
	}
	app, err := c.appID(ctx)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", epListOrders.op, err)
	}
	v := pageQuery(q.PageSize, q.Cursor)
	if !q.StartDate.IsZero() {
		v.Set("startDate", q.StartDate.String())
	}
	if !q.EndDate.IsZero() {
		v.Set("endDate", q.EndDate.String())
	}
	path := pathManagement + "/" + url.PathEscape(app) + "/consents/" + url.PathEscape(consentID) + "/orders?" + v.Encode()
	var raw json.RawMessage
	if err := c.do(ctx, epListOrders, http.MethodGet, path, nil, &raw); err != nil {
		return nil, err
	}
	page := &OrdersPage{}
	if page.Next, err = decodePage(raw, &page.Orders); err != nil {
		return nil, fmt.Errorf("%s: %w", epListOrders.op, err)
	}
	return page, nil
}

// ListConsents reads one page of the merchant's Automatic Pix consents
// (GET /payment/management/v1/merchants/automatic/{appId}/consents, section 7), with
// the paging rules of ListConsentOrders. Each consent is read as GetConsent reads one.
func (c *Client) ListConsents(ctx context.Context, q ConsentsQuery) (*ConsentsPage, error) {
	if err := checkBody(epListConsents, &q); err != nil {
		return nil, err
	}
	app, err := c.appID(ctx)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", epListConsents.op, err)
	}
	path := pathManagement + "/" + url.PathEscape(app) + "/consents?" + pageQuery(q.PageSize, q.Cursor).Encode()
	var raw json.RawMessage
	if err := c.do(ctx, epListConsents, http.MethodGet, path, nil, &raw); err != nil {
		return nil, err
	}
	page := &ConsentsPage{}
	if page.Next, err = decodePage(raw, &page.Consents); err != nil {
		return nil, fmt.Errorf("%s: %w", epListConsents.op, err)
	}
	return page, nil
}

// FindOrder looks up, in Klavi's list of the consent's payments, the one created
// with clientRequestID: the lookup that says, after a timeout, a lost answer or a
// 409 on a create, whether Klavi holds the payment and under which id. It reads
// the list page by page (DefaultPageSize) and stops at the first match that did not
// end PAYMENT_REJECTED, CANCELED or ERROR; when every match ended so, it returns the
// first of them (in Klavi's order) once the list is read to its end.
//
// Errors: errors.Is(err, ErrOrderNotFound) when the list, read completely, holds no
// order with that clientRequestId; ErrUnavailable, ErrRefused, ErrAuth or
// ErrMalformedResponse when a page could not be read (then nothing is proven); a
// list that repeats a cursor or runs past MaxPages pages is ErrMalformedResponse;
// ErrNoAppID when the app id is unknown.
func (c *Client) FindOrder(ctx context.Context, consentID, clientRequestID string) (*Order, error) {
	const op = "find order"
	var l problem.List
	checkResourceID(&l, "consentId", consentID)
	checkClientRequestID(&l, "clientRequestId", clientRequestID)
	if len(l) > 0 {
		return nil, &InvalidRequestError{Op: op, Problems: l}
	}
	var failed *Order // the first match that ended rejected, canceled or error
	seen := map[string]bool{}
	cursor := ""
	for pages := 1; ; pages++ {
		if pages > MaxPages {
			return nil, fmt.Errorf("%s: %w: the list runs past %d pages", op, ErrMalformedResponse, MaxPages)
		}
		page, err := c.ListConsentOrders(ctx, consentID, OrdersQuery{PageSize: DefaultPageSize, Cursor: cursor})
		if err != nil {
			return nil, fmt.Errorf("%s: %w", op, err)
		}
		for i := range page.Orders {
			o := &page.Orders[i]
			if o.ClientRequestID != clientRequestID {
				continue
			}
			if !failedOrder(o.Status) {
				return o, nil
			}
			if failed == nil {
				failed = o
			}
		}
		if page.Next == "" {
			break
		}
		if seen[page.Next] || page.Next == cursor {
			return nil, fmt.Errorf("%s: %w: the list gives cursor %q again and does not advance", op, ErrMalformedResponse, truncate(page.Next, 40))
		}
		seen[page.Next] = true
		cursor = page.Next
	}
	if failed != nil {
		return failed, nil
	}
	return nil, fmt.Errorf("%s: %w %q under consent %q", op, ErrOrderNotFound, truncate(clientRequestID, 100), truncate(consentID, 64))
}

// failedOrder reports a final status other than completed.
func failedOrder(s PaymentStatus) bool { return s.Final() && s != PaymentCompleted }

// decodePage reads a list answer into items (a pointer to a slice) and returns the
// next-page cursor ("" at the end). See ListConsentOrders for the shapes accepted.
func decodePage(raw json.RawMessage, items any) (string, error) {
	raw = bytes.TrimSpace(raw)
	bad := func(why string, args ...any) (string, error) {
		return "", fmt.Errorf("%w: %s", ErrMalformedResponse, fmt.Sprintf(why, args...))
	}
	if len(raw) > 0 && raw[0] == '[' {
		if err := json.Unmarshal(raw, items); err != nil {
			return bad("%s", decodeText(err))
		}
		return "", nil
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(raw, &top); err != nil || top == nil {
		return bad("want an object with a data array, or an array")
	}
	top = lowerKeys(top)
	data := bytes.TrimSpace(top["data"])
	if len(data) == 0 || data[0] != '[' {
		return bad("no data array")
	}
	if err := json.Unmarshal(data, items); err != nil {
		return bad("%s", decodeText(err))
	}
	containers := []map[string]json.RawMessage{top}
	for _, k := range []string{"meta", "pagination", "links"} {
		var m map[string]json.RawMessage
		if v, ok := top[k]; ok && json.Unmarshal(v, &m) == nil && m != nil {
			containers = append(containers, lowerKeys(m))
		}
	}
	for _, name := range []string{"nextcursor", "next", "cursor"} {
		for _, m := range containers {
			if v, ok := m[name]; ok {
				return cursorValue(v)
			}
		}
	}
	return "", nil
}

func lowerKeys(m map[string]json.RawMessage) map[string]json.RawMessage {
	out := make(map[string]json.RawMessage, len(m))
	for k, v := range m {
		out[strings.ToLower(k)] = v
	}
	return out
}

// cursorValue reads a cursor: a string (or a number, by its text); null or "" is the
// end. A URL or a query string (a links-style "next") gives its cursor parameter.
func cursorValue(v json.RawMessage) (string, error) {
	v = bytes.TrimSpace(v)
	if string(v) == "null" {
		return "", nil
	}
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		var n json.Number
		if json.Unmarshal(v, &n) != nil {
			return "", fmt.Errorf("%w: the next-page cursor is neither a string nor a number", ErrMalformedResponse)
		}
		return n.String(), nil
	}
	if strings.Contains(s, "://") || strings.HasPrefix(s, "/") || strings.HasPrefix(s, "?") {
		u, err := url.Parse(s)
		if err != nil {
			return "", fmt.Errorf("%w: the next-page link is not a URL", ErrMalformedResponse)
		}
		q := u.Query()
		for _, k := range []string{"cursor", "nextCursor"} {
			if c := q.Get(k); c != "" {
				return c, nil
			}
		}
		return "", fmt.Errorf("%w: the next-page link has no cursor parameter", ErrMalformedResponse)
	}
	return s, nil
}

// Probe makes one cheap request (the management API's list of apps), a single
// attempt with no retry and no wait, so that its answer's Date header reports
// Klavi's time through Hooks.OnServerTime. Any answer will do, a 429 or a refusal
// included: only a transport error (no answer at all) is returned as an error. It
// takes the rate limit like every request. When the access token must be renewed
// first, that renewal retries as every token request does (its answers report
// Klavi's time too).
func (c *Client) Probe(ctx context.Context) error {
	if err := c.limiter.Wait(ctx); err != nil {
		return fmt.Errorf("%s: rate limit: %w", epListApps.op, err)
	}
	token, err := c.token(ctx, "")
	if err != nil {
		token = "" // unauthenticated: a 401 carries a Date header too
	}
	if a := c.send(ctx, epListApps, http.MethodGet, pathApps, nil, token); a.err != nil {
		return fmt.Errorf("%s: %w", epListApps.op, a.err)
	}
	return nil
}
