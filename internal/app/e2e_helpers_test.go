package app_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bhrd/bhrd/internal/app"
	"github.com/bhrd/bhrd/internal/bgptest"
	"github.com/bhrd/bhrd/internal/pgtest"
	"github.com/bhrd/bhrd/pkg/auth"
	"github.com/bhrd/bhrd/pkg/bgp"
	"github.com/bhrd/bhrd/pkg/config"
	"github.com/bhrd/bhrd/pkg/plane/bgpplane"
	"github.com/bhrd/bhrd/pkg/queue"
)

// The end-to-end tests run bhrd as AS speakerASN against a peer (an
// in-test GoBGP router or a BIRD) as AS routerASN, both on 127.0.0.1.
const (
	speakerASN = 65000
	routerASN  = 65001
	routerID   = "10.255.0.2"
	bgpIdent   = "bgp1"
)

var (
	nextHopV4 = bgp.DefaultNextHopV4 // 192.0.2.1
	nextHopV6 = bgp.DefaultNextHopV6 // 100::1
	// blackholeCommunities are 65535:666 (BLACKHOLE) and NO_EXPORT.
	blackholeCommunities = []uint32{bgp.CommunityBlackhole, bgp.CommunityNoExport}
)

// bgpConfig is a bhrd config with an embedded SQLite store in dir, the API
// on a free port of 127.0.0.1, and one bgp enforcer whose only peer
// listens on 127.0.0.1:peerPort. bhrd does not listen for BGP: it
// connects to the peer.
func bgpConfig(t testing.TB, dir string, peerPort int) config.Config {
	t.Helper()
	c := config.Default()
	c.Log.Level = "warn"
	c.Store.Path = filepath.Join(dir, "bhrd.db")
	c.API.Listen = "127.0.0.1:0"
	c = bgpplane.WithSection(c, bgpplane.Config{
		ASN: speakerASN, RouterID: netip.MustParseAddr(routerID), ListenPort: -1,
		Peers: []bgpplane.Peer{{
			Name: "router", Address: bgptest.Loopback, ASN: routerASN,
			Port: uint16(peerPort), HoldTime: 9 * time.Second,
		}},
	})
	c.Enforcers = []config.Enforcer{{Ident: bgpIdent, Type: "bgp"}}
	if err := c.Validate(); err != nil {
		t.Fatalf("test config: %v", err)
	}
	return c
}

// pgStore is the store section of a bhrd on the PostgreSQL database at
// url (several test instances may share one).
func pgStore(url string) config.Store {
	return config.Store{Driver: "postgres", URL: url, MaxIdents: 1000, IdentIdleAfter: time.Hour}
}

// startApp builds and starts bhrd in-process; it stops with the test.
func startApp(t testing.TB, opts app.Options) *app.App {
	t.Helper()
	if opts.Logger == nil {
		opts.Logger = bgptest.Logger(t).Named("bhrd")
	}
	ctx := context.Background()
	a, err := app.New(ctx, opts)
	if err != nil {
		t.Fatalf("app.New: %v", err)
	}
	if err := a.Start(ctx); err != nil {
		_ = a.Stop(ctx)
		t.Fatalf("app.Start: %v", err)
	}
	t.Cleanup(func() { stopApp(t, a) })
	return a
}

// stopped records the apps a test stopped itself, so that the cleanup of
// startApp does not stop them twice.
var stopped sync.Map

