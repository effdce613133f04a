package bgptest_test

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bhrd/bhrd/internal/bgptest"
	"github.com/bhrd/bhrd/pkg/bgp"
)

// TestRouter checks the helpers against a real speaker: the RIB decodes
// what was sent, and the best-path watch and BestSet follow announcements
// and withdrawals.
func TestRouter(t *testing.T) {
	r := bgptest.NewRouter(t, 65001)
	r.AddPeer(65000, bgptest.PeerOptions{})
	var events []bgptest.BestEvent
	got := make(chan bgptest.BestEvent, 16)
	r.WatchBest(func(ev bgptest.BestEvent) { got <- ev })
	best := r.TrackBest()

	s, err := bgp.New(bgp.Config{
		ASN: 65000, RouterID: netip.MustParseAddr("10.255.0.2"), ListenPort: -1,
		Peers: []bgp.PeerConfig{{Address: bgptest.Loopback, ASN: 65001, Port: uint16(r.Port),
			HoldTime: 9 * time.Second, ConnectRetry: time.Second}},
	}, bgptest.Logger(t))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := s.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Stop(context.Background()) })
	v4 := netip.MustParsePrefix("198.51.100.1/32")
	v6 := netip.MustParsePrefix("2001:db8::1/128")
	large := []bgp.LargeCommunity{{GlobalAdmin: 65000, LocalData1: 666, LocalData2: 1}}
	err = s.Announce(ctx, "t", []bgp.Route{
		{Prefix: v4, Communities: bgp.DefaultCommunities(), LargeCommunities: large},
		{Prefix: v6, Communities: bgp.DefaultCommunities()},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Ready(ctx); err != nil {
		t.Fatal(err)
	}
	r.WaitEstablished(20 * time.Second)

	rib := r.WaitRIB(bgp.IPv4Unicast, 10*time.Second, []netip.Prefix{v4}, bgptest.Blackhole(bgp.DefaultNextHopV4, bgp.DefaultCommunities()))
	if p := rib[v4]; !slices.Equal(p.Large, large) || !slices.Equal(p.ASPath, []uint32{65000}) || p.HasLocalPref || p.Stale {
		t.Errorf("decoded path %s", p)
	}
	r.WaitRIB(bgp.IPv6Unicast, 10*time.Second, []netip.Prefix{v6}, bgptest.Blackhole(bgp.DefaultNextHopV6, bgp.DefaultCommunities()))
	if at := best.WaitLen(t, 2, 5*time.Second); at.IsZero() {
		t.Error("BestSet reached 2 without a change time")
	}
	if n := r.Count(bgp.IPv4Unicast); n != 1 {
		t.Errorf("Count(ipv4) = %d, want 1", n)
	}

	if err := s.Withdraw(ctx, "t", []netip.Prefix{v4, v6}); err != nil {
		t.Fatal(err)
	}
	best.WaitLen(t, 0, 10*time.Second)
	r.WaitRIB(bgp.IPv4Unicast, time.Second, nil, nil)
	for len(events) < 4 {
		select {
		case ev := <-got:
			events = append(events, ev)
		case <-time.After(5 * time.Second):
			t.Fatalf("best-path events: %+v, want 4", events)
		}
	}
	seen := map[netip.Prefix][]bool{}
	for _, ev := range events {
		seen[ev.Prefix] = append(seen[ev.Prefix], ev.Withdrawn)
	}
	for _, p := range []netip.Prefix{v4, v6} {
		if !slices.Equal(seen[p], []bool{false, true}) {
			t.Errorf("events for %s: withdrawn %v, want announce then withdraw", p, seen[p])
		}
	}
}

// TestBIRD checks the BIRD helper: it starts, answers birdc, and reports
// no session and no route before anyone connects.
func TestBIRD(t *testing.T) {
	d := bgptest.StartBIRD(t, bgptest.BIRDConfig{RouterASN: 65001, SpeakerASN: 65000})
	if up, out := d.SessionUp(); up {
		t.Errorf("session up with nobody connected:\n%s", out)
	}
	if out := d.Route(netip.MustParsePrefix("198.51.100.1/32")); out != "" {
		t.Errorf("route before any session:\n%s", out)
	}
	// The discard route is BIRD's own and resolves blackholes' next hops.
	out, err := d.Cmd("show", "route", "table", "master4", "for", bgp.DefaultNextHopV4.String())
	if err != nil {
		t.Fatalf("birdc: %v\n%s", err, out)
	}
	if !strings.Contains(out, "blackhole") || !strings.Contains(out, "[discard4 ") {
		t.Errorf("no discard route for %s:\n%s", bgp.DefaultNextHopV4, out)
	}
}
