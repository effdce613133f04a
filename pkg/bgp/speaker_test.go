package bgp

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"
)

const (
	speakerASN = 65000
	routerASN  = 65001
)

var ctxb = context.Background()

func TestAnnounceWithdrawIPv4(t *testing.T) {
	r := newRouter(t, routerASN)
	r.addPeer(speakerASN, routerPeerOpts{})
	s := startSpeaker(t, r.speakerConfig(speakerASN))

	var mu sync.Mutex
	var events []PeerEvent
	s.OnPeerEvent(func(e PeerEvent) {
		mu.Lock()
		events = append(events, e)
		mu.Unlock()
	})

	// Announced before Ready: goes out when the session opens.
	p := netip.MustParsePrefix("198.51.100.7/32")
	if err := s.Announce(ctxb, "bgp1", []Route{blackhole(p.String())}); err != nil {
		t.Fatalf("announce: %v", err)
	}
	if err := s.Ready(ctxb); err != nil {
		t.Fatalf("ready: %v", err)
	}
	got := r.waitRIB(IPv4Unicast, 15*time.Second, []netip.Prefix{p},
		expectAttrs(DefaultNextHopV4, []uint32{CommunityBlackhole, CommunityNoExport}))
	if ap := got[p].asPath; !slices.Equal(ap, []uint32{speakerASN}) {
		t.Errorf("AS path %v, want [%d]", ap, speakerASN)
	}
	if got[p].hasLP {
		t.Errorf("eBGP peer received LOCAL_PREF %d", got[p].localPref)
	}
	if FormatCommunity(got[p].communities[0]) != "65535:666" || FormatCommunity(got[p].communities[1]) != "65535:65281" {
		t.Errorf("communities %v", got[p].communities)
	}

	ps := waitPeerUp(t, s, 5*time.Second)
	if ps.State != "established" || ps.ASN != routerASN || ps.Address != loopback {
		t.Errorf("peer state %+v", ps)
	}
	if ps.PrefixesSent != 1 {
		t.Errorf("prefixes sent %d, want 1", ps.PrefixesSent)
	}
	if !slices.Equal(ps.Families, []Family{IPv4Unicast, IPv6Unicast}) {
		t.Errorf("families %v", ps.Families)
	}
	if ps.Since.IsZero() || ps.Since.After(time.Now()) {
		t.Errorf("since %v", ps.Since)
	}

	// Announced while established.
	p2 := netip.MustParsePrefix("203.0.113.0/24")
	if err := s.Announce(ctxb, "bgp1", []Route{blackhole(p2.String())}); err != nil {
		t.Fatalf("announce: %v", err)
	}
	r.waitRIB(IPv4Unicast, 5*time.Second, []netip.Prefix{p, p2}, nil)

	if err := s.Withdraw(ctxb, "bgp1", []netip.Prefix{p}); err != nil {
		t.Fatalf("withdraw: %v", err)
	}
	r.waitRIB(IPv4Unicast, 5*time.Second, []netip.Prefix{p2}, nil)
	// Withdrawing again, or something never announced, is a no-op.
	if err := s.Withdraw(ctxb, "bgp1", []netip.Prefix{p, netip.MustParsePrefix("192.0.2.99/32")}); err != nil {
		t.Fatalf("repeated withdraw: %v", err)
	}
	if err := s.Withdraw(ctxb, "bgp1", []netip.Prefix{p2}); err != nil {
		t.Fatalf("withdraw: %v", err)
	}
	r.waitRIB(IPv4Unicast, 5*time.Second, nil, nil)
	if a := s.Announced("bgp1"); len(a) != 0 {
		t.Errorf("announced after withdrawing all: %v", a)
	}

	mu.Lock()
	defer mu.Unlock()
	if len(events) == 0 || !events[0].Up || events[0].Address != loopback || events[0].ASN != routerASN || events[0].State != "established" {
		t.Errorf("peer events %+v, want an up event for %s first", events, loopback)
	}
}

