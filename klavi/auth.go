package klavi

import (
	"context"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	json "github.com/go-json-experiment/json/v1"
)

// tokenCache holds the access token. One refresh runs at a time; callers that need
// a token meanwhile wait for it.
type tokenCache struct {
	mu      sync.Mutex
	token   string
	renewAt time.Time // renew from this instant on
	flight  *tokenFlight
}

// A tokenFlight is a token request in progress; done is closed when it ends.
type tokenFlight struct {
	done      chan struct{}
	token     string
	err       error
	abandoned bool // the caller that ran it gave up (its context ended)
}

type authRequest struct {
	AccessKey string `json:"accessKey"`
	SecretKey string `json:"secretKey"`
}

type authResponse struct {
	AccessToken string  `json:"accessToken"`
	ExpireIn    seconds `json:"expireIn"`
}

// seconds is a lifetime in seconds, as a JSON number or a numeric string.
type seconds int64

func (s *seconds) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		var str string
		if err := json.Unmarshal(b, &str); err != nil {
			return err
		}
		b = []byte(str)
	}
	f, err := strconv.ParseFloat(string(b), 64)
	if err != nil || f < 0 || f > 1e9 {
		return fmt.Errorf("expireIn must be a number of seconds")
	}
	*s = seconds(f)
	return nil
}

// token returns an access token that is not due for renewal. stale, when not empty,
// is a token Klavi refused: the cached token is used only if it is another one.
func (c *Client) token(ctx context.Context, stale string) (string, error) {
	t := &c.tokens
	for {
		t.mu.Lock()
		if t.token != "" && t.token != stale && c.clock.Now().Before(t.renewAt) {
			tok := t.token
			t.mu.Unlock()
			return tok, nil
		}
		f := t.flight
		if f == nil {
			f = &tokenFlight{done: make(chan struct{})}
			t.flight = f
			t.mu.Unlock()
			var renewAt time.Time
			f.token, renewAt, f.err = c.fetchToken(ctx)
			f.abandoned = ctx.Err() != nil
			t.mu.Lock()
			if f.err == nil {
				t.token, t.renewAt = f.token, renewAt
			}
			t.flight = nil
			close(f.done)
			t.mu.Unlock()
			if h := c.hooks.OnTokenRefresh; h != nil {
				h(f.err)
			}
			return f.token, f.err
		}
		t.mu.Unlock()
		select {
		case <-f.done:
		case <-ctx.Done():
			return "", fmt.Errorf("%s: %w", epAuth.op, ctx.Err())
		}
		if f.err != nil && f.abandoned {
			continue // the caller that ran the refresh gave up, not this one: run another
		}
		return f.token, f.err
	}
}

// fetchToken buys a token with the access keys and says when to renew it.
func (c *Client) fetchToken(ctx context.Context) (string, time.Time, error) {
	var out authResponse
	if err := c.do(ctx, epAuth, http.MethodPost, pathAuth, authRequest{c.cfg.AccessKey, c.cfg.SecretKey}, &out); err != nil {
		c.log.Warn("klavi access token refresh failed", "error", err)
		return "", time.Time{}, err
	}
	if out.AccessToken == "" || out.ExpireIn <= 0 {
		err := fmt.Errorf("%s: %w: no accessToken or expireIn", epAuth.op, ErrMalformedResponse)
		c.log.Warn("klavi access token refresh failed", "error", err)
		return "", time.Time{}, err
	}
	life := time.Duration(out.ExpireIn) * time.Second
	margin := min(c.cfg.TokenRefreshBefore, life/2)
	c.log.Debug("klavi access token renewed", "expires_in", life)
	return out.AccessToken, c.clock.Now().Add(life - margin), nil
}
