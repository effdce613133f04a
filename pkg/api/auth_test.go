package api_test

import (
	"bytes"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/bhrd/bhrd/pkg/auth"
	"github.com/bhrd/bhrd/pkg/config"
	"github.com/bhrd/bhrd/pkg/queue"
)

func testAuthentication(t *testing.T, f storeFactory) {
	e := newEnv(t, f, envOpts{})
	detailOf := func(r *response) string {
		t.Helper()
		return fmt.Sprint(r.obj()["detail"])
	}
	expect401 := func(r *response, msg string) {
		t.Helper()
		r.expect(http.StatusUnauthorized)
		if d := detailOf(r); d != msg {
			t.Errorf("%s: detail %q, want %q", r.req, d, msg)
		}
		if w := r.header.Values("WWW-Authenticate"); !slices.Contains(w, "Token") || !slices.Contains(w, `Basic realm="bhrd"`) {
			t.Errorf("%s: WWW-Authenticate = %q", r.req, w)
		}
	}
	expect401(e.get("/bhr/api/blocks/"), "Authentication credentials were not provided.")
	expect401(e.get("/bhr/api/blocks/", header("Authorization", "Token bhrd_nope")), "Invalid token.")
	expect401(e.get("/bhr/api/blocks/", header("Authorization", "Token")), "Invalid token header. No credentials provided.")
	expect401(e.get("/bhr/api/blocks/", header("Authorization", "Token a b")), "Invalid token header. Token string should not contain spaces.")
	expect401(e.get("/bhr/api/blocks/", header("Authorization", "Basic !!!")), "Invalid basic header. Credentials not correctly base64 encoded.")
	// DRF checks credentials that are sent even on public endpoints.
	expect401(e.get("/bhr/api/stats", header("Authorization", "Token bhrd_nope")), "Invalid token.")
	// Other schemes are ignored, as DRF does: anonymous.
	e.get("/bhr/api/stats", header("Authorization", "Bearer xyz")).expect(http.StatusOK)
	expect401(e.get("/bhr/api/blocks/", header("Authorization", "Bearer xyz")), "Authentication credentials were not provided.")
	// The keyword is case-insensitive, as in DRF.
	e.get("/bhr/api/blocks/", header("Authorization", "token "+e.tokens[auth.RoleReadOnly])).expect(http.StatusOK)

	// HTTP Basic.
	if _, err := e.authn.AddUser(e.ctx, "alice", "alice-password", []string{auth.RoleUser}); err != nil {
		t.Fatal(err)
	}
	b := e.post("/bhr/api/block", formBody(url.Values{"cidr": {"192.0.2.5"}, "source": {"s"}, "why": {"w"}, "duration": {"60"}}),
		basic("alice", "alice-password")).expect(http.StatusCreated).obj()
	if b["who"] != "alice" {
		t.Errorf("who = %v", b["who"])
	}
	e.get("/bhr/api/blocks/", basic("alice", "alice-password")).expect(http.StatusOK)
	expect401(e.get("/bhr/api/blocks/", basic("alice", "wrong-password")), "Invalid username/password.")
	expect401(e.get("/bhr/api/blocks/", basic("mallory", "alice-password")), "Invalid username/password.")

	// Disabled users and revoked tokens.
	secret, tok, err := e.authn.CreateToken(e.ctx, "alice", "laptop")
	if err != nil {
		t.Fatal(err)
	}
	e.get("/bhr/api/blocks/", header("Authorization", "Token "+secret)).expect(http.StatusOK)
	if err := e.authn.RevokeToken(e.ctx, tok.ID); err != nil {
		t.Fatal(err)
	}
	expect401(e.get("/bhr/api/blocks/", header("Authorization", "Token "+secret)), "Invalid token.")
	if err := e.authn.SetDisabled(e.ctx, "alice", true); err != nil {
		t.Fatal(err)
	}
	expect401(e.get("/bhr/api/blocks/", basic("alice", "alice-password")), "User inactive or deleted.")

	// 403 for an authenticated caller without the permission.
	r := e.post("/bhr/api/block", formBody(url.Values{"cidr": {"192.0.2.6"}}), as(e, auth.RoleReadOnly)).expect(http.StatusForbidden)
	if d := detailOf(r); d != "You do not have permission to perform this action." {
		t.Errorf("403 detail = %q", d)
	}

	// The access log names the user and the token.
	found := false
	for _, l := range e.logs.FilterMessage("http request").All() {
		m := l.ContextMap()
		if m["user"] == "u-read-only" && m["token_id"] != nil && m["route"] == "/bhr/api/block" && m["status"] == int64(403) {
			found = true
		}
	}
	if !found {
		t.Error("no access log line with user and token_id for the 403")
	}
}

// endpoint is one row of the permission matrix.
type endpoint struct {
	method, path string
	body         func(e *env, role string) *body
	perm         string // "public", or the permission in BHR's words
	ok           int    // the status when allowed
}

