package dnsbl

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

var t0 = time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)

func newServer(t *testing.T, cfg Config) (*Server, *Table, string) {
	t.Helper()
	tbl := NewTable()
	if cfg.Zones == nil {
		cfg.Zones = []string{"bl.example.net", "dnsbl.httpbl.org"}
	}
	s, err := New(cfg, tbl)
	if err != nil {
		t.Fatal(err)
	}
	s.now = func() time.Time { return t0.Add(3*24*time.Hour + time.Hour) }
	if err := s.Listen([]string{"127.0.0.1:0"}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Error(err)
		}
	})
	return s, tbl, s.Addrs()[0].String()
}

func ask(t *testing.T, network, addr, name string, qtype uint16) *dns.Msg {
	t.Helper()
	c := &dns.Client{Net: network, Timeout: 2 * time.Second}
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	r, _, err := c.Exchange(m, addr)
	if err != nil {
		t.Fatalf("%s %s %s: %v", network, name, dns.TypeToString[qtype], err)
	}
	return r
}

func answerA(t *testing.T, r *dns.Msg) string {
	t.Helper()
	for _, rr := range r.Answer {
		if a, ok := rr.(*dns.A); ok {
			return a.A.String()
		}
	}
	return ""
}

func hasSOA(r *dns.Msg) bool {
	for _, rr := range r.Ns {
		if _, ok := rr.(*dns.SOA); ok {
			return true
		}
	}
	return false
}

// Listed and unlisted addresses, v4 and v6, over UDP and TCP, with and
// without an access key label, the longest prefix winning.
func TestAnswersOverUDPAndTCP(t *testing.T) {
	_, tbl, addr := newServer(t, Config{Types: map[string]uint8{"spamtrap": TypeCommentSpammer}, ThreatBase: map[string]int{"spamtrap": 50}, DefaultThreatBase: 25})
	tbl.Set(netip.MustParsePrefix("198.51.100.0/24"), Entry{Source: "ids", Added: t0, UnblockAt: t0.Add(24 * time.Hour)})
	tbl.Set(netip.MustParsePrefix("198.51.100.7/32"), Entry{Source: "spamtrap", Added: t0.Add(24 * time.Hour), UnblockAt: t0.Add(11 * 24 * time.Hour)})
	tbl.Set(netip.MustParsePrefix("2001:db8::/64"), Entry{Source: "ids", Added: t0})
	for _, network := range []string{"udp", "tcp"} {
		for _, c := range []struct {
			addr, key, want string
		}{
			// /24 from ids: 3 days old, one-day block → threat 25, type 1.
			{"198.51.100.1", "", "127.3.25.1"},
			{"198.51.100.254", "abcdefghijkl", "127.3.25.1"},
			// The /32 inside wins: spamtrap, 2 days, 10-day block → 50+25.
			{"198.51.100.7", "abcdefghijkl", "127.2.75.4"},
			// Indefinite: base + 75.
			{"2001:db8::1", "", "127.3.100.1"},
			{"2001:db8::ffff:1", "abcdefghijkl", "127.3.100.1"},
			{"198.51.101.1", "", ""},
			{"2001:db8:0:1::1", "", ""},
			// RFC 5782 test entries.
			{"127.0.0.2", "", "127.0.0.2"},
			{"::ffff:127.0.0.2", "", "127.0.0.2"},
			{"127.0.0.1", "", ""},
		} {
			for _, zone := range []string{"bl.example.net", "dnsbl.httpbl.org"} {
				name := Name(netip.MustParseAddr(c.addr), zone, c.key)
				r := ask(t, network, addr, name, dns.TypeA)
				got := answerA(t, r)
				if got != c.want {
					t.Errorf("%s %s: A %q (rcode %s), want %q", network, name, got, dns.RcodeToString[r.Rcode], c.want)
				}
				wantRcode := dns.RcodeSuccess
				if c.want == "" {
					wantRcode = dns.RcodeNameError
					if !hasSOA(r) {
						t.Errorf("%s %s: NXDOMAIN without SOA in authority", network, name)
					}
				}
				if r.Rcode != wantRcode || !r.Authoritative {
					t.Errorf("%s %s: rcode %s aa %v, want %s aa", network, name, dns.RcodeToString[r.Rcode], r.Authoritative, dns.RcodeToString[wantRcode])
				}
			}
		}
	}
}

