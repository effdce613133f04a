package api_test

import (
	"bytes"
	"encoding/csv"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/bhrd/bhrd/pkg/auth"
)

// testLifecycle walks one block through two enforcers (idents r1 and r2)
// and an unblock_now, checking the queues and stats at each step.
func testLifecycle(t *testing.T, f storeFactory) {
	e := newEnv(t, f, envOpts{})
	mgr := as(e, auth.RoleBlockManager)
	e.expectStats("empty", [4]int{0, 0, 0, 0})
	// Both idents ask once before the block exists, as running enforcers do.
	for _, ident := range []string{"r1", "r2"} {
		if l := e.get("/bhr/api/queue/"+ident, mgr).expect(http.StatusOK).list(); len(l) != 0 {
			t.Fatalf("queue %s before any block: %v", ident, l)
		}
	}

	b := e.block("192.0.2.1", "300")
	bid := id(t, b)
	e.expectStats("blocked, not yet enforced", [4]int{1, 0, 0, 1})

	for _, ident := range []string{"r1", "r2"} {
		q := e.get("/bhr/api/queue/"+ident, mgr).expect(http.StatusOK).list()
		if len(q) != 1 || id(t, q[0]) != bid || q[0]["cidr"] != "192.0.2.1/32" {
			t.Fatalf("queue %s = %v, want block %d", ident, q, bid)
		}
	}

	e.post("/bhr/api/set_blocked_multi/r1", jsonBody(t, map[string]any{"ids": []int64{bid}}), mgr).expect(http.StatusOK)
	if l := e.get("/bhr/api/queue/r1", mgr).expect(http.StatusOK).list(); len(l) != 0 {
		t.Fatalf("r1 still has work after set_blocked: %v", l)
	}
	if l := e.get("/bhr/api/queue/r2", mgr).expect(http.StatusOK).list(); len(l) != 1 || id(t, l[0]) != bid {
		t.Fatalf("r2 lost its queued block when r1 set it blocked: %v", l)
	}
	e.expectStats("set_blocked by r1", [4]int{0, 0, 1, 1})

	// Marking again is not an error.
	e.post("/bhr/api/set_blocked_multi/r1", jsonBody(t, map[string]any{"ids": []int64{bid}}), mgr).expect(http.StatusOK)

	e.clock.Advance(time.Second)
	e.post("/bhr/api/unblock_now", jsonBody(t, map[string]string{"cidr": "192.0.2.1", "why": "false positive"}), as(e, auth.RoleUser)).
		expect(http.StatusOK)
	e.expectStats("unblock_now", [4]int{0, 1, 1, 0})
	if l := e.get("/bhr/api/queue/r2", mgr).expect(http.StatusOK).list(); len(l) != 0 {
		t.Fatalf("r2 still queued an unblocked block: %v", l)
	}
	if l := e.get("/bhr/api/unblock_queue/r2", mgr).expect(http.StatusOK).list(); len(l) != 0 {
		t.Fatalf("r2 has an unblock for a block it never installed: %v", l)
	}
	uq := e.get("/bhr/api/unblock_queue/r1", mgr).expect(http.StatusOK).list()
	if len(uq) != 1 {
		t.Fatalf("unblock queue r1 = %v, want one entry", uq)
	}
	u := uq[0]
	if !slices.Equal(keys(u), sorted("id", "block", "ident", "added", "set_unblocked")) {
		t.Errorf("unblock item keys = %v", keys(u))
	}
	if blk, _ := u["block"].(map[string]any); blk["cidr"] != "192.0.2.1/32" || len(blk) != 1 {
		t.Errorf("unblock item block = %v", u["block"])
	}
	eid := id(t, u)
	if u["ident"] != "r1" || u["set_unblocked"] != fmt.Sprintf("%s/bhr/api/blockentries/%d/set_unblocked/", e.srv.URL, eid) {
		t.Errorf("unblock item = %v", u)
	}

	e.post("/bhr/api/set_unblocked_multi", jsonBody(t, map[string]any{"ids": []int64{eid}}), mgr).expect(http.StatusOK)
	e.expectStats("set_unblocked", [4]int{0, 0, 0, 0})
	if l := e.get("/bhr/api/unblock_queue/r1", mgr).expect(http.StatusOK).list(); len(l) != 0 {
		t.Fatalf("unblock queue r1 after set_unblocked: %v", l)
	}
	// unblock_now of something no longer blocked is BHR's 400.
	r := e.post("/bhr/api/unblock_now", jsonBody(t, map[string]string{"cidr": "192.0.2.1", "why": "again"}), as(e, auth.RoleUser)).
		expect(http.StatusBadRequest).obj()
	if fmt.Sprint(r["cidr"]) != "[192.0.2.1/32 is not currently blocked]" {
		t.Errorf("unblock_now of an unblocked cidr: %v", r)
	}
}

