package api

import (
	"time"

	"github.com/gin-gonic/gin"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/bhrd/bhrd/pkg/auth"
)

// accessLog writes one line per request. It runs deferred so that a
// request whose connection is aborted mid-stream is logged too.
func (a *API) accessLog(c *gin.Context) {
	start := time.Now()
	defer func() {
		status := c.Writer.Status()
		route := c.FullPath()
		if route == "" {
			route = "unmatched"
		}
		d := time.Since(start)
		if a.onReq != nil {
			a.onReq(c.Request.Method, route, status, d)
		}
		fields := []zap.Field{
			zap.String("method", c.Request.Method),
			zap.String("route", route),
			zap.String("path", c.Request.URL.Path),
			zap.Int("status", status),
			// Milliseconds as a float: the daemon's encoder writes
			// durations as whole milliseconds, which hides most requests.
			zap.Float64("duration_ms", float64(d)/float64(time.Millisecond)),
			zap.Int("bytes", max(c.Writer.Size(), 0)),
			zap.String("request_id", requestIDOf(c)),
			zap.String("remote", c.Request.RemoteAddr),
		}
		if q := c.Request.URL.RawQuery; q != "" {
			fields = append(fields, zap.String("query", q))
		}
		if p := principalOf(c); p != nil {
			fields = append(fields, zap.String("user", p.Username))
			if p.TokenID != 0 {
				fields = append(fields, zap.Int64("token_id", p.TokenID))
			}
		}
		if r := recover(); r != nil {
			// A deliberate abort (stream failed mid-way): log, then let
			// net/http drop the connection.
			fields = append(fields, zap.Bool("aborted", true))
			a.log.Warn("http request", fields...)
			panic(r)
		}
		lvl := zapcore.InfoLevel
		if status >= 500 {
			lvl = zapcore.ErrorLevel
		}
		a.log.Log(lvl, "http request", fields...)
	}()
	c.Next()
}

func principalOf(c *gin.Context) *auth.Principal {
	return auth.FromContext(c.Request.Context())
}