// Every query type gets an answer: a listed name's other types NOERROR
// with no data (the Ruby gem asks A twice then AAAA twice), an unlisted
// one NXDOMAIN for all; the apex has SOA and NS; outside the zones is
// REFUSED; case does not matter.
func TestEveryTypeApexAndRefused(t *testing.T) {
	_, tbl, addr := newServer(t, Config{})
	tbl.Set(netip.MustParsePrefix("203.0.113.9/32"), Entry{Source: "x", Added: t0, UnblockAt: t0.Add(time.Hour)})
	listed := Name(netip.MustParseAddr("203.0.113.9"), "bl.example.net", "")
	for _, qt := range []uint16{dns.TypeAAAA, dns.TypeMX, dns.TypeTXT} {
		r := ask(t, "udp", addr, listed, qt)
		if r.Rcode != dns.RcodeSuccess || len(r.Answer) != 0 || !hasSOA(r) {
			t.Errorf("listed %s: rcode %s, %d answers, SOA %v; want NOERROR, no data, SOA", dns.TypeToString[qt], dns.RcodeToString[r.Rcode], len(r.Answer), hasSOA(r))
		}
	}
	if r := ask(t, "udp", addr, strings.ToUpper(listed), dns.TypeA); answerA(t, r) == "" {
		t.Errorf("upper-case name not answered: %v", r)
	}
	unlisted := Name(netip.MustParseAddr("203.0.113.10"), "bl.example.net", "")
	for _, qt := range []uint16{dns.TypeA, dns.TypeAAAA, dns.TypeTXT} {
		if r := ask(t, "udp", addr, unlisted, qt); r.Rcode != dns.RcodeNameError {
			t.Errorf("unlisted %s: %s, want NXDOMAIN", dns.TypeToString[qt], dns.RcodeToString[r.Rcode])
		}
	}
	r := ask(t, "tcp", addr, "bl.example.net.", dns.TypeSOA)
	if len(r.Answer) != 1 || r.Answer[0].(*dns.SOA).Mbox != "hostmaster.bl.example.net." {
		t.Errorf("SOA: %v", r.Answer)
	}
	r = ask(t, "udp", addr, "BL.example.NET.", dns.TypeNS)
	if len(r.Answer) != 1 || r.Answer[0].(*dns.NS).Ns != "ns.bl.example.net." {
		t.Errorf("NS: %v", r.Answer)
	}
	for _, name := range []string{"example.net.", "9.113.0.203.other.org.", "xbl.example.net.", "."} {
		if r := ask(t, "udp", addr, name, dns.TypeA); r.Rcode != dns.RcodeRefused || r.Authoritative {
			t.Errorf("%s: %s aa %v, want REFUSED", name, dns.RcodeToString[r.Rcode], r.Authoritative)
		}
	}
	for _, name := range []string{"foo.bl.example.net.", "1.2.3.bl.example.net.", "256.2.3.4.bl.example.net.", "a.b.c.d.e.f.bl.example.net."} {
		if r := ask(t, "udp", addr, name, dns.TypeA); r.Rcode != dns.RcodeNameError {
			t.Errorf("%s: %s, want NXDOMAIN", name, dns.RcodeToString[r.Rcode])
		}
	}
}

// TXT gives the source and end, only when configured; the RFC 5782 test
// entry always has one.
func TestTXT(t *testing.T) {
	for _, on := range []bool{false, true} {
		_, tbl, addr := newServer(t, Config{TXT: on})
		tbl.Set(netip.MustParsePrefix("203.0.113.9/32"), Entry{Source: "zeek", Added: t0, UnblockAt: t0.Add(time.Hour)})
		r := ask(t, "udp", addr, Name(netip.MustParseAddr("203.0.113.9"), "bl.example.net", ""), dns.TypeTXT)
		var txt string
		for _, rr := range r.Answer {
			if x, ok := rr.(*dns.TXT); ok {
				txt = strings.Join(x.Txt, "")
			}
		}
		want := ""
		if on {
			want = "source=zeek; until=2026-12-01T01:00:00Z"
		}
		if txt != want {
			t.Errorf("txt %v: %q, want %q", on, txt, want)
		}
		r = ask(t, "udp", addr, Name(netip.MustParseAddr("127.0.0.2"), "bl.example.net", ""), dns.TypeTXT)
		if len(r.Answer) != 1 {
			t.Errorf("test entry TXT: %v", r.Answer)
		}
	}
}

