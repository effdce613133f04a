package bgp

import (
	"context"
	"fmt"
	"net/netip"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v3/api"
)

// addActivePeer configures the router to connect to the speaker at
// speaker:port from its own address.
func (r *router) addActivePeer(speakerASN uint32, speaker netip.Addr, port int, local netip.Addr, gtsm bool) {
	r.t.Helper()
	p := &api.Peer{
		Conf:      &api.PeerConf{NeighborAddress: speaker.String(), PeerAsn: speakerASN},
		Transport: &api.Transport{RemotePort: uint32(port), LocalAddress: local.String()},
		Timers:    &api.Timers{Config: &api.TimersConfig{HoldTime: 9, KeepaliveInterval: 3, ConnectRetry: 1, IdleHoldTimeAfterReset: 1}},
		AfiSafis:  []*api.AfiSafi{{Config: &api.AfiSafiConfig{Family: apiFamily(IPv4Unicast), Enabled: true}}},
	}
	if gtsm {
		p.TtlSecurity = &api.TtlSecurity{Enabled: true, TtlMin: 255}
	}
	if err := r.srv.AddPeer(context.Background(), &api.AddPeerRequest{Peer: p}); err != nil {
		r.t.Fatalf("router: add peer: %v", err)
	}
}

// With ttl_security, a session comes up with a router that uses GTSM too
// and never with one whose packets arrive with a TTL below 255.
func TestTTLSecurity(t *testing.T) {
	for _, routerGTSM := range []bool{true, false} {
		t.Run(fmt.Sprintf("router GTSM %v", routerGTSM), func(t *testing.T) {
			r := newRouter(t, 65001)
			p := &api.Peer{
				Conf:      &api.PeerConf{NeighborAddress: "127.0.0.1", PeerAsn: speakerASN},
				Transport: &api.Transport{PassiveMode: true},
				Timers:    &api.Timers{Config: &api.TimersConfig{HoldTime: 9, KeepaliveInterval: 3, ConnectRetry: 1, IdleHoldTimeAfterReset: 1}},
			}
			if routerGTSM {
				p.TtlSecurity = &api.TtlSecurity{Enabled: true, TtlMin: 255}
			}
			if err := r.srv.AddPeer(context.Background(), &api.AddPeerRequest{Peer: p}); err != nil {
				t.Fatal(err)
			}
			cfg := r.speakerConfig(speakerASN)
			cfg.Peers[0].TTLSecurity = true
			s := startSpeaker(t, cfg)
			if err := s.Ready(context.Background()); err != nil {
				t.Fatal(err)
			}
			if routerGTSM {
				waitPeerUp(t, s, 20*time.Second)
				return
			}
			time.Sleep(5 * time.Second)
			if ps, _ := s.Peers(context.Background()); ps[0].Up || r.established() {
				t.Fatalf("session up with a router sending TTL below 255: %+v", ps[0])
			}
		})
	}
}

// A host that is not a configured peer can not open a session, even on
// bhrd's listening port.
func TestUnknownAddressCannotOpenSession(t *testing.T) {
	port := freePort(t)
	cfg := Config{
		ASN: speakerASN, RouterID: netip.MustParseAddr("10.255.0.2"), ListenPort: port,
		ListenAddresses: []netip.Addr{loopback},
		Peers:           []PeerConfig{{Address: netip.MustParseAddr("127.0.0.2"), ASN: 65002, Passive: true}},
	}
	s := startSpeaker(t, cfg)
	if err := s.Ready(context.Background()); err != nil {
		t.Fatal(err)
	}
	stranger := newRouterAt(t, 65003, netip.MustParseAddr("127.0.0.3"))
	stranger.addActivePeer(speakerASN, loopback, port, netip.MustParseAddr("127.0.0.3"), false)
	time.Sleep(5 * time.Second)
	if stranger.established() {
		t.Fatal("an unconfigured address opened a session")
	}
	ps, err := s.Peers(context.Background())
	if err != nil || len(ps) != 1 || ps[0].Up {
		t.Fatalf("peers %+v %v", ps, err)
	}
}
