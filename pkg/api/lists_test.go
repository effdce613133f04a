package api_test

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bhrd/bhrd/pkg/auth"
	"github.com/bhrd/bhrd/pkg/queue"
)

// bulk stores n blocks (10.x.y.z/32, source "bulk") through the service.
func (e *env) bulk(n int) {
	e.t.Helper()
	for start := 0; start < n; start += 1000 {
		var reqs []queue.BlockRequest
		for i := start; i < min(n, start+1000); i++ {
			reqs = append(reqs, queue.BlockRequest{
				CIDR: fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255), Who: "bulk", Source: "bulk",
				Why: "bulk, with a comma", Duration: "1d", Extend: true,
			})
		}
		if _, err := e.svc.MBlock(e.ctx, reqs); err != nil {
			e.t.Fatal(err)
		}
	}
}

// scenario makes blocks in every state:
//
//	A 192.0.2.1   current (set_blocked by r1)
//	B 192.0.2.2   pending
//	C 192.0.2.3   current and pending removal (expired, entry open)
//	D 192.0.2.4   history (unblocked and removed)
//	E 10.9.9.9    pending, source "other" (a local network in testLists)
func (e *env) scenario() (ids map[string]int64) {
	e.t.Helper()
	ids = map[string]int64{}
	mk := func(name, cidr, dur, source string) {
		res, err := e.svc.Block(e.ctx, queue.BlockRequest{CIDR: cidr, Who: "u", Source: source, Why: "scenario", Duration: dur, Extend: true})
		if err != nil {
			e.t.Fatal(err)
		}
		ids[name] = res.Block.ID
	}
	mk("A", "192.0.2.1", "1d", "test")
	mk("B", "192.0.2.2", "1d", "test")
	mk("C", "192.0.2.3", "60", "test")
	mk("D", "192.0.2.4", "1d", "test")
	mk("E", "10.9.9.9", "1d", "other")
	if err := e.svc.SetBlocked(e.ctx, "r1", []int64{ids["A"], ids["C"], ids["D"]}); err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.svc.UnblockNow(e.ctx, "192.0.2.4", "done"); err != nil {
		e.t.Fatal(err)
	}
	items, err := e.svc.UnblockQueue(e.ctx, "r1", 0)
	if err != nil || len(items) != 1 {
		e.t.Fatalf("unblock queue: %v %v", items, err)
	}
	if err := e.svc.SetUnblocked(e.ctx, []int64{items[0].ID}); err != nil {
		e.t.Fatal(err)
	}
	e.clock.Advance(61 * time.Second)
	return ids
}

