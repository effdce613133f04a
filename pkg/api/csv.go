package api

import (
	"encoding/csv"
	"errors"

	"github.com/gin-gonic/gin"

	"github.com/bhrd/bhrd/pkg/queue"
)

// GET list.csv?source=&since=: expected blocks, with who and why. With
// since, only blocks added at or after it. Rows are streamed from the
// store in id (= added) order, oldest first, in constant memory.
func (a *API) getListCSV(c *gin.Context) {
	lp, err := a.parseListParams(c, queue.FilterExpected)
	if err != nil {
		a.writeError(c, err)
		return
	}
	a.writeCSV(c, lp, []string{"cidr", "who", "source", "why", "added", "unblock_at"},
		func(row []string, b queue.Block) []string {
			return append(row, b.CIDR.String(), b.Who, b.Source, b.Why, formatTime(b.Added), csvTime(b))
		})
}

// GET publist.csv: expected blocks without who, source or why.
func (a *API) getPublistCSV(c *gin.Context) {
	lp := listParams{opts: queue.ListOptions{Filter: queue.FilterExpected}}
	a.writeCSV(c, lp, []string{"cidr", "added", "unblock_at"},
		func(row []string, b queue.Block) []string {
			return append(row, b.CIDR.String(), formatTime(b.Added), csvTime(b))
		})
}

// csvTime is unblock_at, empty when indefinite (Python's csv writes None
// as an empty field).
func csvTime(b queue.Block) string {
	if b.UnblockAt.IsZero() {
		return ""
	}
	return formatTime(b.UnblockAt)
}

func (a *API) writeCSV(c *gin.Context, lp listParams, header []string, row func([]string, queue.Block) []string) {
	s := a.newStream(c, "text/csv; charset=utf-8")
	w := csv.NewWriter(s.w)
	s.preFlush = w.Flush
	err := w.Write(header)
	buf := make([]string, 0, len(header))
	if err == nil {
		err = a.each(c, lp, func(b queue.Block) error {
			if err := w.Write(row(buf[:0], b)); err != nil {
				return err
			}
			return s.item()
		})
		if errors.Is(err, errStop) {
			err = nil
		}
	}
	if err == nil {
		// csv.Writer buffers in s.w, which finish flushes.
		w.Flush()
		err = w.Error()
	}
	s.finish(err)
}
