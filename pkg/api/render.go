package api

import (
	"bufio"
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/gin-gonic/gin"
	"go.uber.org/zap"

	"github.com/bhrd/bhrd/pkg/queue"
)

// writeJSON answers with v as JSON. HTML characters are not escaped: a
// "why" of "<script>" reads the same as in BHR (DRF does not escape them).
func writeJSON(c *gin.Context, status int, v any) {
	writeRaw(c, status, encodeJSON(v))
}

// encodeJSON is v as writeJSON sends it.
func encodeJSON(v any) []byte {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		// Only our own types are encoded; a failure is a bug.
		panic(err)
	}
	return buf.Bytes()
}

// writeRaw sends body, already JSON, with status.
func writeRaw(c *gin.Context, status int, body []byte) {
	c.Header("Content-Type", "application/json")
	c.Status(status)
	_, _ = c.Writer.Write(body)
}

// formatTime writes times as Django REST framework does: ISO 8601 in UTC
// with a Z, and microseconds only when there are any.
func formatTime(t time.Time) string {
	return string(appendTime(nil, t))
}

func appendTime(b []byte, t time.Time) []byte {
	t = t.UTC()
	if t.Nanosecond()/1000 == 0 {
		return t.AppendFormat(b, "2006-01-02T15:04:05Z")
	}
	return t.AppendFormat(b, "2006-01-02T15:04:05.000000Z")
}

func optTime(t time.Time) *string {
	if t.IsZero() {
		return nil
	}
	s := formatTime(t)
	return &s
}

// urlPrefix is the absolute URL of /bhr/ for this request: api.base_url
// when set (behind a proxy), else the scheme and Host the client used.
func (a *API) urlPrefix(c *gin.Context) string {
	if a.base != "" {
		return a.base + "/bhr/"
	}
	scheme := "http"
	if c.Request.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + c.Request.Host + "/bhr/"
}

// blockJSON is BHR's block object, fields in BHR's order.
type blockJSON struct {
	ID            int64   `json:"id"`
	URL           string  `json:"url"`
	Who           string  `json:"who"`
	CIDR          string  `json:"cidr"`
	Source        string  `json:"source"`
	Why           string  `json:"why"`
	Added         string  `json:"added"`
	UnblockAt     *string `json:"unblock_at"`
	SkipWhitelist bool    `json:"skip_whitelist"`
	SetBlocked    string  `json:"set_blocked"`
}

func blockURL(prefix string, id int64) string {
	return prefix + "api/blocks/" + strconv.FormatInt(id, 10) + "/"
}

func entryURL(prefix string, id int64) string {
	return prefix + "api/blockentries/" + strconv.FormatInt(id, 10) + "/"
}

func fullBlock(prefix string, b queue.Block) any {
	u := blockURL(prefix, b.ID)
	return blockJSON{
		ID:            b.ID,
		URL:           u,
		Who:           b.Who,
		CIDR:          b.CIDR.String(),
		Source:        b.Source,
		Why:           b.Why,
		Added:         formatTime(b.Added),
		UnblockAt:     optTime(b.UnblockAt),
		SkipWhitelist: b.SkipWhitelist,
		SetBlocked:    u + "set_blocked/",
	}
}

type cidrJSON struct {
	CIDR string `json:"cidr"`
}

func briefBlock(_ string, b queue.Block) any { return cidrJSON{CIDR: b.CIDR.String()} }

// limitedBlock is query_limited's view: never who or why.
type limitedBlockJSON struct {
	CIDR      string  `json:"cidr"`
	Source    string  `json:"source"`
	Added     string  `json:"added"`
	UnblockAt *string `json:"unblock_at"`
}

func limitedBlock(_ string, b queue.Block) any {
	return limitedBlockJSON{CIDR: b.CIDR.String(), Source: b.Source, Added: formatTime(b.Added), UnblockAt: optTime(b.UnblockAt)}
}

// flushEvery is how many items a stream writes between flushes, so that
// a slow listing reaches the client as it goes.
const flushEvery = 1000

// stream writes a response of unknown length straight from the store.
// Nothing reaches the client until the buffer first fills, so an error
// early in a listing still becomes a proper error response; after that,
// an error aborts the connection so that the client cannot take a
// truncated list for a complete one.
type stream struct {
	a   *API
	c   *gin.Context
	w   *bufio.Writer
	n   int
	buf bytes.Buffer
	enc *json.Encoder
	// preFlush empties any buffer layered over w (csv.Writer's).
	preFlush func()
}

func (a *API) newStream(c *gin.Context, contentType string) *stream {
	c.Header("Content-Type", contentType)
	c.Status(http.StatusOK)
	s := &stream{a: a, c: c, w: bufio.NewWriterSize(c.Writer, 32<<10)}
	s.enc = json.NewEncoder(&s.buf)
	s.enc.SetEscapeHTML(false)
	return s
}

// item counts one written item and flushes now and then.
func (s *stream) item() error {
	s.n++
	if s.n%flushEvery == 0 {
		if s.preFlush != nil {
			s.preFlush()
		}
		if err := s.w.Flush(); err != nil {
			return err
		}
		s.c.Writer.Flush()
	}
	return nil
}

// jsonItem appends v to a JSON array.
func (s *stream) jsonItem(v any) error {
	sep := byte(',')
	if s.n == 0 {
		sep = '['
	}
	s.buf.Reset()
	if err := s.enc.Encode(v); err != nil {
		return err
	}
	b := s.buf.Bytes()
	b = b[:len(b)-1] // Encode's newline
	if err := s.w.WriteByte(sep); err != nil {
		return err
	}
	if _, err := s.w.Write(b); err != nil {
		return err
	}
	return s.item()
}

// finishJSON closes the array, or answers err.
func (s *stream) finishJSON(err error) {
	if err == nil {
		if s.n == 0 {
			_ = s.w.WriteByte('[')
		}
		_, _ = s.w.WriteString("]\n")
	}
	s.finish(err)
}

func (s *stream) finish(err error) {
	if err == nil {
		_ = s.w.Flush()
		return
	}
	if !s.c.Writer.Written() {
		// Nothing sent yet: drop the buffer and answer properly.
		s.w.Reset(nil)
		s.c.Writer.Header().Del("Content-Type")
		s.a.writeError(s.c, err)
		return
	}
	if !canceled(s.c, err) {
		s.a.log.Error("stream failed after the response started; aborting the connection",
			zap.Error(err), zap.String("request_id", requestIDOf(s.c)), zap.Int("items", s.n))
	}
	// http.ErrAbortHandler makes net/http drop the connection without the
	// final chunk, so the client sees an error, not a short list.
	panic(http.ErrAbortHandler)
}
