package memcache_test

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/bhrd/bhrd/pkg/httpbl"
	"github.com/bhrd/bhrd/pkg/httpbl/memcache"
)

// startMemcached runs Debian's memcached on a free loopback port. It
// skips without the binary unless BHRD_REQUIRE_MEMCACHED=1 or CI=true.
func startMemcached(t *testing.T) string {
	t.Helper()
	bin, err := exec.LookPath("memcached")
	if err != nil {
		if os.Getenv("BHRD_REQUIRE_MEMCACHED") == "1" || os.Getenv("CI") == "true" {
			t.Fatalf("memcached is required (apt-get install memcached): %v", err)
		}
		t.Skipf("SKIP (no memcached): %v", err)
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	args := []string{"-l", "127.0.0.1", "-p", fmt.Sprint(port), "-U", "0", "-m", "16"}
	if os.Geteuid() == 0 {
		args = append(args, "-u", "nobody")
	}
	cmd := exec.Command(bin, args...)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	for i := 0; i < 100; i++ {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return addr
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("memcached did not start")
	return ""
}

// blacklist answers 127.1.80.1 for 127.1.80.1 and 10.0.0.1 (not an
// Http:BL answer) for 198.51.100.9, NXDOMAIN otherwise.
func blacklist(t *testing.T) (string, *atomic.Int64) {
	t.Helper()
	var n atomic.Int64
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &dns.Server{PacketConn: pc, Handler: dns.HandlerFunc(func(w dns.ResponseWriter, r *dns.Msg) {
		n.Add(1)
		m := new(dns.Msg)
		m.SetReply(r)
		name := strings.ToLower(r.Question[0].Name)
		var a string
		switch {
		case strings.HasPrefix(name, "1.80.1.127."):
			a = "127.1.80.1"
		case strings.HasPrefix(name, "9.100.51.198."):
			a = "10.0.0.1"
		}
		if a == "" {
			m.Rcode = dns.RcodeNameError
		} else {
			m.Answer = append(m.Answer, &dns.A{Hdr: dns.RR_Header{Name: r.Question[0].Name, Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 60}, A: net.ParseIP(a)})
		}
		_ = w.WriteMsg(m)
	})}
	go func() { _ = srv.ActivateAndServe() }()
	t.Cleanup(func() { _ = srv.Shutdown() })
	return pc.LocalAddr().String(), &n
}

// Two application servers share memcached: what one looked up, the other
// gets without a DNS query; an error answer is not stored; with
// memcached gone, lookups go on over DNS.
func TestSharedCache(t *testing.T) {
	mc := startMemcached(t)
	dnsAddr, queries := blacklist(t)
	newChecker := func(servers ...string) *httpbl.Checker {
		c, err := httpbl.New(httpbl.Options{Resolvers: []string{dnsAddr}, Cache: memcache.New(0, servers...)})
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	a, b := newChecker(mc), newChecker(mc)
	ctx := context.Background()
	listed, clean, bad := netip.MustParseAddr("127.1.80.1"), netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("198.51.100.9")
	if d := a.Check(ctx, listed); !d.Deny || d.Cached {
		t.Fatalf("first lookup: %+v", d)
	}
	a.Check(ctx, clean)
	a.Check(ctx, bad)
	if n := queries.Load(); n != 3 {
		t.Fatalf("%d DNS queries, want 3", n)
	}
	if d := b.Check(ctx, listed); !d.Deny || !d.Cached {
		t.Errorf("second server, listed: %+v, want denied from memcached", d)
	}
	if d := b.Check(ctx, clean); d.Deny || !d.Cached {
		t.Errorf("second server, clean: %+v, want allowed from memcached", d)
	}
	if d := b.Check(ctx, bad); d.Err == nil || d.Cached {
		t.Errorf("second server, error answer: %+v, want an error asked again", d)
	}
	if n := queries.Load(); n != 4 {
		t.Errorf("%d DNS queries, want 4 (only the error answer asked again)", n)
	}
	gone := newChecker("127.0.0.1:1")
	start := time.Now()
	if d := gone.Check(ctx, listed); !d.Deny || d.Err != nil {
		t.Errorf("memcached down: %+v", d)
	}
	if took := time.Since(start); took > time.Second {
		t.Errorf("memcached down cost %v", took)
	}
}