// testExpiry lets a block expire (with the injected clock) while two
// idents hold it, through the per-block and per-entry endpoints.
func testExpiry(t *testing.T, f storeFactory) {
	e := newEnv(t, f, envOpts{})
	mgr := as(e, auth.RoleBlockManager)
	for _, ident := range []string{"r1", "r2"} {
		e.get("/bhr/api/queue/"+ident, mgr).expect(http.StatusOK)
	}
	b := e.block("2001:db8::1", "1m")
	if b["cidr"] != "2001:db8::1/128" {
		t.Errorf("cidr = %v", b["cidr"])
	}
	for _, ident := range []string{"r1", "r2"} {
		e.post(fmt.Sprintf("/bhr/api/blocks/%d/set_blocked/", id(t, b)), formBody(url.Values{"ident": {ident}}), mgr).expect(http.StatusOK)
	}
	e.expectStats("both set_blocked", [4]int{0, 0, 1, 1})
	e.clock.Advance(59 * time.Second)
	e.expectStats("before expiry", [4]int{0, 0, 1, 1})
	e.clock.Advance(time.Second)
	e.expectStats("expired", [4]int{0, 1, 1, 0})
	var entries []int64
	for _, ident := range []string{"r1", "r2"} {
		uq := e.get("/bhr/api/unblock_queue/"+ident, mgr).expect(http.StatusOK).list()
		if len(uq) != 1 {
			t.Fatalf("unblock queue %s = %v", ident, uq)
		}
		entries = append(entries, id(t, uq[0]))
	}
	e.post(fmt.Sprintf("/bhr/api/blockentries/%d/set_unblocked/", entries[0]), body{}, mgr).expect(http.StatusOK)
	e.expectStats("r1 removed", [4]int{0, 1, 1, 0})
	e.post(fmt.Sprintf("/bhr/api/blockentries/%d/set_unblocked", entries[1]), body{}, mgr).expect(http.StatusOK)
	e.expectStats("r2 removed", [4]int{0, 0, 0, 0})
	e.post("/bhr/api/blockentries/99999/set_unblocked/", body{}, mgr).expect(http.StatusNotFound)
	e.post("/bhr/api/blocks/99999/set_blocked/", formBody(url.Values{"ident": {"r1"}}), mgr).expect(http.StatusNotFound)
	e.post(fmt.Sprintf("/bhr/api/blocks/%d/set_blocked/", id(t, b)), formBody(url.Values{}), mgr).expect(http.StatusBadRequest)
}

