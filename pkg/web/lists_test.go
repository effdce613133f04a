package web_test

import (
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/bhrd/bhrd/pkg/auth"
)

func TestStatsAndLists(t *testing.T) {
	forStores(t, func(t *testing.T, f storeFactory) {
		res := &fakeResolver{names: map[string]string{"10.1.2.3": "printer.example.org"}}
		e := newEnv(t, f, envOpts{local: []string{"10.0.0.0/8"}, resolver: res})
		e.block("192.0.2.1/32", "web", "by hand")
		e.block("192.0.2.2/32", "cli", "from the cli")
		e.block("192.0.2.3/32", "ids", "ssh scan")
		e.block("10.1.2.3/32", "ids", "infected printer")
		b := e.login(auth.RoleUser)

		p := b.get("/bhr/stats")
		p.has(t, "<tr><th>Current</th><td>0</td></tr>", "<tr><th>Expected</th><td>4</td></tr>", "<tr><th>Block pending</th><td>4</td></tr>",
			`<a href="/bhr/list/source/ids">ids</a></th><td>2</td>`, "<svg", "Blocks added per day", "ids (2)")
		// The lag chart draws an ident once it exists.
		if _, err := e.svc.BlockQueue(e.ctx, "r1", time.Time{}, 0); err != nil {
			t.Fatal(err)
		}
		e.clock.Advance(90 * time.Second)
		b.get("/bhr/stats").has(t, `aria-label="Queue lag per ident"`, "1m30s, 4 queued")

		p = b.get("/bhr/list")
		manual := between(p.body, "<h2>Manual blocks</h2>", "<h2>")
		local := between(p.body, "<h2>Blocks inside the local networks</h2>", "<h2>")
		auto := between(p.body, "<h2>Most recent automated blocks</h2>", "</form>")
		for _, c := range []struct {
			name, part string
			has, lacks []string
		}{
			{"manual", manual, []string{"192.0.2.1/32", "192.0.2.2/32"}, []string{"192.0.2.3/32", "10.1.2.3/32"}},
			// BHR's filter caught CLI blocks as automated; this one does not.
			{"automated", auto, []string{"192.0.2.3/32", "10.1.2.3/32"}, []string{"192.0.2.1/32", "192.0.2.2/32"}},
			{"local", local, []string{"10.1.2.3/32"}, []string{"192.0.2."}},
		} {
			for _, s := range c.has {
				if !strings.Contains(c.part, s) {
					t.Errorf("%s list lacks %s:\n%s", c.name, s, c.part)
				}
			}
			for _, s := range c.lacks {
				if strings.Contains(c.part, s) {
					t.Errorf("%s list has %s:\n%s", c.name, s, c.part)
				}
			}
		}
		p.has(t, `href="/bhr/list.csv"`, `href="/bhr/publist.csv"`)
		// The page did not wait for the name; a later one shows it.
		deadline := time.Now().Add(5 * time.Second)
		for !strings.Contains(b.get("/bhr/list").body, "printer.example.org") {
			if time.Now().After(deadline) {
				t.Fatal("the reverse name never showed")
			}
			time.Sleep(10 * time.Millisecond)
		}
		res.mu.Lock()
		asked := res.asked["10.1.2.3"]
		res.mu.Unlock()
		if asked != 1 {
			t.Errorf("10.1.2.3 looked up %d times, want 1 (cached)", asked)
		}

		// The bulk unblock goes through the confirm page.
		p = b.post("/bhr/list", url.Values{"cidr": {"192.0.2.3/32", "10.1.2.3/32"}})
		if p.status != http.StatusSeeOther || p.header.Get("Location") != "/bhr/unblock?cidr=192.0.2.3%2F32&cidr=10.1.2.3%2F32" {
			t.Fatalf("bulk unblock: %d %s", p.status, p.header.Get("Location"))
		}
		p = b.post("/bhr/unblock", url.Values{"cidr": {"192.0.2.3/32", "10.1.2.3/32"}, "why": {"cleaned"}})
		p.has(t, "192.0.2.3/32", "10.1.2.3/32", "Unblocked;")
		if n := strings.Count(strings.Join(auditEvents(e), " "), "unblock_now"); n != 2 {
			t.Errorf("%d unblock_now lines, want 2", n)
		}

		// A source's list, paged.
		for i := 0; i < 55; i++ {
			e.block("203.0.113."+strconvItoa(i)+"/32", "honeypot", "probe")
		}
		p = b.get("/bhr/list/source/honeypot")
		p.has(t, "203.0.113.54/32", `rel="next"`)
		p.lacks(t, "203.0.113.4/32<")
		p = b.get(nextLink(t, p))
		p.has(t, "203.0.113.4/32", "203.0.113.0/32")
		p.lacks(t, `rel="next"`, "203.0.113.54/32")
	})
}