// With access keys, only a known key is answered; a missing or wrong one
// gets NXDOMAIN; the key's holder is in the counters.
func TestAccessKeys(t *testing.T) {
	s, tbl, addr := newServer(t, Config{Keys: map[[32]byte]string{HashKey("abcdefghijkl"): "web1"}})
	tbl.Set(netip.MustParsePrefix("203.0.113.9/32"), Entry{Source: "x", Added: t0, UnblockAt: t0.Add(time.Hour)})
	ip := netip.MustParseAddr("203.0.113.9")
	if got := answerA(t, ask(t, "udp", addr, Name(ip, "bl.example.net", "abcdefghijkl"), dns.TypeA)); got == "" {
		t.Error("known key not answered")
	}
	for _, key := range []string{"", "zzzzzzzzzzzz"} {
		r := ask(t, "udp", addr, Name(ip, "bl.example.net", key), dns.TypeA)
		if r.Rcode != dns.RcodeNameError {
			t.Errorf("key %q: %s, want NXDOMAIN", key, dns.RcodeToString[r.Rcode])
		}
	}
	c := s.Counts()
	if c[CountKey{Zone: "bl.example.net.", Answer: AnswerListed, Key: "web1"}] != 1 || c[CountKey{Zone: "bl.example.net.", Answer: AnswerBadKey}] != 2 {
		t.Errorf("counts %v", c)
	}
}

// Go's own resolver, as a web application would ask, over UDP and TCP.
func TestNetResolver(t *testing.T) {
	_, tbl, addr := newServer(t, Config{})
	tbl.Set(netip.MustParsePrefix("2001:db8::/48"), Entry{Source: "x", Added: t0, UnblockAt: t0.Add(time.Hour)})
	for _, network := range []string{"udp", "tcp"} {
		r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		}}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		got, err := r.LookupHost(ctx, Name(netip.MustParseAddr("2001:db8::42"), "bl.example.net", ""))
		if err != nil || len(got) != 1 || got[0] != "127.0.0.1" && !strings.HasPrefix(got[0], "127.") {
			t.Errorf("%s listed: %v %v", network, got, err)
		}
		_, err = r.LookupHost(ctx, Name(netip.MustParseAddr("2001:db9::42"), "bl.example.net", ""))
		var de *net.DNSError
		if !errors.As(err, &de) || !de.IsNotFound {
			t.Errorf("%s unlisted: %v, want not found", network, err)
		}
		cancel()
	}
}

func TestEncoding(t *testing.T) {
	for _, c := range []struct {
		base       int
		dur        time.Duration // 0: indefinite
		wantThreat uint8
	}{
		{25, time.Hour, 25}, {25, 24 * time.Hour, 25}, {25, 10 * 24 * time.Hour, 50}, {25, 100 * 24 * time.Hour, 75},
		{25, 0, 100}, {0, time.Minute, 1}, {250, 1000 * 24 * time.Hour, 255},
	} {
		end := time.Time{}
		if c.dur != 0 {
			end = t0.Add(c.dur)
		}
		if got := Threat(c.base, t0, end); got != c.wantThreat {
			t.Errorf("Threat(%d, %v) = %d, want %d", c.base, c.dur, got, c.wantThreat)
		}
	}
	for _, c := range []struct {
		d    time.Duration
		want uint8
	}{{-time.Hour, 0}, {23 * time.Hour, 0}, {25 * time.Hour, 1}, {300 * 24 * time.Hour, 255}} {
		if got := Days(t0, t0.Add(c.d)); got != c.want {
			t.Errorf("Days(%v) = %d, want %d", c.d, got, c.want)
		}
	}
	if got := Listing(3, 50, 1).String(); got != "127.3.50.1" {
		t.Errorf("Listing = %s", got)
	}
	if got := Name(netip.MustParseAddr("2001:db8::1"), "bl.test", ""); got != "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.bl.test." {
		t.Errorf("v6 name %s", got)
	}
	if _, err := New(Config{Zones: []string{"z"}, Types: map[string]uint8{"x": 0}}, NewTable()); err == nil {
		t.Error("type 0 accepted")
	}
}

