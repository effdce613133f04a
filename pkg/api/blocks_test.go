package api_test

import (
	"bytes"
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
	"github.com/bhrd/bhrd/pkg/config"
	"github.com/bhrd/bhrd/pkg/queue/queuetest"
)

// jsonKeyOrder returns the keys of a JSON object in the order sent.
func jsonKeyOrder(t *testing.T, b []byte) []string {
	t.Helper()
	dec := json.NewDecoder(bytes.NewReader(b))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		t.Fatalf("not an object: %s", b)
	}
	var out []string
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, tok.(string))
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

func testBlockObject(t *testing.T, f storeFactory) {
	e := newEnv(t, f, envOpts{})
	r := e.post("/bhr/api/block", jsonBody(t, map[string]any{"cidr": "192.0.2.0/24", "source": "zeek", "why": "<b>scan</b> & probe", "duration": "5m"}),
		as(e, auth.RoleUser)).expect(http.StatusCreated)
	if got := jsonKeyOrder(t, r.body); !slices.Equal(got, []string{"id", "url", "who", "cidr", "source", "why", "added", "unblock_at", "skip_whitelist", "set_blocked"}) {
		t.Errorf("block object keys = %v", got)
	}
	b := r.obj()
	bid := id(t, b)
	wantURL := fmt.Sprintf("%s/bhr/api/blocks/%d/", e.srv.URL, bid)
	want := map[string]any{
		"id": float64(bid), "url": wantURL, "who": "u-user", "cidr": "192.0.2.0/24", "source": "zeek",
		"why": "<b>scan</b> & probe", "added": "2026-11-21T12:00:00Z", "unblock_at": "2026-11-21T12:05:00Z",
		"skip_whitelist": false, "set_blocked": wantURL + "set_blocked/",
	}
	if fmt.Sprint(b) != fmt.Sprint(want) {
		t.Errorf("block = %v\nwant    %v", b, want)
	}
	if bytes.Contains(r.body, []byte(`\u003c`)) {
		t.Errorf("HTML escaped in %s", r.body)
	}
	// The detail view is the same object.
	d := e.get(fmt.Sprintf("/bhr/api/blocks/%d/", bid), as(e, auth.RoleReadOnly)).expect(http.StatusOK).obj()
	if fmt.Sprint(d) != fmt.Sprint(want) {
		t.Errorf("detail = %v", d)
	}
	e.get("/bhr/api/blocks/999999/", as(e, auth.RoleReadOnly)).expect(http.StatusNotFound)
	e.get("/bhr/api/blocks/abc/", as(e, auth.RoleReadOnly)).expect(http.StatusNotFound)

	// Indefinite: unblock_at null. Microseconds appear only when non-zero.
	e.clock.Set(queuetest.Start.Add(123456 * time.Microsecond))
	ind := e.block("192.0.2.200", "0")
	if v, ok := ind["unblock_at"]; !ok || v != nil {
		t.Errorf("indefinite unblock_at = %v (present %v)", v, ok)
	}
	if ind["added"] != "2026-11-21T12:00:00.123456Z" {
		t.Errorf("added = %v", ind["added"])
	}

	// base_url replaces the request's host.
	e2 := newEnv(t, f, envOpts{cfg: func(c *config.API) { c.BaseURL = "https://bhr.example.org/" }})
	b2 := e2.block("192.0.2.1", "60")
	if b2["url"] != fmt.Sprintf("https://bhr.example.org/bhr/api/blocks/%d/", id(t, b2)) {
		t.Errorf("url with base_url = %v", b2["url"])
	}
}