func testLists(t *testing.T, f storeFactory) {
	e := newEnv(t, f, envOpts{local: []string{"10.0.0.0/8"}})
	ro := as(e, auth.RoleReadOnly)
	e.scenario()
	all := []string{"192.0.2.1/32", "192.0.2.2/32", "192.0.2.3/32", "192.0.2.4/32", "10.9.9.9/32"}
	get := func(path string) []map[string]any {
		t.Helper()
		return e.get(path, ro).expect(http.StatusOK).list()
	}
	for _, c := range []struct {
		path string
		want []string
		full bool
	}{
		{"/bhr/api/blocks/", all, true},
		{"/bhr/api/blocks", all, true},
		{"/bhr/api/blocks/?limit=2", all[:2], true},
		{"/bhr/api/blocks/?limit=2&offset=2", all[2:4], true},
		{"/bhr/api/blocks/?offset=4", all[4:], true},
		{"/bhr/api/blocks/?source=other", all[4:], true},
		{"/bhr/api/blocks/?local=true", all[4:], true},
		{"/bhr/api/blocks/?local=true&offset=1", nil, true},
		{"/bhr/api/blocks/?local=false&limit=1", all[:1], true},
		{"/bhr/api/current_blocks/", []string{"192.0.2.1/32", "192.0.2.3/32"}, true},
		{"/bhr/api/current_blocks", []string{"192.0.2.1/32", "192.0.2.3/32"}, true},
		{"/bhr/api/pending_blocks/", []string{"192.0.2.2/32", "10.9.9.9/32"}, true},
		{"/bhr/api/pending_removal_blocks/", []string{"192.0.2.3/32"}, true},
		{"/bhr/api/expected_blocks/", []string{"192.0.2.1/32", "192.0.2.2/32", "10.9.9.9/32"}, false},
		{"/bhr/api/expected_blocks/?source=other", []string{"10.9.9.9/32"}, false},
		{"/bhr/api/expected_blocks/?source=", []string{"192.0.2.1/32", "192.0.2.2/32", "10.9.9.9/32"}, false},
		{"/bhr/api/current_blocks_brief/", []string{"192.0.2.1/32", "192.0.2.3/32"}, false},
	} {
		l := get(c.path)
		if got := cidrs(t, l); !slices.Equal(got, c.want) {
			t.Errorf("%s = %v, want %v", c.path, got, c.want)
		}
		for _, it := range l {
			if c.full && len(it) != 10 || !c.full && !slices.Equal(keys(it), []string{"cidr"}) {
				t.Errorf("%s item = %v", c.path, it)
			}
		}
	}
	// Cursor paging: after=<id> walks the list without offsets.
	first := get("/bhr/api/blocks/?limit=2")
	rest := get(fmt.Sprintf("/bhr/api/blocks/?after=%d", id(t, first[1])))
	if !slices.Equal(cidrs(t, rest), all[2:]) {
		t.Errorf("after=%d = %v", id(t, first[1]), cidrs(t, rest))
	}
	if l := get(fmt.Sprintf("/bhr/api/blocks/?after=%d&limit=1", id(t, first[1]))); !slices.Equal(cidrs(t, l), all[2:3]) {
		t.Errorf("after+limit = %v", cidrs(t, l))
	}
	// An empty list is [] (not null).
	if r := e.get("/bhr/api/blocks/?source=nobody", ro).expect(http.StatusOK); strings.TrimSpace(string(r.body)) != "[]" {
		t.Errorf("empty list body = %q", r.body)
	}
}

func testEntries(t *testing.T, f storeFactory) {
	e := newEnv(t, f, envOpts{})
	ro := as(e, auth.RoleReadOnly)
	ids := e.scenario()
	if err := e.svc.SetBlocked(e.ctx, "r2", []int64{ids["A"]}); err != nil {
		t.Fatal(err)
	}
	l := e.get("/bhr/api/blockentries/", ro).expect(http.StatusOK).list()
	if len(l) != 4 {
		t.Fatalf("entries = %v", l)
	}
	want := sorted("id", "url", "block", "ident", "added", "removed", "unblock_at", "set_unblocked")
	for _, it := range l {
		if !slices.Equal(keys(it), want) {
			t.Errorf("entry keys = %v", keys(it))
		}
	}
	count := func(q string) int {
		t.Helper()
		return len(e.get("/bhr/api/blockentries/?"+q, ro).expect(http.StatusOK).list())
	}
	for q, n := range map[string]int{
		"ident=r1": 3, "ident=r2": 1, fmt.Sprintf("block=%d", ids["A"]): 2, "open=true": 3, "ident=r1&open=1": 2,
		"limit=1": 1, "offset=3": 1, fmt.Sprintf("after=%d", id(t, l[0])): 3,
	} {
		if got := count(q); got != n {
			t.Errorf("blockentries?%s: %d entries, want %d", q, got, n)
		}
	}
	d := e.get(fmt.Sprintf("/bhr/api/blockentries/%d/", id(t, l[0])), ro).expect(http.StatusOK).obj()
	if fmt.Sprint(d) != fmt.Sprint(l[0]) {
		t.Errorf("entry detail = %v, want %v", d, l[0])
	}
	blk := d["block"].(map[string]any)
	if blk["cidr"] != "192.0.2.1/32" || blk["url"] != fmt.Sprintf("%s/bhr/api/blocks/%d/", e.srv.URL, ids["A"]) {
		t.Errorf("entry block = %v", blk)
	}
	e.get("/bhr/api/blockentries/99999/", ro).expect(http.StatusNotFound)
	e.get("/bhr/api/blockentries/x/", ro).expect(http.StatusNotFound)
}

