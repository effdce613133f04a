package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/gin-gonic/gin"
	"go.uber.org/zap"

	"github.com/bhrd/bhrd/pkg/auth"
	"github.com/bhrd/bhrd/pkg/queue"
)

// The bodies BHR's clients know (Django REST framework's shapes):
//
//	{"detail": "..."}                  authentication, permission, 404, 405, 413, 415
//	{"<field>": ["..."]}               a bad field
//	{"non_field_errors": ["..."]}      a refused request (whitelist, prefix length, ...)
//	[{}, {"cidr": ["..."]}, ...]       mblock, one object per item

// httpError is an answer the API decided on; it is not logged as a failure.
type httpError struct {
	status int
	body   any
}

func (e *httpError) Error() string { return fmt.Sprintf("http %d: %v", e.status, e.body) }

func detail(msg string) map[string]string { return map[string]string{"detail": msg} }

func errDetail(status int, msg string) *httpError {
	return &httpError{status: status, body: detail(msg)}
}

func errField(field, msg string) *httpError {
	return &httpError{status: http.StatusBadRequest, body: map[string][]string{field: {msg}}}
}

func errNonField(msg string) *httpError {
	return &httpError{status: http.StatusBadRequest, body: map[string][]string{"non_field_errors": {msg}}}
}

var errNotFound = errDetail(http.StatusNotFound, "Not found.")

// errorBody maps an error from the queue service to a status and a BHR
// body. ok is false for errors that are not the client's fault.
func errorBody(err error) (status int, body any, ok bool) {
	var he *httpError
	var fes queue.FieldErrors
	var fe *queue.FieldError
	var pe *queue.PolicyError
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &he):
		return he.status, he.body, true
	case errors.Is(err, queue.ErrSkipNotPermitted):
		return http.StatusForbidden, detail("You do not have permission to use skip_whitelist."), true
	case errors.Is(err, queue.ErrReservedIdent):
		return http.StatusConflict, detail(reservedMessage(err)), true
	case errors.Is(err, queue.ErrTooManyIdents):
		return http.StatusConflict, detail(err.Error()), true
	case errors.As(err, &fes):
		m := make(map[string][]string, len(fes))
		for _, f := range fes {
			m[f.Field] = append(m[f.Field], f.Message)
		}
		return http.StatusBadRequest, m, true
	case errors.As(err, &fe):
		return http.StatusBadRequest, map[string][]string{fe.Field: {fe.Message}}, true
	case errors.As(err, &pe):
		return http.StatusBadRequest, map[string][]string{"non_field_errors": {pe.Message}}, true
	case errors.As(err, &mbe):
		return http.StatusRequestEntityTooLarge, detail(tooLarge(mbe.Limit)), true
	case errors.Is(err, queue.ErrNotFound), errors.Is(err, auth.ErrNotFound):
		return http.StatusNotFound, detail("Not found."), true
	case errors.Is(err, queue.ErrDuplicate), errors.Is(err, auth.ErrDuplicate):
		return http.StatusBadRequest, map[string][]string{"non_field_errors": {"Already exists."}}, true
	}
	return http.StatusInternalServerError, detail("Internal server error."), false
}

// writeError answers err. Server-side failures are logged with the
// request id; the client sees only that something went wrong.
func (a *API) writeError(c *gin.Context, err error) {
	if ctxErr := c.Request.Context().Err(); ctxErr != nil && errors.Is(err, ctxErr) {
		// The client went away; there is nobody to answer.
		c.Status(statusClientClosed)
		c.Abort()
		return
	}
	status, body, ok := errorBody(err)
	if !ok && a.unavailable != nil && a.unavailable(err) {
		// The store can not serve now: say so, and when to try again,
		// instead of a 500 that looks like a bug.
		a.log.Warn("store unavailable", zap.Error(err), zap.String("request_id", requestIDOf(c)),
			zap.String("route", c.FullPath()))
		c.Header("Retry-After", "5")
		writeJSON(c, http.StatusServiceUnavailable, detail("The store is unavailable; retry later."))
		c.Abort()
		return
	}
	if !ok {
		a.log.Error("request failed", zap.Error(err), zap.String("request_id", requestIDOf(c)),
			zap.String("route", c.FullPath()))
	}
	writeJSON(c, status, body)
	c.Abort()
}

// statusClientClosed is nginx's code for a client that closed the
// connection before the answer; it appears only in the access log.
const statusClientClosed = 499

// canceled reports whether err is the request's own cancellation.
func canceled(c *gin.Context, err error) bool {
	return errors.Is(err, context.Canceled) && c.Request.Context().Err() != nil
}

func isDuplicate(err error) bool {
	return errors.Is(err, queue.ErrDuplicate) || errors.Is(err, auth.ErrDuplicate)
}

// reservedMessage says which ident is reserved and what to do instead.
func reservedMessage(err error) string {
	var re *queue.ReservedIdentError
	if errors.As(err, &re) {
		return re.Error()
	}
	return err.Error()
}