func testBlockRules(t *testing.T, f storeFactory) {
	e := newEnv(t, f, envOpts{})
	user, admin := as(e, auth.RoleUser), as(e, auth.RoleAdmin)
	nonField := func(r *response) string {
		t.Helper()
		var m map[string][]string
		r.expect(http.StatusBadRequest).decode(&m)
		if len(m["non_field_errors"]) != 1 {
			t.Fatalf("%s: want one non_field_errors message", r)
		}
		return m["non_field_errors"][0]
	}
	req := func(cidr string, extra ...string) body {
		v := url.Values{"cidr": {cidr}, "source": {"test"}, "why": {"rules"}, "duration": {"300"}}
		for i := 0; i+1 < len(extra); i += 2 {
			v.Set(extra[i], extra[i+1])
		}
		return formBody(v)
	}

	// Duplicate: extend (the API default) moves the end; the id stays.
	b := e.post("/bhr/api/block", req("203.0.113.1"), user).expect(http.StatusCreated).obj()
	ext := e.post("/bhr/api/block", req("203.0.113.1", "duration", "1h"), user).expect(http.StatusCreated).obj()
	if id(t, ext) != id(t, b) || ext["unblock_at"] != "2026-11-21T13:00:00Z" {
		t.Errorf("extend = %v", ext)
	}
	short := e.post("/bhr/api/block", req("203.0.113.1", "duration", "10"), user).expect(http.StatusCreated).obj()
	if short["unblock_at"] != "2026-11-21T13:00:00Z" {
		t.Errorf("a shorter duplicate changed the end: %v", short)
	}

	// Whitelist, both directions.
	e.post("/bhr/api/whitelist/", formBody(url.Values{"cidr": {"10.0.0.0/8"}, "why": {"campus"}}), admin).expect(http.StatusCreated)
	e.post("/bhr/api/whitelist/", formBody(url.Values{"cidr": {"198.18.0.128/25"}, "why": {"lab"}}), admin).expect(http.StatusCreated)
	if msg := nonField(e.post("/bhr/api/block", req("10.1.2.3"), user)); !strings.HasPrefix(msg, "whitelisted: ") {
		t.Errorf("inside a whitelist entry: %q", msg)
	}
	if msg := nonField(e.post("/bhr/api/block", req("198.18.0.0/24"), user)); !strings.HasPrefix(msg, "whitelisted: ") {
		t.Errorf("containing a whitelist entry: %q", msg)
	}
	// Prefix too short.
	if msg := nonField(e.post("/bhr/api/block", req("203.0.112.0/23"), user)); msg != "Prefix length in 203.0.112.0/23 is too small" {
		t.Errorf("short prefix: %q", msg)
	}
	if msg := nonField(e.post("/bhr/api/block", req("2001:db8::/48"), user)); msg != "Prefix length in 2001:db8::/48 is too small" {
		t.Errorf("short v6 prefix: %q", msg)
	}
	// Source blacklist.
	e.post("/bhr/api/source_blacklist/", jsonBody(t, map[string]string{"source": "noisy", "why": "too many false positives"}), admin).
		expect(http.StatusCreated)
	if msg := nonField(e.post("/bhr/api/block", req("203.0.113.9", "source", "noisy"), user)); !strings.Contains(msg, "noisy") {
		t.Errorf("blacklisted source: %q", msg)
	}
	// skip_whitelist: 403 without the permission, allowed for admin, and
	// it bypasses all three rules.
	r := e.post("/bhr/api/block", req("10.1.2.3", "skip_whitelist", "True"), user).expect(http.StatusForbidden).obj()
	if r["detail"] == nil {
		t.Errorf("403 body = %v", r)
	}
	for _, c := range []string{"10.1.2.3", "203.0.112.0/23"} {
		s := e.post("/bhr/api/block", req(c, "skip_whitelist", "1", "source", "noisy"), admin).expect(http.StatusCreated).obj()
		if s["skip_whitelist"] != true {
			t.Errorf("skip_whitelist block = %v", s)
		}
	}

	// Autoscale (BHR-COMPAT's first worked example): last 300 s, ended
	// 3300 s ago, request 300 -> 600.
	a1 := e.post("/bhr/api/block", req("203.0.113.50"), user).expect(http.StatusCreated).obj()
	e.clock.Advance(300*time.Second + 3300*time.Second)
	a2 := e.post("/bhr/api/block", req("203.0.113.50", "autoscale", "True"), user).expect(http.StatusCreated).obj()
	if id(t, a2) == id(t, a1) {
		t.Fatal("autoscale did not create a new block")
	}
	added, _ := time.Parse(time.RFC3339, a2["added"].(string))
	end, _ := time.Parse(time.RFC3339, a2["unblock_at"].(string))
	if d := end.Sub(added); d != 600*time.Second {
		t.Errorf("autoscaled duration = %v, want 10m", d)
	}

	// unblock_at instead of a duration.
	at := e.clock.Now().Add(2 * time.Hour).Format(time.RFC3339)
	u := e.post("/bhr/api/block", jsonBody(t, map[string]any{"cidr": "203.0.113.60", "source": "t", "why": "w", "duration": 0, "unblock_at": at}), user).
		expect(http.StatusCreated).obj()
	if u["unblock_at"] != at {
		t.Errorf("unblock_at = %v, want %v", u["unblock_at"], at)
	}
}

