package api

import (
	"errors"
	"net/http"

	"github.com/gin-gonic/gin"

	"github.com/bhrd/bhrd/pkg/queue"
)

// entryJSON is one block entry (an ident enforcing a block).
type entryJSON struct {
	ID           int64          `json:"id"`
	URL          string         `json:"url"`
	Block        entryBlockJSON `json:"block"`
	Ident        string         `json:"ident"`
	Added        string         `json:"added"`
	Removed      *string        `json:"removed"`
	UnblockAt    *string        `json:"unblock_at"`
	SetUnblocked string         `json:"set_unblocked"`
}

type entryBlockJSON struct {
	ID   int64  `json:"id"`
	URL  string `json:"url"`
	CIDR string `json:"cidr"`
}

func entryObject(prefix string, e queue.Entry) entryJSON {
	u := entryURL(prefix, e.ID)
	return entryJSON{
		ID:           e.ID,
		URL:          u,
		Block:        entryBlockJSON{ID: e.BlockID, URL: blockURL(prefix, e.BlockID), CIDR: e.CIDR.String()},
		Ident:        e.Ident,
		Added:        formatTime(e.Added),
		Removed:      optTime(e.Removed),
		UnblockAt:    optTime(e.UnblockAt),
		SetUnblocked: u + "set_unblocked/",
	}
}

// GET api/blockentries/?block=&ident=&open=&after=&limit=&offset=
func (a *API) listEntries(c *gin.Context) {
	var opts queue.EntryListOptions
	var err error
	ints := []struct {
		name string
		dst  *int64
	}{{"block", &opts.BlockID}, {"after", &opts.AfterID}}
	for _, q := range ints {
		if *q.dst, err = queryInt(c, q.name); err != nil {
			a.writeError(c, err)
			return
		}
	}
	limit, err := queryInt(c, "limit")
	if err != nil {
		a.writeError(c, err)
		return
	}
	offset, err := queryInt(c, "offset")
	if err != nil {
		a.writeError(c, err)
		return
	}
	opts.Limit, opts.Offset = int(limit), int(offset)
	if opts.OpenOnly, err = queryBool(c, "open"); err != nil {
		a.writeError(c, err)
		return
	}
	opts.Ident = c.Query("ident")
	prefix := a.urlPrefix(c)
	s := a.newStream(c, "application/json")
	s.finishJSON(a.svc.ListEntries(c.Request.Context(), opts, func(e queue.Entry) error {
		return s.jsonItem(entryObject(prefix, e))
	}))
}

// findEntry looks an entry up by id.
func (a *API) findEntry(c *gin.Context, id int64) (queue.Entry, error) {
	var found *queue.Entry
	err := a.svc.ListEntries(c.Request.Context(), queue.EntryListOptions{AfterID: id - 1, Limit: 1}, func(e queue.Entry) error {
		if e.ID == id {
			found = &e
		}
		return nil
	})
	if err != nil {
		return queue.Entry{}, err
	}
	if found == nil {
		return queue.Entry{}, errNotFound
	}
	return *found, nil
}

// GET api/blockentries/<id>/
func (a *API) getEntry(c *gin.Context) {
	id, err := pathID(c)
	if err != nil {
		a.writeError(c, err)
		return
	}
	e, err := a.findEntry(c, id)
	if err != nil {
		a.writeError(c, err)
		return
	}
	writeJSON(c, http.StatusOK, entryObject(a.urlPrefix(c), e))
}

// POST api/blockentries/<id>/set_unblocked/
func (a *API) postEntrySetUnblocked(c *gin.Context) {
	id, err := pathID(c)
	if err != nil {
		a.writeError(c, err)
		return
	}
	if err := a.svc.SetUnblocked(c.Request.Context(), []int64{id}); err != nil {
		if errors.Is(err, queue.ErrNotFound) {
			err = errNotFound
		}
		a.writeError(c, err)
		return
	}
	writeJSON(c, http.StatusOK, statusOK)
}
