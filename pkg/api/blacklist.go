package api

import (
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/bhrd/bhrd/pkg/queue"
)

// sourceBlacklistJSON is one blacklisted source. BHR kept these in its
// admin pages only; bhrd serves them under api/source_blacklist/.
type sourceBlacklistJSON struct {
	ID     int64  `json:"id"`
	Source string `json:"source"`
	Who    string `json:"who"`
	Why    string `json:"why"`
	Added  string `json:"added"`
}

func sourceBlacklistObject(e queue.SourceBlacklistEntry) sourceBlacklistJSON {
	return sourceBlacklistJSON{ID: e.ID, Source: e.Source, Who: e.Who, Why: e.Why, Added: formatTime(e.Added)}
}

// GET api/source_blacklist/
func (a *API) listSourceBlacklist(c *gin.Context) {
	list, err := a.svc.ListSourceBlacklist(c.Request.Context())
	if err != nil {
		a.writeError(c, err)
		return
	}
	out := make([]sourceBlacklistJSON, len(list))
	for i, e := range list {
		out[i] = sourceBlacklistObject(e)
	}
	writeJSON(c, http.StatusOK, out)
}

// POST api/source_blacklist/ {source, why}
func (a *API) postSourceBlacklist(c *gin.Context) {
	in, err := readInput(c)
	if err != nil {
		a.writeError(c, err)
		return
	}
	source, why := in.str("source"), in.str("why")
	if err := in.err(); err != nil {
		a.writeError(c, err)
		return
	}
	e, err := a.svc.AddSourceBlacklist(c.Request.Context(), source, why)
	if err != nil {
		if isDuplicate(err) {
			err = errField("source", "source blacklist entry with this source already exists.")
		}
		a.writeError(c, err)
		return
	}
	writeJSON(c, http.StatusCreated, sourceBlacklistObject(e))
}

// GET api/source_blacklist/<id>/
func (a *API) getSourceBlacklist(c *gin.Context) {
	id, err := pathID(c)
	if err != nil {
		a.writeError(c, err)
		return
	}
	list, err := a.svc.ListSourceBlacklist(c.Request.Context())
	if err != nil {
		a.writeError(c, err)
		return
	}
	for _, e := range list {
		if e.ID == id {
			writeJSON(c, http.StatusOK, sourceBlacklistObject(e))
			return
		}
	}
	a.writeError(c, errNotFound)
}

// DELETE api/source_blacklist/<id>/
func (a *API) deleteSourceBlacklist(c *gin.Context) {
	id, err := pathID(c)
	if err != nil {
		a.writeError(c, err)
		return
	}
	if err := a.svc.DeleteSourceBlacklist(c.Request.Context(), id); err != nil {
		a.writeError(c, err)
		return
	}
	c.Status(http.StatusNoContent)
}
