package api_test

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/bhrd/bhrd/pkg/auth"
	"github.com/bhrd/bhrd/pkg/config"
	"github.com/bhrd/bhrd/pkg/queue"
	"github.com/bhrd/bhrd/pkg/queue/queuetest"
)

// The five queue and entry endpoints that report or read for an ident
// refuse a reserved (internal) ident to every remote caller, whatever its
// role, and change nothing. (A user name can not hold the ":" of
// "enforcer:<ident>", and the Service does not go by names anyway.)
func testReservedIdents(t *testing.T, f storeFactory) {
	e := newEnv(t, f, envOpts{svcOpts: []queue.Option{queue.WithReservedIdents("bgp1")}})
	bgp1 := queue.WithActor(e.ctx, queue.EnforcerActor("bgp1"))
	b := e.block("192.0.2.1", "1h")
	bid := id(t, b)
	if err := e.svc.SetBlocked(bgp1, "bgp1", []int64{bid}); err != nil {
		t.Fatal(err)
	}
	e.post("/bhr/api/unblock_now", jsonBody(t, map[string]string{"cidr": "192.0.2.1", "why": "done"}), as(e, auth.RoleUser)).expect(http.StatusOK)
	own, err := e.svc.UnblockQueue(bgp1, "bgp1", 0)
	if err != nil || len(own) != 1 {
		t.Fatalf("bgp1's unblock queue: %v %v", own, err)
	}
	entry := own[0].ID
	other := id(t, e.block("192.0.2.2", "1h"))

	for _, role := range []string{auth.RoleUser, auth.RoleBlockManager, auth.RoleAdmin} {
		who := as(e, role)
		calls := []*response{
			e.post("/bhr/api/set_blocked_multi/bgp1", jsonBody(t, map[string]any{"ids": []int64{other}}), who),
			e.post(fmt.Sprintf("/bhr/api/blocks/%d/set_blocked/", other), jsonBody(t, map[string]string{"ident": "bgp1"}), who),
			e.get("/bhr/api/unblock_queue/bgp1", who),
			e.post("/bhr/api/set_unblocked_multi", jsonBody(t, map[string]any{"ids": []int64{entry}}), who),
			e.post(fmt.Sprintf("/bhr/api/blockentries/%d/set_unblocked/", entry), body{}, who),
		}
		for _, r := range calls {
			r.expect(http.StatusConflict)
			if m := r.obj(); !strings.Contains(fmt.Sprint(m["detail"]), "ident bgp1 is enforced inside bhrd") {
				t.Errorf("%s: detail %v", r, m)
			}
		}
	}
	// Nothing changed: bgp1 still holds its entry and has not "blocked"
	// the other block.
	if q, err := e.svc.UnblockQueue(bgp1, "bgp1", 0); err != nil || len(q) != 1 || q[0].ID != entry {
		t.Fatalf("bgp1's unblock queue after the refusals: %v %v", q, err)
	}
	if q, err := e.svc.BlockQueue(bgp1, "bgp1", queuetest.Start.Add(-1), 0); err != nil || len(q) != 1 || q[0].ID != other {
		t.Fatalf("bgp1's block queue after the refusals: %v %v", q, err)
	}
	// A remote enforcer's own ident works as ever.
	who := as(e, auth.RoleBlockManager)
	e.post("/bhr/api/set_blocked_multi/fw1", jsonBody(t, map[string]any{"ids": []int64{other}}), who).expect(http.StatusOK)
	e.get("/bhr/api/unblock_queue/fw1", who).expect(http.StatusOK)
}

