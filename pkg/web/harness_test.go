package web_test

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
	"golang.org/x/crypto/bcrypt"

	"github.com/bhrd/bhrd/internal/pgtest"
	"github.com/bhrd/bhrd/pkg/api"
	"github.com/bhrd/bhrd/pkg/audit"
	"github.com/bhrd/bhrd/pkg/auth"
	"github.com/bhrd/bhrd/pkg/config"
	"github.com/bhrd/bhrd/pkg/queue"
	"github.com/bhrd/bhrd/pkg/queue/pgstore"
	"github.com/bhrd/bhrd/pkg/queue/queuetest"
	"github.com/bhrd/bhrd/pkg/queue/sqlitestore"
	"github.com/bhrd/bhrd/pkg/web"
)

func TestMain(m *testing.M) {
	os.Exit(pgtest.Main(m))
}

type testStore interface {
	queue.Store
	auth.Store
	Migrate(ctx context.Context) ([]string, error)
	Unavailable(err error) bool
}

type storeFactory func(t testing.TB) testStore

func sqliteStore(t testing.TB) testStore {
	t.Helper()
	st, err := sqlitestore.Open(context.Background(), filepath.Join(t.TempDir(), "bhrd.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if _, err := st.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	return st
}

func postgresStore(t testing.TB) testStore {
	t.Helper()
	st, err := pgstore.Open(context.Background(), pgtest.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if _, err := st.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	return st
}

var stores = []struct {
	name string
	new  storeFactory
}{
	{"sqlite", sqliteStore},
	{"postgres", postgresStore},
}

// forStores runs fn against each store.
func forStores(t *testing.T, fn func(t *testing.T, f storeFactory)) {
	for _, s := range stores {
		t.Run(s.name, func(t *testing.T) { fn(t, s.new) })
	}
}

type envOpts struct {
	limited  bool
	local    []string
	resolver web.Resolver
	store    testStore // reuse (a restart)
}

type env struct {
	t     testing.TB
	ctx   context.Context
	store testStore
	svc   *queue.Service
	clock *queuetest.Clock
	authn *auth.Authenticator
	pages *web.Pages
	srv   *httptest.Server
	audit *observer.ObservedLogs
}

// fakeResolver answers reverse lookups from a map (the unit's own edge:
// the pages must not wait for it).
type fakeResolver struct {
	mu    sync.Mutex
	names map[string]string
	asked map[string]int
}

func (f *fakeResolver) LookupAddr(_ context.Context, addr string) ([]string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.asked == nil {
		f.asked = map[string]int{}
	}
	f.asked[addr]++
	if n, ok := f.names[addr]; ok {
		return []string{n + "."}, nil
	}
	return nil, &netError{}
}

type netError struct{}

func (*netError) Error() string { return "no such host" }

var roles = []string{auth.RoleUser, auth.RoleReadOnly, auth.RoleAdmin, auth.RoleBlocker}

const password = "correct horse battery staple"

func newEnv(t testing.TB, f storeFactory, o envOpts) *env {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	st := o.store
	fresh := st == nil
	if fresh {
		st = f(t)
	}
	clk := queuetest.NewClock(queuetest.Start)
	core, logs := observer.New(zapcore.InfoLevel)
	al := audit.NewWithCore(core)
	svcOpts := []queue.Option{queue.WithEvents(al.Events())}
	if _, test := t.(*testing.T); test {
		// Tests check the counts right after each change; benchmarks
		// measure the Service as it runs.
		svcOpts = append(svcOpts, queue.WithExactStats())
	}
	svc, err := queue.NewService(st, queue.DefaultPolicy(), clk, svcOpts...)
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.Start(ctx); err != nil {
		t.Fatal(err)
	}
	authn := auth.NewAuthenticator(st, auth.AuthenticatorOptions{Now: clk.Now})
	var local []netip.Prefix
	for _, n := range o.local {
		local = append(local, netip.MustParsePrefix(n))
	}
	logins := auth.NewLoginThrottle()
	pages, err := web.New(web.Options{Service: svc, Auth: authn, Logins: logins, Audit: al, Logger: zap.NewNop(),
		LocalNetworks: local, Limited: o.limited, Resolver: o.resolver, StoreUnavailable: st.Unavailable})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pages.Close)
	cfg := config.Default().API
	cfg.UnauthenticatedLimitedQuery = o.limited
	h, err := api.New(api.Options{Service: svc, Auth: authn, Logger: zap.NewNop(), Config: cfg, LocalNetworks: local,
		StoreUnavailable: st.Unavailable, Audit: al, Pages: pages, Logins: logins})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	if fresh {
		// Users are made with a cheap hash, so that logins are fast.
		hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range roles {
			if _, err := st.CreateUser(ctx, auth.User{Username: "u-" + r, PasswordHash: string(hash), Roles: []string{r}}); err != nil {
				t.Fatal(err)
			}
		}
	}
	return &env{t: t, ctx: queue.WithActor(ctx, queue.Actor{Name: "tester"}), store: st, svc: svc, clock: clk,
		authn: authn, pages: pages, srv: srv, audit: logs}
}

// browser is a client that keeps the session cookie and does not follow
// redirects, so that tests see them.
type browser struct {
	e      *env
	cookie *http.Cookie
	header http.Header // added to every request
}

type page struct {
	status int
	header http.Header
	body   string
}

func (p page) has(t testing.TB, parts ...string) {
	t.Helper()
	for _, s := range parts {
		if !strings.Contains(p.body, s) {
			t.Errorf("page (status %d) lacks %q:\n%s", p.status, s, p.body)
		}
	}
}

func (p page) lacks(t testing.TB, parts ...string) {
	t.Helper()
	for _, s := range parts {
		if strings.Contains(p.body, s) {
			t.Errorf("page (status %d) has %q:\n%s", p.status, s, p.body)
		}
	}
}

func (e *env) browser() *browser { return &browser{e: e, header: http.Header{}} }

func (b *browser) do(method, path string, form url.Values) page {
	b.e.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, b.e.srv.URL+path, body)
	if err != nil {
		b.e.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	for k, v := range b.header {
		req.Header[k] = v
	}
	if b.cookie != nil {
		req.AddCookie(b.cookie)
	}
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	if err != nil {
		b.e.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	for _, ck := range resp.Cookies() {
		if ck.Name == "bhrd_session" {
			if ck.MaxAge < 0 {
				b.cookie = nil
			} else {
				b.cookie = ck
			}
		}
	}
	return page{status: resp.StatusCode, header: resp.Header, body: string(raw)}
}

func (b *browser) get(path string) page { b.e.t.Helper(); return b.do("GET", path, nil) }
func (b *browser) post(path string, form url.Values) page {
	b.e.t.Helper()
	return b.do("POST", path, form)
}

// login logs in as u-<role> and fails the test if it does not work.
func (e *env) login(role string) *browser {
	e.t.Helper()
	b := e.browser()
	p := b.post("/bhr/login", url.Values{"username": {"u-" + role}, "password": {password}, "next": {"/bhr/stats"}})
	if p.status != http.StatusSeeOther || p.header.Get("Location") != "/bhr/stats" || b.cookie == nil {
		e.t.Fatalf("login as %s: %d %v cookie %v\n%s", role, p.status, p.header, b.cookie, p.body)
	}
	return b
}

// auditLines returns the audit events written so far, with their actors.
func (e *env) auditLines() []map[string]any {
	var out []map[string]any
	for _, l := range e.audit.All() {
		m := l.ContextMap()
		m["msg"] = l.Message
		out = append(out, m)
	}
	return out
}

// lastAudit returns the last audit line with event ev, or fails.
func (e *env) lastAudit(ev string) map[string]any {
	e.t.Helper()
	lines := e.auditLines()
	for i := len(lines) - 1; i >= 0; i-- {
		if lines[i]["event"] == ev || lines[i]["msg"] == ev {
			return lines[i]
		}
	}
	e.t.Fatalf("no audit line %q in %v", ev, lines)
	return nil
}

func (e *env) block(cidr, source, why string) queue.Block {
	e.t.Helper()
	res, err := e.svc.Block(e.ctx, queue.BlockRequest{CIDR: cidr, Who: "tool", Source: source, Why: why, Duration: "1h", Extend: true})
	if err != nil {
		e.t.Fatalf("block %s: %v", cidr, err)
	}
	return res.Block
}

// blocksWithin counts the blocks, in any state, within cidr.
func (e *env) blocksWithin(cidr string) int {
	e.t.Helper()
	n := 0
	if err := e.svc.Query(e.ctx, cidr, func(queue.Block) error { n++; return nil }); err != nil {
		e.t.Fatal(err)
	}
	return n
}
