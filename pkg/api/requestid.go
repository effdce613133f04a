package api

import (
	"crypto/rand"
	"encoding/hex"

	"github.com/gin-gonic/gin"
)

// RequestIDHeader carries the request id both ways.
const RequestIDHeader = "X-Request-Id"

type requestIDKey struct{}

// requestID gives every request an id: the caller's X-Request-Id when it
// looks like an id (so a proxy's or client's id can be followed through
// the logs), else a new random one. It is echoed in the response.
func (a *API) requestID(c *gin.Context) {
	id := c.GetHeader(RequestIDHeader)
	if !saneRequestID(id) {
		id = newRequestID()
	}
	c.Set(requestIDKey{}, id)
	c.Header(RequestIDHeader, id)
	c.Next()
}

// saneRequestID accepts 1-128 characters that cannot forge log fields or
// headers.
func saneRequestID(id string) bool {
	if id == "" || len(id) > 128 {
		return false
	}
	for i := 0; i < len(id); i++ {
		ch := id[i]
		ok := ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' ||
			ch == '-' || ch == '_' || ch == '.' || ch == ':' || ch == '/' || ch == '+' || ch == '='
		if !ok {
			return false
		}
	}
	return true
}

func newRequestID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand panics instead)
	return hex.EncodeToString(b[:])
}

func requestIDOf(c *gin.Context) string {
	v, _ := c.Get(requestIDKey{})
	s, _ := v.(string)
	return s
}
