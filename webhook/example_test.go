package webhook_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/klavi-billing/billingd/webhook"
)

// ExampleVerify is the receiver of docs/WEBHOOKS.md: read the raw body, verify the
// signature against it, then decode it and dedupe on its id.
func ExampleVerify() {
	secret := "whsec_example_0123456789" // the endpoint's secret in billingd's config

	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		if err != nil {
			http.Error(w, "read body", http.StatusBadRequest)
			return
		}
		sig := r.Header.Get("Billingd-Signature")
		if err := webhook.Verify(secret, sig, body, 5*time.Minute, time.Now()); err != nil {
			http.Error(w, "bad signature", http.StatusUnauthorized)
			return
		}
		// Decode body; skip the event if its "id" was already handled; handle it
		// (store it) before answering 2xx: any other answer is delivered again.
		w.WriteHeader(http.StatusNoContent)
	})

	// What billingd sends, and a forgery.
	srv := httptest.NewServer(handler)
	defer srv.Close()
	body := `{"id":"evt_example","type":"completed","consentId":"urn:klavi:consent-0001","seq":4}`
	for _, sig := range []string{webhook.Sign(secret, time.Now(), []byte(body)), webhook.Sign("guessed-secret-0000000", time.Now(), []byte(body))} {
		req, _ := http.NewRequest("POST", srv.URL, strings.NewReader(body))
		req.Header.Set("Billingd-Signature", sig)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			fmt.Println(err)
			return
		}
		resp.Body.Close()
		fmt.Println(resp.StatusCode)
	}
	// Output:
	// 204
	// 401
}
