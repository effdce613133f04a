package api_test

import (
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"

	"github.com/bhrd/bhrd/pkg/auth"
)

func testPanic(t *testing.T, f storeFactory) {
	e := newEnv(t, f, envOpts{faulty: true})
	e.faulty.panicStats.Store(true)
	r := e.get("/bhr/api/stats").expect(http.StatusInternalServerError)
	if fmt.Sprint(r.obj()) != "map[detail:Internal server error.]" {
		t.Errorf("panic body = %s", r.body)
	}
	logs := e.logs.FilterMessage("panic in handler").All()
	if len(logs) != 1 {
		t.Fatalf("%d panic log lines", len(logs))
	}
	m := logs[0].ContextMap()
	if !strings.Contains(fmt.Sprint(m["panic"]), "injected panic in Stats") || !strings.Contains(fmt.Sprint(m["stack"]), "faultyStore") ||
		m["request_id"] != r.header.Get("X-Request-Id") {
		t.Errorf("panic log = %v", m)
	}
	// The daemon is still up.
	e.faulty.panicStats.Store(false)
	e.get("/bhr/api/stats").expect(http.StatusOK)
	e.block("192.0.2.1", "60")
}

func testStoreFailure(t *testing.T, f storeFactory) {
	e := newEnv(t, f, envOpts{faulty: true})
	e.faulty.failStats.Store(true)
	r := e.get("/bhr/api/stats").expect(http.StatusInternalServerError)
	if strings.Contains(string(r.body), "injected") {
		t.Errorf("the Go error reached the client: %s", r.body)
	}
	logs := e.logs.FilterMessage("request failed").All()
	if len(logs) != 1 || logs[0].ContextMap()["request_id"] != r.header.Get("X-Request-Id") ||
		!strings.Contains(fmt.Sprint(logs[0].ContextMap()["error"]), "injected") {
		t.Errorf("failure log = %v", logs)
	}
}

func testRouting(t *testing.T, f storeFactory) {
	e := newEnv(t, f, envOpts{})
	user := as(e, auth.RoleUser)
	// Never a redirect: a 301 on a POST breaks clients.
	client := *e.srv.Client()
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return errors.New("redirected") }
	for _, c := range []struct{ method, path string }{
		{"POST", "/bhr/api/block"}, {"POST", "/bhr/api/block/"},
		{"GET", "/bhr/api/stats"}, {"GET", "/bhr/api/stats/"},
		{"GET", "/bhr/api/blocks"}, {"GET", "/bhr/api/blocks/"},
		{"GET", "/bhr/list.csv"}, {"GET", "/bhr/list.csv/"},
		{"GET", "/bhr/api/queue/r1"}, {"GET", "/bhr/api/queue/r1/"},
		{"POST", "/bhr/api/set_unblocked_multi"}, {"POST", "/bhr/api/set_unblocked_multi/"},
	} {
		var b *strings.Reader
		ct := ""
		switch c.path {
		case "/bhr/api/block", "/bhr/api/block/":
			b = strings.NewReader(url.Values{"cidr": {"192.0.2.1"}, "source": {"s"}, "why": {"w"}, "duration": {"60"}}.Encode())
			ct = "application/x-www-form-urlencoded"
		case "/bhr/api/set_unblocked_multi", "/bhr/api/set_unblocked_multi/":
			b = strings.NewReader(`{"ids": []}`)
			ct = "application/json"
		default:
			b = strings.NewReader("")
		}
		req, _ := http.NewRequest(c.method, e.srv.URL+c.path, b)
		if ct != "" {
			req.Header.Set("Content-Type", ct)
		}
		req.Header.Set("Authorization", "Token "+e.tokens[auth.RoleUser])
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", c.method, c.path, err)
		}
		resp.Body.Close()
		if resp.StatusCode >= 300 {
			t.Errorf("%s %s: %d", c.method, c.path, resp.StatusCode)
		}
	}
	// Idents ending in a slash mean the same ident.
	e.get("/bhr/api/queue/r2/", as(e, auth.RoleBlockManager)).expect(http.StatusOK)

	nf := e.get("/bhr/api/no_such_thing", user).expect(http.StatusNotFound).obj()
	if nf["detail"] != "Not found." {
		t.Errorf("404 body = %v", nf)
	}
	e.get("/elsewhere").expect(http.StatusNotFound).obj()
	r := e.do("DELETE", "/bhr/api/block", nil, user).expect(http.StatusMethodNotAllowed)
	if r.obj()["detail"] != `Method "DELETE" not allowed.` || r.header.Get("Allow") != "POST" {
		t.Errorf("405: %s, Allow %q", r.body, r.header.Get("Allow"))
	}
	if h := e.get("/healthz").expect(http.StatusOK).obj(); h["status"] != "ok" {
		t.Errorf("healthz = %v", h)
	}
}

func testRequestID(t *testing.T, f storeFactory) {
	e := newEnv(t, f, envOpts{})
	r := e.get("/bhr/api/stats")
	gen := r.header.Get("X-Request-Id")
	if !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(gen) {
		t.Errorf("generated request id %q", gen)
	}
	if r2 := e.get("/bhr/api/stats"); r2.header.Get("X-Request-Id") == gen {
		t.Error("two requests share an id")
	}
	if got := e.get("/bhr/api/stats", header("X-Request-Id", "zeek-1234.abc")).header.Get("X-Request-Id"); got != "zeek-1234.abc" {
		t.Errorf("a sane incoming id was replaced by %q", got)
	}
	for _, bad := range []string{"has space", strings.Repeat("x", 129), `quote"d`} {
		if got := e.get("/bhr/api/stats", header("X-Request-Id", bad)).header.Get("X-Request-Id"); got == bad || len(got) != 32 {
			t.Errorf("incoming id %q: echoed %q", bad, got)
		}
	}
	// The access log line.
	e.get("/bhr/api/blocks/?limit=1", as(e, auth.RoleReadOnly), header("X-Request-Id", "trace-me"))
	var line map[string]any
	for _, l := range e.logs.FilterMessage("http request").All() {
		if m := l.ContextMap(); m["request_id"] == "trace-me" {
			line = m
		}
	}
	if line == nil {
		t.Fatal("no access log line for request trace-me")
	}
	for k, want := range map[string]any{
		"method": "GET", "route": "/bhr/api/blocks/", "path": "/bhr/api/blocks/", "status": int64(200),
		"user": "u-read-only", "query": "limit=1",
	} {
		if line[k] != want {
			t.Errorf("access log %s = %v (%T), want %v", k, line[k], line[k], want)
		}
	}
	for _, k := range []string{"duration_ms", "remote", "token_id", "bytes"} {
		if line[k] == nil {
			t.Errorf("access log has no %s: %v", k, line)
		}
	}
}
