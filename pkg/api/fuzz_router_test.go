package api_test

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/bhrd/bhrd/pkg/config"
)

var (
	fuzzMethods = []string{"GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"}
	fuzzTypes   = []string{"", "application/json", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", "text/plain", "application/json; charset=latin1"}
)

// fuzzRouter drives the whole router of one store with arbitrary
// methods, paths, query strings, content types, bodies and callers, and
// fails on any 5xx (a panic is recovered into a 500): bad input is a 4xx
// that says what is wrong, whatever it is. The seed corpus runs in make
// test; `go test -fuzz FuzzRouterSQLite ./pkg/api` searches further.
func fuzzRouter(f *testing.F, factory storeFactory) {
	for _, s := range []struct {
		m       uint8
		path, q string
		ct      uint8
		body    string
		role    uint8
	}{
		{1, "/bhr/api/block", "", 2, "cidr=192.0.2.7&source=x&why=y&duration=300", 3},
		{1, "/bhr/api/block", "", 1, `{"cidr":"192.0.2.8","source":"x","why":"y","duration":"1d"}`, 0},
		{1, "/bhr/api/block", "", 1, "{\"cidr\":\"\x00\",\"source\":\"\xff\"}", 0},
		{1, "/bhr/api/mblock", "", 1, `[{"cidr":"192.0.2.9","source":"x","why":"y","duration":60},{}]`, 3},
		{0, "/bhr/api/queue/remote1", "since=2026-01-01T00:00:00Z", 0, "", 0},
		{0, "/bhr/api/queue/remote1", "timeout=abc", 0, "", 0},
		{1, "/bhr/api/set_blocked_multi/remote1", "", 1, `{"ids":[1,2,"x"]}`, 0},
		{1, "/bhr/api/set_unblocked_multi", "", 1, `{"ids":[-1]}`, 0},
		{1, "/bhr/api/unblock_now", "", 1, `{"cidr":"192.0.2.7","why":"z"}`, 3},
		{1, "/bhr/api/unblock_now", "", 1, `[{"cidr":"192.0.2.7","why":"z"}]`, 3},
		{0, "/bhr/api/query/192.0.2.0/24", "", 0, "", 4},
		{0, "/bhr/api/query/\xff", "", 0, "", 4},
		{0, "/bhr/api/blocks/", "source=%00&limit=-1", 0, "", 0},
		{0, "/bhr/api/blockentries/", "ident=\xc3\x28", 0, "", 0},
		{0, "/bhr/api/current_blocks_brief/", "", 0, "", 5},
		{0, "/bhr/api/stats", "", 0, "", 0},
		{0, "/bhr/api/metrics", "", 0, "", 0},
		{1, "/bhr/api/whitelist", "", 2, "cidr=10.0.0.0/8&why=x", 3},
		{3, "/bhr/api/whitelist/99999999999999999999", "", 0, "", 3},
		{1, "/bhr/api/source_blacklist", "", 1, `{"source":"a","why":"b"}`, 3},
		{0, "/bhr/api/publist.csv", "", 0, "", 6},
		{0, "/bhr/api/bgp/peers", "", 0, "", 0},
		{5, "/healthz", "", 0, "", 6},
		{0, "/../../etc/passwd", "", 0, "", 0},
		{2, "/bhr/api/block", "", 3, "--x\r\nContent-Disposition: form-data; name=\"cidr\"\r\n\r\n1.2.3.4\r\n--x--", 0},
	} {
		f.Add(s.m, s.path, s.q, s.ct, []byte(s.body), s.role)
	}
	// Long polls end at once: the fuzzer would wait out each one.
	e := newEnv(f, factory, envOpts{cfg: func(c *config.API) { c.LongPollMax = 10 * time.Millisecond }})
	roles := append([]string{}, roleNames...)
	f.Fuzz(func(t *testing.T, m uint8, path, query string, ct uint8, body []byte, role uint8) {
		if !strings.HasPrefix(path, "/") {
			path = "/" + path
		}
		req := &http.Request{
			Method: fuzzMethods[int(m)%len(fuzzMethods)],
			URL:    &url.URL{Path: path, RawQuery: query},
			Header: http.Header{},
			Body:   io.NopCloser(bytes.NewReader(body)),
			Host:   "bhrd.test", RemoteAddr: "192.0.2.200:4000", Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
			ContentLength: int64(len(body)),
		}
		req = req.WithContext(e.ctx)
		if c := fuzzTypes[int(ct)%len(fuzzTypes)]; c != "" {
			req.Header.Set("Content-Type", c)
		}
		if r := int(role) % (len(roles) + 1); r < len(roles) {
			req.Header.Set("Authorization", "Token "+e.tokens[roles[r]])
		}
		w := httptest.NewRecorder()
		e.api.ServeHTTP(w, req)
		if w.Code >= 500 {
			t.Fatalf("%s %s?%q (%s, %d bytes): %d %s", req.Method, path, query, req.Header.Get("Content-Type"), len(body), w.Code, w.Body.String())
		}
	})
}

func FuzzRouterSQLite(f *testing.F)   { fuzzRouter(f, sqliteStore) }
func FuzzRouterPostgres(f *testing.F) { fuzzRouter(f, postgresStore) }