// stopApp stops a (once), as a clean shutdown (SIGTERM) would.
func stopApp(t testing.TB, a *app.App) {
	t.Helper()
	if _, done := stopped.LoadOrStore(a, true); done {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := a.Stop(ctx); err != nil {
		t.Errorf("app.Stop: %v", err)
	}
}

// newToken creates an admin user and returns an API token for it, through
// the same store the App uses (as `bhrd user add` and `bhrd token create`
// would).
func newToken(t testing.TB, st auth.Store) string {
	t.Helper()
	ctx := context.Background()
	au := auth.NewAuthenticator(st, auth.AuthenticatorOptions{})
	if _, err := au.AddUser(ctx, "e2e", "", []string{auth.RoleAdmin}); err != nil {
		t.Fatalf("add user: %v", err)
	}
	secret, _, err := au.CreateToken(ctx, "e2e", "e2e test")
	if err != nil {
		t.Fatalf("create token: %v", err)
	}
	return secret
}

// client speaks BHR's HTTP API to one bhrd.
type client struct {
	t     testing.TB
	base  string // http://host:port
	token string
	http  *http.Client
}

func newClient(t testing.TB, addr, token string) *client {
	return &client{t: t, base: "http://" + addr, token: token, http: &http.Client{Timeout: 30 * time.Second}}
}

// do sends a request and returns the status and body. A nil body sends
// nothing; url.Values is sent as a form (as bhr-client does), anything
// else as JSON.
func (c *client) do(method, path string, body any) (int, []byte) {
	c.t.Helper()
	var rd io.Reader
	ctype := ""
	switch b := body.(type) {
	case nil:
	case url.Values:
		rd, ctype = strings.NewReader(b.Encode()), "application/x-www-form-urlencoded"
	default:
		js, err := json.Marshal(b)
		if err != nil {
			c.t.Fatal(err)
		}
		rd, ctype = bytes.NewReader(js), "application/json"
	}
	req, err := http.NewRequest(method, c.base+path, rd)
	if err != nil {
		c.t.Fatal(err)
	}
	if ctype != "" {
		req.Header.Set("Content-Type", ctype)
	}
	req.Header.Set("Authorization", "Token "+c.token)
	res, err := c.http.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	out, err := io.ReadAll(res.Body)
	if err != nil {
		c.t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return res.StatusCode, out
}

// blockJSON is the part of BHR's block object the tests read.
type blockJSON struct {
	ID        int64   `json:"id"`
	CIDR      string  `json:"cidr"`
	UnblockAt *string `json:"unblock_at"`
}

// block POSTs a block as bhr-client does (form data) and expects 201.
func (c *client) block(cidr, duration string) blockJSON {
	c.t.Helper()
	st, body := c.do("POST", "/bhr/api/block", url.Values{
		"cidr": {cidr}, "source": {"e2e"}, "why": {"end-to-end test"}, "duration": {duration},
	})
	if st != http.StatusCreated {
		c.t.Fatalf("POST /bhr/api/block %s: status %d: %s", cidr, st, body)
	}
	var b blockJSON
	if err := json.Unmarshal(body, &b); err != nil {
		c.t.Fatalf("block answer %s: %v", body, err)
	}
	return b
}

// unblockNow POSTs unblock_now as JSON and expects {"status":"ok"}.
func (c *client) unblockNow(cidr string) {
	c.t.Helper()
	st, body := c.do("POST", "/bhr/api/unblock_now", map[string]string{"cidr": cidr, "why": "end-to-end test"})
	if st != http.StatusOK || !strings.Contains(string(body), `"ok"`) {
		c.t.Fatalf("POST /bhr/api/unblock_now %s: status %d: %s", cidr, st, body)
	}
}

// currentBrief returns the cidrs bhrd reports as current (blocked by at
// least one enforcer).
func (c *client) currentBrief() map[string]bool {
	c.t.Helper()
	st, body := c.do("GET", "/bhr/api/current_blocks_brief/", nil)
	if st != http.StatusOK {
		c.t.Fatalf("GET current_blocks_brief: status %d: %s", st, body)
	}
	var l []struct {
		CIDR string `json:"cidr"`
	}
	if err := json.Unmarshal(body, &l); err != nil {
		c.t.Fatalf("current_blocks_brief %s: %v", body, err)
	}
	out := map[string]bool{}
	for _, b := range l {
		out[b.CIDR] = true
	}
	return out
}

// waitCurrent waits until bhrd reports exactly want as current.
func (c *client) waitCurrent(timeout time.Duration, want ...string) {
	c.t.Helper()
	bgptest.WaitFor(c.t, timeout, "current blocks = "+strings.Join(want, ","), func() (bool, string) {
		got := c.currentBrief()
		if len(got) != len(want) {
			return false, describeSet(got)
		}
		for _, w := range want {
			if !got[w] {
				return false, describeSet(got)
			}
		}
		return true, ""
	})
}

func describeSet(m map[string]bool) string {
	var l []string
	for k := range m {
		l = append(l, k)
	}
	return "[" + strings.Join(l, " ") + "]"
}

// seedService opens the store of cfg without starting bhrd, for changes
// made while bhrd is down (or before its first start), with the given
// clock (nil: the system clock). Close the store when done.
func seedService(t testing.TB, cfg config.Config, clock queue.Clock) (*queue.Service, app.Store) {
	t.Helper()
	ctx := context.Background()
	st, _, err := app.OpenMigrated(ctx, cfg.Store)
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	pol := app.PolicyFromConfig(cfg)
	svc, err := queue.NewService(st, pol, clock)
	if err != nil {
		st.Close()
		t.Fatal(err)
	}
	if err := svc.Start(ctx); err != nil {
		st.Close()
		t.Fatal(err)
	}
	return svc, st
}

// hostPrefixes returns n consecutive /32s from first.
func hostPrefixes(first string, n int) []netip.Prefix {
	a := netip.MustParseAddr(first)
	out := make([]netip.Prefix, n)
	for i := range out {
		out[i] = netip.PrefixFrom(a, a.BitLen())
		a = a.Next()
	}
	return out
}

// blockRequests turns prefixes into block requests for Service.MBlock.
func blockRequests(ps []netip.Prefix, duration, unblockAt string) []queue.BlockRequest {
	out := make([]queue.BlockRequest, len(ps))
	for i, p := range ps {
		out[i] = queue.BlockRequest{CIDR: p.String(), Who: "e2e", Source: "e2e", Why: "end-to-end test",
			Duration: duration, UnblockAt: unblockAt, Extend: true}
	}
	return out
}

// mblock stores blocks through the service in chunks (a single MBlock
// of 100,000 is one transaction with 100,000 locks).
func mblock(t testing.TB, svc *queue.Service, reqs []queue.BlockRequest) {
	t.Helper()
	const chunk = 5000
	for i := 0; i < len(reqs); i += chunk {
		if _, err := svc.MBlock(context.Background(), reqs[i:min(i+chunk, len(reqs))]); err != nil {
			t.Fatalf("mblock: %v", err)
		}
	}
}

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }
