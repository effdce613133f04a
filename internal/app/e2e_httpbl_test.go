package app_test

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/gin-gonic/gin"
	"github.com/miekg/dns"

	"github.com/bhrd/bhrd/internal/app"
	"github.com/bhrd/bhrd/internal/bgptest"
	"github.com/bhrd/bhrd/pkg/httpbl"
	"github.com/bhrd/bhrd/pkg/httpbl/httpblgin"
)

// The HttpBL middleware against a running bhrd's zone, through net/http
// and gin: a client is let in, blocked over the API, refused with 403 on
// its next request once its "not listed" answer has expired, unblocked,
// and let in again once the listed answer has expired.
func TestE2EHTTPBLAgainstBhrd(t *testing.T) {
	cfg, dnsAddr := dnsblConfig(t, t.TempDir(), "sqlite")
	a := startApp(t, app.Options{Config: cfg})
	api := newClient(t, a.APIAddr(), newToken(t, a.Store()))
	const ttl = 300 * time.Millisecond
	c, err := httpbl.New(httpbl.Options{
		AccessKey: "abcdefghijkl", Zone: "bl.test", Resolvers: []string{dnsAddr}, IPv6: true,
		CacheTTL: ttl, NegativeTTL: ttl,
	})
	if err != nil {
		t.Fatal(err)
	}
	hello := http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("hello")) })
	gin.SetMode(gin.TestMode)
	g := gin.New()
	g.Use(httpblgin.Middleware(c))
	g.GET("/", func(ctx *gin.Context) { ctx.String(200, "hello") })
	for _, tc := range []struct {
		name   string
		h      http.Handler
		client string
	}{{"net/http", c.Middleware(hello), "198.51.100.77"}, {"gin", g, "2001:db8::77"}} {
		t.Run(tc.name, func(t *testing.T) {
			get := func() (int, string) {
				r := httptest.NewRequest("GET", "/", nil)
				r.RemoteAddr = "[" + tc.client + "]:40000"
				w := httptest.NewRecorder()
				tc.h.ServeHTTP(w, r)
				return w.Code, w.Body.String()
			}
			if code, body := get(); code != 200 || body != "hello" {
				t.Fatalf("before the block: %d %q", code, body)
			}
			api.block(tc.client, "300")
			cidr := tc.client + "/32"
			if strings.Contains(tc.client, ":") {
				cidr = tc.client + "/128"
			}
			api.waitCurrent(5*time.Second, cidr)
			bgptest.WaitFor(t, 5*time.Second, "the request to be refused", func() (bool, string) {
				code, body := get()
				return code == 403 && strings.Contains(body, "harvester"), body
			})
			api.unblockNow(tc.client)
			bgptest.WaitFor(t, 5*time.Second, "the request to be let in again", func() (bool, string) {
				code, body := get()
				return code == 200, body
			})
		})
	}
}

// A client denied by another Http:BL (here an in-test server answering
// like Project Honeypot: 127.1.80.1, a suspicious client seen today with
// threat 80) is reported to bhrd as a block of source httpbl, in one
// batch per interval, and then answered by bhrd's own zone.
func TestE2EHTTPBLReportsToBhrd(t *testing.T) {
	cfg, dnsAddr := dnsblConfig(t, t.TempDir(), "sqlite")
	a := startApp(t, app.Options{Config: cfg})
	api := newClient(t, a.APIAddr(), newToken(t, a.Store()))
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hp := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(r)
		if strings.HasPrefix(strings.ToLower(r.Question[0].Name), "abcdefghijkl.50.113.0.203.dnsbl.httpbl.org") {
			m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: r.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: net.IPv4(127, 1, 80, 1)})
		} else {
			m.Rcode = dns.RcodeNameError
		}
		_ = w.WriteMsg(m)
	})}
	go func() { _ = hp.ActivateAndServe() }()
	defer hp.Shutdown()
	rep := &httpbl.Reporter{URL: "http://" + a.APIAddr(), Token: api.token, Duration: "600", Interval: 50 * time.Millisecond,
		OnError: func(err error) { t.Errorf("report: %v", err) }}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go rep.Run(ctx)
	c, err := httpbl.New(httpbl.Options{AccessKey: "abcdefghijkl", Resolvers: []string{pc.LocalAddr().String()}, Report: rep})
	if err != nil {
		t.Fatal(err)
	}
	mw := c.Middleware(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("hello")) }))
	for _, peer := range []string{"203.0.113.50", "203.0.113.50", "192.0.2.9"} {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = peer + ":40000"
		w := httptest.NewRecorder()
		mw.ServeHTTP(w, r)
		if want := map[bool]int{true: 403, false: 200}[peer == "203.0.113.50"]; w.Code != want {
			t.Errorf("%s: %d, want %d", peer, w.Code, want)
		}
	}
	bgptest.WaitFor(t, 5*time.Second, "the reported block", func() (bool, string) {
		st, body := api.do("GET", "/bhr/api/query/203.0.113.50", nil)
		return st == 200 && strings.Contains(string(body), `"source":"httpbl"`), string(body)
	})
	waitListed(t, dnsAddr, netip.MustParseAddr("203.0.113.50"), "127.", 5*time.Second)
	st, body := api.do("GET", "/bhr/api/query/192.0.2.9", nil)
	if st != 200 || strings.Contains(string(body), "httpbl") {
		t.Errorf("a clean client was reported: %d %s", st, body)
	}
}