func testQuery(t *testing.T, f storeFactory) {
	e := newEnv(t, f, envOpts{})
	ro := as(e, auth.RoleReadOnly)
	e.scenario()
	e.block("2001:db8:1::1", "1h")
	e.block("192.0.2.0/24", "1h", map[string]any{"source": "wide"})
	for path, want := range map[string][]string{
		"/bhr/api/query/192.0.2.0/24":    {"192.0.2.1/32", "192.0.2.2/32", "192.0.2.3/32", "192.0.2.4/32", "192.0.2.0/24"},
		"/bhr/api/query/192.0.2.0/24/":   {"192.0.2.1/32", "192.0.2.2/32", "192.0.2.3/32", "192.0.2.4/32", "192.0.2.0/24"},
		"/bhr/api/query/192.0.2.77/24":   {"192.0.2.1/32", "192.0.2.2/32", "192.0.2.3/32", "192.0.2.4/32", "192.0.2.0/24"},
		"/bhr/api/query/192.0.2.4":       {"192.0.2.4/32"},
		"/bhr/api/query/192.0.2.0/30":    {"192.0.2.1/32", "192.0.2.2/32", "192.0.2.3/32"},
		"/bhr/api/query/10.0.0.0/8":      {"10.9.9.9/32"},
		"/bhr/api/query/2001:db8::/32":   {"2001:db8:1::1/128"},
		"/bhr/api/query/198.51.100.0/24": nil,
		"/bhr/api/query/0.0.0.0/0":       {"192.0.2.1/32", "192.0.2.2/32", "192.0.2.3/32", "192.0.2.4/32", "10.9.9.9/32", "192.0.2.0/24"},
	} {
		l := e.get(path, ro).expect(http.StatusOK).list()
		if got := cidrs(t, l); !slices.Equal(got, want) {
			t.Errorf("%s = %v, want %v", path, got, want)
		}
		for _, it := range l {
			if len(it) != 10 {
				t.Errorf("%s item is not a block object: %v", path, it)
			}
		}
	}
	// An escaped slash works too.
	if l := e.get("/bhr/api/query/192.0.2.4%2F32", ro).expect(http.StatusOK).list(); !slices.Equal(cidrs(t, l), []string{"192.0.2.4/32"}) {
		t.Errorf("escaped query = %v", l)
	}
}

func testWhitelist(t *testing.T, f storeFactory) {
	e := newEnv(t, f, envOpts{})
	admin, ro := as(e, auth.RoleAdmin), as(e, auth.RoleReadOnly)
	w := e.post("/bhr/api/whitelist/", jsonBody(t, map[string]string{"cidr": "10.0.0.0/8", "why": "campus"}), admin).expect(http.StatusCreated).obj()
	if !slices.Equal(keys(w), sorted("id", "cidr", "who", "why", "added")) || w["cidr"] != "10.0.0.0/8" || w["who"] != "u-admin" || w["why"] != "campus" {
		t.Errorf("whitelist entry = %v", w)
	}
	wid := id(t, w)
	e.post("/bhr/api/whitelist", formBody(url.Values{"cidr": {"192.0.2.1"}, "why": {"dns"}}), admin).expect(http.StatusCreated)
	l := e.get("/bhr/api/whitelist/", ro).expect(http.StatusOK).list()
	if !slices.Equal(cidrs(t, l), []string{"10.0.0.0/8", "192.0.2.1/32"}) {
		t.Errorf("whitelist = %v", l)
	}
	if g := e.get(fmt.Sprintf("/bhr/api/whitelist/%d/", wid), ro).expect(http.StatusOK).obj(); fmt.Sprint(g) != fmt.Sprint(w) {
		t.Errorf("whitelist detail = %v", g)
	}
	blk := jsonBody(t, map[string]any{"cidr": "10.1.1.1", "source": "s", "why": "w", "duration": 60})
	e.post("/bhr/api/block", blk, as(e, auth.RoleUser)).expect(http.StatusBadRequest)
	e.do("DELETE", fmt.Sprintf("/bhr/api/whitelist/%d/", wid), nil, admin).expect(http.StatusNoContent)
	e.get(fmt.Sprintf("/bhr/api/whitelist/%d/", wid), ro).expect(http.StatusNotFound)
	e.do("DELETE", fmt.Sprintf("/bhr/api/whitelist/%d", wid), nil, admin).expect(http.StatusNotFound)
	e.post("/bhr/api/block", blk, as(e, auth.RoleUser)).expect(http.StatusCreated)
}

