package api

import (
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/bhrd/bhrd/pkg/queue"
)

// whitelistJSON is a whitelist entry. Unlike BHR it carries its id, so
// that an entry can be deleted through the API.
type whitelistJSON struct {
	ID    int64  `json:"id"`
	CIDR  string `json:"cidr"`
	Who   string `json:"who"`
	Why   string `json:"why"`
	Added string `json:"added"`
}

func whitelistObject(e queue.WhitelistEntry) whitelistJSON {
	return whitelistJSON{ID: e.ID, CIDR: e.CIDR.String(), Who: e.Who, Why: e.Why, Added: formatTime(e.Added)}
}

// GET api/whitelist/
func (a *API) listWhitelist(c *gin.Context) {
	list, err := a.svc.ListWhitelist(c.Request.Context())
	if err != nil {
		a.writeError(c, err)
		return
	}
	out := make([]whitelistJSON, len(list))
	for i, e := range list {
		out[i] = whitelistObject(e)
	}
	writeJSON(c, http.StatusOK, out)
}

// POST api/whitelist/ {cidr, why}
func (a *API) postWhitelist(c *gin.Context) {
	in, err := readInput(c)
	if err != nil {
		a.writeError(c, err)
		return
	}
	cidr, why := in.str("cidr"), in.str("why")
	if err := in.err(); err != nil {
		a.writeError(c, err)
		return
	}
	e, err := a.svc.AddWhitelist(c.Request.Context(), cidr, why)
	if err != nil {
		a.writeError(c, err)
		return
	}
	writeJSON(c, http.StatusCreated, whitelistObject(e))
}

// requireField records DRF's "required" error for an empty field that has
// no other error yet.
func requireField(in *input, field, v string) {
	if v == "" && in.errs[field] == nil {
		in.fail(field, "This field is required.")
	}
}

// GET api/whitelist/<id>/
func (a *API) getWhitelist(c *gin.Context) {
	id, err := pathID(c)
	if err != nil {
		a.writeError(c, err)
		return
	}
	e, err := a.svc.GetWhitelist(c.Request.Context(), id)
	if err != nil {
		a.writeError(c, err)
		return
	}
	writeJSON(c, http.StatusOK, whitelistObject(e))
}

// DELETE api/whitelist/<id>/ answers 204, as DRF's destroy.
func (a *API) deleteWhitelist(c *gin.Context) {
	id, err := pathID(c)
	if err != nil {
		a.writeError(c, err)
		return
	}
	if err := a.svc.DeleteWhitelist(c.Request.Context(), id); err != nil {
		a.writeError(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}
