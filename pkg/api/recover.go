package api

import (
	"fmt"
	"net/http"
	"runtime/debug"

	"github.com/gin-gonic/gin"
	"go.uber.org/zap"
)

// recoverPanic turns a panic in a handler into a logged stack and a 500,
// so that one bad request cannot take the daemon (and its BGP sessions)
// down.
func (a *API) recoverPanic(c *gin.Context) {
	defer func() {
		r := recover()
		if r == nil {
			return
		}
		if r == http.ErrAbortHandler {
			// A deliberate abort of a failed stream: let net/http drop
			// the connection.
			panic(r)
		}
		a.log.Error("panic in handler",
			zap.String("panic", fmt.Sprint(r)),
			zap.String("request_id", requestIDOf(c)),
			zap.String("route", c.FullPath()),
			zap.ByteString("stack", debug.Stack()))
		if c.Writer.Written() {
			// Part of the answer is out: only dropping the connection
			// tells the client it is incomplete.
			panic(http.ErrAbortHandler)
		}
		writeJSON(c, http.StatusInternalServerError, detail("Internal server error."))
		c.Abort()
	}()
	c.Next()
}
