package dnsbl

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func fastServer(t testing.TB, keys bool) *Server {
	t.Helper()
	cfg := Config{Zones: []string{"bl.example.net", "dnsbl.httpbl.org"}, DefaultThreatBase: 25, Types: map[string]uint8{"trap": 4}}
	if keys {
		cfg.Keys = map[[32]byte]string{HashKey("abcdefghijkl"): "web1"}
	}
	s, err := New(cfg, NewTable())
	if err != nil {
		t.Fatal(err)
	}
	s.now = func() time.Time { return t0.Add(50 * time.Hour) }
	s.table.Set(netip.MustParsePrefix("198.51.100.0/24"), Entry{Source: "ids", Added: t0, UnblockAt: t0.Add(48 * time.Hour)})
	s.table.Set(netip.MustParsePrefix("198.51.100.7/32"), Entry{Source: "trap", Added: t0})
	s.table.Set(netip.MustParsePrefix("2001:db8::/64"), Entry{Source: "ids", Added: t0})
	return s
}

// compare checks that the fast path, when it answers req, gives the
// same reply as the full path.
func compare(t *testing.T, s *Server, req []byte) (fast bool) {
	t.Helper()
	out := s.fastAnswer(req, make([]byte, 0, 512))
	if out == nil {
		return false
	}
	got := new(dns.Msg)
	if err := got.Unpack(out); err != nil {
		t.Fatalf("fast reply does not unpack: %v", err)
	}
	r := new(dns.Msg)
	if err := r.Unpack(req); err != nil {
		t.Fatalf("fast path answered what does not unpack")
	}
	want := s.Answer(r)
	b, err := want.Pack()
	if err != nil {
		t.Fatal(err)
	}
	want = new(dns.Msg)
	if err := want.Unpack(b); err != nil {
		t.Fatal(err)
	}
	// Names compare without case: the fast SOA owner points into the
	// question, as the client spelt it.
	if g, w := strings.ToLower(got.String()), strings.ToLower(want.String()); g != w {
		t.Fatalf("fast path differs for %s:\n%s\nfull path:\n%s", r.Question[0].Name, g, w)
	}
	return true
}

func TestFastPathMatchesAnswer(t *testing.T) {
	for _, keys := range []bool{false, true} {
		s := fastServer(t, keys)
		n := 0
		for _, a := range []string{"198.51.100.1", "198.51.100.7", "198.51.101.1", "2001:db8::1", "2001:db9::1", "127.0.0.2", "127.0.0.1", "::ffff:198.51.100.7"} {
			for _, zone := range []string{"bl.example.net", "DNSBL.HttpBL.org", "other.org"} {
				for _, key := range []string{"", "abcdefghijkl", "ABCDEFGHIJKL", "wrongwrongxx"} {
					for _, edns := range []bool{false, true} {
						for _, qt := range []uint16{dns.TypeA, dns.TypeAAAA} {
							m := new(dns.Msg)
							name := Name(netip.MustParseAddr(a), "x", key)
							name = strings.TrimSuffix(name, "x.") + zone + "."
							m.SetQuestion(name, qt)
							m.Id = 4242
							m.CheckingDisabled = edns
							if edns {
								m.SetEdns0(4096, false)
							}
							req, err := m.Pack()
							if err != nil {
								t.Fatal(err)
							}
							if compare(t, s, req) {
								n++
							}
						}
					}
				}
			}
		}
		if n < 20 {
			t.Errorf("keys %v: the fast path answered only %d queries", keys, n)
		}
		t.Logf("keys %v: fast path answered %d", keys, n)
	}
}

func FuzzFastPath(f *testing.F) {
	for _, name := range []string{"1.100.51.198.bl.example.net.", "abcdefghijkl.7.100.51.198.bl.example.net.", "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.dnsbl.httpbl.org."} {
		for _, edns := range []bool{false, true} {
			m := new(dns.Msg)
			m.SetQuestion(name, dns.TypeA)
			if edns {
				m.SetEdns0(1232, false)
			}
			b, _ := m.Pack()
			f.Add(b)
		}
	}
	s := fastServer(f, false)
	sk := fastServer(f, true)
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, srv := range []*Server{s, sk} {
			out := srv.fastAnswer(b, nil)
			if out == nil {
				continue
			}
			r := new(dns.Msg)
			if err := r.Unpack(b); err != nil {
				// The fast path must not answer what the full one can
				// not read, unless it is only the trailing bytes.
				t.Fatalf("fast path answered an unreadable message: %v", err)
			}
			compare(t, srv, b)
		}
	})
}

func BenchmarkFastAnswer(b *testing.B) {
	s := fastServer(b, false)
	for _, c := range []struct{ name, addr string }{{"listed", "198.51.100.7"}, {"unlisted", "203.0.113.1"}} {
		m := new(dns.Msg)
		m.SetQuestion(Name(netip.MustParseAddr(c.addr), "bl.example.net", ""), dns.TypeA)
		req, _ := m.Pack()
		out := make([]byte, 0, 512)
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if s.fastAnswer(req, out) == nil {
					b.Fatal("declined")
				}
			}
		})
	}
}
