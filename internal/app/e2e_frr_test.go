package app_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/netip"
	"strings"
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

// A router that refuses bhrd's session is visible: FRR allows 1 IPv4
// prefix and tears the session down (Cease 6/1) past it; then
// api/bgp/peers says the peer is down with that reason and 0 prefixes
// sent, and /readyz names the peer as down. (FRR 8.4 let a third prefix
// in at maximum-prefix 2 without a teardown, so the limit here is 1.)
func TestE2EFRRMaxPrefixTeardownIsReported(t *testing.T) {
	frr := bgptest.StartFRR(t, bgptest.FRRConfig{RouterASN: routerASN, SpeakerASN: speakerASN, MaxPrefix: 1})
	bhrd := startApp(t, app.Options{Config: bgpConfig(t, t.TempDir(), frr.Port)})
	client := newClient(t, bhrd.APIAddr(), newToken(t, bhrd.Store()))
	bgptest.WaitFor(t, 20*time.Second, "FRR's session with bhrd", frr.Established)
	client.block("198.51.100.51", "300")
	frr.WaitPrefixes("ipv4", 10*time.Second, []netip.Prefix{netip.MustParsePrefix("198.51.100.51/32")})
	client.block("198.51.100.52", "300")
	client.block("198.51.100.53", "300")

	type peer struct {
		Peer   string  `json:"peer"`
		Up     bool    `json:"up"`
		Sent   uint64  `json:"prefixes_sent"`
		Down   *string `json:"last_down"`
		Reason string  `json:"last_down_reason"`
	}
	var p peer
	bgptest.WaitFor(t, 20*time.Second, "api/bgp/peers to report FRR's teardown", func() (bool, string) {
		status, body := client.do("GET", "/bhr/api/bgp/peers", nil)
		var ps []peer
		if status != 200 || json.Unmarshal(body, &ps) != nil || len(ps) != 1 {
			return false, string(body)
		}
		p = ps[0]
		return !p.Up && p.Down != nil && p.Reason != "", string(body)
	})
	if p.Sent != 0 {
		t.Errorf("prefixes_sent %d for a peer whose session is down, want 0", p.Sent)
	}
	if !strings.Contains(p.Reason, "6/1") || !strings.Contains(p.Reason, "maximum number of prefixes") {
		t.Errorf("last_down_reason %q, want FRR's Cease 6/1", p.Reason)
	}
	resp, err := http.Get("http://" + bhrd.APIAddr() + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), "bgp peers down") || !strings.Contains(string(body), "127.0.0.1") {
		t.Errorf("/readyz: %d %q, want 200 naming the down peer", resp.StatusCode, body)
	}
}