// Every field error comes in one answer, for api/block and for each
// mblock item, as BHR's serializer gives them.
func testAllFieldErrors(t *testing.T, f storeFactory) {
	e := newEnv(t, f, envOpts{})
	user := as(e, auth.RoleUser)
	m := e.post("/bhr/api/block", formBody(map[string][]string{"cidr": {"192.0.2.1"}}), user).expect(http.StatusBadRequest).obj()
	if got := keys(m); !slices.Equal(got, sorted("source", "why", "duration")) {
		t.Errorf("block with only a cidr: %v", m)
	}
	m = e.post("/bhr/api/block", jsonBody(t, map[string]any{"cidr": "banana", "skip_whitelist": "maybe", "duration": "soon"}), user).
		expect(http.StatusBadRequest).obj()
	if got := keys(m); !slices.Equal(got, sorted("cidr", "source", "why", "duration", "skip_whitelist")) {
		t.Errorf("block with every field wrong: %v", m)
	}
	l := e.post("/bhr/api/mblock", jsonBody(t, []any{
		map[string]any{"cidr": "192.0.2.1", "source": "s", "why": "w", "duration": "1h"},
		map[string]any{"cidr": "192.0.2.2"},
		"not an object",
	}), user).expect(http.StatusBadRequest).list()
	if len(l) != 3 || len(l[0]) != 0 || !slices.Equal(keys(l[1]), sorted("source", "why", "duration")) ||
		!slices.Equal(keys(l[2]), []string{"non_field_errors"}) {
		t.Errorf("mblock errors: %v", l)
	}
	m = e.post("/bhr/api/unblock_now", jsonBody(t, map[string]string{"cidr": "banana"}), user).expect(http.StatusBadRequest).obj()
	if got := keys(m); !slices.Equal(got, sorted("cidr", "why")) {
		t.Errorf("unblock_now: %v", m)
	}
	e.expectStats("nothing stored", [4]int{0, 0, 0, 0})
}

// set_blocked_multi and set_unblocked_multi collapse repeated ids, and
// refuse more distinct ids than api.max_mblock_items.
func testReportIDLimits(t *testing.T, f storeFactory) {
	rec := &queuetest.Recorder{}
	e := newEnv(t, f, envOpts{cfg: func(c *config.API) { c.MaxMBlockItems = 3 }, svcOpts: []queue.Option{queue.WithEvents(rec)}})
	who := as(e, auth.RoleBlockManager)
	var ids []int64
	for i := range 4 {
		ids = append(ids, id(t, e.block(fmt.Sprintf("192.0.2.%d", i+1), "1h")))
	}
	rec.Take()
	m := e.post("/bhr/api/set_blocked_multi/fw1", jsonBody(t, map[string]any{"ids": ids}), who).expect(http.StatusBadRequest).obj()
	if !strings.Contains(fmt.Sprint(m["ids"]), "the limit is 3") {
		t.Errorf("4 ids: %v", m)
	}
	many := make([]int64, 10000)
	for i := range many {
		many[i] = ids[0]
	}
	e.post("/bhr/api/set_blocked_multi/fw1", jsonBody(t, map[string]any{"ids": many}), who).expect(http.StatusOK)
	e.post("/bhr/api/set_blocked_multi/fw1", jsonBody(t, map[string]any{"ids": many}), who).expect(http.StatusOK)
	if got := rec.Take(); !slices.Equal(got, []string{"u-" + auth.RoleBlockManager + " refused set_blocked", "u-" + auth.RoleBlockManager + " set_blocked fw1 192.0.2.1/32"}) {
		t.Errorf("events: %q", got)
	}
	e.post("/bhr/api/set_unblocked_multi", jsonBody(t, map[string]any{"ids": []int64{1, 2, 3, 4}}), who).expect(http.StatusBadRequest)
}

