package api

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"runtime"
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
	prefix := a.urlPrefix(c)
	// Taken before reading the queue, so that a block added between the
	// read and the wait still wakes us. Only new blocks wake it: an
	// unblock_now or an extend, which give no block-queue work, leave
	// waiters parked.
	wake := a.svc.BlockQueueChanged()
	for {
		res, err := a.readQueue(ctx, ident, since, prefix, wake)
		if err != nil {
			a.writeError(c, err)
			return
		}
		if len(res.items) > 0 || deadline == nil {
			writeRaw(c, http.StatusOK, res.body)
			return
		}
		a.waiting.Add(1)
		for {
			select {
			case <-wake.Done():
				// Blocks added no later than since are none of ours:
				// wait on for the next wake-up without a read.
				added, known := wake.Added()
				wake = wake.Next()
				if known && !since.IsZero() && !added.After(since) {
					continue
				}
				a.waiting.Add(-1)
			case <-deadline:
				a.waiting.Add(-1)
				writeRaw(c, http.StatusOK, res.body)
				return
			case <-a.drain:
				a.waiting.Add(-1)
				writeRaw(c, http.StatusOK, res.body)
				return
			case <-ctx.Done():
				a.waiting.Add(-1)
				c.Status(statusClientClosed)
				return
			}
			break
		}
	}
}

// sharedReadTimeout bounds a shared block-queue read (a read takes
// milliseconds; a store that hangs must not hold the waiters forever).
const sharedReadTimeout = 30 * time.Second

// queueRead is one read of a block queue, rendered.
type queueRead struct {
	items []queue.QueueItem
	body  []byte
}

// readQueue reads and renders ident's block queue, shared by every
// caller asking the same question while one read is in flight: when a
// block wakes a thousand parked polls of ten idents, the store is read
// ten times and each answer rendered once, not a thousand times. The key
// holds the wake-up the caller took before asking: a read started under
// that wake-up saw every block committed before the caller took it or,
// if a block came later, the wake-up is done and the caller will look
// again. A caller holding a newer wake-up never joins an older read. The
// read is not cancelled when the caller that started it goes away, since
// others may be waiting for it.
func (a *API) readQueue(ctx context.Context, ident string, since time.Time, prefix string, wake *queue.QueueWake) (*queueRead, error) {
	key := fmt.Sprintf("%s\x00%d\x00%s\x00%p", ident, since.UnixMicro(), prefix, wake)
	ch := a.queueReads.DoChan(key, func() (any, error) {
		// Holding wake keeps its address, part of the key, from being
		// reused by a newer wake-up while this read is in flight.
		defer runtime.KeepAlive(wake)
		// Bounded, since no caller's going away cancels it.
		rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), sharedReadTimeout)
		defer cancel()
		items, err := a.svc.BlockQueue(rctx, ident, since, queue.QueueLimit)
		if err != nil {
			return nil, err
		}
		return &queueRead{items: items, body: renderQueue(prefix, items)}, nil
	})
	select {
	case r := <-ch:
		if r.Err != nil {
			return nil, r.Err
		}
		return r.Val.(*queueRead), nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func renderQueue(prefix string, items []queue.QueueItem) []byte {
	out := make([]queueItemJSON, len(items))
	for i, it := range items {
		out[i] = queueItemJSON{
			ID:         it.ID,
			CIDR:       it.CIDR.String(),
			SetBlocked: blockURL(prefix, it.ID) + "set_blocked/",
			Added:      formatTime(it.Added),
		}
	}
	return encodeJSON(out)
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