func testSourceBlacklist(t *testing.T, f storeFactory) {
	e := newEnv(t, f, envOpts{})
	admin, ro := as(e, auth.RoleAdmin), as(e, auth.RoleReadOnly)
	s := e.post("/bhr/api/source_blacklist/", jsonBody(t, map[string]string{"source": "noisy", "why": "false positives"}), admin).
		expect(http.StatusCreated).obj()
	if !slices.Equal(keys(s), sorted("id", "source", "who", "why", "added")) || s["source"] != "noisy" || s["who"] != "u-admin" {
		t.Errorf("entry = %v", s)
	}
	dup := e.post("/bhr/api/source_blacklist/", jsonBody(t, map[string]string{"source": "noisy", "why": "again"}), admin).
		expect(http.StatusBadRequest).obj()
	if dup["source"] == nil {
		t.Errorf("duplicate = %v", dup)
	}
	l := e.get("/bhr/api/source_blacklist/", ro).expect(http.StatusOK).list()
	if len(l) != 1 || l[0]["source"] != "noisy" {
		t.Errorf("list = %v", l)
	}
	if g := e.get(fmt.Sprintf("/bhr/api/source_blacklist/%d/", id(t, s)), ro).expect(http.StatusOK).obj(); fmt.Sprint(g) != fmt.Sprint(s) {
		t.Errorf("detail = %v", g)
	}
	e.get("/bhr/api/source_blacklist/9999/", ro).expect(http.StatusNotFound)
	blk := jsonBody(t, map[string]any{"cidr": "192.0.2.1", "source": "noisy", "why": "w", "duration": 60})
	e.post("/bhr/api/block", blk, as(e, auth.RoleUser)).expect(http.StatusBadRequest)
	e.do("DELETE", fmt.Sprintf("/bhr/api/source_blacklist/%d/", id(t, s)), nil, admin).expect(http.StatusNoContent)
	e.post("/bhr/api/block", blk, as(e, auth.RoleUser)).expect(http.StatusCreated)
}

func testStats(t *testing.T, f storeFactory) {
	e := newEnv(t, f, envOpts{})
	st := e.get("/bhr/api/stats").expect(http.StatusOK)
	if got := strings.TrimSpace(string(st.body)); got != `{"block_pending":0,"unblock_pending":0,"current":0,"expected":0,"sources":{}}` {
		t.Errorf("empty stats = %s", got)
	}
	e.scenario()
	e.block("198.51.100.1", "1h", map[string]any{"source": `we"ird\src`})
	m := e.get("/bhr/api/stats/").expect(http.StatusOK).obj()
	want := `map[block_pending:3 current:2 expected:4 sources:map[other:1 test:2 we"ird\src:1] unblock_pending:1]`
	if fmt.Sprint(m) != want {
		t.Errorf("stats = %v\nwant    %s", m, want)
	}
	ss := e.get("/bhr/api/source_stats").expect(http.StatusOK).obj()
	if fmt.Sprint(ss) != `map[other:1 test:2 we"ird\src:1]` {
		t.Errorf("source_stats = %v", ss)
	}
	r := e.get("/bhr/api/metrics").expect(http.StatusOK)
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain; version=0.0.4") {
		t.Errorf("metrics Content-Type = %q", ct)
	}
	wantMetrics := `# HELP bhr_blocked_total total hosts blocked
# TYPE bhr_blocked_total gauge
bhr_blocked_total{type="current"} 2
bhr_blocked_total{type="expected"} 4
# HELP bhr_pending_total total hosts pending
# TYPE bhr_pending_total gauge
bhr_pending_total{type="block"} 3
bhr_pending_total{type="unblock"} 1
# HELP bhr_blocked_total_by_source total hosts blocked by each source
# TYPE bhr_blocked_total_by_source gauge
bhr_blocked_total_by_source{source="other"} 1
bhr_blocked_total_by_source{source="test"} 2
bhr_blocked_total_by_source{source="we\"ird\\src"} 1
`
	if string(r.body) != wantMetrics {
		t.Errorf("metrics =\n%s\nwant\n%s", r.body, wantMetrics)
	}
}

