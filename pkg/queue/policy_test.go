package queue

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"
	"time"
)

func TestAutoscaleWorkedExamples(t *testing.T) {
	p := DefaultPolicy()
	now := time.Date(2026, 11, 21, 0, 0, 0, 0, time.UTC)
	last := func(dur, ago int) *Block {
		end := now.Add(-time.Duration(ago) * time.Second)
		return &Block{Added: end.Add(-time.Duration(dur) * time.Second), UnblockAt: end}
	}
	cases := []struct {
		name     string
		req      time.Duration
		last     *Block
		wantSecs int
	}{
		{"example 1", 300 * time.Second, last(300, 3300), 600},
		{"example 2", 3600 * time.Second, last(86400, 259200), 86400},
		{"decayed", 60 * time.Second, last(86400, 400000), 43200},
		{"request wins", 7200 * time.Second, last(300, 3300), 7200},
		{"no history", 300 * time.Second, nil, 300},
		{"indefinite history", 300 * time.Second, &Block{Added: now.Add(-time.Hour)}, 300},
		{"indefinite request", 0, last(300, 10), 0},
	}
	for _, c := range cases {
		got := p.Autoscale(c.req, c.last, now)
		if got != time.Duration(c.wantSecs)*time.Second {
			t.Errorf("%s: got %v, want %ds", c.name, got, c.wantSecs)
		}
	}
}

func TestPolicyValidate(t *testing.T) {
	p := DefaultPolicy()
	p.MinimumPrefixLen = 33
	if p.Validate() == nil {
		t.Error("minimum_prefixlen 33 accepted")
	}
	p = DefaultPolicy()
	p.ReturnToBaseFactor = 0
	if p.Validate() == nil {
		t.Error("return_to_base_factor 0 accepted")
	}
}

// TestPrefixIndexMatchesLinearScan checks the trie against the obvious
// loop BHR used, on random data.
func TestPrefixIndexMatchesLinearScan(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	randPrefix := func() netip.Prefix {
		if r.IntN(4) == 0 {
			var b [16]byte
			b[0], b[1] = 0x20, 0x01
			b[2] = byte(r.IntN(4))
			return netip.PrefixFrom(netip.AddrFrom16(b), 16+r.IntN(113)).Masked()
		}
		a := netip.AddrFrom4([4]byte{10, byte(r.IntN(4)), byte(r.IntN(256)), byte(r.IntN(256))})
		return netip.PrefixFrom(a, 8+r.IntN(25)).Masked()
	}
	var items []indexed[netip.Prefix]
	for i := 0; i < 300; i++ {
		p := randPrefix()
		items = append(items, indexed[netip.Prefix]{p, p})
	}
	ix := newPrefixIndex(items)
	for i := 0; i < 20000; i++ {
		q := randPrefix()
		got, ok := ix.overlap(q)
		want := false
		for _, it := range items {
			if it.prefix.Overlaps(q) {
				want = true
				break
			}
		}
		if ok != want {
			t.Fatalf("overlap(%v) = %v, linear scan says %v", q, ok, want)
		}
		if ok && !got.Overlaps(q) {
			t.Fatalf("overlap(%v) returned %v which does not overlap", q, got)
		}
	}
	var empty *prefixIndex[int]
	if _, ok := empty.overlap(netip.MustParsePrefix("1.2.3.4/32")); ok {
		t.Fatal("nil index matched")
	}
}

// BenchmarkWhitelistCheck measures the whitelist check with 10,000
// entries (BHR looped over all of them per request).
func BenchmarkWhitelistCheck(b *testing.B) {
	var items []indexed[WhitelistEntry]
	for i := 0; i < 10000; i++ {
		p := netip.MustParsePrefix(fmt.Sprintf("10.%d.%d.0/24", i/256, i%256))
		items = append(items, indexed[WhitelistEntry]{p, WhitelistEntry{CIDR: p}})
	}
	s := &Service{}
	s.rules.Store(newRules(Policy{}))
	s.whitelist.Store(newPrefixIndex(items))
	queries := []netip.Prefix{
		netip.MustParsePrefix("10.20.30.40/32"),  // inside an entry
		netip.MustParsePrefix("172.16.5.5/32"),   // no match
		netip.MustParsePrefix("10.0.0.0/16"),     // contains entries
		netip.MustParsePrefix("2001:db8::1/128"), // other family
	}
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		s.WhitelistCheck(queries[i%len(queries)])
	}
}
