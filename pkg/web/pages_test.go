package web_test

import (
	"html"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bhrd/bhrd/pkg/auth"
	"github.com/bhrd/bhrd/pkg/queue"
	"github.com/bhrd/bhrd/pkg/web"
)

func TestSessions(t *testing.T) {
	forStores(t, func(t *testing.T, f storeFactory) {
		e := newEnv(t, f, envOpts{})
		b := e.browser()
		// Anonymous: sent to the login page, with the way back.
		p := b.get("/bhr/query?query=192.0.2.1")
		if p.status != http.StatusSeeOther || p.header.Get("Location") != "/bhr/login?next="+url.QueryEscape("/bhr/query?query=192.0.2.1") {
			t.Fatalf("anonymous query: %d %s", p.status, p.header.Get("Location"))
		}
		// A wrong password: 401, the form again, an audit line; no cookie.
		p = b.post("/bhr/login", url.Values{"username": {"u-user"}, "password": {"wrong"}})
		if p.status != http.StatusUnauthorized || b.cookie != nil {
			t.Fatalf("wrong password: %d cookie %v", p.status, b.cookie)
		}
		p.has(t, "Wrong username or password.", `name="username" value="u-user"`)
		if l := e.lastAudit("auth_failed"); l["actor"] != "u-user" || l["scheme"] != "web" {
			t.Errorf("auth_failed line: %v", l)
		}
		// An open redirect is not followed.
		p = b.post("/bhr/login", url.Values{"username": {"u-user"}, "password": {password}, "next": {"//evil.example/x"}})
		if p.status != http.StatusSeeOther || p.header.Get("Location") != "/bhr/" {
			t.Fatalf("login with a foreign next: %d %s", p.status, p.header.Get("Location"))
		}
		ck := b.cookie
		if !ck.HttpOnly || ck.SameSite != http.SameSiteLaxMode || ck.Path != "/bhr/" || ck.Secure {
			t.Errorf("cookie %+v: want HttpOnly, SameSite=Lax, Path=/bhr/, not Secure over plain HTTP", ck)
		}
		if ck.MaxAge != int(web.DefaultSessionMaxAge/time.Second) {
			t.Errorf("cookie MaxAge %d", ck.MaxAge)
		}
		started := e.lastAudit("session_started")
		if started["actor"] != "u-user" {
			t.Errorf("session_started: %v", started)
		}
		b.get("/bhr/stats").has(t, "Log out u-user", "Current")

		// The session survives a restart: new pages over the same store.
		e2 := newEnv(t, f, envOpts{store: e.store})
		b2 := e2.browser()
		b2.cookie = ck
		if p := b2.get("/bhr/stats"); p.status != http.StatusOK {
			t.Fatalf("session after a restart: %d", p.status)
		}

		// Logout revokes the token: the copied cookie is worthless.
		p = b.post("/bhr/logout", url.Values{})
		if p.status != http.StatusSeeOther || b.cookie != nil {
			t.Fatalf("logout: %d cookie %v", p.status, b.cookie)
		}
		if l := e.lastAudit("session_ended"); l["actor"] != "u-user" {
			t.Errorf("session_ended: %v", l)
		}
		replay := e.browser()
		replay.cookie = ck
		if p := replay.get("/bhr/stats"); p.status != http.StatusSeeOther {
			t.Fatalf("stats with a logged-out cookie: %d", p.status)
		}

		// Disabling the user ends their sessions.
		b = e.login(auth.RoleReadOnly)
		if err := e.authn.SetDisabled(e.ctx, "u-read-only", true); err != nil {
			t.Fatal(err)
		}
		if p := b.get("/bhr/stats"); p.status != http.StatusSeeOther {
			t.Fatalf("stats of a disabled user: %d", p.status)
		}
		p = e.browser().post("/bhr/login", url.Values{"username": {"u-read-only"}, "password": {password}})
		if p.status != http.StatusUnauthorized {
			t.Fatalf("login of a disabled user: %d", p.status)
		}
		p.has(t, "This account is disabled.")

		// A session ends at its maximum age.
		b = e.login(auth.RoleUser)
		e.clock.Advance(web.DefaultSessionMaxAge + time.Minute)
		if p := b.get("/bhr/stats"); p.status != http.StatusSeeOther {
			t.Fatalf("stats after the session's age: %d", p.status)
		}
	})
}

func TestLoginThrottled(t *testing.T) {
	e := newEnv(t, sqliteStore, envOpts{})
	b := e.browser()
	for i := 0; i < 10; i++ {
		b.post("/bhr/login", url.Values{"username": {"u-user"}, "password": {"wrong"}})
	}
	p := b.post("/bhr/login", url.Values{"username": {"u-user"}, "password": {password}})
	if p.status != http.StatusTooManyRequests || p.header.Get("Retry-After") == "" || b.cookie != nil {
		t.Fatalf("after ten failures: %d %v", p.status, p.header)
	}
	p.has(t, "Too many failed logins")
}