func testCSV(t *testing.T, f storeFactory) {
	e := newEnv(t, f, envOpts{})
	ro := as(e, auth.RoleReadOnly)
	e.scenario()
	e.clock.Advance(time.Hour)
	e.block("198.51.100.1", "0", map[string]any{"why": `has "quotes", commas`, "source": "zeek"})
	read := func(path string) [][]string {
		t.Helper()
		r := e.get(path, ro).expect(http.StatusOK)
		if ct := r.header.Get("Content-Type"); ct != "text/csv; charset=utf-8" {
			t.Errorf("%s Content-Type = %q", path, ct)
		}
		rows, err := csv.NewReader(bytes.NewReader(r.body)).ReadAll()
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		return rows
	}
	header := []string{"cidr", "who", "source", "why", "added", "unblock_at"}
	rows := read("/bhr/list.csv")
	want := [][]string{
		header,
		{"192.0.2.1/32", "u", "test", "scenario", "2026-11-21T12:00:00Z", "2026-11-22T12:00:00Z"},
		{"192.0.2.2/32", "u", "test", "scenario", "2026-11-21T12:00:00Z", "2026-11-22T12:00:00Z"},
		{"10.9.9.9/32", "u", "other", "scenario", "2026-11-21T12:00:00Z", "2026-11-22T12:00:00Z"},
		{"198.51.100.1/32", "u-user", "zeek", `has "quotes", commas`, "2026-11-21T13:01:01Z", ""},
	}
	if !slices.EqualFunc(rows, want, slices.Equal) {
		t.Errorf("list.csv =\n%q\nwant\n%q", rows, want)
	}
	if rows := read("/bhr/list.csv?source=other"); len(rows) != 2 || rows[1][0] != "10.9.9.9/32" {
		t.Errorf("list.csv?source=other = %q", rows)
	}
	if rows := read("/bhr/list.csv?since=2026-11-21T13:00:00Z"); len(rows) != 2 || rows[1][0] != "198.51.100.1/32" {
		t.Errorf("list.csv?since = %q", rows)
	}
	if rows := read("/bhr/list.csv?since=2026-11-21T12:00:00Z"); len(rows) != 5 {
		t.Errorf("list.csv?since=<first added> (inclusive) = %q", rows)
	}
	if rows := read("/bhr/list.csv?since=2030-01-01"); !slices.EqualFunc(rows, [][]string{header}, slices.Equal) {
		t.Errorf("list.csv?since=future = %q", rows)
	}
	pub := read("/bhr/publist.csv")
	if len(pub) != 5 || !slices.Equal(pub[0], []string{"cidr", "added", "unblock_at"}) || !slices.Equal(pub[4], []string{"198.51.100.1/32", "2026-11-21T13:01:01Z", ""}) {
		t.Errorf("publist.csv = %q", pub)
	}
}

