package httpbl

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

const testKey = "abcdefghijkl"

// honeypot is an in-test DNS server answering like Project Honeypot's
// Http:BL: <key>.d.c.b.a.dnsbl.httpbl.org, the service's test addresses
// answered with themselves, a wrong key or an unlisted address NXDOMAIN.
type honeypot struct {
	addr    string
	queries atomic.Int64
	mu      sync.Mutex
	extra   map[netip.Addr]netip.Addr // more listings: client → answer
}

var honeypotTests = func() map[netip.Addr]bool {
	m := map[netip.Addr]bool{}
	for i := 0; i <= 7; i++ {
		m[netip.AddrFrom4([4]byte{127, 1, 1, byte(i)})] = true
	}
	for _, v := range []byte{10, 20, 40, 80} {
		m[netip.AddrFrom4([4]byte{127, 1, v, 1})] = true
		m[netip.AddrFrom4([4]byte{127, v, 1, 1})] = true
	}
	return m
}()

func startHoneypot(t testing.TB) *honeypot {
	t.Helper()
	h := &honeypot{extra: map[netip.Addr]netip.Addr{}}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h.addr = pc.LocalAddr().String()
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(h.serve)}
	go func() { _ = srv.ActivateAndServe() }()
	t.Cleanup(func() { _ = srv.Shutdown() })
	return h
}

func (h *honeypot) list(client, answer string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.extra[netip.MustParseAddr(client)] = netip.MustParseAddr(answer)
}

func (h *honeypot) serve(w dns.ResponseWriter, r *dns.Msg) {
	h.queries.Add(1)
	m := new(dns.Msg)
	m.SetReply(r)
	m.Authoritative = true
	q := r.Question[0]
	labels := dns.SplitDomainName(strings.ToLower(q.Name))
	var ans netip.Addr
	if len(labels) == 8 && labels[0] == testKey && strings.Join(labels[5:], ".") == "dnsbl.httpbl.org" {
		if a, err := netip.ParseAddr(labels[4] + "." + labels[3] + "." + labels[2] + "." + labels[1]); err == nil {
			h.mu.Lock()
			x, ok := h.extra[a]
			h.mu.Unlock()
			switch {
			case ok:
				ans = x
			case honeypotTests[a]:
				ans = a
			}
		}
	}
	if !ans.IsValid() {
		m.Rcode = dns.RcodeNameError
	} else if q.Qtype == dns.TypeA {
		m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: q.Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 300}, A: ans.AsSlice()})
	}
	_ = w.WriteMsg(m)
}