func TestAddQueryUnblock(t *testing.T) {
	forStores(t, func(t *testing.T, f storeFactory) {
		e := newEnv(t, f, envOpts{})
		b := e.login(auth.RoleUser)
		b.get("/bhr/add").has(t, `name="cidr"`, `value="1d" checked`, "indefinite")

		// The Service's rules and messages, on the form: 400.
		p := b.post("/bhr/add", url.Values{"cidr": {"10.0.0.0/4"}, "why": {"x"}, "duration": {"1h"}})
		if p.status != http.StatusBadRequest {
			t.Fatalf("a short prefix: %d", p.status)
		}
		p.has(t, `class="field-error"`, `value="10.0.0.0/4"`)
		p = b.post("/bhr/add", url.Values{"cidr": {"192.0.2.9"}, "why": {"x"}, "duration": {"custom"}, "custom": {"soon"}})
		if p.status != http.StatusBadRequest {
			t.Fatalf("a bad duration: %d", p.status)
		}
		p.has(t, "Invalid duration")
		if l := e.lastAudit("block_rejected"); l["actor"] != "u-user" {
			t.Errorf("block_rejected: %v", l)
		}
		// No skip_whitelist box for a user without the permission, and a
		// crafted one is refused.
		b.get("/bhr/add").lacks(t, "skip_whitelist")
		p = b.post("/bhr/add", url.Values{"cidr": {"192.0.2.9"}, "why": {"x"}, "duration": {"1h"}, "skip_whitelist": {"1"}})
		if p.status != http.StatusForbidden {
			t.Fatalf("skip_whitelist without the permission: %d", p.status)
		}

		// A block: source web, who the user; then the query page for it.
		p = b.post("/bhr/add", url.Values{"cidr": {"192.0.2.9"}, "why": {"ssh brute force"}, "duration": {"1h"}, "extend": {"1"}})
		if p.status != http.StatusSeeOther || !strings.HasPrefix(p.header.Get("Location"), "/bhr/query?query=192.0.2.9%2F32&added=") {
			t.Fatalf("add: %d %s\n%s", p.status, p.header.Get("Location"), p.body)
		}
		l := e.lastAudit("block_created")
		if l["actor"] != "u-user" || l["source"] != "web" || l["cidr"] != "192.0.2.9/32" || l["request_id"] == "" {
			t.Errorf("block_created: %v", l)
		}
		p = b.get(p.header.Get("Location"))
		p.has(t, "Block 1 added.", "192.0.2.9/32", "ssh brute force", ">u-user<", `name="cidr" value="192.0.2.9/32"`, ">1h<")

		// Entries of the block show per ident.
		if _, err := e.svc.BlockQueue(e.ctx, "r1", time.Time{}, 0); err != nil {
			t.Fatal(err)
		}
		if err := e.svc.SetBlocked(queue.WithActor(e.ctx, queue.Actor{Name: "r1"}), "r1", []int64{1}); err != nil {
			t.Fatal(err)
		}
		b.get("/bhr/query?query=192.0.2.0/24").has(t, "Blocks within 192.0.2.0/24", "<td>r1</td>", "installed")

		// IPv6 that starts with a letter is an address, not a text.
		e.block("abcd::1/128", "ids", "v6 scanner")
		b.get("/bhr/query?query=abcd::1").has(t, "Blocks within abcd::1/128", "v6 scanner")
		// A text is looked for in why.
		b.get("/bhr/query?query=BRUTE").has(t, "whose why contains", "192.0.2.9/32")
		b.get("/bhr/query?query=nothing+like+it").has(t, "None.")

		// Unblock: confirm, a required why, then done.
		p = b.get("/bhr/unblock?cidr=192.0.2.9/32")
		p.has(t, "Unblock these now", `type="hidden" name="cidr" value="192.0.2.9/32"`)
		p = b.post("/bhr/unblock", url.Values{"cidr": {"192.0.2.9/32"}})
		if p.status != http.StatusBadRequest {
			t.Fatalf("unblock without why: %d", p.status)
		}
		p = b.post("/bhr/unblock", url.Values{"cidr": {"192.0.2.9/32"}, "why": {"false positive"}})
		if p.status != http.StatusOK {
			t.Fatalf("unblock: %d\n%s", p.status, p.body)
		}
		p.has(t, "Unblocked; every enforcer will remove them.")
		if l := e.lastAudit("unblock_now"); l["actor"] != "u-user" || l["cidr"] != "192.0.2.9/32" {
			t.Errorf("unblock_now: %v", l)
		}
		uq, err := e.svc.UnblockQueue(e.ctx, "r1", 0)
		if err != nil || len(uq) != 1 {
			t.Fatalf("r1's unblock queue after the page's unblock: %v %v", uq, err)
		}
		p = b.get("/bhr/query?query=192.0.2.9")
		p.has(t, "unblocked by u-user: false positive")
		p.lacks(t, `name="cidr" value="192.0.2.9/32"`)
		// Unblocking it again: the Service's refusal, as a 400.
		if p := b.post("/bhr/unblock", url.Values{"cidr": {"192.0.2.9/32"}, "why": {"again"}}); p.status != http.StatusBadRequest {
			t.Fatalf("unblock twice: %d", p.status)
		}
	})
}

func TestQueryPaging(t *testing.T) {
	e := newEnv(t, sqliteStore, envOpts{})
	for i := 0; i < 60; i++ {
		e.block("198.51.100."+strconv.Itoa(i)+"/32", "ids", "scan")
	}
	b := e.login(auth.RoleReadOnly)
	p := b.get("/bhr/query?query=198.51.100.0/24")
	p.has(t, "198.51.100.59/32", `rel="next"`)
	p.lacks(t, "198.51.100.9/32<")
	p = b.get(nextLink(t, p))
	p.has(t, "198.51.100.9/32", "198.51.100.0/32")
	p.lacks(t, "198.51.100.59/32", `rel="next"`)
	// Text search pages the same way.
	p = b.get("/bhr/query?query=scan")
	p.has(t, "198.51.100.59/32", `rel="next"`)
}

// nextLink is the page's rel="next" link.
func nextLink(t testing.TB, p page) string {
	t.Helper()
	i := strings.Index(p.body, `" rel="next"`)
	if i < 0 {
		t.Fatalf("no next link in\n%s", p.body)
	}
	j := strings.LastIndex(p.body[:i], `href="`)
	return html.UnescapeString(p.body[j+len(`href="`) : i])
}