// testStreamManyRows reads a long publist.csv and block list as they are
// streamed (chunked, no Content-Length: nothing was built in memory first).
// The memory bound itself is measured by BenchmarkPublistCSV.
func testStreamManyRows(t *testing.T, f storeFactory) {
	e := newEnv(t, f, envOpts{})
	const n = 12000
	e.bulk(n)
	req, _ := http.NewRequestWithContext(e.ctx, "GET", e.srv.URL+"/bhr/publist.csv", nil)
	req.Header.Set("Authorization", "Token "+e.tokens[auth.RoleReadOnly])
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.ContentLength != -1 || len(resp.TransferEncoding) == 0 || resp.TransferEncoding[0] != "chunked" {
		t.Errorf("publist.csv: Content-Length %d, Transfer-Encoding %v; want a chunked stream", resp.ContentLength, resp.TransferEncoding)
	}
	cr := csv.NewReader(resp.Body)
	rows := 0
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("row %d: %v", rows, err)
		}
		if rows > 0 && (len(rec) != 3 || !strings.HasPrefix(rec[0], "10.")) {
			t.Fatalf("row %d = %q", rows, rec)
		}
		rows++
	}
	if rows != n+1 {
		t.Errorf("publist.csv has %d rows, want %d", rows, n+1)
	}

	// The JSON list streams too; decode it element by element.
	req, _ = http.NewRequestWithContext(e.ctx, "GET", e.srv.URL+"/bhr/api/expected_blocks/", nil)
	req.Header.Set("Authorization", "Token "+e.tokens[auth.RoleReadOnly])
	resp2, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp2.Body.Close()
	if resp2.ContentLength != -1 {
		t.Errorf("expected_blocks Content-Length = %d, want a stream", resp2.ContentLength)
	}
	dec := json.NewDecoder(resp2.Body)
	if tok, err := dec.Token(); err != nil || tok != json.Delim('[') {
		t.Fatalf("expected_blocks does not start a list: %v %v", tok, err)
	}
	items := 0
	var prev string
	for dec.More() {
		var it struct{ CIDR string }
		if err := dec.Decode(&it); err != nil {
			t.Fatal(err)
		}
		if it.CIDR == prev {
			t.Fatalf("item %d repeats %s", items, prev)
		}
		prev = it.CIDR
		items++
	}
	if tok, err := dec.Token(); err != nil || tok != json.Delim(']') {
		t.Fatalf("expected_blocks does not end the list: %v %v", tok, err)
	}
	if items != n {
		t.Errorf("expected_blocks has %d items, want %d", items, n)
	}
}

// testStreamFailure: a store failure before anything was sent is a clean
// 500; after the stream started, the connection is cut so the client sees
// an error rather than a short list that looks complete.
func testStreamFailure(t *testing.T, f storeFactory) {
	e := newEnv(t, f, envOpts{faulty: true})
	e.bulk(3000)
	e.faulty.failListAfter.Store(1)
	r := e.get("/bhr/api/blocks/", as(e, auth.RoleReadOnly)).expect(http.StatusInternalServerError)
	if fmt.Sprint(r.obj()) != "map[detail:Internal server error.]" {
		t.Errorf("early failure body = %s", r.body)
	}
	if e.logs.FilterMessage("request failed").Len() != 1 {
		t.Error("the early stream failure was not logged")
	}
	for _, path := range []string{"/bhr/api/blocks/", "/bhr/list.csv"} {
		e.faulty.failListAfter.Store(2500)
		req, _ := http.NewRequestWithContext(e.ctx, "GET", e.srv.URL+path, nil)
		req.Header.Set("Authorization", "Token "+e.tokens[auth.RoleReadOnly])
		resp, err := e.srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, err = io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || err == nil {
			t.Errorf("%s failing mid-stream: status %d, read error %v; want 200 and a broken body", path, resp.StatusCode, err)
		}
	}
	if e.logs.FilterMessage("stream failed after the response started; aborting the connection").Len() != 2 {
		t.Error("mid-stream failures were not logged")
	}
	// The server is still fine.
	e.faulty.failListAfter.Store(0)
	if l := e.get("/bhr/api/blocks/?limit=3", as(e, auth.RoleReadOnly)).expect(http.StatusOK).list(); len(l) != 3 {
		t.Errorf("after failures: %v", l)
	}
}
