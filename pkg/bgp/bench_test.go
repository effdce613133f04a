package bgp

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"
)

// hostRoutes returns n /32 blackholes counting up from 10.0.0.0.
func hostRoutes(n int) []Route {
	routes := make([]Route, n)
	comms := DefaultCommunities()
	for i := range routes {
		a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		routes[i] = Route{Prefix: netip.PrefixFrom(a, 32), Communities: comms}
	}
	return routes
}

func prefixesOf(routes []Route) []netip.Prefix {
	out := make([]netip.Prefix, len(routes))
	for i, r := range routes {
		out[i] = r.Prefix
	}
	return out
}

// waitCount waits until the router's IPv4 table holds n prefixes.
func (r *router) waitCount(n int, timeout time.Duration) {
	r.t.Helper()
	waitFor(r.t, timeout, fmt.Sprintf("%d prefixes in the router's RIB", n), func() (bool, string) {
		c := r.count(IPv4Unicast)
		return c == n, fmt.Sprintf("%d prefixes", c)
	})
}

// BenchmarkAnnounce100k measures, on an established eBGP session between
// two in-process GoBGP servers, the time from Announce being called with
// 100,000 routes until all are in the peer's RIB, and from Withdraw until
// all are gone.
func BenchmarkAnnounce100k(b *testing.B) {
	const n = 100_000
	routes := hostRoutes(n)
	prefixes := prefixesOf(routes)
	r := newRouter(b, routerASN)
	r.addPeer(speakerASN, routerPeerOpts{})
	s := startSpeaker(b, r.speakerConfig(speakerASN))
	if err := s.Ready(context.Background()); err != nil {
		b.Fatal(err)
	}
	waitPeerUp(b, s, 15*time.Second)

	var local, announce, withdraw, peers time.Duration
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		if err := s.Announce(context.Background(), "bench", routes); err != nil {
			b.Fatal(err)
		}
		local += time.Since(start)
		r.waitCount(n, 60*time.Second)
		announce += time.Since(start)

		start = time.Now()
		ps, err := s.Peers(context.Background())
		if err != nil {
			b.Fatal(err)
		}
		peers += time.Since(start)
		if ps[0].PrefixesSent != n {
			b.Fatalf("peer state says %d prefixes sent, want %d", ps[0].PrefixesSent, n)
		}

		start = time.Now()
		if err := s.Withdraw(context.Background(), "bench", prefixes); err != nil {
			b.Fatal(err)
		}
		r.waitCount(0, 60*time.Second)
		withdraw += time.Since(start)
	}
	b.StopTimer()
	b.ReportMetric(local.Seconds()/float64(b.N), "s-local-rib")
	b.ReportMetric(announce.Seconds()/float64(b.N), "s-announced")
	b.ReportMetric(withdraw.Seconds()/float64(b.N), "s-withdrawn")
	b.ReportMetric(peers.Seconds()/float64(b.N), "s-peers-call")
}

// BenchmarkAnnounce100kBeforeReady measures the restart path: 100,000
// routes announced into the local RIB before Ready, then Ready, until all
// are in the peer's RIB.
func BenchmarkAnnounce100kBeforeReady(b *testing.B) {
	const n = 100_000
	routes := hostRoutes(n)
	var local, total time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		r := newRouter(b, routerASN)
		r.addPeer(speakerASN, routerPeerOpts{})
		cfg := r.speakerConfig(speakerASN)
		s := startSpeaker(b, cfg)
		b.StartTimer()

		start := time.Now()
		if err := s.Announce(context.Background(), "bench", routes); err != nil {
			b.Fatal(err)
		}
		local += time.Since(start)
		if err := s.Ready(context.Background()); err != nil {
			b.Fatal(err)
		}
		r.waitCount(n, 60*time.Second)
		total += time.Since(start)
	}
	b.ReportMetric(local.Seconds()/float64(b.N), "s-local-rib")
	b.ReportMetric(total.Seconds()/float64(b.N), "s-announced")
}
