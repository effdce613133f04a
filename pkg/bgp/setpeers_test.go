package bgp

import (
	"fmt"
	"net/netip"
	"testing"
	"time"
)

// TestSetPeersAtRunTime: a reload adds a peer to a running speaker (it
// gets the routes announced so far), keeps an unchanged one's session,
// and removes a peer (its router drops the routes).
func TestSetPeersAtRunTime(t *testing.T) {
	r := newRouter(t, routerASN)
	r.addPeer(speakerASN, routerPeerOpts{})
	cfg := r.speakerConfig(speakerASN)
	peer := cfg.Peers
	cfg.Peers = nil
	s := startSpeaker(t, cfg)
	p := netip.MustParsePrefix("198.51.100.9/32")
	if err := s.Announce(ctxb, "bgp1", []Route{blackhole(p.String())}); err != nil {
		t.Fatal(err)
	}
	if err := s.Ready(ctxb); err != nil {
		t.Fatal(err)
	}

	added, removed, err := s.SetPeers(ctxb, peer)
	if err != nil || len(added) != 1 || len(removed) != 0 {
		t.Fatalf("SetPeers(add) = %v %v %v", added, removed, err)
	}
	up := waitPeerUp(t, s, 15*time.Second)
	r.waitRIB(IPv4Unicast, 5*time.Second, []netip.Prefix{p},
		expectAttrs(DefaultNextHopV4, []uint32{CommunityBlackhole, CommunityNoExport}))

	// The same list again touches nothing: the session keeps its start.
	added, removed, err = s.SetPeers(ctxb, peer)
	if err != nil || len(added)+len(removed) != 0 {
		t.Fatalf("SetPeers(same) = %v %v %v", added, removed, err)
	}
	ps, err := s.Peers(ctxb)
	if err != nil || len(ps) != 1 || !ps[0].Up || !ps[0].Since.Equal(up.Since) {
		t.Fatalf("after an unchanged reload: %+v %v (was up since %v)", ps, err, up.Since)
	}

	added, removed, err = s.SetPeers(ctxb, nil)
	if err != nil || len(added) != 0 || len(removed) != 1 {
		t.Fatalf("SetPeers(remove) = %v %v %v", added, removed, err)
	}
	waitFor(t, 10*time.Second, "router session down", func() (bool, string) {
		return !r.established(), fmt.Sprint(r.established())
	})
	r.waitRIB(IPv4Unicast, 5*time.Second, nil, nil)

	bad := []PeerConfig{{Address: netip.MustParseAddr("127.0.0.1")}} // no ASN
	if _, _, err := s.SetPeers(ctxb, bad); err == nil {
		t.Fatal("invalid peer list accepted")
	}
	if ps, _ := s.Peers(ctxb); len(ps) != 0 {
		t.Fatalf("a refused list changed the peers: %+v", ps)
	}
}
