package bgp

import (
	"context"
	"net/netip"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	"google.golang.org/protobuf/types/known/anypb"
)

// Router A sends bhrd a route; router B must never get it from bhrd (eBGP
// would pass it on with bhrd's AS and next hop), bhrd must not select it,
// and the peers' state counts it as received and rejected.
func TestPeersRoutesAreNeitherKeptNorPassedOn(t *testing.T) {
	a := newRouterAt(t, 65001, loopback)
	b := newRouterAt(t, 65002, netip.MustParseAddr("127.0.0.2"))
	a.addPeer(speakerASN, routerPeerOpts{})
	b.addPeer(speakerASN, routerPeerOpts{})
	cfg := a.speakerConfig(speakerASN)
	cfg.Peers = append(cfg.Peers, PeerConfig{
		Address: netip.MustParseAddr("127.0.0.2"), ASN: 65002, Port: uint16(b.port),
		HoldTime: 9 * time.Second, ConnectRetry: time.Second,
	})
	s := startSpeaker(t, cfg)
	if err := s.Ready(context.Background()); err != nil {
		t.Fatal(err)
	}

	leaked := netip.MustParsePrefix("203.0.113.128/25")
	nlri, _ := anypb.New(&api.IPAddressPrefix{Prefix: leaked.Addr().String(), PrefixLen: uint32(leaked.Bits())})
	origin, _ := anypb.New(&api.OriginAttribute{Origin: 0})
	nh, _ := anypb.New(&api.NextHopAttribute{NextHop: "127.0.0.1"})
	if _, err := a.srv.AddPath(context.Background(), &api.AddPathRequest{Path: &api.Path{
		Family: apiFamily(IPv4Unicast), Nlri: nlri, Pattrs: []*anypb.Any{origin, nh},
	}}); err != nil {
		t.Fatal(err)
	}
	var fromA PeerState
	waitFor(t, 20*time.Second, "bhrd to have received A's route", func() (bool, string) {
		ps, err := s.Peers(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		fromA = ps[0]
		return ps[0].PrefixesReceived == 1 && ps[1].Up, ""
	})
	if fromA.PrefixesAccepted != 0 || fromA.PrefixesRejected != 1 {
		t.Errorf("A's route: accepted %d, rejected %d; want 0 and 1", fromA.PrefixesAccepted, fromA.PrefixesRejected)
	}
	// A blackhole announced after A's route reached bhrd: once B has it,
	// B would also have had A's route, had bhrd passed it on.
	own := netip.MustParsePrefix("198.51.100.40/32")
	if err := s.Announce(context.Background(), "bgp1", []Route{blackhole(own.String())}); err != nil {
		t.Fatal(err)
	}
	b.waitRIB(IPv4Unicast, 10*time.Second, []netip.Prefix{own}, nil)
	time.Sleep(200 * time.Millisecond)
	if rib := b.rib(IPv4Unicast); len(rib) != 1 {
		t.Errorf("router B got more than bhrd's blackhole:\n%s", describeRIB(rib))
	}
	// Nor does bhrd's own RIB hold it.
	err := s.srv.ListPath(context.Background(), &api.ListPathRequest{TableType: api.TableType_GLOBAL, Family: apiFamily(IPv4Unicast)},
		func(d *api.Destination) {
			if d.Prefix == leaked.String() {
				t.Errorf("bhrd's RIB holds a peer's route: %v", d)
			}
		})
	if err != nil {
		t.Fatal(err)
	}
}
