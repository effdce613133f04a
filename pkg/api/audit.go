package api

import (
	"errors"
	"net/http"

	"github.com/gin-gonic/gin"
	"go.uber.org/zap"

	"github.com/bhrd/bhrd/pkg/audit"
	"github.com/bhrd/bhrd/pkg/queue"
)

// actor is the caller of a request, for the audit log.
func actor(c *gin.Context) audit.Actor {
	a := audit.Actor{Name: "anonymous", RemoteAddr: c.Request.RemoteAddr, RequestID: requestIDOf(c)}
	if p := principalOf(c); p != nil {
		a.Name, a.TokenID = p.Username, p.TokenID
	}
	return a
}

// auditRejected records a block request the caller got a 4xx for. A
// server-side failure is no decision about the request and is left to
// the operational log.
func (a *API) auditRejected(c *gin.Context, r queue.BlockRequest, err error) {
	if a.audit == nil {
		return
	}
	status, _, ok := errorBody(err)
	if !ok || status >= http.StatusInternalServerError || canceled(c, err) {
		return
	}
	a.audit.BlockRejected(actor(c), r.CIDR, r.Source, r.Why, reason(err))
}

// reason is the message a refused request got, without the field
// prefix wrapping adds.
func reason(err error) string {
	var fe *queue.FieldError
	var pe *queue.PolicyError
	switch {
	case errors.As(err, &pe):
		return pe.Message
	case errors.As(err, &fe):
		return fe.Field + ": " + fe.Message
	}
	return err.Error()
}

// auditSetBlocked records ident's report for each block, with its cidr
// when the block can be read.
func (a *API) auditSetBlocked(c *gin.Context, ident string, ids []int64) {
	if a.audit == nil {
		return
	}
	// Without the cidrs (the store failing just after it took the
	// report), the lines still name the block ids.
	cidrs, _ := a.svc.BlockCIDRs(c.Request.Context(), ids)
	who, al := actor(c), a.audit.Batch()
	for _, id := range ids {
		al.SetBlocked(who, ident, id, cidrs[id])
	}
	al.Flush()
}

// openEntries reads the entries about to be marked unblocked, so that
// the audit line can name ident and cidr; entries already removed are
// left out (marking them again changes nothing).
func (a *API) openEntries(c *gin.Context, ids []int64) []queue.Entry {
	if a.audit == nil {
		return nil
	}
	var out []queue.Entry
	// One read for all; should it fail, the entries are still marked and
	// only their audit lines are missing (the operational log says why).
	err := a.svc.ListEntries(c.Request.Context(), queue.EntryListOptions{IDs: ids, OpenOnly: true}, func(e queue.Entry) error {
		out = append(out, e)
		return nil
	})
	if err != nil {
		a.log.Warn("read entries for the audit log", zap.Error(err), zap.String("request_id", requestIDOf(c)))
	}
	return out
}

func (a *API) auditSetUnblocked(c *gin.Context, entries []queue.Entry) {
	who, al := actor(c), a.audit.Batch()
	for _, e := range entries {
		al.SetUnblocked(who, e.Ident, e.ID, e.BlockID, e.CIDR)
	}
	al.Flush()
}
