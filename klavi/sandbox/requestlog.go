package sandbox

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/klavi-billing/billingd/klavi"
)

// Outcomes of a payment-creating request (RequestRecord.Outcome).
const (
	// OutcomeCreated: the request created a payment (its answer may have been
	// dropped, see RequestRecord.Dropped).
	OutcomeCreated = "created"
	// OutcomeDuplicate: its clientRequestId was used before; nothing was created
	// (a 409, or with DuplicateExisting a replay of the payment created before).
	OutcomeDuplicate = "duplicate"
	// OutcomeRefused: a rule refused it (RequestRecord.Rule); nothing was created.
	OutcomeRefused = "refused"
	// OutcomeFault: an injected fault (RequestRecord.Fault: 5xx, 429, timeout)
	// answered instead of the API; nothing was created.
	OutcomeFault = "fault"
)

// A RequestRecord is one payment-creating request (create payment, retry payment)
// as the sandbox received and answered it: one JSON line of Options.RequestLog.
type RequestRecord struct {
	// Seq numbers the requests of one sandbox process in order of arrival (from 1).
	Seq int64 `json:"seq"`
	// Wall is the real arrival instant; At the sandbox clock's (test clocks differ).
	Wall time.Time `json:"wall"`
	At   time.Time `json:"at"`
	// Kind is KindOriginal (create payment) or KindRetry (retry payment).
	Kind            Kind   `json:"kind"`
	ConsentID       string `json:"consentId"`
	ClientRequestID string `json:"clientRequestId,omitempty"`
	// Fence is the request's klavi.FenceHeader value (0: none or not a number);
	// FenceSeen the highest one any request carried that arrived at this process
	// before it. A request whose Fence is below FenceSeen was sent by a replica
	// that had been deposed by then.
	Fence     int64 `json:"fence,omitempty"`
	FenceSeen int64 `json:"fenceSeen,omitempty"`
	// Outcome is one of the Outcome* constants; Rule names the refusal, Fault the
	// injected fault, Status the HTTP status answered (0: connection dropped).
	Outcome   string `json:"outcome"`
	Rule      string `json:"rule,omitempty"`
	Fault     string `json:"fault,omitempty"`
	Status    int    `json:"status"`
	PaymentID string `json:"paymentId,omitempty"`
	// Dropped: a "drop" fault closed the connection instead of answering.
	Dropped bool `json:"dropped,omitempty"`
	// Answered is the real instant the outcome was decided.
	Answered time.Time `json:"answered"`
}

// requestLog appends RequestRecords to a file. The lines are written, not
// fsynced: they survive the process (SIGKILL), not the machine.
type requestLog struct {
	mu    sync.Mutex
	f     *os.File
	seq   atomic.Int64
	fence atomic.Int64 // the highest fence seen
}

func openRequestLog(path string) (*requestLog, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("request log: %w", err)
	}
	return &requestLog{f: f}, nil
}

type recordKey struct{}

// arrive notes r's fence and, when r creates payments, returns its record (and r
// with the record in its context, for api to fill); nil otherwise.
func (l *requestLog) arrive(s *Server, r *http.Request) (*RequestRecord, *http.Request) {
	fence, _ := strconv.ParseInt(r.Header.Get(klavi.FenceHeader), 10, 64)
	seen := l.fence.Load()
	for fence > seen && !l.fence.CompareAndSwap(seen, fence) {
		seen = l.fence.Load()
	}
	if r.Method != http.MethodPost || !strings.HasPrefix(r.URL.Path, pathConsents+"/") {
		return nil, r
	}
	rec := &RequestRecord{Seq: l.seq.Add(1), Wall: time.Now(), At: s.clock.Now(), Fence: fence, FenceSeen: seen}
	rest := strings.Split(strings.TrimPrefix(r.URL.Path, pathConsents+"/"), "/")
	switch {
	case len(rest) == 2 && rest[1] == "payments":
		rec.Kind = KindOriginal
	case len(rest) == 4 && rest[1] == "payments" && rest[3] == "retry":
		rec.Kind = KindRetry
	default:
		return nil, r
	}
	rec.ConsentID = rest[0]
	body, err := io.ReadAll(io.LimitReader(r.Body, maxBodyBytes+1))
	r.Body.Close()
	r.Body = io.NopCloser(bytes.NewReader(body))
	if err == nil {
		var key struct {
			ClientRequestID string `json:"clientRequestId"`
		}
		_ = json.Unmarshal(body, &key)
		rec.ClientRequestID = key.ClientRequestID
	}
	return rec, r.WithContext(context.WithValue(r.Context(), recordKey{}, rec))
}

// noteFault and noteReply fill r's record, if it has one (see api).
func noteFault(r *http.Request, fault string) {
	if rec, _ := r.Context().Value(recordKey{}).(*RequestRecord); rec != nil {
		rec.Outcome, rec.Fault = OutcomeFault, fault
		if fault == Fault5xx {
			rec.Status = 503
		} else if fault == Fault429 {
			rec.Status = 429
		}
	}
}

func noteReply(r *http.Request, rep reply, dropped bool) {
	rec, _ := r.Context().Value(recordKey{}).(*RequestRecord)
	if rec == nil {
		return
	}
	rec.Status, rec.Rule, rec.Dropped = rep.status, rep.rule, dropped
	switch {
	case rep.created != nil:
		rec.Outcome, rec.PaymentID = OutcomeCreated, rep.created.id
	case rep.rule == RuleDuplicate || rep.status == http.StatusCreated:
		rec.Outcome = OutcomeDuplicate // a 409, or DuplicateExisting's replay
	default:
		rec.Outcome = OutcomeRefused
	}
	if dropped {
		rec.Status = 0
	}
}

// write appends rec as one line. Errors are logged by the caller's logger only:
// the request log is evidence for tests, not state Klavi keeps.
func (l *requestLog) write(s *Server, rec *RequestRecord) {
	rec.Answered = time.Now()
	if rec.Outcome == "" {
		rec.Outcome = OutcomeFault // the handler panicked or the client went away
	}
	b, err := json.Marshal(rec)
	if err == nil {
		l.mu.Lock()
		_, err = l.f.Write(append(b, '\n'))
		l.mu.Unlock()
	}
	if err != nil {
		s.log.Error("sandbox request log", "error", err)
	}
}

func (l *requestLog) close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.f.Close()
}

// ReadRequestLog reads a file written with Options.RequestLog, in the order the
// records were written (answers, not arrivals: sort by Wall for that). A torn last
// line (the process killed while writing it) is skipped.
func ReadRequestLog(path string) ([]RequestRecord, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var recs []RequestRecord
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var bad error
	for n := 1; sc.Scan(); n++ {
		if bad != nil {
			return nil, bad // a bad line that was not the last one
		}
		var rec RequestRecord
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			bad = fmt.Errorf("request log %s line %d: %w", path, n, err)
			continue
		}
		recs = append(recs, rec)
	}
	return recs, sc.Err()
}
