package api

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/bhrd/bhrd/pkg/auth"
)

// DRF's messages, which BHR's clients show to their users.
const (
	msgNoCredentials   = "Authentication credentials were not provided."
	msgNoPermission    = "You do not have permission to perform this action."
	msgInvalidToken    = "Invalid token."
	msgInvalidBasic    = "Invalid username/password."
	msgInactive        = "User inactive or deleted."
	msgTokenNoKey      = "Invalid token header. No credentials provided."
	msgTokenSpaces     = "Invalid token header. Token string should not contain spaces."
	msgBasicMalformed  = "Invalid basic header. Credentials not correctly base64 encoded."
	wwwAuthenticateTok = `Token`
	wwwAuthenticateBas = `Basic realm="bhrd"`
)

// authenticate checks the credentials of a request, if it carries any:
// "Authorization: Token <key>" or HTTP Basic. Bad credentials are a 401
// even on a public endpoint, as in DRF; no credentials leave the request
// anonymous for require to judge. Other schemes are ignored, as DRF does.
func (a *API) authenticate(c *gin.Context) {
	h := c.GetHeader("Authorization")
	if h == "" {
		c.Next()
		return
	}
	scheme, rest, _ := strings.Cut(h, " ")
	scheme = strings.ToLower(scheme)
	var (
		p    *auth.Principal
		err  error
		bad  string // message for ErrInvalidCredentials
		user string // the name tried with Basic, for the audit log
	)
	switch scheme {
	case "token":
		parts := strings.Fields(rest)
		switch {
		case len(parts) == 0:
			a.authFailed(c, scheme, "", msgTokenNoKey)
			return
		case len(parts) > 1:
			a.authFailed(c, scheme, "", msgTokenSpaces)
			return
		}
		bad = msgInvalidToken
		p, err = a.auth.Token(c.Request.Context(), parts[0])
	case "basic":
		var pw string
		var ok bool
		user, pw, ok = c.Request.BasicAuth()
		if !ok {
			a.authFailed(c, scheme, "", msgBasicMalformed)
			return
		}
		bad = msgInvalidBasic
		keys := []string{"addr " + c.RemoteIP(), "user " + user}
		if left := a.logins.Blocked(keys...); left > 0 {
			a.throttled(c, user, left)
			return
		}
		p, err = a.auth.Basic(c.Request.Context(), user, pw)
		if errors.Is(err, auth.ErrInvalidCredentials) {
			a.logins.Fail(keys...)
		}
	default:
		c.Next()
		return
	}
	switch {
	case errors.Is(err, auth.ErrInvalidCredentials):
		a.authFailed(c, scheme, user, bad)
		return
	case errors.Is(err, auth.ErrUserDisabled):
		a.authFailed(c, scheme, user, msgInactive)
		return
	case err != nil:
		a.writeError(c, err)
		return
	}
	c.Request = c.Request.WithContext(auth.NewContext(c.Request.Context(), p))
	c.Next()
}

// authFailed answers 401 and records the refused credentials. The
// secret is never logged; for Basic the user name tried is the actor.
func (a *API) authFailed(c *gin.Context, scheme, user, msg string) {
	if a.audit != nil {
		who := actor(c)
		who.Name = "anonymous"
		if user != "" {
			who.Name = user
		}
		a.audit.AuthFailed(who, scheme, msg)
	}
	unauthorized(c, msg)
}

// throttled answers 429 to a password login from an address or for a
// user with too many recent failures, and records it.
func (a *API) throttled(c *gin.Context, user string, left time.Duration) {
	msg := fmt.Sprintf("Too many failed logins; try again in %d seconds.", int(left.Seconds())+1)
	if a.audit != nil {
		who := actor(c)
		who.Name = user
		a.audit.AuthFailed(who, "basic", msg)
	}
	c.Header("Retry-After", strconv.Itoa(int(left.Seconds())+1))
	writeJSON(c, http.StatusTooManyRequests, detail(msg))
	c.Abort()
}

func unauthorized(c *gin.Context, msg string) {
	c.Writer.Header().Add("WWW-Authenticate", wwwAuthenticateTok)
	c.Writer.Header().Add("WWW-Authenticate", wwwAuthenticateBas)
	writeJSON(c, http.StatusUnauthorized, detail(msg))
	c.Abort()
}

// require lets the request through only for a caller holding perm: 401
// for an anonymous caller (so that clients know to send credentials), 403
// for one who lacks the permission.
func (a *API) require(perm auth.Permission) gin.HandlerFunc {
	return func(c *gin.Context) {
		p := principalOf(c)
		if p == nil {
			unauthorized(c, msgNoCredentials)
			return
		}
		if !p.Can(perm) {
			writeJSON(c, http.StatusForbidden, detail(msgNoPermission))
			c.Abort()
			return
		}
		c.Next()
	}
}