// allowed is the matrix's expectation, written out rather than derived
// from pkg/auth's role table.
var allowed = map[string][]string{
	"public":                  {"anonymous", "none", "read-only", "blocker", "block-manager", "user", "admin"},
	"read":                    {"read-only", "blocker", "block-manager", "user", "admin"},
	"add_block":               {"blocker", "user", "admin"},
	"change_block":            {"user", "admin"},
	"add_blockentry":          {"block-manager", "user", "admin"},
	"change_blockentry":       {"block-manager", "user", "admin"},
	"change_whitelist":        {"admin"},
	"change_source_blacklist": {"admin"},
	"skip_whitelist":          {"admin"},
}

func testPermissionMatrix(t *testing.T, f storeFactory) {
	e := newEnv(t, f, envOpts{})
	// Fixtures: a block set_blocked by r1 (so it has an entry), a
	// whitelist entry and a blacklisted source per role to delete.
	b := e.block("192.0.2.1", "1h")
	bid := id(t, b)
	if err := e.svc.SetBlocked(e.ctx, "r1", []int64{bid}); err != nil {
		t.Fatal(err)
	}
	var eid int64
	if err := e.svc.ListEntries(e.ctx, queue.EntryListOptions{BlockID: bid}, func(en queue.Entry) error { eid = en.ID; return nil }); err != nil || eid == 0 {
		t.Fatalf("entry: %v", err)
	}
	roles := []string{"anonymous", "none", auth.RoleReadOnly, auth.RoleBlocker, auth.RoleBlockManager, auth.RoleUser, auth.RoleAdmin}
	roleIndex := func(r string) int { return slices.Index(roles, r) }
	// Distinct per role so that each allowed call can succeed.
	cidrFor := func(role string) string { return fmt.Sprintf("198.51.100.%d", 10+roleIndex(role)) }
	wlID, blID := map[string]int64{}, map[string]int64{}
	for _, r := range roles {
		w, err := e.svc.AddWhitelist(e.ctx, fmt.Sprintf("203.0.113.%d/32", roleIndex(r)), "to delete")
		if err != nil {
			t.Fatal(err)
		}
		wlID[r] = w.ID
		s, err := e.svc.AddSourceBlacklist(e.ctx, "src-"+r, "to delete")
		if err != nil {
			t.Fatal(err)
		}
		blID[r] = s.ID
	}
	js := func(v any) func(*env, string) *body {
		return func(*env, string) *body { b := jsonBody(t, v); return &b }
	}
	eps := []endpoint{
		{"POST", "/bhr/api/block", func(e *env, r string) *body {
			b := formBody(url.Values{"cidr": {cidrFor(r)}, "source": {"m"}, "why": {"w"}, "duration": {"1h"}})
			return &b
		}, "add_block", 201},
		{"POST", "/bhr/api/block", func(e *env, r string) *body {
			b := formBody(url.Values{"cidr": {cidrFor(r)}, "source": {"m"}, "why": {"w"}, "duration": {"1h"}, "skip_whitelist": {"True"}})
			return &b
		}, "skip_whitelist", 201},
		{"POST", "/bhr/api/mblock", js([]map[string]any{{"cidr": "198.51.100.99", "source": "m", "why": "w", "duration": 60}}), "add_block", 201},
		{"POST", "/bhr/api/unblock_now", func(e *env, r string) *body {
			// A fresh block to unblock, made by the service directly.
			req := queue.BlockRequest{CIDR: fmt.Sprintf("198.51.100.%d", 50+roleIndex(r)), Who: "fixture", Source: "m", Why: "w", Duration: "1h", Extend: true}
			if _, err := e.svc.Block(e.ctx, req); err != nil {
				t.Fatal(err)
			}
			b := jsonBody(t, map[string]string{"cidr": req.CIDR, "why": "matrix"})
			return &b
		}, "change_block", 200},
		{"GET", "/bhr/api/queue/r1", nil, "add_blockentry", 200},
		{"POST", "/bhr/api/set_blocked_multi/r1", js(map[string]any{"ids": []int64{bid}}), "add_blockentry", 200},
		{"POST", fmt.Sprintf("/bhr/api/blocks/%d/set_blocked/", bid), js(map[string]string{"ident": "r2"}), "add_blockentry", 200},
		{"GET", "/bhr/api/unblock_queue/r1", nil, "change_blockentry", 200},
		{"POST", "/bhr/api/set_unblocked_multi", js(map[string]any{"ids": []int64{eid}}), "change_blockentry", 200},
		{"POST", fmt.Sprintf("/bhr/api/blockentries/%d/set_unblocked/", eid), nil, "change_blockentry", 200},
		{"GET", "/bhr/api/blocks/", nil, "read", 200},
		{"GET", fmt.Sprintf("/bhr/api/blocks/%d/", bid), nil, "read", 200},
		{"GET", "/bhr/api/blockentries/", nil, "read", 200},
		{"GET", fmt.Sprintf("/bhr/api/blockentries/%d/", eid), nil, "read", 200},
		{"GET", "/bhr/api/current_blocks/", nil, "read", 200},
		{"GET", "/bhr/api/pending_blocks/", nil, "read", 200},
		{"GET", "/bhr/api/pending_removal_blocks/", nil, "read", 200},
		{"GET", "/bhr/api/expected_blocks/?source=test", nil, "read", 200},
		{"GET", "/bhr/api/current_blocks_brief/", nil, "read", 200},
		{"GET", "/bhr/api/query/192.0.2.0/24", nil, "read", 200},
		{"GET", "/bhr/api/query_limited/192.0.2.0/24", nil, "read", 200}, // unauthenticated_limited_query is off
		{"GET", "/bhr/list.csv", nil, "read", 200},
		{"GET", "/bhr/publist.csv", nil, "read", 200},
		{"GET", "/bhr/api/whitelist/", nil, "read", 200},
		{"GET", fmt.Sprintf("/bhr/api/whitelist/%d/", wlID["admin"]), nil, "read", 200},
		{"POST", "/bhr/api/whitelist/", func(e *env, r string) *body {
			b := jsonBody(t, map[string]string{"cidr": fmt.Sprintf("203.0.113.%d/32", 100+roleIndex(r)), "why": "matrix"})
			return &b
		}, "change_whitelist", 201},
		{"DELETE", "/bhr/api/whitelist/{wl}/", nil, "change_whitelist", 204},
		{"GET", "/bhr/api/source_blacklist/", nil, "read", 200},
		{"GET", fmt.Sprintf("/bhr/api/source_blacklist/%d/", blID["admin"]), nil, "read", 200},
		{"POST", "/bhr/api/source_blacklist/", func(e *env, r string) *body {
			b := jsonBody(t, map[string]string{"source": "new-" + r, "why": "matrix"})
			return &b
		}, "change_source_blacklist", 201},
		{"DELETE", "/bhr/api/source_blacklist/{bl}/", nil, "change_source_blacklist", 204},
		{"GET", "/bhr/api/stats", nil, "public", 200},
		{"GET", "/bhr/api/source_stats", nil, "public", 200},
		{"GET", "/bhr/api/metrics", nil, "public", 200},
		{"GET", "/healthz", nil, "public", 200},
	}
	for _, ep := range eps {
		for _, role := range roles {
			path := strings.NewReplacer("{wl}", fmt.Sprint(wlID[role]), "{bl}", fmt.Sprint(blID[role])).Replace(ep.path)
			var opts []reqOpt
			if role != "anonymous" {
				opts = append(opts, as(e, role))
			}
			var b *body
			if ep.body != nil {
				b = ep.body(e, role)
			}
			want := ep.ok
			switch {
			case slices.Contains(allowed[ep.perm], role):
			case role == "anonymous":
				want = http.StatusUnauthorized
			default:
				want = http.StatusForbidden
			}
			r := e.do(ep.method, path, b, opts...)
			if r.status != want {
				t.Errorf("%-6s %-45s as %-13s: %d, want %d (%s)", ep.method, path, role, r.status, want, bytes.TrimSpace(r.body))
			}
		}
	}
}

