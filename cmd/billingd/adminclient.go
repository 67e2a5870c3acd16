package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/klavi-billing/billingd/internal/redact"
)

// adminClient calls a running daemon's admin API for the operator commands.
type adminClient struct {
	base  string
	token string
	http  *http.Client
	actor string // X-Billingd-Actor of changes: who makes them
}

// adminFlags are the flags every operator command takes (and the global --config).
type adminFlags struct {
	app         *app
	addr, token string
}

func addAdminFlags(cmd *cobra.Command, a *app) *adminFlags {
	af := &adminFlags{app: a}
	cmd.Flags().StringVar(&af.addr, "addr", "", "admin API `URL` (default: $BILLINGD_ADDR, else http:// + http.listen of the config)")
	cmd.Flags().StringVar(&af.token, "token", "", "admin bearer `TOKEN` (default: $BILLINGD_ADMIN_TOKEN, else http.admin_token of the config)")
	return af
}

// client resolves the daemon's address and token from flags, environment and config.
func (f *adminFlags) client() (*adminClient, error) {
	e := f.app.e
	cfg, err := loadConfigFor(e, f.app.config, true)
	if err != nil {
		return nil, err
	}
	addr := firstNonEmpty(f.addr, e.getenv("BILLINGD_ADDR"), "http://"+cfg.HTTP.Listen)
	if !strings.Contains(addr, "://") {
		addr = "http://" + addr
	}
	if u, err := url.Parse(addr); err != nil || u.Host == "" {
		return nil, usageErrorf("admin address %q is not a URL", redact.URL(addr))
	}
	token := firstNonEmpty(f.token, e.getenv("BILLINGD_ADMIN_TOKEN"), cfg.HTTP.AdminToken)
	if token == "" {
		return nil, usageErrorf("no admin token: set --token, $BILLINGD_ADMIN_TOKEN or http.admin_token")
	}
	// Every change is recorded with who made it: $BILLINGD_ACTOR, else the login name.
	actor := firstNonEmpty(e.getenv("BILLINGD_ACTOR"), e.getenv("USER"), e.getenv("LOGNAME"))
	return &adminClient{base: strings.TrimRight(addr, "/"), token: token, actor: actor, http: &http.Client{Timeout: 60 * time.Second}}, nil
}

// withoutURL drops url.Error's method and URL from err: net/http masks the URL's
// password there but keeps its user name, which may be a token. The caller names
// the URL, through redact.URL.
func withoutURL(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

func firstNonEmpty(vs ...string) string {
	for _, v := range vs {
		if v != "" {
			return v
		}
	}
	return ""
}

// noRoute reports an answer of a daemon that does not serve the endpoint at all
// (older than the command), as opposed to one that did not find the thing asked for.
func noRoute(err error) bool {
	var ae *apiErr
	return errors.As(err, &ae) && ae.Status == http.StatusNotFound && strings.HasPrefix(ae.Message, "no route ")
}

// apiErr is an error answer of the admin API.
type apiErr struct {
	Status   int
	Message  string `json:"error"`
	Problems []struct {
		Path    string `json:"path"`
		Message string `json:"message"`
	} `json:"problems"`
}

func (e *apiErr) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s (HTTP %d)", e.Message, e.Status)
	for _, p := range e.Problems {
		fmt.Fprintf(&b, "\n  %s: %s", p.Path, p.Message)
	}
	return b.String()
}

// do sends a request and decodes a JSON answer into out (when not nil). A 4xx answer
// is a usage error (exit 2): the operator's input was wrong.
func (c *adminClient) do(method, path string, body io.Reader, out any) error {
	req, err := http.NewRequest(method, c.base+path, body)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	if c.actor != "" {
		req.Header.Set("X-Billingd-Actor", c.actor)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("admin API at %s: %w (is billingd running?)", redact.URL(c.base), withoutURL(err))
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 300 {
		ae := &apiErr{Status: resp.StatusCode}
		raw, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if json.Unmarshal(raw, ae) != nil || ae.Message == "" {
			ae.Message = strings.TrimSpace(string(raw))
		}
		if resp.StatusCode < 500 {
			return fmt.Errorf("%w: %w", errUsage, ae)
		}
		return ae
	}
	if out == nil {
		return nil
	}
	if w, ok := out.(io.Writer); ok {
		_, err := io.Copy(w, resp.Body)
		return err
	}
	return json.NewDecoder(resp.Body).Decode(out)
}