func TestIPv6OverIPv4Session(t *testing.T) {
	r := newRouter(t, routerASN)
	r.addPeer(speakerASN, routerPeerOpts{})
	s := startSpeaker(t, r.speakerConfig(speakerASN))
	if err := s.Ready(ctxb); err != nil {
		t.Fatalf("ready: %v", err)
	}
	waitPeerUp(t, s, 15*time.Second)

	p := netip.MustParsePrefix("2001:db8::7/128")
	if err := s.Announce(ctxb, "bgp1", []Route{blackhole(p.String())}); err != nil {
		t.Fatalf("announce: %v", err)
	}
	r.waitRIB(IPv6Unicast, 5*time.Second, []netip.Prefix{p},
		expectAttrs(DefaultNextHopV6, []uint32{CommunityBlackhole, CommunityNoExport}))
	if n := r.count(IPv4Unicast); n != 0 {
		t.Errorf("IPv4 table has %d prefixes", n)
	}
	if err := s.Withdraw(ctxb, "bgp1", []netip.Prefix{p}); err != nil {
		t.Fatalf("withdraw: %v", err)
	}
	r.waitRIB(IPv6Unicast, 5*time.Second, nil, nil)
}

func TestIBGPLargeCommunitiesLocalPref(t *testing.T) {
	r := newRouter(t, speakerASN) // same AS: iBGP
	r.addPeer(speakerASN, routerPeerOpts{})
	s := startSpeaker(t, r.speakerConfig(speakerASN))
	if err := s.Ready(ctxb); err != nil {
		t.Fatalf("ready: %v", err)
	}
	waitPeerUp(t, s, 15*time.Second)

	site := uint32(speakerASN<<16 | 666)
	large := []LargeCommunity{{GlobalAdmin: speakerASN, LocalData1: 666, LocalData2: 1}}
	routes := []Route{
		{Prefix: netip.MustParsePrefix("198.51.100.8/32"), NextHop: netip.MustParseAddr("192.0.2.66"),
			Communities: []uint32{site}, LargeCommunities: large, LocalPref: 200},
		{Prefix: netip.MustParsePrefix("2001:db8::8/128"), Communities: []uint32{site}, LargeCommunities: large, LocalPref: 200},
	}
	if err := s.Announce(ctxb, "internal", routes); err != nil {
		t.Fatalf("announce: %v", err)
	}
	check := func(nh netip.Addr) func(ribPath) error {
		return func(p ribPath) error {
			if err := expectAttrs(nh, []uint32{site})(p); err != nil {
				return err
			}
			if !p.hasLP || p.localPref != 200 {
				return fmt.Errorf("%s: local pref %d (present %v), want 200", p.prefix, p.localPref, p.hasLP)
			}
			if !slices.Equal(p.large, large) {
				return fmt.Errorf("%s: large communities %v, want %v", p.prefix, p.large, large)
			}
			if len(p.asPath) != 0 {
				return fmt.Errorf("%s: iBGP AS path %v, want empty", p.prefix, p.asPath)
			}
			return nil
		}
	}
	r.waitRIB(IPv4Unicast, 5*time.Second, []netip.Prefix{routes[0].Prefix}, check(netip.MustParseAddr("192.0.2.66")))
	r.waitRIB(IPv6Unicast, 5*time.Second, []netip.Prefix{routes[1].Prefix}, check(DefaultNextHopV6))

	if got := s.Announced("internal"); len(got) != 2 || got[0].LocalPref != 200 || !slices.Equal(got[1].LargeCommunities, large) {
		t.Errorf("Announced = %+v", got)
	}
	if err := s.Withdraw(ctxb, "internal", []netip.Prefix{routes[0].Prefix, routes[1].Prefix}); err != nil {
		t.Fatalf("withdraw: %v", err)
	}
	r.waitRIB(IPv4Unicast, 5*time.Second, nil, nil)
	r.waitRIB(IPv6Unicast, 5*time.Second, nil, nil)
}