// The Service, not the handler, reports what an API call changed, with
// the caller as actor: each committed change once, each refusal once.
func testEventsFromTheService(t *testing.T, f storeFactory) {
	rec := &queuetest.Recorder{}
	e := newEnv(t, f, envOpts{svcOpts: []queue.Option{queue.WithEvents(rec)}})
	user, admin := as(e, auth.RoleUser), as(e, auth.RoleAdmin)
	u, a := "u-"+auth.RoleUser, "u-"+auth.RoleAdmin
	b := e.block("192.0.2.1", "1h")
	e.post("/bhr/api/block", jsonBody(t, map[string]any{"cidr": "192.0.2.1", "source": "s", "why": "w", "duration": "2h"}), user).expect(http.StatusCreated)
	e.post("/bhr/api/block", jsonBody(t, map[string]any{"cidr": "10.0.0.0/8", "source": "s", "why": "w", "duration": "2h"}), user).expect(http.StatusBadRequest)
	e.post("/bhr/api/mblock", jsonBody(t, []any{map[string]any{"cidr": "192.0.2.2", "source": "s", "why": "w", "duration": "1h"}}), user).expect(http.StatusCreated)
	e.post("/bhr/api/set_blocked_multi/fw1", jsonBody(t, map[string]any{"ids": []int64{id(t, b)}}), user).expect(http.StatusOK)
	e.post("/bhr/api/unblock_now", jsonBody(t, map[string]string{"cidr": "192.0.2.1", "why": "done"}), user).expect(http.StatusOK)
	e.post("/bhr/api/unblock_now", jsonBody(t, map[string]string{"cidr": "192.0.2.1", "why": "again"}), user).expect(http.StatusBadRequest)
	uq := e.get("/bhr/api/unblock_queue/fw1", user).expect(http.StatusOK).list()
	e.post(fmt.Sprintf("/bhr/api/blockentries/%d/set_unblocked/", id(t, uq[0])), body{}, user).expect(http.StatusOK)
	w := e.post("/bhr/api/whitelist/", jsonBody(t, map[string]string{"cidr": "198.51.100.0/24", "why": "ours"}), admin).expect(http.StatusCreated).obj()
	e.do("DELETE", fmt.Sprintf("/bhr/api/whitelist/%d/", id(t, w)), nil, admin).expect(http.StatusNoContent)
	sb := e.post("/bhr/api/source_blacklist/", jsonBody(t, map[string]string{"source": "noisy", "why": "fp"}), admin).expect(http.StatusCreated).obj()
	e.do("DELETE", fmt.Sprintf("/bhr/api/source_blacklist/%d/", id(t, sb)), nil, admin).expect(http.StatusNoContent)
	want := []string{
		u + " block_created 192.0.2.1/32",
		u + " block_extended 192.0.2.1/32",
		u + " block_rejected 10.0.0.0/8: Prefix length in 10.0.0.0/8 is too small",
		u + " block_created 192.0.2.2/32",
		u + " set_blocked fw1 192.0.2.1/32",
		u + " unblock_now 192.0.2.1/32",
		u + " refused unblock_now",
		u + " set_unblocked fw1 192.0.2.1/32",
		a + " whitelist_added 198.51.100.0/24",
		a + " whitelist_deleted 198.51.100.0/24",
		a + " source_blacklist_added noisy",
		a + " source_blacklist_deleted noisy",
	}
	if got := rec.Take(); !slices.Equal(got, want) {
		t.Errorf("events\n got %q\nwant %q", got, want)
	}
}

// An ident needs no registration, but at most store.max_idents exist;
// api/idents shows each with its queue.
func testIdents(t *testing.T, f storeFactory) {
	e := newEnv(t, f, envOpts{svcOpts: []queue.Option{queue.WithMaxIdents(2)}})
	who := as(e, auth.RoleBlockManager)
	e.block("192.0.2.1", "1h")
	e.get("/bhr/api/queue/a", who).expect(http.StatusOK)
	e.get("/bhr/api/queue/b/", who).expect(http.StatusOK)
	m := e.get("/bhr/api/queue/c", who).expect(http.StatusConflict).obj()
	if !strings.Contains(fmt.Sprint(m["detail"]), "store.max_idents") {
		t.Errorf("409 at the cap: %v", m)
	}
	l := e.get("/bhr/api/idents/", as(e, auth.RoleReadOnly)).expect(http.StatusOK).list()
	if len(l) != 2 || l[0]["ident"] != "a" || l[1]["ident"] != "b" || l[0]["state"] != "active" ||
		num(t, l[0]["queued"]) != 1 || l[0]["oldest_queued"] == nil || l[0]["last_seen"] == nil {
		t.Errorf("idents: %v", l)
	}
	e.get("/bhr/api/idents/").expect(http.StatusUnauthorized)
}
