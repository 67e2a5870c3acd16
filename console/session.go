package console

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"
)

// Role is what a session may do.
type Role string

// Roles. An admin session views and acts; a read-only one only views.
const (
	RoleAdmin    Role = "admin"
	RoleReadOnly Role = "readonly"
)

// Cookie names. The session cookie is scoped to /ui/.
const (
	SessionCookie = "billingd_console"
	loginCookie   = "billingd_console_login"
)

// Session lifetimes: a session ends after IdleTimeout without a request, and
// MaxLifetime after its login whatever happens.
const (
	IdleTimeout = 12 * time.Hour
	MaxLifetime = 7 * 24 * time.Hour
)

// session is the signed payload of the session cookie. It is stateless: any replica
// whose tokens are the same accepts it, so no sticky sessions are needed behind a
// load balancer. N is a random nonce the CSRF token is derived from.
type session struct {
	Role    Role   `json:"r"`
	Issued  int64  `json:"iat"`
	Expires int64  `json:"exp"`
	N       string `json:"n"`
}

// keys holds the MAC key: derived from both tokens, so rotating either one ends every
// session (there is no server-side list to revoke from).
type keys struct{ mac []byte }

func newKeys(adminToken, readOnlyToken string) keys {
	m := hmac.New(sha256.New, []byte(adminToken))
	m.Write([]byte("billingd console session v1\x00"))
	m.Write([]byte(readOnlyToken))
	return keys{mac: m.Sum(nil)}
}

func (k keys) sum(parts ...string) []byte {
	m := hmac.New(sha256.New, k.mac)
	for _, p := range parts {
		m.Write([]byte(p))
		m.Write([]byte{0})
	}
	return m.Sum(nil)
}

var b64 = base64.RawURLEncoding

// seal encodes s as "payload.mac".
func (k keys) seal(s session) string {
	p, _ := json.Marshal(s)
	enc := b64.EncodeToString(p)
	return enc + "." + b64.EncodeToString(k.sum("session", enc))
}

var errBadSession = errors.New("bad or expired session")

// open checks a cookie value's MAC and expiry.
func (k keys) open(v string, now time.Time) (session, error) {
	enc, mac, ok := strings.Cut(v, ".")
	if !ok {
		return session{}, errBadSession
	}
	got, err := b64.DecodeString(mac)
	if err != nil || !hmac.Equal(got, k.sum("session", enc)) {
		return session{}, errBadSession
	}
	p, err := b64.DecodeString(enc)
	if err != nil {
		return session{}, errBadSession
	}
	var s session
	if err := json.Unmarshal(p, &s); err != nil || s.N == "" || (s.Role != RoleAdmin && s.Role != RoleReadOnly) {
		return session{}, errBadSession
	}
	if t := now.Unix(); t >= s.Expires || t >= s.Issued+int64(MaxLifetime/time.Second) {
		return session{}, errBadSession
	}
	return s, nil
}

// csrf is the session's CSRF token (a synchronizer token derived from the session's
// nonce, so it needs no storage and changes with every login).
func (k keys) csrf(s session) string { return b64.EncodeToString(k.sum("csrf", s.N)) }

// loginCSRF is the login form's token, bound to the pre-login cookie's nonce.
func (k keys) loginCSRF(nonce string) string { return b64.EncodeToString(k.sum("login", nonce)) }

func nonce() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func tokenEqual(a, b string) bool {
	return a != "" && b != "" && subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1
}

// secure says whether the request came over TLS (directly or through a proxy that
// says so): the cookies are then Secure.
func secure(r *http.Request) bool {
	return r.TLS != nil || strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https")
}

func (c *Console) setCookie(w http.ResponseWriter, r *http.Request, name, value string, maxAge int) {
	http.SetCookie(w, &http.Cookie{
		Name:     name,
		Value:    value,
		Path:     c.prefix,
		MaxAge:   maxAge,
		HttpOnly: true,
		Secure:   secure(r),
		SameSite: http.SameSiteStrictMode,
	})
}

// startSession sets a new session cookie for role.
func (c *Console) startSession(w http.ResponseWriter, r *http.Request, role Role) {
	now := c.clock.Now()
	s := session{Role: role, Issued: now.Unix(), Expires: now.Add(IdleTimeout).Unix(), N: nonce()}
	c.setCookie(w, r, SessionCookie, c.keys.seal(s), int(IdleTimeout/time.Second))
}

// sessionOf returns the request's valid session. A session past half its idle time
// is renewed (same nonce, new expiry), so an active operator stays logged in.
func (c *Console) sessionOf(w http.ResponseWriter, r *http.Request) (session, bool) {
	ck, err := r.Cookie(SessionCookie)
	if err != nil {
		return session{}, false
	}
	now := c.clock.Now()
	s, err := c.keys.open(ck.Value, now)
	if err != nil {
		return session{}, false
	}
	if time.Unix(s.Expires, 0).Sub(now) < IdleTimeout/2 {
		s.Expires = now.Add(IdleTimeout).Unix()
		c.setCookie(w, r, SessionCookie, c.keys.seal(s), int(IdleTimeout/time.Second))
	}
	return s, true
}
