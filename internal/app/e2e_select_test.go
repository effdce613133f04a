package app_test

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"testing"
	"time"

	"github.com/bhrd/bhrd/internal/app"
	"github.com/bhrd/bhrd/internal/bgptest"
	"github.com/bhrd/bhrd/pkg/bgp"
	"github.com/bhrd/bhrd/pkg/config"
	"github.com/bhrd/bhrd/pkg/plane/bgpplane"
	"github.com/bhrd/bhrd/pkg/queue"
)

// Which blocks go to which routers: the upstream's enforcer takes every
// block and tags the ids source's with 65000:100 (a rule); the IXP route
// server's enforcer takes only host routes from the ids source. Both
// routers are real GoBGP speakers; the IXP one must never see the rest.
func TestE2ESelectAndRules(t *testing.T) {
	upstream := bgptest.NewRouter(t, routerASN)
	upstream.AddPeer(speakerASN, bgptest.PeerOptions{})
	ixpAddr := netip.MustParseAddr("127.0.0.2")
	ixp := bgptest.NewRouterAt(t, 65010, ixpAddr)
	ixp.AddPeer(speakerASN, bgptest.PeerOptions{})

	cfg := bgpConfig(t, t.TempDir(), upstream.Port)
	s := bgpplane.SectionOf(cfg)
	s.Peers = append(s.Peers, bgpplane.Peer{Name: "ixp", Address: ixpAddr, ASN: 65010, Port: uint16(ixp.Port),
		HoldTime: 9 * time.Second, LocalAddress: bgptest.Loopback})
	cfg = bgpplane.WithSection(cfg, s)
	tag := bgp.Community(65000<<16 | 100)
	cfg.Enforcers = []config.Enforcer{
		{Ident: bgpIdent, Type: "bgp", Settings: bgpplane.Settings{Peers: []string{"router"},
			Rules: []bgpplane.Rule{{Select: queue.Selection{Sources: []string{"ids"}}, Communities: []bgp.Community{tag}}}}},
		{Ident: "ixp1", Type: "bgp", Settings: bgpplane.Settings{Peers: []string{"ixp"}},
			Select: queue.Selection{Sources: []string{"ids"}, PrefixLenV4: queue.LenRange{Min: 32}, PrefixLenV6: queue.LenRange{Min: 128}}},
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	bhrd := startApp(t, app.Options{Config: cfg})
	api := newClient(t, bhrd.APIAddr(), newToken(t, bhrd.Store()))
	upstream.WaitEstablished(20 * time.Second)
	ixp.WaitEstablished(20 * time.Second)

	post := func(cidr, source string) {
		t.Helper()
		st, body := api.do("POST", "/bhr/api/block", url.Values{"cidr": {cidr}, "source": {source}, "why": {"select test"}, "duration": {"300"}})
		if st != http.StatusCreated {
			t.Fatalf("block %s: %d %s", cidr, st, body)
		}
	}
	post("198.51.100.10", "ids")
	post("198.51.100.11", "manual")
	post("198.51.100.64/28", "ids")
	post("2001:db8::10", "ids")
	post("2001:db8:1::/64", "ids")

	pfx := netip.MustParsePrefix
	withTag := func(want bool) func(bgptest.Path) error {
		return func(p bgptest.Path) error {
			if got := slices.Contains(p.Communities, uint32(tag)); got != want {
				return fmt.Errorf("%s: 65000:100 present %v, want %v: %s", p.Prefix, got, want, p)
			}
			if !slices.Contains(p.Communities, bgp.CommunityBlackhole) {
				return fmt.Errorf("%s: no BLACKHOLE: %s", p.Prefix, p)
			}
			return nil
		}
	}
	// Upstream: everything; the ids blocks tagged, manual's not.
	upstream.WaitRIB(bgp.IPv4Unicast, 10*time.Second, []netip.Prefix{pfx("198.51.100.10/32"), pfx("198.51.100.11/32"), pfx("198.51.100.64/28")},
		func(p bgptest.Path) error { return withTag(p.Prefix != pfx("198.51.100.11/32"))(p) })
	upstream.WaitRIB(bgp.IPv6Unicast, 10*time.Second, []netip.Prefix{pfx("2001:db8::10/128"), pfx("2001:db8:1::/64")}, withTag(true))
	// IXP: only the ids host routes, without the upstream's tag.
	ixp.WaitRIB(bgp.IPv4Unicast, 10*time.Second, []netip.Prefix{pfx("198.51.100.10/32")}, withTag(false))
	ixp.WaitRIB(bgp.IPv6Unicast, 10*time.Second, []netip.Prefix{pfx("2001:db8::10/128")}, withTag(false))

	// The skipped blocks are not queued for ixp1 any more, and
	// current_blocks lists ixp1 only for what it enforces.
	bgptest.WaitFor(t, 10*time.Second, "ixp1's queue to be empty", func() (bool, string) {
		q, err := bhrd.Service().BlockQueue(enforcerCtx("ixp1"), "ixp1", time.Time{}, 0)
		return err == nil && len(q) == 0, fmt.Sprintf("%d queued, %v", len(q), err)
	})
	n := 0
	if err := bhrd.Service().ListEntries(enforcerCtx("ixp1"), queue.EntryListOptions{Ident: "ixp1"}, func(queue.Entry) error { n++; return nil }); err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Errorf("ixp1 has %d entries, want 2", n)
	}
	if got := ixp.Count(bgp.IPv4Unicast) + ixp.Count(bgp.IPv6Unicast); got != 2 {
		t.Errorf("IXP router holds %d routes, want 2: %s %s", got,
			bgptest.DescribeRIB(ixp.RIB(bgp.IPv4Unicast)), bgptest.DescribeRIB(ixp.RIB(bgp.IPv6Unicast)))
	}
}

func enforcerCtx(ident string) context.Context {
	return queue.WithActor(context.Background(), queue.EnforcerActor(ident))
}