func TestLimitedPages(t *testing.T) {
	forStores(t, func(t *testing.T, f storeFactory) {
		off := newEnv(t, f, envOpts{})
		if p := off.browser().get("/bhr/limited/query?query=192.0.2.1"); p.status != http.StatusNotFound {
			t.Fatalf("limited query while off: %d", p.status)
		}
		if p := off.browser().get("/bhr/"); p.status != http.StatusSeeOther {
			t.Fatalf("home, anonymous, limited off: %d", p.status)
		}

		e := newEnv(t, f, envOpts{limited: true})
		e.block("192.0.2.7/32", "ids", "SECRET-REASON")
		e.block("192.0.2.8/32", "web", "ANOTHER-SECRET")
		anon := e.browser()
		p := anon.get("/bhr/")
		p.has(t, `href="/bhr/limited/query"`, `href="/bhr/limited/list"`)
		p.lacks(t, `href="/bhr/add"`)
		p = anon.get("/bhr/limited/query?query=192.0.2.0/24")
		p.has(t, "192.0.2.7/32", "192.0.2.8/32", "ids")
		p.lacks(t, "SECRET", "tool", "checkbox")
		p = anon.get("/bhr/limited/list")
		p.has(t, "192.0.2.7/32", "192.0.2.8/32")
		p.lacks(t, "SECRET", "tool", "checkbox")
		// A text query is no lookup of why on the limited page.
		if p := anon.get("/bhr/limited/query?query=SECRET"); p.status != http.StatusBadRequest {
			t.Fatalf("limited text query: %d", p.status)
		}
		// The full pages still need a login.
		if p := anon.get("/bhr/list"); p.status != http.StatusSeeOther {
			t.Fatalf("list, anonymous: %d", p.status)
		}
	})
}

func TestPermissions(t *testing.T) {
	forStores(t, func(t *testing.T, f storeFactory) {
		e := newEnv(t, f, envOpts{})
		e.block("192.0.2.5/32", "ids", "scan")
		ro := e.login(auth.RoleReadOnly)
		for _, path := range []string{"/bhr/", "/bhr/query?query=192.0.2.5", "/bhr/list", "/bhr/list/source/ids", "/bhr/admin/whitelist"} {
			p := ro.get(path)
			if p.status != http.StatusOK {
				t.Fatalf("%s as read-only: %d", path, p.status)
			}
			p.lacks(t, `href="/bhr/add"`, `type="checkbox"`, "Unblock the checked", `value="delete"`, `value="add"`)
		}
		// Crafted posts are refused, and change nothing.
		for _, c := range []struct {
			path string
			form url.Values
		}{
			{"/bhr/add", url.Values{"cidr": {"192.0.2.66"}, "why": {"x"}, "duration": {"1h"}}},
			{"/bhr/unblock", url.Values{"cidr": {"192.0.2.5/32"}, "why": {"x"}}},
			{"/bhr/admin/whitelist", url.Values{"action": {"add"}, "value": {"192.0.2.0/24"}, "why": {"x"}}},
			{"/bhr/admin/blacklist", url.Values{"action": {"add"}, "value": {"ids"}, "why": {"x"}}},
		} {
			if p := ro.post(c.path, c.form); p.status != http.StatusForbidden {
				t.Errorf("POST %s as read-only: %d", c.path, p.status)
			}
		}
		if ro.get("/bhr/add").status != http.StatusForbidden {
			t.Error("the add form for read-only")
		}
		st, err := e.svc.Stats(e.ctx)
		if err != nil || st.Expected != 1 {
			t.Fatalf("after refused posts: %+v %v", st, err)
		}
		// A blocker may add but not unblock.
		bl := e.login(auth.RoleBlocker)
		p := bl.get("/bhr/query?query=192.0.2.5")
		p.lacks(t, `type="checkbox"`)
		if p := bl.post("/bhr/unblock", url.Values{"cidr": {"192.0.2.5/32"}, "why": {"x"}}); p.status != http.StatusForbidden {
			t.Errorf("unblock as blocker: %d", p.status)
		}
		// Anonymous posts: 401, never a change.
		if p := e.browser().post("/bhr/add", url.Values{"cidr": {"192.0.2.67"}, "why": {"x"}, "duration": {"1h"}}); p.status != http.StatusUnauthorized {
			t.Errorf("anonymous add: %d", p.status)
		}
	})
}

