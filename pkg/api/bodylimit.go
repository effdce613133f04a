package api

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"

	"github.com/gin-gonic/gin"
)

// limitBody refuses bodies over api.max_body_bytes: at once when the
// Content-Length says so, else when reading passes the limit (a chunked
// body), which readBody turns into the same 413.
func (a *API) limitBody(c *gin.Context) {
	limit := a.cfg.MaxBodyBytes
	if c.Request.ContentLength > limit {
		writeJSON(c, http.StatusRequestEntityTooLarge, detail(tooLarge(limit)))
		c.Abort()
		return
	}
	if c.Request.Body != nil && c.Request.Body != http.NoBody {
		c.Request.Body = http.MaxBytesReader(c.Writer, c.Request.Body, limit)
		if !a.readBodyInTime(c) {
			return
		}
	}
	c.Next()
}

// readBodyInTime reads the whole body within api.body_timeout of the
// headers, so that a client that declares a body and never sends it
// holds its connection for that long, not forever: past it the answer is
// 408 and the connection is closed. The body is kept in memory (it is at
// most api.max_body_bytes; every handler reads it whole anyway), and the
// deadline is lifted before the handler runs, so a long poll or a long
// CSV export is not cut.
func (a *API) readBodyInTime(c *gin.Context) bool {
	rc := http.NewResponseController(c.Writer)
	_ = rc.SetReadDeadline(time.Now().Add(a.cfg.BodyTimeout))
	b, err := io.ReadAll(c.Request.Body)
	var ne net.Error
	if err != nil && errors.As(err, &ne) && ne.Timeout() {
		// The deadline stays passed: the server's drain of the unread
		// body after the answer fails at once, and the connection closes.
		c.Header("Connection", "close")
		writeJSON(c, http.StatusRequestTimeout, detail(fmt.Sprintf(
			"The request body did not arrive within %s (api.body_timeout).", a.cfg.BodyTimeout)))
		c.Abort()
		return false
	}
	_ = rc.SetReadDeadline(time.Time{})
	if err == nil {
		c.Request.Body = io.NopCloser(bytes.NewReader(b))
		return true
	}
	// Anything else (413, a body cut short) is the handler's to answer,
	// as before: hand it the error.
	c.Request.Body = io.NopCloser(&errReader{b: b, err: err})
	return true
}

// errReader returns b, then err.
type errReader struct {
	b   []byte
	err error
}

func (r *errReader) Read(p []byte) (int, error) {
	if len(r.b) > 0 {
		n := copy(p, r.b)
		r.b = r.b[n:]
		return n, nil
	}
	return 0, r.err
}

func tooLarge(limit int64) string {
	return fmt.Sprintf("Request body too large: the limit is %d bytes (api.max_body_bytes).", limit)
}

// readBody reads the whole (size-limited) body.
func readBody(c *gin.Context) ([]byte, error) {
	if c.Request.Body == nil {
		return nil, nil
	}
	b, err := io.ReadAll(c.Request.Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return nil, errDetail(http.StatusRequestEntityTooLarge, tooLarge(mbe.Limit))
		}
		if canceled(c, err) {
			return nil, err
		}
		// A body cut short is the client's problem, not a server failure.
		return nil, errDetail(http.StatusBadRequest, "Could not read the request body: "+err.Error())
	}
	return b, nil
}
