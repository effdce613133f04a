package api

import (
	"net/http"

	"github.com/gin-gonic/gin"
)

// identJSON is one ident as api/idents shows it.
type identJSON struct {
	Ident    string  `json:"ident"`
	Added    *string `json:"added"`
	LastSeen *string `json:"last_seen"`
	// State is "active", "catching_up" (queuing what it missed) or
	// "idle" (new blocks are not queued for it until it asks again).
	State        string   `json:"state"`
	Queued       int64    `json:"queued"`
	OldestQueued *string  `json:"oldest_queued"`
	OldestAge    *float64 `json:"oldest_queued_age_seconds"`
	// UnblockDue are its open entries past their end (its unblock
	// queue); OldestDueAge how long ago the earliest of them ended.
	UnblockDue   int64    `json:"unblock_due"`
	OldestDue    *string  `json:"oldest_due"`
	OldestDueAge *float64 `json:"oldest_due_age_seconds"`
}

// GET api/idents/: every ident in the store.
func (a *API) listIdents(c *gin.Context) {
	idents, err := a.svc.ListIdents(c.Request.Context())
	if err != nil {
		a.writeError(c, err)
		return
	}
	now := a.svc.Now()
	out := make([]identJSON, len(idents))
	for i, in := range idents {
		j := identJSON{Ident: in.Name, Added: optTime(in.Added), LastSeen: optTime(in.LastSeen), State: "active",
			Queued: in.Queued, OldestQueued: optTime(in.OldestQueued), UnblockDue: in.UnblockDue, OldestDue: optTime(in.OldestDue)}
		switch {
		case !in.Active:
			j.State = "idle"
		case in.Backfilling:
			j.State = "catching_up"
		}
		if !in.OldestQueued.IsZero() {
			age := max(now.Sub(in.OldestQueued).Seconds(), 0)
			j.OldestAge = &age
		}
		if !in.OldestDue.IsZero() {
			age := max(now.Sub(in.OldestDue).Seconds(), 0)
			j.OldestDueAge = &age
		}
		out[i] = j
	}
	writeJSON(c, http.StatusOK, out)
}