func testLimitedQuery(t *testing.T, f storeFactory) {
	for _, on := range []bool{true, false} {
		t.Run(fmt.Sprintf("unauthenticated_limited_query=%v", on), func(t *testing.T) {
			e := newEnv(t, f, envOpts{cfg: func(c *config.API) { c.UnauthenticatedLimitedQuery = on }})
			e.block("192.0.2.7", "1h", map[string]any{"why": "secret-reason", "source": "ids"})
			e.block("192.0.2.8", "0", map[string]any{"why": "secret-reason", "source": "ids"})
			var opts []reqOpt
			if !on {
				e.get("/bhr/api/query_limited/192.0.2.0/24").expect(http.StatusUnauthorized)
				e.get("/bhr/publist.csv").expect(http.StatusUnauthorized)
				opts = append(opts, as(e, auth.RoleReadOnly))
			}
			l := e.get("/bhr/api/query_limited/192.0.2.0/24", opts...).expect(http.StatusOK).list()
			if len(l) != 2 {
				t.Fatalf("query_limited = %v", l)
			}
			for _, it := range l {
				if !slices.Equal(keys(it), sorted("cidr", "source", "added", "unblock_at")) {
					t.Errorf("query_limited item keys = %v", keys(it))
				}
			}
			p := e.get("/bhr/publist.csv", opts...).expect(http.StatusOK)
			lines := strings.Split(strings.TrimSpace(string(p.body)), "\n")
			if len(lines) != 3 || lines[0] != "cidr,added,unblock_at" || lines[1] != "192.0.2.7/32,2026-11-21T12:00:00Z,2026-11-21T13:00:00Z" ||
				lines[2] != "192.0.2.8/32,2026-11-21T12:00:00Z," {
				t.Errorf("publist.csv = %q", p.body)
			}
			for _, r := range []*response{p, e.get("/bhr/api/query_limited/192.0.2.7", opts...)} {
				if bytes.Contains(r.body, []byte("secret-reason")) || bytes.Contains(r.body, []byte("u-user")) {
					t.Errorf("%s reveals who or why: %s", r.req, r.body)
				}
			}
			// The full history always needs credentials.
			e.get("/bhr/api/query/192.0.2.0/24").expect(http.StatusUnauthorized)
			// Stats are public either way.
			e.get("/bhr/api/stats").expect(http.StatusOK)
		})
	}
}
