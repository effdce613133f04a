package api

import (
	"errors"
	"fmt"
	"io"
	"net/http"

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
	}
	c.Next()
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