func testMBlock(t *testing.T, f storeFactory) {
	e := newEnv(t, f, envOpts{cfg: func(c *config.API) { c.MaxMBlockItems = 3 }})
	user := as(e, auth.RoleUser)
	item := func(cidr string) map[string]any {
		return map[string]any{"cidr": cidr, "source": "m", "why": "batch", "duration": 300}
	}
	l := e.post("/bhr/api/mblock", jsonBody(t, []any{item("192.0.2.1"), item("192.0.2.2"), item("192.0.2.1")}), user).
		expect(http.StatusCreated).list()
	if !slices.Equal(cidrs(t, l), []string{"192.0.2.1/32", "192.0.2.2/32", "192.0.2.1/32"}) || id(t, l[0]) != id(t, l[2]) {
		t.Fatalf("mblock = %v", l)
	}
	for _, b := range l {
		if len(b) != 10 || b["url"] == nil {
			t.Errorf("mblock item is not a block object: %v", b)
		}
	}
	e.expectStats("after mblock", [4]int{2, 0, 0, 2})

	// Strings are decoded as JSON strings: escapes, non-ASCII text and
	// invalid UTF-8 (replaced, as encoding/json does) arrive as such.
	raw := `[{"cidr":"192.0.2.4","source":"caf\u00e9 \"ids\"","why":"tab\there, \u2603 snow` + "\xff" + `","duration":"5m"},` +
		`{"cidr":"192.0.2.5","source":"plain","why":"naïve ☃` + "\xff" + `","duration":"5m"}]`
	l = e.post("/bhr/api/mblock", rawBody("application/json", raw), user).expect(http.StatusCreated).list()
	if len(l) != 2 || l[0]["source"] != `café "ids"` || l[0]["why"] != "tab\there, ☃ snow\ufffd" ||
		l[1]["source"] != "plain" || l[1]["why"] != "naïve ☃\ufffd" {
		t.Errorf("escaped strings: %q", l)
	}
	e.expectStats("after the escapes mblock", [4]int{4, 0, 0, 4})

	// All or nothing, with one error object per item ({} when valid).
	e.post("/bhr/api/whitelist/", jsonBody(t, map[string]string{"cidr": "198.18.0.0/15", "why": "bench"}), as(e, auth.RoleAdmin)).
		expect(http.StatusCreated)
	r := e.post("/bhr/api/mblock", jsonBody(t, []any{item("192.0.2.3"), item("banana"), item("198.18.1.1")}), user).expect(http.StatusBadRequest)
	var errs []map[string][]string
	r.decode(&errs)
	if len(errs) != 3 || len(errs[0]) != 0 || len(errs[1]["cidr"]) != 1 || len(errs[2]["non_field_errors"]) != 1 ||
		!strings.HasPrefix(errs[2]["non_field_errors"][0], "whitelisted: ") {
		t.Errorf("per-item errors = %s", r.body)
	}
	e.expectStats("after a rejected mblock", [4]int{4, 0, 0, 4})

	// Items that are not objects, and type errors.
	r = e.post("/bhr/api/mblock", jsonBody(t, []any{"192.0.2.9", map[string]any{"cidr": true, "source": "m", "why": "w", "duration": 1}}), user).
		expect(http.StatusBadRequest)
	errs = nil
	r.decode(&errs)
	if len(errs) != 2 || !slices.Equal(errs[0]["non_field_errors"], []string{"Invalid data. Expected a dictionary, but got str."}) ||
		!slices.Equal(errs[1]["cidr"], []string{"Not a valid string."}) {
		t.Errorf("per-item type errors = %s", r.body)
	}
	r = e.post("/bhr/api/mblock", jsonBody(t, []any{item("192.0.2.9"), nil}), user).expect(http.StatusBadRequest)
	errs = nil
	r.decode(&errs)
	if len(errs) != 2 || len(errs[0]) != 0 || !slices.Equal(errs[1]["non_field_errors"], []string{"Invalid data. Expected a dictionary, but got NoneType."}) {
		t.Errorf("null item = %s", r.body)
	}
	// Over the limit and malformed: the syntax error.
	e.post("/bhr/api/mblock", body{"application/json", `[{"cidr": "192.0.2.4"}, {}, {}, {}, {]`}, user).expect(http.StatusBadRequest)

	// The item limit.
	m := e.post("/bhr/api/mblock", jsonBody(t, []any{item("192.0.2.4"), item("192.0.2.5"), item("192.0.2.6"), item("192.0.2.7")}), user).
		expect(http.StatusBadRequest).obj()
	if msg := fmt.Sprint(m["non_field_errors"]); !strings.Contains(msg, "the limit is 3") {
		t.Errorf("over the limit: %v", m)
	}
	// Not a list.
	m = e.post("/bhr/api/mblock", jsonBody(t, item("192.0.2.4")), user).expect(http.StatusBadRequest).obj()
	if fmt.Sprint(m["non_field_errors"]) != `[Expected a list of items but got type "dict".]` {
		t.Errorf("object body: %v", m)
	}
	e.post("/bhr/api/mblock", formBody(url.Values{"cidr": {"192.0.2.4"}}), user).expect(http.StatusBadRequest)
	// skip_whitelist in any item needs the permission.
	sk := item("198.18.1.1")
	sk["skip_whitelist"] = true
	e.post("/bhr/api/mblock", jsonBody(t, []any{item("192.0.2.4"), sk}), user).expect(http.StatusForbidden)
	e.post("/bhr/api/mblock", jsonBody(t, []any{item("192.0.2.4"), sk}), as(e, auth.RoleAdmin)).expect(http.StatusCreated)
	// An empty list is fine.
	if l := e.post("/bhr/api/mblock", rawBody("application/json", "[]"), user).expect(http.StatusCreated).list(); len(l) != 0 {
		t.Errorf("empty mblock = %v", l)
	}
}