// Two owners (enforcer idents) announcing one prefix hold separate paths:
// the prefix stays announced until both withdraw it.
func TestTwoOwnersSamePrefix(t *testing.T) {
	r := newRouter(t, routerASN)
	r.addPeer(speakerASN, routerPeerOpts{})
	s := startSpeaker(t, r.speakerConfig(speakerASN))
	if err := s.Ready(ctxb); err != nil {
		t.Fatalf("ready: %v", err)
	}
	waitPeerUp(t, s, 15*time.Second)

	p := netip.MustParsePrefix("198.51.100.9/32")
	a := Route{Prefix: p, Communities: []uint32{CommunityBlackhole}}
	b := Route{Prefix: p, Communities: []uint32{CommunityBlackhole, CommunityNoExport}}
	if err := s.Announce(ctxb, "ixp", []Route{a}); err != nil {
		t.Fatalf("announce a: %v", err)
	}
	r.waitRIB(IPv4Unicast, 5*time.Second, []netip.Prefix{p}, expectAttrs(DefaultNextHopV4, a.Communities))
	if err := s.Announce(ctxb, "internal", []Route{b}); err != nil {
		t.Fatalf("announce b: %v", err)
	}
	// Re-announcing identical attributes is a no-op, not a new path.
	if err := s.Announce(ctxb, "ixp", []Route{a}); err != nil {
		t.Fatalf("re-announce a: %v", err)
	}

	if err := s.Withdraw(ctxb, "ixp", []netip.Prefix{p}); err != nil {
		t.Fatalf("withdraw a: %v", err)
	}
	r.waitRIB(IPv4Unicast, 5*time.Second, []netip.Prefix{p}, expectAttrs(DefaultNextHopV4, b.Communities))
	if got := s.Announced("ixp"); len(got) != 0 {
		t.Errorf("ixp still announces %v", got)
	}
	if got := s.Announced("internal"); len(got) != 1 || !slices.Equal(got[0].Communities, b.Communities) {
		t.Errorf("internal announces %v", got)
	}

	// Changing attributes replaces the owner's path.
	c := Route{Prefix: p, Communities: []uint32{CommunityBlackhole, 65000<<16 | 1}}
	if err := s.Announce(ctxb, "internal", []Route{c}); err != nil {
		t.Fatalf("announce c: %v", err)
	}
	r.waitRIB(IPv4Unicast, 5*time.Second, []netip.Prefix{p}, expectAttrs(DefaultNextHopV4, c.Communities))

	if err := s.Withdraw(ctxb, "internal", []netip.Prefix{p}); err != nil {
		t.Fatalf("withdraw c: %v", err)
	}
	r.waitRIB(IPv4Unicast, 5*time.Second, nil, nil)
	if n := s.table.interned(); n != 0 {
		t.Errorf("%d attribute sets still interned after withdrawing everything", n)
	}
}

func TestLifecycleErrors(t *testing.T) {
	r := newRouter(t, routerASN)
	s, err := New(r.speakerConfig(speakerASN), testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Announce(ctxb, "x", []Route{blackhole("198.51.100.1/32")}); !errors.Is(err, ErrNotStarted) {
		t.Errorf("announce before start: %v, want ErrNotStarted", err)
	}
	if err := s.Ready(ctxb); !errors.Is(err, ErrNotStarted) {
		t.Errorf("ready before start: %v, want ErrNotStarted", err)
	}
	if err := s.Start(ctxb); err != nil {
		t.Fatal(err)
	}
	err = s.Announce(ctxb, "x", []Route{blackhole("198.51.100.1/32"), blackhole("198.51.101.0/23")})
	if !errors.Is(err, ErrInvalidRoute) {
		t.Errorf("announce with host bits: %v, want ErrInvalidRoute", err)
	}
	if got := s.Announced("x"); len(got) != 0 {
		t.Errorf("an invalid batch announced %v", got)
	}
	ctx, cancel := context.WithCancel(ctxb)
	cancel()
	if err := s.Announce(ctx, "x", []Route{blackhole("198.51.100.1/32")}); !errors.Is(err, context.Canceled) {
		t.Errorf("announce with cancelled context: %v", err)
	}
	if err := s.Stop(ctxb); err != nil {
		t.Fatal(err)
	}
	if err := s.Announce(ctxb, "x", []Route{blackhole("198.51.100.1/32")}); !errors.Is(err, ErrStopped) {
		t.Errorf("announce after stop: %v, want ErrStopped", err)
	}
	if err := s.Start(ctxb); !errors.Is(err, ErrStopped) {
		t.Errorf("start after stop: %v, want ErrStopped", err)
	}
	if err := s.Stop(ctxb); err != nil {
		t.Errorf("second stop: %v", err)
	}
}

// Without graceful restart, Stop sends a Cease and the router drops the
// routes at once; this is the contrast to TestGracefulRestart.
func TestStopWithoutGracefulRestartWithdraws(t *testing.T) {
	r := newRouter(t, routerASN)
	r.addPeer(speakerASN, routerPeerOpts{gr: true})
	s, err := New(r.speakerConfig(speakerASN), testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(ctxb); err != nil {
		t.Fatal(err)
	}
	p := netip.MustParsePrefix("198.51.100.10/32")
	if err := s.Announce(ctxb, "bgp1", []Route{blackhole(p.String())}); err != nil {
		t.Fatal(err)
	}
	if err := s.Ready(ctxb); err != nil {
		t.Fatal(err)
	}
	r.waitRIB(IPv4Unicast, 15*time.Second, []netip.Prefix{p}, nil)
	if err := s.Stop(ctxb); err != nil {
		t.Fatal(err)
	}
	r.waitRIB(IPv4Unicast, 5*time.Second, nil, nil)
}