func TestTableLongestPrefix(t *testing.T) {
	tbl := NewTable()
	for _, p := range []string{"10.0.0.0/8", "10.1.0.0/16", "10.1.2.0/24", "0.0.0.0/0", "::/0", "2001:db8::/32", "2001:db8::1/128"} {
		tbl.Set(netip.MustParsePrefix(p), Entry{Source: p})
	}
	for addr, want := range map[string]string{
		"10.1.2.3": "10.1.2.0/24", "10.1.3.3": "10.1.0.0/16", "10.2.0.1": "10.0.0.0/8", "11.0.0.1": "0.0.0.0/0",
		"2001:db8::1": "2001:db8::1/128", "2001:db8::2": "2001:db8::/32", "2001:db9::": "::/0", "::ffff:10.1.2.3": "10.1.2.0/24",
	} {
		p, e, ok := tbl.Lookup(netip.MustParseAddr(addr))
		if !ok || p.String() != want || e.Source != want {
			t.Errorf("Lookup(%s) = %s %q %v, want %s", addr, p, e.Source, ok, want)
		}
	}
	tbl.Delete(netip.MustParsePrefix("10.1.2.0/24"))
	tbl.Delete(netip.MustParsePrefix("0.0.0.0/0"))
	if p, _, _ := tbl.Lookup(netip.MustParseAddr("10.1.2.3")); p.String() != "10.1.0.0/16" {
		t.Errorf("after delete: %s", p)
	}
	if _, _, ok := tbl.Lookup(netip.MustParseAddr("11.0.0.1")); ok {
		t.Error("deleted /0 still matches")
	}
	if tbl.Len() != 5 || len(tbl.Prefixes()) != 5 {
		t.Errorf("len %d", tbl.Len())
	}
}

// Whatever arrives on the wire, the server answers or drops it without
// harm and never answers from outside its zones.
func FuzzAnswer(f *testing.F) {
	for _, name := range []string{"2.0.0.127.bl.example.net.", "bl.example.net.", "x.y.", "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.bl.example.net."} {
		m := new(dns.Msg)
		m.SetQuestion(name, dns.TypeA)
		b, _ := m.Pack()
		f.Add(b)
	}
	s, err := New(Config{Zones: []string{"bl.example.net"}, TXT: true}, NewTable())
	if err != nil {
		f.Fatal(err)
	}
	s.table.Set(netip.MustParsePrefix("0.0.0.0/0"), Entry{Source: "x", Added: t0})
	f.Fuzz(func(t *testing.T, b []byte) {
		r := new(dns.Msg)
		if err := r.Unpack(b); err != nil {
			return
		}
		m := s.Answer(r)
		if m == nil {
			return
		}
		if _, err := m.Pack(); err != nil {
			t.Fatalf("answer does not pack: %v", err)
		}
		if m.Rcode == dns.RcodeSuccess && len(m.Answer) > 0 {
			if _, ok := parseName(strings.ToLower(r.Question[0].Name), s.zones); !ok {
				t.Fatalf("answered outside the zones: %v", m)
			}
		}
	})
}

// An IPv6 listener answers over UDP and TCP as well.
func TestIPv6Listener(t *testing.T) {
	tbl := NewTable()
	tbl.Set(netip.MustParsePrefix("2001:db8::/32"), Entry{Source: "x", Added: t0})
	s, err := New(Config{Zones: []string{"bl.test"}}, tbl)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Listen([]string{"[::1]:0"}); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("no IPv6 loopback: %v", err)
		}
		t.Skipf("SKIP (no IPv6 loopback here): %v", err)
	}
	defer s.Shutdown(context.Background())
	addr := s.Addrs()[0].String()
	for _, network := range []string{"udp", "tcp"} {
		if got := answerA(t, ask(t, network, addr, Name(netip.MustParseAddr("2001:db8::5"), "bl.test", ""), dns.TypeA)); !strings.HasPrefix(got, "127.") {
			t.Errorf("%s over IPv6: %q", network, got)
		}
	}
}