func newChecker(t testing.TB, h *honeypot, o Options) *Checker {
	t.Helper()
	o.AccessKey = testKey
	if o.Resolvers == nil {
		o.Resolvers = []string{h.addr}
	}
	c, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// The decision, over DNS, for the service's test addresses: deny iff the
// type is denied AND the threat above the threshold AND the days below
// the age threshold; search engines only when blocked.
func TestDecisionTable(t *testing.T) {
	h := startHoneypot(t)
	def := newChecker(t, h, Options{})
	zero := newChecker(t, h, Options{ZeroThreshold: true})
	spam := newChecker(t, h, Options{DenyTypes: []int{CommentSpammer}, ZeroThreshold: true})
	se := newChecker(t, h, Options{BlockedSearchEngines: []int{1}})
	for _, c := range []struct {
		client string
		c      *Checker
		deny   bool
		why    string
	}{
		{"127.1.1.1", def, false, "threat 1 not above 2"},
		{"127.1.1.1", zero, true, "suspicious"},
		{"127.1.10.1", def, true, "suspicious, threat 10"},
		{"127.1.20.1", def, true, "threat 20"},
		{"127.1.80.1", def, true, "threat 80"},
		{"127.10.1.1", zero, false, "last seen 10 days ago"},
		{"127.20.1.1", zero, false, "last seen 20 days ago"},
		{"127.1.1.2", zero, true, "harvester"},
		{"127.1.1.4", spam, true, "comment spammer"},
		{"127.1.1.2", spam, false, "type not denied"},
		{"127.1.1.6", spam, true, "harvester and comment spammer"},
		{"127.1.1.7", zero, true, "suspicious and harvester and comment spammer"},
		{"127.1.1.0", def, false, "search engine 1"},
		{"127.1.1.0", se, true, "search engine 1 is blocked"},
		{"127.1.1.3", zero, true, "suspicious and harvester"},
		{"127.2.2.2", def, false, "not listed"},
	} {
		d := c.c.Check(context.Background(), netip.MustParseAddr(c.client))
		if d.Err != nil || d.Deny != c.deny || !strings.Contains(d.Reason, c.why) {
			t.Errorf("%s: deny %v reason %q err %v; want deny %v, reason with %q", c.client, d.Deny, d.Reason, d.Err, c.deny, c.why)
		}
	}
}

// An answer outside 127/8 is an error, never a listing, and is not
// cached; FailClosed refuses it.
func TestErrorAnswers(t *testing.T) {
	h := startHoneypot(t)
	h.list("198.51.100.9", "10.0.0.1")
	c := newChecker(t, h, Options{})
	for i := 0; i < 2; i++ {
		d := c.Check(context.Background(), netip.MustParseAddr("198.51.100.9"))
		if d.Err == nil || d.Deny || d.Listed {
			t.Fatalf("non-127 answer: %+v", d)
		}
	}
	if n := h.queries.Load(); n != 2 {
		t.Errorf("%d queries for two checks of an error answer, want 2 (never cached)", n)
	}
	fc := newChecker(t, h, Options{FailClosed: true})
	if d := fc.Check(context.Background(), netip.MustParseAddr("198.51.100.9")); !d.Deny {
		t.Errorf("fail-closed allowed an error answer: %+v", d)
	}
}

// A resolver that never answers: allowed within DNSTimeout, not cached.
func TestSilentResolver(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	var got atomic.Int64
	go func() {
		buf := make([]byte, 512)
		for {
			if _, _, err := pc.ReadFrom(buf); err != nil {
				return
			}
			got.Add(1)
		}
	}()
	c, err := New(Options{AccessKey: testKey, Resolvers: []string{pc.LocalAddr().String()}, DNSTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		start := time.Now()
		d := c.Check(context.Background(), netip.MustParseAddr("127.1.80.1"))
		if took := time.Since(start); took > time.Second {
			t.Errorf("check took %v with a 200 ms DNS timeout", took)
		}
		if d.Err == nil || d.Deny || d.Cached {
			t.Errorf("silent resolver: %+v, want an error, allowed, not cached", d)
		}
	}
	time.Sleep(50 * time.Millisecond)
	if got.Load() < 2 {
		t.Errorf("the second check did not ask again (%d queries): a timeout was cached", got.Load())
	}
}

// 100 concurrent requests from one address make one DNS query; later
// ones hit the cache; a "not listed" expires after NegativeTTL.
func TestCoalescingAndCache(t *testing.T) {
	h := startHoneypot(t)
	c := newChecker(t, h, Options{NegativeTTL: 300 * time.Millisecond})
	var wg sync.WaitGroup
	for i := 0; i < 100; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if d := c.Check(context.Background(), netip.MustParseAddr("127.1.80.1")); !d.Deny {
				t.Errorf("concurrent check: %+v", d)
			}
		}()
	}
	wg.Wait()
	if n := h.queries.Load(); n != 1 {
		t.Errorf("100 concurrent checks made %d queries, want 1", n)
	}
	if d := c.Check(context.Background(), netip.MustParseAddr("127.1.80.1")); !d.Cached {
		t.Error("a later check was not served from the cache")
	}
	ip := netip.MustParseAddr("203.0.113.5")
	c.Check(context.Background(), ip)
	h.list("203.0.113.5", "127.1.50.4")
	if d := c.Check(context.Background(), ip); d.Deny || !d.Cached {
		t.Errorf("within the negative lifetime: %+v", d)
	}
	time.Sleep(400 * time.Millisecond)
	if d := c.Check(context.Background(), ip); !d.Deny {
		t.Errorf("after the negative lifetime: %+v, want denied", d)
	}
}

func TestClientAddr(t *testing.T) {
	c, err := New(Options{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("::1/128")}})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		peer, xff, fwd, want string
	}{
		{"198.51.100.1:1234", "", "", "198.51.100.1"},
		// An untrusted peer's headers are ignored, whatever they say.
		{"198.51.100.1:1234", "127.1.80.1", "", "198.51.100.1"},
		{"198.51.100.1:1234", "", "for=127.1.80.1", "198.51.100.1"},
		// A trusted proxy: the rightmost untrusted hop, never a spoofed leftmost.
		{"10.0.0.2:80", "127.1.80.1, 203.0.113.9", "", "203.0.113.9"},
		{"10.0.0.2:80", "203.0.113.9, 10.0.0.3", "", "203.0.113.9"},
		{"10.0.0.2:80", "10.0.0.4, 10.0.0.3", "", "10.0.0.4"},
		{"[::1]:80", "", `for=192.0.2.60;proto=http, for="[2001:db8::7]:4711"`, "2001:db8::7"},
		{"[::ffff:198.51.100.1]:80", "", "", "198.51.100.1"},
		{"10.0.0.2:80", "garbage, 203.0.113.9", "", "203.0.113.9"},
		{"10.0.0.2:80", "203.0.113.9, garbage", "", "10.0.0.2"},
	} {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = tc.peer
		if tc.xff != "" {
			r.Header.Set("X-Forwarded-For", tc.xff)
		}
		if tc.fwd != "" {
			r.Header.Set("Forwarded", tc.fwd)
		}
		if got := c.ClientAddr(r); got.String() != tc.want {
			t.Errorf("peer %s xff %q fwd %q: %s, want %s", tc.peer, tc.xff, tc.fwd, got, tc.want)
		}
	}
}

