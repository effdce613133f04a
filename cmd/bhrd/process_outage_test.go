package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bhrd/bhrd/internal/bgptest"
	"github.com/bhrd/bhrd/internal/pgtest"
	"github.com/bhrd/bhrd/pkg/bgp"
)

// pgProxy stands between bhrd and PostgreSQL: up, it forwards; down, it
// closes every connection it carries and refuses new ones (what bhrd sees
// of a PostgreSQL that is stopped).
type pgProxy struct {
	ln              net.Listener
	network, target string
	mu              sync.Mutex
	up              bool
	conns           map[net.Conn]bool
}

func startProxy(t *testing.T, network, target string) *pgProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &pgProxy{ln: ln, network: network, target: target, conns: map[net.Conn]bool{}}
	t.Cleanup(func() { ln.Close(); p.set(false) })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.mu.Lock()
			up := p.up
			p.mu.Unlock()
			if !up {
				c.Close()
				continue
			}
			s, err := net.Dial(network, target)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			p.conns[c], p.conns[s] = true, true
			p.mu.Unlock()
			go func() { _, _ = io.Copy(s, c); s.Close() }()
			go func() { _, _ = io.Copy(c, s); c.Close() }()
		}
	}()
	return p
}

func (p *pgProxy) set(up bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.up = up
	if !up {
		for c := range p.conns {
			c.Close()
		}
		p.conns = map[net.Conn]bool{}
	}
}

