package console

import (
	"errors"
	"net/http"
	"strings"
	"time"
)

// loginView is the login page's data.
type loginView struct {
	Next  string
	Token string // the login form's CSRF token
}

// safeNext keeps a post-login destination only when it is a console page.
func (c *Console) safeNext(next string) string {
	if !strings.HasPrefix(next, c.prefix) || strings.HasPrefix(next, "//") || strings.ContainsAny(next, "\\\r\n") ||
		strings.HasPrefix(next, c.prefix+"login") {
		return c.prefix
	}
	return next
}

// loginPage shows the token form. It sets a short-lived pre-login cookie whose
// nonce the form's CSRF token is bound to, so a login cannot be forged from
// another site (login CSRF) either.
func (c *Console) loginPage(w http.ResponseWriter, r *http.Request) {
	if _, ok := c.sessionOf(w, r); ok {
		http.Redirect(w, r, c.safeNext(r.URL.Query().Get("next")), http.StatusSeeOther)
		return
	}
	c.showLogin(w, r, http.StatusOK, "")
}

func (c *Console) showLogin(w http.ResponseWriter, r *http.Request, code int, msg string) {
	n := nonce()
	c.setCookie(w, r, loginCookie, n, int((15 * time.Minute).Seconds()))
	next := r.URL.Query().Get("next")
	if r.Method == http.MethodPost {
		next = r.PostFormValue("next")
	}
	c.render(w, code, "login", page{Title: "Log in", Error: msg, Now: Instant(c.clock.Now()),
		Data: loginView{Next: c.safeNext(next), Token: c.keys.loginCSRF(n)}})
}

// login checks the form's CSRF token and the token typed in, then opens a session
// of the token's role. Failures are logged without the token.
func (c *Console) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 16<<10)
	if err := c.cop.Check(r); err != nil {
		c.errorPage(w, r, http.StatusForbidden, errors.New("cross-origin request refused"))
		return
	}
	ck, err := r.Cookie(loginCookie)
	if err != nil || !tokenEqual(r.PostFormValue("csrf"), c.keys.loginCSRF(ck.Value)) {
		c.log.Warn("console: login without a valid CSRF token refused", "remote", r.RemoteAddr)
		c.showLogin(w, r, http.StatusForbidden, "The login form expired: try again.")
		return
	}
	tok := strings.TrimSpace(r.PostFormValue("token"))
	var role Role
	switch {
	case tokenEqual(tok, c.adminToken):
		role = RoleAdmin
	case c.readOnlyToken != "" && tokenEqual(tok, c.readOnlyToken):
		role = RoleReadOnly
	default:
		c.log.Warn("console: login refused: wrong token", "remote", r.RemoteAddr)
		c.showLogin(w, r, http.StatusUnauthorized, "Wrong token.")
		return
	}
	c.setCookie(w, r, loginCookie, "", -1)
	c.startSession(w, r, role)
	c.log.Info("console: login", "role", string(role), "remote", r.RemoteAddr)
	http.Redirect(w, r, c.safeNext(r.PostFormValue("next")), http.StatusSeeOther)
}

// logout clears the session cookie. A copy of the cookie taken before stays valid
// until it expires: rotate the token to end every session at once.
func (c *Console) logout(w http.ResponseWriter, r *request) {
	c.setCookie(w, r.Request, SessionCookie, "", -1)
	c.log.Info("console: logout", "role", string(r.s.Role))
	http.Redirect(w, r.Request, c.prefix+"login", http.StatusSeeOther)
}
