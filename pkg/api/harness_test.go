package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/bhrd/bhrd/internal/pgtest"
	"github.com/bhrd/bhrd/pkg/api"
	"github.com/bhrd/bhrd/pkg/auth"
	"github.com/bhrd/bhrd/pkg/config"
	"github.com/bhrd/bhrd/pkg/queue"
	"github.com/bhrd/bhrd/pkg/queue/pgstore"
	"github.com/bhrd/bhrd/pkg/queue/queuetest"
	"github.com/bhrd/bhrd/pkg/queue/sqlitestore"
)

func TestMain(m *testing.M) {
	if base := os.Getenv("BHRD_POLLER_URL"); base != "" {
		os.Exit(parkedPoller(base)) // a benchmark's child process
	}
	os.Exit(pgtest.Main(m))
}

// testStore is what both stores are.
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
	st, _ := openPostgres(t)
	return st
}

// openPostgres opens a migrated store on a fresh database and returns its
// URL too.
func openPostgres(t testing.TB) (*pgstore.Store, string) {
	t.Helper()
	u := pgtest.NewDatabase(t)
	st, err := pgstore.Open(context.Background(), u)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if _, err := st.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	return st, u
}

var stores = []struct {
	name string
	new  storeFactory
}{
	{"sqlite", sqliteStore},
	{"postgres", postgresStore},
}

// suite is every API test; each runs against every store.
var suite = []struct {
	name string
	fn   func(t *testing.T, f storeFactory)
}{
	{"Lifecycle", testLifecycle},
	{"Expiry", testExpiry},
	{"BHRClient", testBHRClient},
	{"BlockObject", testBlockObject},
	{"BlockRules", testBlockRules},
	{"MBlock", testMBlock},
	{"BadInput", testBadInput},
	{"BodyLimit", testBodyLimit},
	{"Authentication", testAuthentication},
	{"PermissionMatrix", testPermissionMatrix},
	{"LimitedQuery", testLimitedQuery},
	{"LongPoll", testLongPoll},
	{"LongPollShared", testLongPollShared},
	{"LongPollCapAndDisconnect", testLongPollCapAndDisconnect},
	{"LongPollDrain", testLongPollDrain},
	{"Lists", testLists},
	{"Entries", testEntries},
	{"Query", testQuery},
	{"Whitelist", testWhitelist},
	{"SourceBlacklist", testSourceBlacklist},
	{"Stats", testStats},
	{"CSV", testCSV},
	{"StreamManyRows", testStreamManyRows},
	{"StreamFailure", testStreamFailure},
	{"Panic", testPanic},
	{"StoreFailure", testStoreFailure},
	{"Routing", testRouting},
	{"RequestID", testRequestID},
	{"ReservedIdents", testReservedIdents},
	{"AllFieldErrors", testAllFieldErrors},
	{"ReportIDLimits", testReportIDLimits},
	{"EventsFromTheService", testEventsFromTheService},
	{"Idents", testIdents},
	{"HeadAndOptions", testHeadAndOptions},
	{"BadText", testBadText},
	{"BulkUnblockNow", testBulkUnblockNow},
}

func TestAPI(t *testing.T) {
	for _, st := range stores {
		t.Run(st.name, func(t *testing.T) {
			for _, c := range suite {
				t.Run(c.name, func(t *testing.T) { c.fn(t, st.new) })
			}
		})
	}
}

// faultyStore injects failures into a real store.
type faultyStore struct {
	testStore
	panicStats atomic.Bool
	failStats  atomic.Bool
	// failListAfter > 0 makes ListBlocks fail after that many rows.
	failListAfter atomic.Int64
	// queueReads counts BlockQueue calls; while queueGate holds a
	// channel, each call waits for it to close first.
	queueReads atomic.Int64
	queueGate  atomic.Pointer[chan struct{}]
}

func (s *faultyStore) BlockQueue(ctx context.Context, ident string, now, since time.Time, limit int) ([]queue.QueueItem, error) {
	s.queueReads.Add(1)
	if g := s.queueGate.Load(); g != nil {
		<-*g
	}
	return s.testStore.BlockQueue(ctx, ident, now, since, limit)
}

var errInjected = errFault("injected store failure")

type errFault string

func (e errFault) Error() string { return string(e) }

func (s *faultyStore) Stats(ctx context.Context, now time.Time) (queue.Stats, error) {
	if s.panicStats.Load() {
		panic("injected panic in Stats")
	}
	if s.failStats.Load() {
		return queue.Stats{}, errInjected
	}
	return s.testStore.Stats(ctx, now)
}