func testBadInput(t *testing.T, f storeFactory) {
	e := newEnv(t, f, envOpts{})
	user, admin, mgr := as(e, auth.RoleUser), as(e, auth.RoleAdmin), as(e, auth.RoleBlockManager)
	good := map[string]any{"cidr": "192.0.2.1", "source": "s", "why": "w", "duration": "300"}
	with := func(k string, v any) body {
		m := map[string]any{}
		for k2, v2 := range good {
			m[k2] = v2
		}
		if v == nil {
			delete(m, k)
		} else {
			m[k] = v
		}
		return jsonBody(t, m)
	}
	past := e.clock.Now().Add(-time.Hour).Format(time.RFC3339)
	cases := []struct {
		name, method, path string
		body               *body
		opt                reqOpt
		status             int
		key                string // the key the error body must have
		contains           string // in the message, when set
	}{
		{"malformed JSON", "POST", "/bhr/api/block", &body{"application/json", `{"cidr": `}, user, 400, "detail", "JSON parse error"},
		{"JSON list for block", "POST", "/bhr/api/block", &body{"application/json", `[1,2]`}, user, 400, "non_field_errors", "Expected a dictionary"},
		{"cidr is a bool", "POST", "/bhr/api/block", ptr(with("cidr", true)), user, 400, "cidr", "Not a valid string."},
		{"cidr is an object", "POST", "/bhr/api/block", ptr(with("cidr", map[string]int{"a": 1})), user, 400, "cidr", "Not a valid string."},
		{"banana", "POST", "/bhr/api/block", ptr(with("cidr", "banana")), user, 400, "cidr", "banana"},
		{"/33", "POST", "/bhr/api/block", ptr(with("cidr", "1.2.3.4/33")), user, 400, "cidr", "not a valid CIDR"},
		{"/129", "POST", "/bhr/api/block", ptr(with("cidr", "2001:db8::/129")), user, 400, "cidr", ""},
		{"host bits", "POST", "/bhr/api/block", ptr(with("cidr", "1.2.3.4/24")), user, 400, "cidr", "did you mean 1.2.3.0/24?"},
		{"51-char cidr", "POST", "/bhr/api/block", ptr(with("cidr", strings.Repeat("1", 51))), user, 400, "cidr", "no more than 50"},
		{"missing cidr", "POST", "/bhr/api/block", ptr(with("cidr", nil)), user, 400, "cidr", "required"},
		{"missing source", "POST", "/bhr/api/block", ptr(with("source", nil)), user, 400, "source", "required"},
		{"long source", "POST", "/bhr/api/block", ptr(with("source", strings.Repeat("s", 31))), user, 400, "source", "30"},
		{"missing why", "POST", "/bhr/api/block", ptr(with("why", nil)), user, 400, "why", "required"},
		{"missing duration", "POST", "/bhr/api/block", ptr(with("duration", nil)), user, 400, "duration", "required"},
		{"negative duration", "POST", "/bhr/api/block", ptr(with("duration", "-5")), user, 400, "duration", "Invalid duration"},
		{"negative number duration", "POST", "/bhr/api/block", ptr(with("duration", -5)), user, 400, "duration", "Invalid duration"},
		{"unknown suffix", "POST", "/bhr/api/block", ptr(with("duration", "5w")), user, 400, "duration", "Invalid duration"},
		{"float duration", "POST", "/bhr/api/block", ptr(with("duration", 1.5)), user, 400, "duration", "Invalid duration"},
		{"bool duration", "POST", "/bhr/api/block", ptr(with("duration", true)), user, 400, "duration", "Invalid duration"},
		{"huge duration", "POST", "/bhr/api/block", ptr(with("duration", "99999999999999999999")), user, 400, "duration", ""},
		{"bad boolean", "POST", "/bhr/api/block", ptr(with("autoscale", "maybe")), user, 400, "autoscale", "valid boolean"},
		{"bad boolean form", "POST", "/bhr/api/block", ptr(formBody(url.Values{"cidr": {"192.0.2.1"}, "source": {"s"}, "why": {"w"}, "duration": {"1"}, "extend": {"Yes please"}})), user, 400, "extend", ""},
		{"bad unblock_at", "POST", "/bhr/api/block", ptr(jsonBody(t, map[string]any{"cidr": "192.0.2.1", "source": "s", "why": "w", "duration": "0", "unblock_at": "tomorrow"})), user, 400, "unblock_at", "ISO 8601"},
		{"past unblock_at", "POST", "/bhr/api/block", ptr(jsonBody(t, map[string]any{"cidr": "192.0.2.1", "source": "s", "why": "w", "duration": 0, "unblock_at": past})), user, 400, "unblock_at", ""},
		{"unblock_at with duration", "POST", "/bhr/api/block", ptr(with("unblock_at", e.clock.Now().Add(time.Hour).Format(time.RFC3339))), user, 400, "unblock_at", ""},
		{"text/plain", "POST", "/bhr/api/block", &body{"text/plain", "cidr=1.2.3.4"}, user, 415, "detail", "text/plain"},
		{"bad content type", "POST", "/bhr/api/block", &body{"not a media type;;;", "x"}, user, 415, "detail", ""},
		{"unblock_now banana", "POST", "/bhr/api/unblock_now", ptr(jsonBody(t, map[string]string{"cidr": "banana", "why": "x"})), user, 400, "cidr", ""},
		{"unblock_now no why", "POST", "/bhr/api/unblock_now", ptr(jsonBody(t, map[string]string{"cidr": "192.0.2.1"})), user, 400, "why", "required"},
		{"ids missing", "POST", "/bhr/api/set_blocked_multi/r1", ptr(jsonBody(t, map[string]any{})), mgr, 400, "ids", "required"},
		{"ids not a list", "POST", "/bhr/api/set_blocked_multi/r1", ptr(jsonBody(t, map[string]any{"ids": 5})), mgr, 400, "ids", ""},
		{"ids not numbers", "POST", "/bhr/api/set_blocked_multi/r1", ptr(jsonBody(t, map[string]any{"ids": []any{"x"}})), mgr, 400, "ids", ""},
		{"ids negative", "POST", "/bhr/api/set_blocked_multi/r1", ptr(jsonBody(t, map[string]any{"ids": []any{-1}})), mgr, 400, "ids", ""},
		{"ids unknown", "POST", "/bhr/api/set_blocked_multi/r1", ptr(jsonBody(t, map[string]any{"ids": []any{99999}})), mgr, 400, "ids", "Unknown"},
		{"entry ids unknown", "POST", "/bhr/api/set_unblocked_multi", ptr(jsonBody(t, map[string]any{"ids": []any{99999}})), mgr, 400, "ids", "Unknown"},
		{"empty ident", "POST", "/bhr/api/set_blocked_multi/", ptr(jsonBody(t, map[string]any{"ids": []any{}})), mgr, 400, "ident", ""},
		{"long ident", "GET", "/bhr/api/queue/" + strings.Repeat("i", 101), nil, mgr, 400, "ident", ""},
		{"timeout negative", "GET", "/bhr/api/queue/r1?timeout=-1", nil, mgr, 400, "timeout", ""},
		{"timeout text", "GET", "/bhr/api/queue/r1?timeout=soon", nil, mgr, 400, "timeout", ""},
		{"timeout NaN", "GET", "/bhr/api/queue/r1?timeout=NaN", nil, mgr, 400, "timeout", ""},
		{"added_since banana", "GET", "/bhr/api/queue/r1?added_since=banana", nil, mgr, 400, "added_since", ""},
		{"list.csv since banana", "GET", "/bhr/list.csv?since=banana", nil, user, 400, "since", ""},
		{"limit negative", "GET", "/bhr/api/blocks/?limit=-1", nil, user, 400, "limit", ""},
		{"offset text", "GET", "/bhr/api/blocks/?offset=x", nil, user, 400, "offset", ""},
		{"local maybe", "GET", "/bhr/api/blocks/?local=maybe", nil, user, 400, "local", ""},
		{"entries block text", "GET", "/bhr/api/blockentries/?block=x", nil, user, 400, "block", ""},
		{"query banana", "GET", "/bhr/api/query/banana", nil, user, 400, "cidr", ""},
		{"query /33", "GET", "/bhr/api/query/1.2.3.4/33", nil, user, 400, "cidr", ""},
		{"whitelist banana", "POST", "/bhr/api/whitelist/", ptr(jsonBody(t, map[string]string{"cidr": "banana", "why": "x"})), admin, 400, "cidr", ""},
		{"whitelist no why", "POST", "/bhr/api/whitelist/", ptr(jsonBody(t, map[string]string{"cidr": "192.0.2.0/24"})), admin, 400, "why", ""},
		{"whitelist host bits", "POST", "/bhr/api/whitelist/", ptr(jsonBody(t, map[string]string{"cidr": "192.0.2.1/24", "why": "x"})), admin, 400, "cidr", ""},
		{"blacklist no source", "POST", "/bhr/api/source_blacklist/", ptr(jsonBody(t, map[string]string{"why": "x"})), admin, 400, "source", ""},
		{"malformed form", "POST", "/bhr/api/block", &body{"application/x-www-form-urlencoded", "cidr=%zz"}, user, 400, "detail", ""},
		{"block id text", "GET", "/bhr/api/blocks/x/", nil, user, 404, "detail", "Not found."},
		{"whitelist id unknown", "GET", "/bhr/api/whitelist/12345/", nil, user, 404, "detail", ""},
		{"whitelist delete unknown", "DELETE", "/bhr/api/whitelist/12345/", nil, admin, 404, "detail", ""},
		{"blacklist delete unknown", "DELETE", "/bhr/api/source_blacklist/12345/", nil, admin, 404, "detail", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := e.do(c.method, c.path, c.body, c.opt)
			r.t = t
			r.expect(c.status)
			var m map[string]any
			r.decode(&m)
			v, ok := m[c.key]
			if !ok {
				t.Fatalf("%s: no %q key", r, c.key)
			}
			if c.contains != "" && !strings.Contains(fmt.Sprint(v), c.contains) {
				t.Errorf("%s: %q does not say %q", r, fmt.Sprint(v), c.contains)
			}
			if c.key != "detail" {
				if l, ok := v.([]any); !ok || len(l) == 0 {
					t.Errorf("%s: %q is not a list of messages", r, c.key)
				}
			}
		})
	}
	// Nothing above was stored.
	e.expectStats("after bad input", [4]int{0, 0, 0, 0})
	// No error was a server failure.
	if n := e.logs.FilterMessage("request failed").Len() + e.logs.FilterMessage("panic in handler").Len(); n != 0 {
		t.Errorf("%d server-side failures logged for bad input", n)
	}
}

