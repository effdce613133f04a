// Package httpblgin adapts httpbl's Checker to gin.
package httpblgin

import (
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/bhrd/bhrd/pkg/httpbl"
)

// Middleware refuses denied clients as the net/http middleware does
// (the Checker's Denied handler, 403 by default) and otherwise goes on;
// the decision is in the request's context (httpbl.FromContext).
func Middleware(c *httpbl.Checker) gin.HandlerFunc {
	return func(g *gin.Context) {
		passed := false
		c.Middleware(http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
			passed = true
			g.Request = r
		})).ServeHTTP(g.Writer, g.Request)
		if !passed {
			g.Abort()
			return
		}
		g.Next()
	}
}
