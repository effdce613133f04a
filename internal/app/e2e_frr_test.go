package app_test

import (
	"context"
	"encoding/json"
	"net/netip"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	"google.golang.org/protobuf/types/known/anypb"

	"github.com/bhrd/bhrd/internal/app"
	"github.com/bhrd/bhrd/internal/bgptest"
	"github.com/bhrd/bhrd/pkg/bgp"
	"github.com/bhrd/bhrd/pkg/plane/bgpplane"
)

// bhrd between two routers: router A (GoBGP) sends bhrd a route; FRR,
// the other peer, gets bhrd's blackholes and nothing of A's (before, FRR
// got A's route with AS path 65000 65001 and bhrd as next hop), and
// api/bgp/peers counts A's route as received and rejected.
func TestE2ENoRouteFromOnePeerReachesAnother(t *testing.T) {
	b := bgptest.StartFRR(t, bgptest.FRRConfig{RouterASN: 65002, SpeakerASN: speakerASN, Addr: netip.MustParseAddr("127.0.0.2")})
	a := bgptest.NewRouter(t, routerASN)
	a.AddPeer(speakerASN, bgptest.PeerOptions{})
	cfg := bgpConfig(t, t.TempDir(), a.Port)
	s := bgpplane.SectionOf(cfg)
	s.Peers = append(s.Peers, bgpplane.Peer{Name: "frr", Address: netip.MustParseAddr("127.0.0.2"), ASN: 65002,
		Port: uint16(b.Port), HoldTime: 9 * time.Second})
	cfg = bgpplane.WithSection(cfg, s)
	bhrd := startApp(t, app.Options{Config: cfg})
	client := newClient(t, bhrd.APIAddr(), newToken(t, bhrd.Store()))
	a.WaitEstablished(20 * time.Second)
	bgptest.WaitFor(t, 20*time.Second, "FRR's session with bhrd", b.Established)

	leaked := netip.MustParsePrefix("203.0.113.128/25")
	nlri, _ := anypb.New(&api.IPAddressPrefix{Prefix: leaked.Addr().String(), PrefixLen: uint32(leaked.Bits())})
	origin, _ := anypb.New(&api.OriginAttribute{Origin: 0})
	nh, _ := anypb.New(&api.NextHopAttribute{NextHop: "127.0.0.1"})
	if _, err := a.Server().AddPath(context.Background(), &api.AddPathRequest{Path: &api.Path{
		Family: bgptest.APIFamily(bgp.IPv4Unicast), Nlri: nlri, Pattrs: []*anypb.Any{origin, nh},
	}}); err != nil {
		t.Fatal(err)
	}
	type peer struct {
		Peer     string `json:"peer"`
		Received uint64 `json:"prefixes_received"`
		Accepted uint64 `json:"prefixes_accepted"`
		Rejected uint64 `json:"prefixes_rejected"`
	}
	var fromA peer
	bgptest.WaitFor(t, 20*time.Second, "bhrd to count router A's route", func() (bool, string) {
		status, body := client.do("GET", "/bhr/api/bgp/peers", nil)
		var ps []peer
		if status != 200 || json.Unmarshal(body, &ps) != nil {
			return false, string(body)
		}
		for _, p := range ps {
			if p.Peer == "127.0.0.1" {
				fromA = p
			}
		}
		return fromA.Received == 1, string(body)
	})
	if fromA.Accepted != 0 || fromA.Rejected != 1 {
		t.Errorf("router A's route: accepted %d, rejected %d; want 0 and 1", fromA.Accepted, fromA.Rejected)
	}

	// A blackhole posted after A's route reached bhrd: once FRR has it, it
	// would have A's route too, had bhrd passed it on.
	own := netip.MustParsePrefix("198.51.100.41/32")
	client.block(own.Addr().String(), "300")
	b.WaitPrefixes("ipv4", 10*time.Second, []netip.Prefix{own})
	time.Sleep(500 * time.Millisecond)
	if got := b.Prefixes("ipv4"); len(got) != 1 {
		t.Errorf("FRR got more than bhrd's blackhole: %v", got)
	}
	if up, out := b.Established(); !up {
		t.Errorf("FRR's session went down:\n%s", out)
	}
}