// A server told it is not ready (its table still being filled) answers
// SERVFAIL to address queries, on both paths, never a cacheable
// NXDOMAIN; once ready it answers from the table.
func TestNotReady(t *testing.T) {
	tbl := NewTable()
	tbl.Set(netip.MustParsePrefix("203.0.113.0/24"), Entry{Source: "x", Added: t0})
	s, err := New(Config{Zones: []string{"bl.test"}, NotReady: true}, tbl)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Listen([]string{"127.0.0.1:0"}); err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown(context.Background())
	addr := s.Addrs()[0].String()
	name := Name(netip.MustParseAddr("203.0.113.1"), "bl.test", "")
	for _, network := range []string{"udp", "tcp"} {
		if r := ask(t, network, addr, name, dns.TypeA); r.Rcode != dns.RcodeServerFailure {
			t.Errorf("%s before ready: %s, want SERVFAIL", network, dns.RcodeToString[r.Rcode])
		}
	}
	if r := ask(t, "udp", addr, "bl.test.", dns.TypeSOA); len(r.Answer) != 1 {
		t.Errorf("the apex is answered before ready too: %v", r)
	}
	s.SetReady(true)
	if got := answerA(t, ask(t, "udp", addr, name, dns.TypeA)); !strings.HasPrefix(got, "127.") {
		t.Errorf("after ready: %q", got)
	}
}

// A source longer than a TXT string (255 bytes) is split, not a reply
// that does not pack; over UDP without EDNS the 600-byte answer is
// truncated (TC), for the client to ask again over TCP.
func TestLongSourceTXT(t *testing.T) {
	_, tbl, addr := newServer(t, Config{TXT: true})
	src := strings.Repeat("s", 600)
	tbl.Set(netip.MustParsePrefix("203.0.113.9/32"), Entry{Source: src, Added: t0})
	name := Name(netip.MustParseAddr("203.0.113.9"), "bl.example.net", "")
	if r := ask(t, "udp", addr, name, dns.TypeTXT); !r.Truncated {
		t.Errorf("udp: not truncated: %v", r)
	}
	r := ask(t, "tcp", addr, name, dns.TypeTXT)
	if len(r.Answer) != 1 || !strings.Contains(strings.Join(r.Answer[0].(*dns.TXT).Txt, ""), src) {
		t.Errorf("tcp: %v", r.Answer)
	}
}

// Queries arriving together from many sockets (so that one read takes
// several datagrams) are each answered to their own sender, with their
// own id and question; none is lost on loopback.
func TestUDPBurstRepliesToEachSender(t *testing.T) {
	_, tbl, addr := newServer(t, Config{})
	tbl.Set(netip.MustParsePrefix("198.51.100.0/24"), Entry{Source: "x", Added: t0})
	const socks, each = 8, 16
	errs := make(chan error, socks)
	for c := 0; c < socks; c++ {
		go func(c int) {
			conn, err := net.Dial("udp", addr)
			if err != nil {
				errs <- err
				return
			}
			defer conn.Close()
			want := map[uint16]string{}
			for i := 0; i < each; i++ {
				m := new(dns.Msg)
				a := netip.AddrFrom4([4]byte{198, 51, byte(100 + i%2), byte(c*each + i)})
				m.SetQuestion(Name(a, "bl.example.net", ""), dns.TypeA)
				m.Id = uint16(c<<8 | i)
				want[m.Id] = m.Question[0].Name
				b, _ := m.Pack()
				if _, err := conn.Write(b); err != nil {
					errs <- err
					return
				}
			}
			_ = conn.SetReadDeadline(time.Now().Add(3 * time.Second))
			buf := make([]byte, 512)
			for len(want) > 0 {
				n, err := conn.Read(buf)
				if err != nil {
					errs <- fmt.Errorf("socket %d: %d answers missing: %v", c, len(want), err)
					return
				}
				r := new(dns.Msg)
				if err := r.Unpack(buf[:n]); err != nil {
					errs <- err
					return
				}
				name, ok := want[r.Id]
				if !ok || len(r.Question) != 1 || r.Question[0].Name != name {
					errs <- fmt.Errorf("socket %d: an answer not asked here: %v", c, r)
					return
				}
				listed := strings.Contains(name, ".100.51.198.")
				if got := answerA(t, r); listed != (got != "") {
					errs <- fmt.Errorf("%s: answer %q", name, got)
					return
				}
				delete(want, r.Id)
			}
			errs <- nil
		}(c)
	}
	for c := 0; c < socks; c++ {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}