func TestCrossOriginRefused(t *testing.T) {
	e := newEnv(t, sqliteStore, envOpts{})
	b := e.login(auth.RoleUser)
	for _, h := range []map[string]string{
		{"Sec-Fetch-Site": "cross-site"},
		{"Origin": "http://evil.example"},
	} {
		b.header = http.Header{}
		for k, v := range h {
			b.header.Set(k, v)
		}
		p := b.post("/bhr/add", url.Values{"cidr": {"192.0.2.77"}, "why": {"csrf"}, "duration": {"1h"}})
		if p.status != http.StatusForbidden {
			t.Fatalf("add with %v: %d", h, p.status)
		}
		p.has(t, "sent from another site")
	}
	// The same site is fine.
	b.header = http.Header{"Sec-Fetch-Site": {"same-origin"}}
	if p := b.post("/bhr/add", url.Values{"cidr": {"192.0.2.77"}, "why": {"ok"}, "duration": {"1h"}}); p.status != http.StatusSeeOther {
		t.Fatalf("same-origin add: %d", p.status)
	}
	st, _ := e.svc.Stats(e.ctx)
	if st.Expected != 1 {
		t.Fatalf("%d blocks, want the same-origin one only", st.Expected)
	}
}

func TestAdminLists(t *testing.T) {
	forStores(t, func(t *testing.T, f storeFactory) {
		e := newEnv(t, f, envOpts{})
		b := e.login(auth.RoleAdmin)
		p := b.post("/bhr/admin/whitelist", url.Values{"action": {"add"}, "value": {"192.0.2.0/24"}, "why": {"our servers"}})
		if p.status != http.StatusOK {
			t.Fatalf("whitelist add: %d\n%s", p.status, p.body)
		}
		p.has(t, "Added.", "192.0.2.0/24", "our servers", "u-admin")
		if l := e.lastAudit("whitelist_added"); l["actor"] != "u-admin" {
			t.Errorf("whitelist_added: %v", l)
		}
		// The rule applies at once to the add page.
		p = b.post("/bhr/add", url.Values{"cidr": {"192.0.2.10"}, "why": {"x"}, "duration": {"1h"}})
		if p.status != http.StatusBadRequest {
			t.Fatalf("add inside the whitelist: %d", p.status)
		}
		p = b.post("/bhr/admin/whitelist", url.Values{"action": {"add"}, "value": {"not a cidr"}, "why": {"x"}})
		if p.status != http.StatusBadRequest {
			t.Fatalf("whitelist add of a bad cidr: %d", p.status)
		}
		wl, _ := e.svc.ListWhitelist(e.ctx)
		p = b.post("/bhr/admin/whitelist", url.Values{"action": {"delete"}, "id": {strconvItoa(int(wl[0].ID))}})
		p.has(t, "Deleted.")
		p.lacks(t, "our servers")
		e.lastAudit("whitelist_deleted")
		if p := b.post("/bhr/admin/whitelist", url.Values{"action": {"delete"}, "id": {"999"}}); p.status != http.StatusNotFound {
			t.Errorf("delete of an unknown id: %d", p.status)
		}

		p = b.post("/bhr/admin/blacklist", url.Values{"action": {"add"}, "value": {"noisy-tool"}, "why": {"false positives"}})
		p.has(t, "Added.", "noisy-tool")
		e.lastAudit("source_blacklist_added")
		bl, _ := e.svc.ListSourceBlacklist(e.ctx)
		b.post("/bhr/admin/blacklist", url.Values{"action": {"delete"}, "id": {strconvItoa(int(bl[0].ID))}}).has(t, "Deleted.")
		e.lastAudit("source_blacklist_deleted")
	})
}

func TestEnforcersPage(t *testing.T) {
	e := newEnv(t, sqliteStore, envOpts{})
	e.block("192.0.2.1/32", "ids", "x")
	if _, err := e.svc.BlockQueue(e.ctx, "edge-1", time.Time{}, 0); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(time.Minute)
	b := e.login(auth.RoleReadOnly)
	p := b.get("/bhr/enforcers")
	p.has(t, "<td>edge-1</td>", "<td>1</td>", "<td>1m0s</td>", "1m0s ago", "<svg")
}

func auditEvents(e *env) []string {
	var out []string
	for _, l := range e.auditLines() {
		out = append(out, l["msg"].(string))
	}
	return out
}

func strconvItoa(i int) string { return strconv.Itoa(i) }

func between(s, a, b string) string {
	i := strings.Index(s, a)
	if i < 0 {
		return ""
	}
	s = s[i+len(a):]
	if j := strings.Index(s, b); j >= 0 {
		return s[:j]
	}
	return s
}
