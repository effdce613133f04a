package web

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/bhrd/bhrd/pkg/auth"
	"github.com/bhrd/bhrd/pkg/queue"
)

func urlQueryEscape(s string) string { return url.QueryEscape(s) }

// Session implements api.Pages: the principal of the session cookie, nil
// when there is none or it has ended (logged out, expired, user
// disabled). An error means the store could not be asked.
func (p *Pages) Session(r *http.Request) (*auth.Principal, error) {
	c, err := r.Cookie(cookieName)
	if err != nil || c.Value == "" {
		return nil, nil
	}
	u, err := p.auth.Token(r.Context(), c.Value)
	switch {
	case errors.Is(err, auth.ErrInvalidCredentials), errors.Is(err, auth.ErrUserDisabled):
		return nil, nil
	case err != nil:
		return nil, err
	}
	if u.TokenCreated.IsZero() || p.svc.Now().Sub(u.TokenCreated) > p.maxAge {
		return nil, nil
	}
	return u, nil
}

func (p *Pages) cookie(r *http.Request, value string, maxAge int) *http.Cookie {
	return &http.Cookie{
		Name: cookieName, Value: value, Path: "/bhr/", MaxAge: maxAge,
		HttpOnly: true, SameSite: http.SameSiteLaxMode,
		Secure: p.secure || r.TLS != nil,
	}
}

// safeNext keeps a post-login redirect on this site's pages.
func safeNext(next string) string {
	if !strings.HasPrefix(next, "/bhr/") || strings.HasPrefix(next, "//") || strings.ContainsAny(next, "\\\r\n") {
		return "/bhr/"
	}
	return next
}

func remoteHost(r *http.Request) string {
	h, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return h
}

type loginData struct {
	Next     string
	Username string
}

func (p *Pages) login(w http.ResponseWriter, r *http.Request) {
	next := safeNext(r.FormValue("next"))
	if r.Method != http.MethodPost {
		if auth.FromContext(r.Context()) != nil {
			http.Redirect(w, r, next, http.StatusSeeOther)
			return
		}
		p.render(w, r, http.StatusOK, "login", "Log in", loginData{Next: next})
		return
	}
	user, pw := strings.TrimSpace(r.PostFormValue("username")), r.PostFormValue("password")
	data := loginData{Next: next, Username: user}
	actor := queue.ActorFrom(r.Context())
	actor.Name = user
	if user == "" {
		actor.Name = "anonymous"
	}
	keys := []string{"addr " + remoteHost(r), "user " + user}
	if left := p.logins.Blocked(keys...); left > 0 {
		msg := "Too many failed logins; try again in " + (left.Round(time.Second) + time.Second).String() + "."
		if p.audit != nil {
			p.audit.AuthFailed(actor, "web", msg)
		}
		w.Header().Set("Retry-After", itoa(int(left.Seconds())+1))
		p.render(w, r, http.StatusTooManyRequests, "login", "Log in", data, msg)
		return
	}
	u, err := p.auth.Basic(r.Context(), user, pw)
	if err != nil {
		msg := "Wrong username or password."
		status := http.StatusUnauthorized
		switch {
		case errors.Is(err, auth.ErrInvalidCredentials):
			p.logins.Fail(keys...)
		case errors.Is(err, auth.ErrUserDisabled):
			msg = "This account is disabled."
		default:
			p.failErr(w, r, err)
			return
		}
		if p.audit != nil {
			p.audit.AuthFailed(actor, "web", msg)
		}
		p.render(w, r, status, "login", "Log in", data, msg)
		return
	}
	secret, tok, err := p.auth.CreateToken(r.Context(), u.Username, SessionTokenName)
	if err != nil {
		p.failErr(w, r, err)
		return
	}
	actor.TokenID = tok.ID
	if p.audit != nil {
		p.audit.SessionStarted(actor, tok.ID)
	}
	http.SetCookie(w, p.cookie(r, secret, int(p.maxAge/time.Second)))
	http.Redirect(w, r, next, http.StatusSeeOther)
}

// logout revokes the session's token, so that the cookie is worthless
// even if it was copied, and clears the cookie.
func (p *Pages) logout(w http.ResponseWriter, r *http.Request) {
	u := auth.FromContext(r.Context())
	if r.Method != http.MethodPost {
		if u == nil {
			http.Redirect(w, r, "/bhr/login", http.StatusSeeOther)
			return
		}
		p.render(w, r, http.StatusOK, "logout", "Log out", nil)
		return
	}
	if u != nil && u.TokenID != 0 {
		// The revocation must happen even if the browser goes away.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), 10*time.Second)
		defer cancel()
		if err := p.auth.RevokeToken(ctx, u.TokenID); err != nil {
			p.log.Error("logout: revoke session", zap.Int64("token_id", u.TokenID), zap.Error(err))
			p.failErr(w, r, err)
			return
		}
		if p.audit != nil {
			p.audit.SessionEnded(queue.ActorFrom(r.Context()), u.TokenID)
		}
	}
	http.SetCookie(w, p.cookie(r, "", -1))
	http.Redirect(w, r, "/bhr/login", http.StatusSeeOther)
}