// testBHRClient drives the API exactly as bhr_client/rest.py does:
// requests' form encoding for block (Python booleans as True/False),
// json.dumps bodies with Content-type application/json for the rest,
// query params for the block queue, and csv.DictReader over list.csv.
func testBHRClient(t *testing.T, f storeFactory) {
	e := newEnv(t, f, envOpts{})
	blocker := as(e, auth.RoleUser)
	mgr := as(e, auth.RoleBlockManager)
	js := func(v any) body { return jsonBody(t, v) }
	jsHeaders := header("Accept", "application/json")

	// Client.block(cidr, source, why, duration=300, autoscale=False,
	// skip_whitelist=False, extend=False): requests.post(data=record).
	form := url.Values{
		"cidr": {"198.51.100.7"}, "source": {"zeek"}, "why": {"scanning"}, "duration": {"300"},
		"autoscale": {"False"}, "skip_whitelist": {"False"}, "extend": {"False"},
	}
	b1 := e.post("/bhr/api/block", formBody(form), blocker).expect(http.StatusCreated).obj()
	if b1["cidr"] != "198.51.100.7/32" || b1["who"] != "u-user" || b1["source"] != "zeek" {
		t.Fatalf("block = %v", b1)
	}
	// The same again with extend=False: the existing block, unchanged.
	form.Set("duration", "600")
	again := e.post("/bhr/api/block", formBody(form), blocker).expect(http.StatusCreated).obj()
	if id(t, again) != id(t, b1) || again["unblock_at"] != b1["unblock_at"] {
		t.Errorf("duplicate with extend=False = %v, want %v unchanged", again, b1)
	}

	// Client.mblock(block_records): post_json, durations as numbers.
	e.clock.Advance(time.Second)
	recs := []map[string]any{
		{"cidr": "198.51.100.8", "duration": 30, "source": "test", "why": "testing"},
		{"cidr": "198.51.100.9", "duration": 30, "source": "test", "why": "testing"},
	}
	mb := e.post("/bhr/api/mblock", js(recs), blocker, jsHeaders).expect(http.StatusCreated).list()
	if !slices.Equal(cidrs(t, mb), []string{"198.51.100.8/32", "198.51.100.9/32"}) {
		t.Fatalf("mblock = %v", mb)
	}

	// get_block_queue(timeout=0, added_since=None): requests drops None.
	q := e.get("/bhr/api/queue/bhrclient?timeout=0", mgr).expect(http.StatusOK).list()
	if !slices.Equal(cidrs(t, q), []string{"198.51.100.7/32", "198.51.100.8/32", "198.51.100.9/32"}) {
		t.Fatalf("queue = %v", q)
	}
	for _, it := range q {
		if !slices.Equal(keys(it), sorted("id", "cidr", "set_blocked", "added")) {
			t.Errorf("queue item keys = %v", keys(it))
		}
	}
	// added_since = the "added" of a queue item: that item and newer
	// (BHR's added >= added_since), so one mblock batch is never split.
	q2 := e.get("/bhr/api/queue/bhrclient?"+url.Values{"timeout": {"0"}, "added_since": {q[1]["added"].(string)}}.Encode(), mgr).
		expect(http.StatusOK).list()
	if !slices.Equal(cidrs(t, q2), []string{"198.51.100.8/32", "198.51.100.9/32"}) {
		t.Fatalf("queue with added_since=%v = %v", q[1]["added"], q2)
	}

	// set_blocked(records): post_json('/bhr/api/set_blocked_multi/' + ident, {"ids": [...]}).
	var ids []int64
	for _, it := range q {
		ids = append(ids, id(t, it))
	}
	ok := e.post("/bhr/api/set_blocked_multi/bhrclient", js(map[string]any{"ids": ids}), mgr, jsHeaders).expect(http.StatusOK).obj()
	if ok["status"] != "ok" {
		t.Errorf("set_blocked_multi = %v", ok)
	}
	if l := e.get("/bhr/api/queue/bhrclient?timeout=0", mgr).expect(http.StatusOK).list(); len(l) != 0 {
		t.Fatalf("queue after set_blocked_multi = %v", l)
	}

	// unblock_now(cidr, why), then the enforcer's unblock round.
	e.post("/bhr/api/unblock_now", js(map[string]string{"cidr": "198.51.100.8", "why": "done"}), blocker, jsHeaders).expect(http.StatusOK)
	uq := e.get("/bhr/api/unblock_queue/bhrclient", mgr).expect(http.StatusOK).list()
	if len(uq) != 1 || uq[0]["block"].(map[string]any)["cidr"] != "198.51.100.8/32" {
		t.Fatalf("unblock queue = %v", uq)
	}
	e.post("/bhr/api/set_unblocked_multi", js(map[string]any{"ids": []int64{id(t, uq[0])}}), mgr, jsHeaders).expect(http.StatusOK)
	if l := e.get("/bhr/api/unblock_queue/bhrclient", mgr).expect(http.StatusOK).list(); len(l) != 0 {
		t.Fatalf("unblock queue after set_unblocked_multi = %v", l)
	}

	// get_list(): csv.DictReader over list.csv; here with since.
	since := url.QueryEscape(mb[0]["added"].(string))
	r := e.get("/bhr/list.csv?since="+since, blocker).expect(http.StatusOK)
	if ct := r.header.Get("Content-Type"); ct != "text/csv; charset=utf-8" {
		t.Errorf("list.csv Content-Type = %q", ct)
	}
	rows, err := csv.NewReader(bytes.NewReader(r.body)).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	want := [][]string{
		{"cidr", "who", "source", "why", "added", "unblock_at"},
		{"198.51.100.9/32", "u-user", "test", "testing", mb[1]["added"].(string), mb[1]["unblock_at"].(string)},
	}
	if !slices.EqualFunc(rows, want, slices.Equal) {
		t.Errorf("list.csv?since = %q, want %q", rows, want)
	}

	// query(cidr) and stats().
	hist := e.get("/bhr/api/query/198.51.100.0/24", blocker).expect(http.StatusOK).list()
	if !slices.Equal(cidrs(t, hist), []string{"198.51.100.7/32", "198.51.100.8/32", "198.51.100.9/32"}) {
		t.Errorf("query = %v", hist)
	}
	e.expectStats("end", [4]int{0, 0, 2, 2})
	st := e.get("/bhr/api/stats", blocker).expect(http.StatusOK).obj()
	if fmt.Sprint(st["sources"]) != "map[test:1 zeek:1]" {
		t.Errorf("stats sources = %v", st["sources"])
	}
}
