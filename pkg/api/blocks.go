package api

import (
	"errors"
	"fmt"
	"net/http"
	"net/netip"

	"github.com/gin-gonic/gin"

	"github.com/bhrd/bhrd/pkg/auth"
	"github.com/bhrd/bhrd/pkg/queue"
)

// blockRequest reads one block request. who is the caller, never a
// field; the decoding errors travel with the request, so that the Service
// answers and audits them with its own.
func blockRequest(in *input, p *auth.Principal) queue.BlockRequest {
	r := queue.BlockRequest{
		CIDR:          in.str("cidr"),
		Who:           p.Username,
		Source:        in.str("source"),
		Why:           in.str("why"),
		Duration:      in.duration("duration"),
		UnblockAt:     in.str("unblock_at"),
		SkipWhitelist: in.boolean("skip_whitelist", false),
		Autoscale:     in.boolean("autoscale", false),
		// BHR's API extends by default; bhr-client sends extend=False.
		Extend:           in.boolean("extend", true),
		MaySkipWhitelist: p.Can(auth.PermSkipWhitelist),
	}
	r.DecodeErrors = in.fieldErrors()
	return r
}

// POST api/block
func (a *API) postBlock(c *gin.Context) {
	in, err := readInput(c)
	if err != nil {
		a.writeError(c, err)
		return
	}
	res, err := a.svc.Block(c.Request.Context(), blockRequest(in, principalOf(c)))
	if err != nil {
		a.writeError(c, err)
		return
	}
	// 201 for a duplicate or an extend too, as BHR: the client gets the
	// block that now covers its request.
	writeJSON(c, http.StatusCreated, fullBlock(a.urlPrefix(c), res.Block))
}

// POST api/mblock: a JSON list, all or nothing.
func (a *API) postMBlock(c *gin.Context) {
	ins, itemErrs, err := readList(c, a.cfg.MaxMBlockItems)
	if err != nil {
		a.writeError(c, err)
		return
	}
	p := principalOf(c)
	reqs := make([]queue.BlockRequest, len(ins))
	for i, in := range ins {
		if itemErrs[i] != nil {
			// An item that is no object is still a refused request.
			reqs[i].DecodeErrors = []*queue.FieldError{queue.NewFieldError(nonFieldErrors, nonFieldMessage(itemErrs[i]))}
			continue
		}
		reqs[i] = blockRequest(in, p)
	}
	res, err := a.svc.MBlock(c.Request.Context(), reqs)
	if err == nil {
		prefix := a.urlPrefix(c)
		out := make([]any, len(res))
		for i, r := range res {
			out[i] = fullBlock(prefix, r.Block)
		}
		writeJSON(c, http.StatusCreated, out)
		return
	}
	var be *queue.BatchError
	if !errors.As(err, &be) || len(be.Items) != len(reqs) {
		a.writeError(c, err)
		return
	}
	// DRF's answer for a list: one object per item, {} for a valid one.
	body := make([]any, len(be.Items))
	for i, e := range be.Items {
		if e == nil {
			body[i] = map[string]any{}
			continue
		}
		status, b, ok := errorBody(e)
		if !ok || status != http.StatusBadRequest {
			// skip_whitelist without the permission refuses the batch.
			a.writeError(c, e)
			return
		}
		body[i] = b
	}
	writeJSON(c, http.StatusBadRequest, body)
}

// POST api/unblock_now {cidr, why}; with cidr a list (JSON array or
// repeated form values), every cidr at once, all or nothing.
func (a *API) postUnblockNow(c *gin.Context) {
	in, err := readInput(c)
	if err != nil {
		a.writeError(c, err)
		return
	}
	cidrs, many := in.strs("cidr")
	why := in.str("why")
	if many && len(cidrs) > a.cfg.MaxMBlockItems {
		in.fail("cidr", fmt.Sprintf("At most %d cidrs per request (api.max_mblock_items).", a.cfg.MaxMBlockItems))
	}
	if err := in.err(); err != nil {
		a.writeError(c, err)
		return
	}
	if !many {
		cidr := ""
		if len(cidrs) == 1 {
			cidr = cidrs[0]
		}
		if _, err := a.svc.UnblockNow(c.Request.Context(), cidr, why); err != nil {
			a.writeError(c, err)
			return
		}
		writeJSON(c, http.StatusOK, statusOK)
		return
	}
	bs, err := a.svc.UnblockNowMulti(c.Request.Context(), cidrs, why)
	if err != nil {
		a.writeError(c, err)
		return
	}
	writeJSON(c, http.StatusOK, map[string]any{"status": "ok", "unblocked": len(bs)})
}

