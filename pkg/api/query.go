package api

import (
	"github.com/gin-gonic/gin"

	"github.com/bhrd/bhrd/pkg/queue"
)

// GET api/query/<cidr> and api/query_limited/<cidr>: the history of every
// block, in any state, whose cidr lies within <cidr>, oldest first. The
// limited view (public when unauthenticated_limited_query is on) never
// shows who or why.
func (a *API) getQuery(limited bool) gin.HandlerFunc {
	view := fullBlock
	if limited {
		view = limitedBlock
	}
	return func(c *gin.Context) {
		cidr := wildcard(c, "cidr")
		prefix := a.urlPrefix(c)
		s := a.newStream(c, "application/json")
		s.finishJSON(a.svc.Query(c.Request.Context(), cidr, func(b queue.Block) error {
			return s.jsonItem(view(prefix, b))
		}))
	}
}
