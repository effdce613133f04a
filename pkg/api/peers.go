package api

import (
	"net/http"

	"github.com/gin-gonic/gin"
)

// GET api/bgp/peers: the peers of every internal BGP enforcer, by ident.
func (a *API) getBGPPeers(c *gin.Context) {
	v, err := a.peers(c.Request.Context())
	if err != nil {
		a.writeError(c, err)
		return
	}
	writeJSON(c, http.StatusOK, v)
}