// postUntil POSTs form to u with token until it answers want, for up to
// timeout (the store may still be coming back).
func postUntil(t *testing.T, client *http.Client, u, token string, form url.Values, want int, timeout time.Duration, what string) {
	t.Helper()
	bgptest.WaitFor(t, timeout, what, func() (bool, string) {
		req, _ := http.NewRequest("POST", u, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Authorization", "Token "+token)
		resp, err := client.Do(req)
		if err != nil {
			return false, err.Error()
		}
		resp.Body.Close()
		return resp.StatusCode == want, resp.Status
	})
}

// proxiedDatabase is a new test database reached through a pgProxy
// (down until set up): the proxy and the URL through it.
func proxiedDatabase(t *testing.T) (*pgProxy, *url.URL) {
	t.Helper()
	u, err := url.Parse(pgtest.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	// The test cluster listens on a Unix socket (host=DIR&port=N); an
	// external one may be on TCP.
	q := u.Query()
	var proxy *pgProxy
	if h := q.Get("host"); strings.HasPrefix(h, "/") {
		port := q.Get("port")
		if port == "" {
			port = "5432"
		}
		proxy = startProxy(t, "unix", filepath.Join(h, ".s.PGSQL."+port))
		q.Del("host")
		q.Del("port")
		u.RawQuery = q.Encode()
	} else {
		proxy = startProxy(t, "tcp", u.Host)
	}
	u.Host = proxy.ln.Addr().String()
	return proxy, u
}

// bhrd serve started while PostgreSQL is down waits for it (logging why)
// instead of exiting, and becomes ready once it is back; then during an
// outage of a running bhrd the BGP peer keeps every route, /readyz names
// the store, and when PostgreSQL is back blocks are taken again.
func TestProcessWaitsForStore(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	dir := t.TempDir()
	bin := buildBinary(t, dir)
	proxy, u := proxiedDatabase(t)
	r := bgptest.NewRouter(t, testRouterASN)
	r.AddPeer(testSpeakerASN, bgptest.PeerOptions{})
	apiPort := bgptest.FreePort(t)
	cfgPath := filepath.Join(dir, "bhrd.yaml")
	y := fmt.Sprintf(`log: {level: info, audit: %s}
store: {driver: postgres, url: %q}
api: {listen: "127.0.0.1:%d", shutdown_timeout: 5s}
bgp:
  asn: %d
  router_id: 192.0.2.254
  listen_port: -1
  peers: [{name: router, address: 127.0.0.1, asn: %d, port: %d, hold_time: 9s}]
enforcers: [{ident: %s, type: bgp}]
`, filepath.Join(dir, "audit.log"), u.String(), apiPort, testSpeakerASN, testRouterASN, r.Port, testIdent)
	if err := os.WriteFile(cfgPath, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}

	s := serve(t, bin, cfgPath)
	base := fmt.Sprintf("http://127.0.0.1:%d", apiPort)
	client := &http.Client{Timeout: 3 * time.Second}
	status := func(path string) int {
		resp, err := client.Get(base + path)
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}

	// Down at start: bhrd waits, says why, does not exit.
	bgptest.WaitFor(t, 10*time.Second, "the log to say it waits for the store", func() (bool, string) {
		return strings.Contains(s.log.String(), "store not available: waiting to start"), s.log.String()
	})
	select {
	case err := <-s.exited:
		t.Fatalf("bhrd exited while PostgreSQL was down: %v", err)
	case <-time.After(3 * time.Second):
	}
	proxy.set(true)
	waitReadyz(t, client, base, 40*time.Second)

	// Running: blocks reach the router.
	token := adminToken(t, bin, cfgPath)
	want := []netip.Prefix{netip.MustParsePrefix("203.0.113.1/32"), netip.MustParsePrefix("203.0.113.2/32")}
	for _, p := range want {
		postFormAs(t, client, base+"/bhr/api/block", token, url.Values{"cidr": {p.Addr().String()}, "source": {"t"}, "why": {"outage test"}, "duration": {"3600"}}, 201)
	}
	r.WaitRIB(bgp.IPv4Unicast, 20*time.Second, want, nil)

	// An outage of the running bhrd: the router keeps every route,
	// /readyz says 503, bhrd stays up.
	proxy.set(false)
	for end := time.Now().Add(8 * time.Second); time.Now().Before(end); time.Sleep(250 * time.Millisecond) {
		if n := r.Count(bgp.IPv4Unicast); n != len(want) {
			t.Fatalf("the router holds %d of %d routes during the outage", n, len(want))
		}
		select {
		case err := <-s.exited:
			t.Fatalf("bhrd exited during the outage: %v", err)
		default:
		}
	}
	if st := status("/readyz"); st != 503 {
		t.Errorf("/readyz during the outage: %d, want 503", st)
	}
	proxy.set(true)
	postUntil(t, client, base+"/bhr/api/block", token, url.Values{"cidr": {"203.0.113.3"}, "source": {"t"}, "why": {"after"}, "duration": {"3600"}},
		201, 30*time.Second, "a block to be taken after the outage")
	r.WaitRIB(bgp.IPv4Unicast, 20*time.Second, append(want, netip.MustParsePrefix("203.0.113.3/32")), nil)
}

// Two bhrd processes on one PostgreSQL, each with its own bgp ident and
// router: both announce every block; through a database outage both stay
// up and both routers keep every route; after it, a block posted to one
// and an unblock posted to the other reach both routers.
func TestTwoProcessesThroughStoreOutage(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	dir := t.TempDir()
	bin := buildBinary(t, dir)
	proxy, u := proxiedDatabase(t)
	proxy.set(true)
	type instance struct {
		name   string
		router *bgptest.Router
		base   string
		s      *served
	}
	client := &http.Client{Timeout: 3 * time.Second}
	var insts []*instance
	var token string
	for _, name := range []string{"alpha", "beta"} {
		in := &instance{name: name, router: bgptest.NewRouter(t, testRouterASN)}
		in.router.AddPeer(testSpeakerASN, bgptest.PeerOptions{})
		apiPort := bgptest.FreePort(t)
		cfgPath := filepath.Join(dir, name+".yaml")
		y := fmt.Sprintf(`instance: %s
log: {level: info, audit: %s}
store: {driver: postgres, url: %q}
api: {listen: "127.0.0.1:%d", shutdown_timeout: 5s}
bgp:
  asn: %d
  router_id: 192.0.2.254
  listen_port: -1
  peers: [{name: router, address: 127.0.0.1, asn: %d, port: %d, hold_time: 9s}]
enforcers: [{ident: bgp-%s, type: bgp}]
`, name, filepath.Join(dir, name+"-audit.log"), u.String(), apiPort, testSpeakerASN, testRouterASN, in.router.Port, name)
		if err := os.WriteFile(cfgPath, []byte(y), 0o600); err != nil {
			t.Fatal(err)
		}
		if token == "" {
			token = adminToken(t, bin, cfgPath)
		}
		in.s = serve(t, bin, cfgPath)
		in.base = fmt.Sprintf("http://127.0.0.1:%d", apiPort)
		waitReadyz(t, client, in.base, 40*time.Second)
		insts = append(insts, in)
	}
	alpha, beta := insts[0], insts[1]
	want := []netip.Prefix{netip.MustParsePrefix("203.0.113.11/32"), netip.MustParsePrefix("203.0.113.12/32")}
	for _, p := range want {
		postFormAs(t, client, alpha.base+"/bhr/api/block", token, url.Values{"cidr": {p.Addr().String()}, "source": {"t"}, "why": {"two"}, "duration": {"3600"}}, 201)
	}
	for _, in := range insts {
		in.router.WaitRIB(bgp.IPv4Unicast, 20*time.Second, want, nil)
	}

	proxy.set(false)
	for end := time.Now().Add(10 * time.Second); time.Now().Before(end); time.Sleep(250 * time.Millisecond) {
		for _, in := range insts {
			if n := in.router.Count(bgp.IPv4Unicast); n != len(want) {
				t.Fatalf("%s's router holds %d of %d routes during the outage", in.name, n, len(want))
			}
			select {
			case err := <-in.s.exited:
				t.Fatalf("%s exited during the outage: %v", in.name, err)
			default:
			}
		}
	}
	proxy.set(true)
	postUntil(t, client, beta.base+"/bhr/api/block", token, url.Values{"cidr": {"203.0.113.13"}, "source": {"t"}, "why": {"after"}, "duration": {"3600"}},
		201, 30*time.Second, "beta to take a block after the outage")
	want = append(want, netip.MustParsePrefix("203.0.113.13/32"))
	for _, in := range insts {
		in.router.WaitRIB(bgp.IPv4Unicast, 30*time.Second, want, nil)
	}
	postUntil(t, client, alpha.base+"/bhr/api/unblock_now", token, url.Values{"cidr": {"203.0.113.11"}, "why": {"over"}},
		200, 30*time.Second, "alpha to take an unblock after the outage")
	want = want[1:]
	for _, in := range insts {
		in.router.WaitRIB(bgp.IPv4Unicast, 30*time.Second, want, nil)
	}
}
