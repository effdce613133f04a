package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/bhrd/bhrd/internal/app"
	"github.com/bhrd/bhrd/internal/bgptest"
	"github.com/bhrd/bhrd/pkg/audit"
	"github.com/bhrd/bhrd/pkg/bgp"
	"github.com/bhrd/bhrd/pkg/config"
	"github.com/bhrd/bhrd/pkg/queue"
)

const (
	testSpeakerASN = 64512
	testRouterASN  = 64999
	testIdent      = "r1"
)

// documentedEvents reads the event table of docs/AUDIT.md.
func documentedEvents(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile("../../docs/AUDIT.md")
	if err != nil {
		t.Fatal(err)
	}
	_, table, ok := strings.Cut(string(b), "\n## Events\n")
	if !ok {
		t.Fatal("docs/AUDIT.md has no \"## Events\" section")
	}
	table, _, _ = strings.Cut(table, "\n## ")
	var out []string
	for _, m := range regexp.MustCompile("(?m)^\\| `([a-z_]+)` \\|").FindAllStringSubmatch(table, -1) {
		out = append(out, m[1])
	}
	if len(out) < 15 {
		t.Fatalf("docs/AUDIT.md: only %d events parsed: %v", len(out), out)
	}
	return out
}

// testConfig writes a config with an embedded store in dir, the API on a
// free port and one bgp enforcer peering with a router on routerPort.
func testConfig(t *testing.T, dir string, routerPort int) (string, config.Config) {
	t.Helper()
	y := fmt.Sprintf(`log:
  level: warn
store:
  driver: sqlite
  path: %s
api:
  listen: 127.0.0.1:0
  shutdown_timeout: 10s
bgp:
  asn: %d
  router_id: 192.0.2.254
  listen_port: -1
  peers:
    - name: router
      address: 127.0.0.1
      asn: %d
      port: %d
      hold_time: 9s
enforcers:
  - ident: %s
    type: bgp
  - ident: dnsbl1
    type: dnsbl
    dnsbl: {listen: ["127.0.0.1:0"], zones: [bl.test]}
`, filepath.Join(dir, "bhrd.db"), testSpeakerASN, testRouterASN, routerPort, testIdent)
	path := filepath.Join(dir, "bhrd.yaml")
	if err := os.WriteFile(path, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return path, cfg
}

type httpClient struct {
	t     *testing.T
	base  string
	token string
}

// do sends form values (as bhr-client does) or JSON, and decodes a JSON
// answer into out when given.
func (c httpClient) do(method, path string, body any, out any) int {
	c.t.Helper()
	var rd io.Reader
	ctype := ""
	switch b := body.(type) {
	case nil:
	case url.Values:
		rd, ctype = strings.NewReader(b.Encode()), "application/x-www-form-urlencoded"
	default:
		j, _ := json.Marshal(b)
		rd, ctype = bytes.NewReader(j), "application/json"
	}
	req, err := http.NewRequest(method, c.base+path, rd)
	if err != nil {
		c.t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Token "+c.token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if out != nil && len(b) > 0 {
		if err := json.Unmarshal(b, out); err != nil {
			c.t.Fatalf("%s %s: %d %s: %v", method, path, resp.StatusCode, b, err)
		}
	}
	return resp.StatusCode
}

func (c httpClient) must(want int, method, path string, body any, out any) {
	c.t.Helper()
	if got := c.do(method, path, body, out); got != want {
		c.t.Fatalf("%s %s: status %d, want %d", method, path, got, want)
	}
}

const alicePassword = "correct horse battery staple"

// webLogin logs in on the daemon's login page, hands fn a poster carrying
// the session cookie (redirects not followed), and logs out.
func webLogin(t *testing.T, base, user, password string, fn func(post func(path string, form url.Values) *http.Response)) {
	t.Helper()
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	var cookie *http.Cookie
	post := func(path string, form url.Values) *http.Response {
		t.Helper()
		req, _ := http.NewRequest("POST", base+path, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if cookie != nil {
			req.AddCookie(cookie)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("POST %s: %v", path, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	resp := post("/bhr/login", url.Values{"username": {user}, "password": {password}})
	for _, c := range resp.Cookies() {
		if c.Name == "bhrd_session" && c.Value != "" {
			cookie = c
		}
	}
	if resp.StatusCode != http.StatusSeeOther || cookie == nil {
		t.Fatalf("web login: %d, cookies %v", resp.StatusCode, resp.Cookies())
	}
	fn(post)
	if resp := post("/bhr/logout", nil); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("web logout: %d", resp.StatusCode)
	}
}

// waitEvent polls the observed audit lines until one matches.
func waitEvent(t *testing.T, logs *observer.ObservedLogs, event string, match func(map[string]any) bool) map[string]any {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		for _, e := range logs.FilterMessage(event).All() {
			f := e.ContextMap()
			if match == nil || match(f) {
				return f
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s audit line within 20s; have %v", event, eventNames(logs))
		}
		time.Sleep(20 * time.Millisecond) // polling an in-memory log with a deadline
	}
}

func eventNames(logs *observer.ObservedLogs) []string {
	var out []string
	for _, e := range logs.All() {
		out = append(out, e.Message)
	}
	return out
}

// TestAuditEventsDocumented drives every action that changes state (the
// user and token commands, the real API over HTTP with the embedded
// store, an internal BGP enforcer with a GoBGP router as peer, a reload)
// and checks that each event documented in docs/AUDIT.md was emitted by
// it, with the fixed keys, and that nothing undocumented was.
func TestAuditEventsDocumented(t *testing.T) {
	core, logs := observer.New(zapcore.InfoLevel)
	aud := audit.NewWithCore(core)
	old := openAudit
	openAudit = func(string) (*audit.Logger, error) { return aud, nil }
	defer func() { openAudit = old }()

	r := bgptest.NewRouter(t, testRouterASN)
	r.AddPeer(testSpeakerASN, bgptest.PeerOptions{})
	dir := t.TempDir()
	cfgPath, cfg := testConfig(t, dir, r.Port)
	c := "-config=" + cfgPath

	mustCLI := func(args ...string) string {
		t.Helper()
		code, out, errs := cli(t, "", args...)
		if code != 0 {
			t.Fatalf("bhrd %v: exit %d: %s%s", args, code, out, errs)
		}
		return strings.TrimSpace(out)
	}
	if code, out, errs := cli(t, alicePassword+"\n", "user", "add", c, "-username", "alice", "-role", "admin", "-password-stdin"); code != 0 {
		t.Fatalf("bhrd user add: exit %d: %s%s", code, out, errs)
	}
	token := mustCLI("token", "create", c, "-username", "alice", "-name", "audit test")
	mustCLI("user", "add", c, "-username", "bob", "-role", "user")
	mustCLI("user", "disable", c, "-username", "bob")
	mustCLI("user", "enable", c, "-username", "bob")
	mustCLI("token", "create", c, "-username", "bob")
	mustCLI("token", "revoke", c, "-id", "2")
	waitEvent(t, logs, "token_revoked", func(f map[string]any) bool { return f["subject_token_id"] == int64(2) })

	ctx := context.Background()
	a, err := app.New(ctx, app.Options{Config: cfg, Audit: aud, Logger: bgptest.Logger(t).Named("bhrd")})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(ctx); err != nil {
		_ = a.Stop(ctx)
		t.Fatal(err)
	}
	stopped := false
	defer func() {
		if !stopped {
			_ = a.Stop(context.Background())
		}
	}()
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := a.WaitReconciled(wctx); err != nil {
		t.Fatal(err)
	}
	r.WaitEstablished(20 * time.Second)
	waitEvent(t, logs, "bgp_peer_up", nil)

	api := httpClient{t: t, base: "http://" + a.APIAddr(), token: token}
	type blockJSON struct {
		ID   int64  `json:"id"`
		CIDR string `json:"cidr"`
	}
	var blk blockJSON
	api.must(201, "POST", "/bhr/api/block", url.Values{"cidr": {"203.0.113.7"}, "source": {"ids"}, "why": {"ssh scan"}, "duration": {"300"}}, &blk)
	api.must(201, "POST", "/bhr/api/block", url.Values{"cidr": {"203.0.113.7"}, "source": {"ids"}, "why": {"again"}, "duration": {"3600"}}, nil)
	api.must(201, "POST", "/bhr/api/block", url.Values{"cidr": {"203.0.113.7"}, "source": {"ids"}, "why": {"again"}, "duration": {"60"}}, nil)
	api.must(400, "POST", "/bhr/api/block", url.Values{"cidr": {"10.0.0.0/8"}, "source": {"ids"}, "why": {"too big"}, "duration": {"60"}}, nil)
	// The router really got it.
	r.WaitRIB(bgp.IPv4Unicast, 20*time.Second, []netip.Prefix{netip.MustParsePrefix("203.0.113.7/32")}, nil)

	var wl struct{ ID int64 }
	api.must(201, "POST", "/bhr/api/whitelist", url.Values{"cidr": {"198.51.100.0/24"}, "why": {"partner"}}, &wl)
	api.must(204, "DELETE", fmt.Sprintf("/bhr/api/whitelist/%d", wl.ID), nil, nil)
	var sb struct{ ID int64 }
	api.must(201, "POST", "/bhr/api/source_blacklist", url.Values{"source": {"noisy"}, "why": {"false positives"}}, &sb)
	api.must(204, "DELETE", fmt.Sprintf("/bhr/api/source_blacklist/%d", sb.ID), nil, nil)

	// Staff on the web pages, served by the daemon: a login, a block
	// added with the add page (the Service's block_created, actor alice,
	// no token id but the session's), a logout.
	webLogin(t, api.base, "alice", alicePassword, func(post func(path string, form url.Values) *http.Response) {
		resp := post("/bhr/add", url.Values{"cidr": {"192.0.2.55"}, "why": {"seen in the logs"}, "duration": {"1h"}})
		if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), "/bhr/query?") {
			t.Fatalf("web add: %d %s", resp.StatusCode, resp.Header.Get("Location"))
		}
		started := waitEvent(t, logs, "session_started", nil)
		fromWeb := waitEvent(t, logs, "block_created", func(f map[string]any) bool { return f["cidr"] == "192.0.2.55/32" })
		if fromWeb["actor"] != "alice" || fromWeb["source"] != "web" || fromWeb["token_id"] != started["session_token_id"] {
			t.Errorf("block_created from the add page: %v (session %v)", fromWeb, started)
		}
	})
	waitEvent(t, logs, "session_ended", func(f map[string]any) bool { return f["actor"] == "alice" })

	// A remote enforcer reads its queue and reports through the API.
	api.must(200, "GET", "/bhr/api/queue/remote1", nil, nil)
	api.must(200, "POST", "/bhr/api/set_blocked_multi/remote1", map[string]any{"ids": []int64{blk.ID}}, nil)
	var entries []struct{ ID int64 }
	api.must(200, "GET", "/bhr/api/blockentries/?ident=remote1", nil, &entries)
	if len(entries) != 1 {
		t.Fatalf("remote1 entries: %v", entries)
	}
	api.must(200, "POST", "/bhr/api/set_unblocked_multi", map[string]any{"ids": []int64{entries[0].ID}}, nil)

	bad := httpClient{t: t, base: api.base, token: "not-a-token"}
	bad.must(401, "GET", "/bhr/api/blocks", nil, nil)

	api.must(200, "POST", "/bhr/api/unblock_now", url.Values{"cidr": {"203.0.113.7/32"}, "why": {"false positive"}}, nil)
	waitEvent(t, logs, "set_unblocked", func(f map[string]any) bool { return f["actor"] == "enforcer:"+testIdent })
	// A remote caller may not report for the internal enforcer.
	api.must(409, "POST", "/bhr/api/set_blocked_multi/"+testIdent, map[string]any{"ids": []int64{blk.ID}}, nil)
	refused := waitEvent(t, logs, "request_refused", nil)
	if refused["op"] != "set_blocked" || refused["actor"] != "alice" {
		t.Errorf("request_refused: %v", refused)
	}
	// The hourly prune, as the app runs it, of the history just closed:
	// once the dnsbl enforcer has closed its entry of the block too (it
	// may report after the request above).
	waitEvent(t, logs, "set_unblocked", func(f map[string]any) bool {
		return f["actor"] == "enforcer:dnsbl1" && f["cidr"] == "203.0.113.7/32"
	})
	if _, err := a.Service().Prune(queue.WithActor(ctx, queue.Actor{Name: audit.System}), time.Nanosecond); err != nil {
		t.Fatal(err)
	}
	waitEvent(t, logs, "history_pruned", func(f map[string]any) bool { return f["actor"] == audit.System && f["blocks"] == int64(1) })

	next := cfg
	next.Log.Level = "debug"
	next.Policy.MinimumPrefixLen = 23
	res, err := a.Reload(cfgPath, next)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(res.Applied, "policy") {
		t.Errorf("reload applied %v, want policy", res.Applied)
	}

	// The router goes away: its session drops.
	r.Server().Stop()
	waitEvent(t, logs, "bgp_peer_down", nil)
	stopped = true
	if err := a.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	// An ident is forgotten with the command (actor cli:<account>).
	mustCLI("ident", "forget", c, "-name", "remote1")
	waitEvent(t, logs, "ident_forgotten", func(f map[string]any) bool { return f["ident"] == "remote1" })

	// Every documented event was emitted, with the fixed keys; nothing
	// undocumented was.
	documented := documentedEvents(t)
	seen := map[string]bool{}
	for _, e := range logs.All() {
		seen[e.Message] = true
		f := e.ContextMap()
		for _, k := range []string{"actor", "remote_addr", "request_id"} {
			if _, ok := f[k]; !ok {
				t.Errorf("%s line without %s: %v", e.Message, k, f)
			}
		}
		if !slices.Contains(documented, e.Message) {
			t.Errorf("event %q is emitted but not documented in docs/AUDIT.md", e.Message)
		}
	}
	for _, ev := range documented {
		if !seen[ev] {
			t.Errorf("documented event %q was not emitted by the action that causes it", ev)
		}
	}

	// The auditor's question, from the audit lines alone.
	const cidr = "203.0.113.7/32"
	created := waitEvent(t, logs, "block_created", func(f map[string]any) bool { return f["cidr"] == cidr })
	if created["actor"] != "alice" || created["why"] != "ssh scan" || created["unblock_at"] == nil ||
		created["token_id"] != int64(1) || created["block_id"] != blk.ID || created["request_id"] == "" {
		t.Errorf("block_created does not say who/why/until when: %v", created)
	}
	for _, ev := range []string{"set_blocked", "set_unblocked"} {
		f := waitEvent(t, logs, ev, func(f map[string]any) bool { return f["actor"] == "enforcer:"+testIdent })
		if f["cidr"] != cidr || f["ident"] != testIdent || f["block_id"] != blk.ID {
			t.Errorf("%s of the internal enforcer: %v", ev, f)
		}
	}
	// ... and for a remote enforcer reporting over the API.
	for _, ev := range []string{"set_blocked", "set_unblocked"} {
		f := waitEvent(t, logs, ev, func(f map[string]any) bool { return f["ident"] == "remote1" })
		if f["cidr"] != cidr || f["block_id"] != blk.ID || f["actor"] == "enforcer:remote1" {
			t.Errorf("%s reported over the API: %v", ev, f)
		}
	}
	rej := waitEvent(t, logs, "block_rejected", nil)
	if rej["cidr"] != "10.0.0.0/8" || !strings.Contains(fmt.Sprint(rej["reason"]), "Prefix length") {
		t.Errorf("block_rejected: %v", rej)
	}
	af := waitEvent(t, logs, "auth_failed", nil)
	if af["actor"] != "anonymous" || af["scheme"] != "token" {
		t.Errorf("auth_failed: %v", af)
	}
	cr := waitEvent(t, logs, "config_reloaded", nil)
	if fmt.Sprint(cr["applied"]) != "[policy]" {
		t.Errorf("config_reloaded: %v", cr)
	}
	ua := waitEvent(t, logs, "user_added", func(f map[string]any) bool { return f["username"] == "alice" })
	if !strings.HasPrefix(fmt.Sprint(ua["actor"]), "cli:") {
		t.Errorf("user_added actor: %v", ua)
	}
}