// The middleware: a denied client gets the 403 page naming the reason, a
// clean one the handler; report-only lets both through and the hook sees
// every decision.
func TestMiddleware(t *testing.T) {
	h := startHoneypot(t)
	hello := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("hello")) })
	var seen []Decision
	var mu sync.Mutex
	hook := func(_ *http.Request, d Decision) { mu.Lock(); seen = append(seen, d); mu.Unlock() }
	do := func(hd http.Handler, peer string) (int, string) {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = peer + ":5555"
		w := httptest.NewRecorder()
		hd.ServeHTTP(w, r)
		return w.Code, w.Body.String()
	}
	c := newChecker(t, h, Options{OnDecision: hook})
	mw := c.Middleware(hello)
	if code, body := do(mw, "127.1.80.1"); code != 403 || !strings.Contains(body, "threat 80") {
		t.Errorf("denied client: %d %q", code, body)
	}
	if code, body := do(mw, "192.0.2.1"); code != 200 || body != "hello" {
		t.Errorf("clean client: %d %q", code, body)
	}
	ro := newChecker(t, h, Options{ReportOnly: true, OnDecision: hook})
	if code, _ := do(ro.Middleware(hello), "127.1.80.1"); code != 200 {
		t.Errorf("report-only refused: %d", code)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(seen) != 3 || !seen[0].Deny || seen[1].Deny || !seen[2].Deny {
		t.Errorf("hook saw %+v", seen)
	}
}

func BenchmarkCachedDecision(b *testing.B) {
	h := startHoneypot(b)
	c := newChecker(b, h, Options{})
	ip := netip.MustParseAddr("127.1.80.1")
	c.Check(context.Background(), ip)
	b.ReportAllocs()
	for b.Loop() {
		if !c.Check(context.Background(), ip).Deny {
			b.Fatal("not denied")
		}
	}
}

// BenchmarkMiddlewareOverhead: a hello-world handler through
// httptest-free ServeHTTP calls, alone and behind the middleware with a
// warm cache; compare the two ns/op.
func BenchmarkMiddlewareOverhead(b *testing.B) {
	h := startHoneypot(b)
	c := newChecker(b, h, Options{})
	hello := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("hello")) })
	r := httptest.NewRequest("GET", "/", nil)
	r.RemoteAddr = "192.0.2.1:5555"
	c.Check(context.Background(), netip.MustParseAddr("192.0.2.1"))
	for _, tc := range []struct {
		name string
		h    http.Handler
	}{{"bare", hello}, {"httpbl", c.Middleware(hello)}} {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			w := httptest.NewRecorder()
			for b.Loop() {
				w.Body.Reset()
				tc.h.ServeHTTP(w, r)
			}
		})
	}
}

// BenchmarkColdLookup: a lookup that misses the cache, against a local
// DNS server, as p50/p99.
func BenchmarkColdLookup(b *testing.B) {
	h := startHoneypot(b)
	c := newChecker(b, h, Options{CacheSize: -1})
	ip := netip.MustParseAddr("127.1.80.1")
	var ds []time.Duration
	for b.Loop() {
		t0 := time.Now()
		if d := c.Check(context.Background(), ip); !d.Deny {
			b.Fatalf("%+v", d)
		}
		ds = append(ds, time.Since(t0))
	}
	slices.Sort(ds)
	b.ReportMetric(float64(ds[len(ds)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(ds[len(ds)*99/100].Microseconds()), "p99-µs")
}

// BenchmarkServerOverhead: a hello-world net/http server on loopback,
// keep-alive clients in parallel, without and with the middleware (warm
// cache: every client address is looked up once first). Compare req/s.
func BenchmarkServerOverhead(b *testing.B) {
	h := startHoneypot(b)
	c := newChecker(b, h, Options{})
	c.Check(context.Background(), netip.MustParseAddr("127.0.0.1"))
	hello := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("hello")) })
	for _, tc := range []struct {
		name string
		h    http.Handler
	}{{"bare", hello}, {"httpbl", c.Middleware(hello)}} {
		b.Run(tc.name, func(b *testing.B) {
			srv := httptest.NewServer(tc.h)
			defer srv.Close()
			tr := &http.Transport{MaxIdleConnsPerHost: 64}
			defer tr.CloseIdleConnections()
			cl := &http.Client{Transport: tr}
			b.ResetTimer()
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				buf := make([]byte, 64)
				for pb.Next() {
					resp, err := cl.Get(srv.URL)
					if err != nil {
						b.Error(err)
						return
					}
					for {
						if _, err := resp.Body.Read(buf); err != nil {
							break
						}
					}
					resp.Body.Close()
					if resp.StatusCode != 200 {
						b.Errorf("status %d", resp.StatusCode)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "req/s")
		})
	}
}