var statusOK = map[string]string{"status": "ok"}

// GET api/blocks/<id>/
func (a *API) getBlock(c *gin.Context) {
	id, err := pathID(c)
	if err != nil {
		a.writeError(c, err)
		return
	}
	b, err := a.svc.GetBlock(c.Request.Context(), id)
	if err != nil {
		a.writeError(c, err)
		return
	}
	writeJSON(c, http.StatusOK, fullBlock(a.urlPrefix(c), b))
}

// POST api/blocks/<id>/set_blocked/ {ident}
func (a *API) postBlockSetBlocked(c *gin.Context) {
	id, err := pathID(c)
	if err != nil {
		a.writeError(c, err)
		return
	}
	in, err := readInput(c)
	if err != nil {
		a.writeError(c, err)
		return
	}
	ident := in.str("ident")
	requireField(in, "ident", ident)
	if err := in.err(); err != nil {
		a.writeError(c, err)
		return
	}
	if err := a.svc.SetBlocked(c.Request.Context(), ident, []int64{id}); err != nil {
		a.writeError(c, err)
		return
	}
	writeJSON(c, http.StatusOK, statusOK)
}

// listParams are the opt-in paging and filters of block lists.
type listParams struct {
	opts  queue.ListOptions
	local bool
	// limit and offset are applied here rather than in the store when a
	// filter the store cannot apply (local) is on.
	limit, offset int
}

func (a *API) parseListParams(c *gin.Context, filter queue.BlockFilter) (listParams, error) {
	var lp listParams
	lp.opts.Filter = filter
	lp.opts.Source = c.Query("source")
	limit, err := queryInt(c, "limit")
	if err != nil {
		return lp, err
	}
	offset, err := queryInt(c, "offset")
	if err != nil {
		return lp, err
	}
	after, err := queryInt(c, "after")
	if err != nil {
		return lp, err
	}
	if lp.local, err = queryBool(c, "local"); err != nil {
		return lp, err
	}
	if s := c.Query("since"); s != "" {
		if lp.opts.AddedSince, err = queue.ParseTime("since", s); err != nil {
			return lp, err
		}
	}
	lp.opts.AfterID = after
	if lp.local {
		lp.limit, lp.offset = int(limit), int(offset)
	} else {
		lp.opts.Limit, lp.opts.Offset = int(limit), int(offset)
	}
	return lp, nil
}

// isLocal reports whether p lies within one of the local networks.
func (a *API) isLocal(p netip.Prefix) bool {
	for _, n := range a.local {
		if n.Bits() <= p.Bits() && n.Contains(p.Addr()) {
			return true
		}
	}
	return false
}

// each streams the blocks lp selects to fn, applying the local filter
// and its paging.
func (a *API) each(c *gin.Context, lp listParams, fn func(queue.Block) error) error {
	skip, left := lp.offset, lp.limit
	return a.svc.ListBlocks(c.Request.Context(), lp.opts, func(b queue.Block) error {
		if lp.local {
			if !a.isLocal(b.CIDR) {
				return nil
			}
			if skip > 0 {
				skip--
				return nil
			}
			if lp.limit > 0 {
				if left == 0 {
					return errStop
				}
				left--
			}
		}
		return fn(b)
	})
}

// errStop ends a listing early without an error.
var errStop = errors.New("stop listing")

// listBlocks serves the block lists: a plain JSON array streamed from the
// store, with opt-in ?limit=&offset= or ?after=<id> paging.
func (a *API) listBlocks(filter queue.BlockFilter, view func(string, queue.Block) any) gin.HandlerFunc {
	return func(c *gin.Context) {
		lp, err := a.parseListParams(c, filter)
		if err != nil {
			a.writeError(c, err)
			return
		}
		prefix := a.urlPrefix(c)
		s := a.newStream(c, "application/json")
		err = a.each(c, lp, func(b queue.Block) error { return s.jsonItem(view(prefix, b)) })
		if errors.Is(err, errStop) {
			err = nil
		}
		s.finishJSON(err)
	}
}
