package api

import (
	"errors"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"

	"github.com/bhrd/bhrd/pkg/queue"
)

// queueItemJSON is one block in an ident's block queue.
type queueItemJSON struct {
	ID         int64  `json:"id"`
	CIDR       string `json:"cidr"`
	SetBlocked string `json:"set_blocked"`
	Added      string `json:"added"`
}

// unblockItemJSON is one entry in an ident's unblock queue.
type unblockItemJSON struct {
	ID           int64    `json:"id"`
	Block        cidrJSON `json:"block"`
	Ident        string   `json:"ident"`
	Added        string   `json:"added"`
	SetUnblocked string   `json:"set_unblocked"`
}

// GET api/queue/<ident>?timeout=N&added_since=T
//
// With a timeout, an empty queue makes the call wait for the queue's
// change notification (not a re-query loop) until work for this ident
// exists or the timeout, capped at api.long_poll_max, passes. A waiting
// call costs its goroutine and one timer.
func (a *API) getBlockQueue(c *gin.Context) {
	ident := wildcard(c, "ident")
	var timeout time.Duration
	if s := c.Query("timeout"); s != "" {
		// BHR parsed with int(); a float such as "28.0" is tolerated here.
		f, err := strconv.ParseFloat(s, 64)
		if err != nil || f < 0 || math.IsNaN(f) || math.IsInf(f, 0) {
			a.writeError(c, errField("timeout", "A valid non-negative number of seconds is required."))
			return
		}
		timeout = a.cfg.LongPollMax
		if f < timeout.Seconds() {
			timeout = time.Duration(f * float64(time.Second))
		}
	}
	var since time.Time
	if s := c.Query("added_since"); s != "" {
		t, err := queue.ParseTime("added_since", s)
		if err != nil {
			a.writeError(c, err)
			return
		}
		// BHR selected added >= added_since; the store's since is
		// exclusive, at microsecond precision. Without this, a client
		// passing the "added" of the last item it saw would miss the rest
		// of an mblock batch, which shares one added time.
		since = t.Add(-time.Microsecond)
	}
	ctx := c.Request.Context()
	var deadline <-chan time.Time
	if timeout > 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		deadline = t.C
	}
	for {
		// Taken before reading the queue, so that a block added between
		// the read and the wait still wakes us.
		changed := a.svc.Changed()
		items, err := a.svc.BlockQueue(ctx, ident, since, queue.QueueLimit)
		if err != nil {
			a.writeError(c, err)
			return
		}
		if len(items) > 0 || deadline == nil {
			a.writeQueue(c, items)
			return
		}
		a.waiting.Add(1)
		select {
		case <-changed:
			a.waiting.Add(-1)
			continue
		case <-deadline:
		case <-a.drain:
		case <-ctx.Done():
			a.waiting.Add(-1)
			c.Status(statusClientClosed)
			return
		}
		a.waiting.Add(-1)
		a.writeQueue(c, items)
		return
	}
}

func (a *API) writeQueue(c *gin.Context, items []queue.QueueItem) {
	prefix := a.urlPrefix(c)
	out := make([]queueItemJSON, len(items))
	for i, it := range items {
		out[i] = queueItemJSON{
			ID:         it.ID,
			CIDR:       it.CIDR.String(),
			SetBlocked: blockURL(prefix, it.ID) + "set_blocked/",
			Added:      formatTime(it.Added),
		}
	}
	writeJSON(c, http.StatusOK, out)
}

// POST api/set_blocked_multi/<ident> {"ids": [block ids]}
func (a *API) postSetBlockedMulti(c *gin.Context) {
	ident := wildcard(c, "ident")
	in, err := readInput(c)
	if err != nil {
		a.writeError(c, err)
		return
	}
	ids := in.ids("ids")
	if err := in.err(); err != nil {
		a.writeError(c, err)
		return
	}
	if err := a.svc.SetBlockedMax(c.Request.Context(), ident, ids, a.cfg.MaxMBlockItems); err != nil {
		a.writeError(c, idsError(err, "block"))
		return
	}
	writeJSON(c, http.StatusOK, statusOK)
}

// idsError makes an unknown id in a body a 400 on "ids" (the request is
// wrong, not its URL), as DRF does for a bad primary key.
func idsError(err error, what string) error {
	if errors.Is(err, queue.ErrNotFound) {
		return errField("ids", "Unknown "+what+" id in the list; nothing was changed.")
	}
	return err
}

// GET api/unblock_queue/<ident>
func (a *API) getUnblockQueue(c *gin.Context) {
	ident := wildcard(c, "ident")
	items, err := a.svc.UnblockQueue(c.Request.Context(), ident, queue.QueueLimit)
	if err != nil {
		a.writeError(c, err)
		return
	}
	prefix := a.urlPrefix(c)
	out := make([]unblockItemJSON, len(items))
	for i, it := range items {
		out[i] = unblockItemJSON{
			ID:           it.ID,
			Block:        cidrJSON{CIDR: it.CIDR.String()},
			Ident:        it.Ident,
			Added:        formatTime(it.Added),
			SetUnblocked: entryURL(prefix, it.ID) + "set_unblocked/",
		}
	}
	writeJSON(c, http.StatusOK, out)
}

// POST api/set_unblocked_multi {"ids": [entry ids]}
func (a *API) postSetUnblockedMulti(c *gin.Context) {
	in, err := readInput(c)
	if err != nil {
		a.writeError(c, err)
		return
	}
	ids := in.ids("ids")
	if err := in.err(); err != nil {
		a.writeError(c, err)
		return
	}
	if err := a.svc.SetUnblockedMax(c.Request.Context(), ids, a.cfg.MaxMBlockItems); err != nil {
		a.writeError(c, idsError(err, "entry"))
		return
	}
	writeJSON(c, http.StatusOK, statusOK)
}