func (s *faultyStore) ListBlocks(ctx context.Context, opts queue.ListOptions, fn func(queue.Block) error) error {
	n := s.failListAfter.Load()
	if n <= 0 {
		return s.testStore.ListBlocks(ctx, opts, fn)
	}
	var seen int64
	err := s.testStore.ListBlocks(ctx, opts, func(b queue.Block) error {
		if seen == n {
			return errInjected
		}
		seen++
		return fn(b)
	})
	return err
}

// env is one API over a fresh store, served on loopback.
type env struct {
	t      testing.TB
	ctx    context.Context
	store  testStore
	faulty *faultyStore
	svc    *queue.Service
	clock  *queuetest.Clock
	authn  *auth.Authenticator
	api    *api.API
	srv    *httptest.Server
	logs   *observer.ObservedLogs
	tokens map[string]string // role (or "none") -> token secret
}

type envOpts struct {
	cfg    func(*config.API)
	policy func(*queue.Policy)
	local  []string
	faulty bool
	// svcOpts are the Service's options (events, reserved idents).
	svcOpts []queue.Option
	// logger replaces the observed logger (benchmarks log real JSON to
	// io.Discard, as the daemon's cost, without keeping every line).
	logger *zap.Logger
}

// roleNames are the users every env has, one per role, plus "none", a
// user with no role at all.
var roleNames = []string{auth.RoleUser, auth.RoleBlocker, auth.RoleBlockManager, auth.RoleAdmin, auth.RoleReadOnly, "none"}

func newEnv(t testing.TB, f storeFactory, o envOpts) *env {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	st := f(t)
	var qs queue.Store = st
	var as auth.Store = st
	var fs *faultyStore
	if o.faulty {
		fs = &faultyStore{testStore: st}
		qs, as = fs, fs
	}
	pol := queue.DefaultPolicy()
	if o.policy != nil {
		o.policy(&pol)
	}
	clk := queuetest.NewClock(queuetest.Start)
	svcOpts := o.svcOpts
	if _, test := t.(*testing.T); test {
		// Tests check the counts right after each change; benchmarks
		// measure the Service as it runs.
		svcOpts = append(slices.Clip(svcOpts), queue.WithExactStats())
	}
	svc, err := queue.NewService(qs, pol, clk, svcOpts...)
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.Start(ctx); err != nil {
		t.Fatal(err)
	}
	cfg := config.Default().API
	if o.cfg != nil {
		o.cfg(&cfg)
	}
	var local []netip.Prefix
	for _, n := range o.local {
		local = append(local, mustPrefix(t, n))
	}
	core, logs := observer.New(zap.DebugLevel)
	logger := zap.New(core)
	if o.logger != nil {
		logger = o.logger
	}
	authn := auth.NewAuthenticator(as, auth.AuthenticatorOptions{})
	h, err := api.New(api.Options{Service: svc, Auth: authn, Logger: logger, Config: cfg, LocalNetworks: local,
		StoreUnavailable: st.Unavailable})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	e := &env{t: t, ctx: ctx, store: st, faulty: fs, svc: svc, clock: clk, authn: authn, api: h, srv: srv, logs: logs, tokens: map[string]string{}}
	for _, r := range roleNames {
		name := "u-" + r
		if r == "none" {
			if _, err := st.CreateUser(ctx, auth.User{Username: name}); err != nil {
				t.Fatal(err)
			}
		} else if _, err := authn.AddUser(ctx, name, "", []string{r}); err != nil {
			t.Fatal(err)
		}
		secret, _, err := authn.CreateToken(ctx, name, "test")
		if err != nil {
			t.Fatal(err)
		}
		e.tokens[r] = secret
	}
	return e
}

// response is a finished request.
type response struct {
	t      testing.TB
	req    string
	status int
	header http.Header
	body   []byte
}

func (r *response) String() string {
	return r.req + " -> " + http.StatusText(r.status) + " " + string(r.body)
}

// decode decodes the JSON body into v.
func (r *response) decode(v any) {
	r.t.Helper()
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
		r.t.Fatalf("%s: Content-Type %q, want JSON", r, ct)
	}
	if err := json.Unmarshal(r.body, v); err != nil {
		r.t.Fatalf("%s: decode: %v", r, err)
	}
}

