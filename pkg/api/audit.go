package api

import (
	"github.com/gin-gonic/gin"

	"github.com/bhrd/bhrd/pkg/queue"
)

// actor is the caller of a request, as the Service reports it with every
// change: the authenticated user (with the token it used), or
// "anonymous".
func actor(c *gin.Context) queue.Actor {
	a := queue.Actor{Name: "anonymous", RemoteAddr: c.Request.RemoteAddr, RequestID: requestIDOf(c)}
	if p := principalOf(c); p != nil {
		a.Name, a.TokenID = p.Username, p.TokenID
	}
	return a
}

// withActor puts the caller into the request's context, for the Service.
func withActor(c *gin.Context) {
	c.Request = c.Request.WithContext(queue.WithActor(c.Request.Context(), actor(c)))
}
