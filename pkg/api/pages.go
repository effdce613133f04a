package api

import (
	"net/http"
	"strings"

	"github.com/gin-gonic/gin"

	"github.com/bhrd/bhrd/pkg/auth"
)

// Pages are the web pages served beside the API (pkg/web). They go
// through the API's request id, access log, panic recovery and body
// limit, but authenticate with their own session cookie: an
// Authorization header means nothing to them.
type Pages interface {
	// Paths are the pages' paths, gin-style (":name" for one segment).
	Paths() []string
	// Session returns the principal of the request's session, nil for
	// none (or one that has ended); an error only when the store failed.
	Session(r *http.Request) (*auth.Principal, error)
	http.Handler
}

// mountPages registers every page path, with and without a trailing
// slash, for every method (the pages answer 405 themselves).
func (a *API) mountPages(e *gin.Engine, pages Pages) {
	serve := func(c *gin.Context) {
		p, err := pages.Session(c.Request)
		if err != nil {
			a.writeError(c, err)
			return
		}
		if p != nil {
			c.Request = c.Request.WithContext(auth.NewContext(c.Request.Context(), p))
		}
		withActor(c)
		pages.ServeHTTP(c.Writer, c.Request)
	}
	seen := map[string]bool{}
	for _, path := range pages.Paths() {
		for _, p := range []string{strings.TrimSuffix(path, "/"), strings.TrimSuffix(path, "/") + "/"} {
			if p == "" || seen[p] {
				continue
			}
			seen[p] = true
			e.Any(p, serve)
		}
	}
}
