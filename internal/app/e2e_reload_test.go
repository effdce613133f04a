package app_test

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/bhrd/bhrd/internal/app"
	"github.com/bhrd/bhrd/internal/bgptest"
	"github.com/bhrd/bhrd/pkg/bgp"
	"github.com/bhrd/bhrd/pkg/plane/bgpplane"
)

// TestE2EReloadBGPPeers: a SIGHUP-style reload adds a peer to a running
// bgp enforcer (the router gets what is already blocked) and removes it
// again (the router's session closes and the routes go), without a
// restart.
func TestE2EReloadBGPPeers(t *testing.T) {
	r := bgptest.NewRouter(t, routerASN)
	r.AddPeer(speakerASN, bgptest.PeerOptions{})
	withPeer := bgpConfig(t, t.TempDir(), r.Port)
	b := bgpplane.SectionOf(withPeer)
	b.Peers = nil
	noPeer := bgpplane.WithSection(withPeer, b)
	a := startApp(t, app.Options{Config: noPeer})
	api := newClient(t, a.APIAddr(), newToken(t, a.Store()))
	p := netip.MustParsePrefix("198.51.100.44/32")
	api.block(p.Addr().String(), "1h")
	api.waitCurrent(10*time.Second, p.String())

	res, err := a.Reload("bhrd.yaml", withPeer)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.NotReloaded) != 0 {
		t.Fatalf("peer reload reported %v", res.NotReloaded)
	}
	r.WaitEstablished(20 * time.Second)
	r.WaitRIB(bgp.IPv4Unicast, 10*time.Second, []netip.Prefix{p}, blackholeCheck(nextHopV4))

	// The new peer's address is now protected from blocking.
	if status, body := api.do("POST", "/bhr/api/block", map[string]any{
		"cidr": bgptest.Loopback.String(), "source": "test", "why": "peer", "duration": "300",
	}); status != 400 || !strings.Contains(string(body), "BGP peer") {
		t.Fatalf("block of the new peer's address: %d %s", status, body)
	}

	if _, err := a.Reload("bhrd.yaml", noPeer); err != nil {
		t.Fatal(err)
	}
	r.WaitDown(10 * time.Second)
	r.WaitRIB(bgp.IPv4Unicast, 10*time.Second, nil, nil)
}