func ptr(b body) *body { return &b }

func testBodyLimit(t *testing.T, f storeFactory) {
	e := newEnv(t, f, envOpts{cfg: func(c *config.API) { c.MaxBodyBytes = 1024 }})
	big := map[string]any{"cidr": "192.0.2.1", "source": "s", "why": strings.Repeat("w", 2000), "duration": "1"}
	r := e.post("/bhr/api/block", jsonBody(t, big), as(e, auth.RoleUser)).expect(http.StatusRequestEntityTooLarge).obj()
	if !strings.Contains(fmt.Sprint(r["detail"]), "1024") {
		t.Errorf("413 body = %v", r)
	}
	// A chunked body (no Content-Length) is cut off at the limit too.
	b, _ := json.Marshal(big)
	req, err := http.NewRequest("POST", e.srv.URL+"/bhr/api/block", io.MultiReader(bytes.NewReader(b)))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Token "+e.tokens[auth.RoleUser])
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	data, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge || !bytes.Contains(data, []byte(`"detail"`)) || req.ContentLength != 0 {
		t.Errorf("chunked over the limit: %d %s (ContentLength %d)", resp.StatusCode, data, req.ContentLength)
	}
	// Within the limit is fine.
	e.post("/bhr/api/block", jsonBody(t, map[string]any{"cidr": "192.0.2.1", "source": "s", "why": "w", "duration": "1"}), as(e, auth.RoleUser)).
		expect(http.StatusCreated)
	e.expectStats("one block", [4]int{1, 0, 0, 1})
}