// expect checks the status.
func (r *response) expect(status int) *response {
	r.t.Helper()
	if r.status != status {
		r.t.Fatalf("%s: status %d, want %d", r, r.status, status)
	}
	return r
}

// obj decodes a JSON object.
func (r *response) obj() map[string]any {
	r.t.Helper()
	var m map[string]any
	r.decode(&m)
	return m
}

// list decodes a JSON array of objects.
func (r *response) list() []map[string]any {
	r.t.Helper()
	var l []map[string]any
	r.decode(&l)
	if l == nil && string(bytes.TrimSpace(r.body)) != "[]" {
		r.t.Fatalf("%s: not a list", r)
	}
	return l
}

// reqOpt adjusts a request.
type reqOpt func(*http.Request)

func as(e *env, role string) reqOpt {
	return func(r *http.Request) { r.Header.Set("Authorization", "Token "+e.tokens[role]) }
}

func header(k, v string) reqOpt { return func(r *http.Request) { r.Header.Set(k, v) } }

func basic(user, pw string) reqOpt { return func(r *http.Request) { r.SetBasicAuth(user, pw) } }

// body is a request body with its content type.
type body struct {
	ct   string
	data string
}

func jsonBody(t testing.TB, v any) body {
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return body{"application/json", string(b)}
}

func formBody(v url.Values) body { return body{"application/x-www-form-urlencoded", v.Encode()} }

func rawBody(ct, s string) body { return body{ct, s} }

// do sends a request to path (relative to the server root).
func (e *env) do(method, path string, b *body, opts ...reqOpt) *response {
	e.t.Helper()
	var rd io.Reader
	if b != nil {
		rd = strings.NewReader(b.data)
	}
	req, err := http.NewRequestWithContext(e.ctx, method, e.srv.URL+path, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	if b != nil && b.ct != "" {
		req.Header.Set("Content-Type", b.ct)
	}
	for _, o := range opts {
		o(req)
	}
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return &response{t: e.t, req: method + " " + path, status: resp.StatusCode, header: resp.Header, body: data}
}

func (e *env) get(path string, opts ...reqOpt) *response { return e.do("GET", path, nil, opts...) }

func (e *env) post(path string, b body, opts ...reqOpt) *response {
	return e.do("POST", path, &b, opts...)
}

// block posts one JSON block request as a "user" and returns the block.
func (e *env) block(cidr, duration string, extra ...map[string]any) map[string]any {
	e.t.Helper()
	req := map[string]any{"cidr": cidr, "source": "test", "why": "testing", "duration": duration}
	for _, x := range extra {
		for k, v := range x {
			req[k] = v
		}
	}
	return e.post("/bhr/api/block", jsonBody(e.t, req), as(e, auth.RoleUser)).expect(http.StatusCreated).obj()
}

// stats returns api/stats without its sources.
func (e *env) stats() [4]int {
	e.t.Helper()
	m := e.get("/bhr/api/stats").expect(http.StatusOK).obj()
	return [4]int{num(e.t, m["block_pending"]), num(e.t, m["unblock_pending"]), num(e.t, m["current"]), num(e.t, m["expected"])}
}

// expectStats checks block_pending, unblock_pending, current, expected.
func (e *env) expectStats(step string, want [4]int) {
	e.t.Helper()
	if got := e.stats(); got != want {
		e.t.Fatalf("%s: stats [block_pending unblock_pending current expected] = %v, want %v", step, got, want)
	}
}

func num(t testing.TB, v any) int {
	t.Helper()
	f, ok := v.(float64)
	if !ok {
		t.Fatalf("%v (%T) is not a number", v, v)
	}
	return int(f)
}

func id(t testing.TB, m map[string]any) int64 {
	t.Helper()
	return int64(num(t, m["id"]))
}

func keys(m map[string]any) []string {
	var k []string
	for key := range m {
		k = append(k, key)
	}
	slices.Sort(k)
	return k
}

func sorted(s ...string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

func cidrs(t testing.TB, l []map[string]any) []string {
	t.Helper()
	var out []string
	for _, m := range l {
		s, ok := m["cidr"].(string)
		if !ok {
			t.Fatalf("item %v has no cidr", m)
		}
		out = append(out, s)
	}
	return out
}

// waitFor polls cond until it holds or a deadline passes; it replaces
// sleeps where the API offers nothing to wait on.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

func mustPrefix(t testing.TB, s string) netip.Prefix {
	t.Helper()
	p, err := netip.ParsePrefix(s)
	if err != nil {
		t.Fatal(err)
	}
	return p
}
