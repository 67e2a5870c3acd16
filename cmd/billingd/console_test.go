package main

import (
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/klavi-billing/billingd/cycle"
)

func TestConfig_ReadOnlyToken(t *testing.T) {
	for _, tc := range []struct {
		name, admin, readonly, want string
	}{
		{"none", "admin-token-0123456789", "", ""},
		{"set", "admin-token-0123456789", "readonly-token-0123456789", ""},
		{"short", "admin-token-0123456789", "short", "http.readonly_token: is shorter than 16 characters"},
		{"without an admin token", "", "readonly-token-0123456789", "http.readonly_token: needs http.admin_token"},
		{"same as the admin token", "admin-token-0123456789", "admin-token-0123456789", "http.readonly_token: must differ"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := DefaultConfig()
			cfg.HTTP.AdminToken, cfg.HTTP.ReadOnlyToken = tc.admin, tc.readonly
			err := cfg.Validate()
			if tc.want == "" {
				assert.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
			assert.NotContains(t, err.Error(), tc.readonly+"\"", "the token is not shown")
		})
	}
}

// TestDaemon_Console: the daemon serves the console at /ui/ next to the admin API:
// a page without a session goes to the login form, which logs the read-only token in.
func TestDaemon_Console(t *testing.T) {
	de := startTestDaemonWith(t, cycle.MustDate(2026, 1, 4).At(8, 0), nil, func(c *Config) { c.HTTP.ReadOnlyToken = "readonly-token-0123456789" })
	base := "http://" + de.d.Addr()
	noFollow := &http.Client{Timeout: 10 * time.Second, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

	resp, err := noFollow.Get(base + "/ui/")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusSeeOther, resp.StatusCode)
	assert.Equal(t, "/ui/login?next=%2Fui%2F", resp.Header.Get("Location"))
	assert.Contains(t, resp.Header.Get("Content-Security-Policy"), "default-src 'self'")

	resp, err = noFollow.Get(base + "/ui/login")
	require.NoError(t, err)
	var body strings.Builder
	_, _ = io.Copy(&body, resp.Body)
	resp.Body.Close()
	m := csrfInput.FindStringSubmatch(body.String())
	require.NotNil(t, m)
	form := url.Values{"csrf": {m[1]}, "token": {"readonly-token-0123456789"}}
	req, _ := http.NewRequest("POST", base+"/ui/login", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	for _, c := range resp.Cookies() {
		req.AddCookie(c)
	}
	resp, err = noFollow.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusSeeOther, resp.StatusCode)
	req, _ = http.NewRequest("GET", base+"/ui/", nil)
	for _, c := range resp.Cookies() {
		req.AddCookie(c)
	}
	resp, err = noFollow.Do(req)
	require.NoError(t, err)
	body.Reset()
	_, _ = io.Copy(&body, resp.Body)
	resp.Body.Close()
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Contains(t, body.String(), "read-only")
	assert.Contains(t, body.String(), "single process")
}

var csrfInput = regexp.MustCompile(`name="csrf" value="([^"]+)"`)
