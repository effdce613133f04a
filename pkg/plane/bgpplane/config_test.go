package bgpplane_test

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bhrd/bhrd/pkg/bgp"
	"github.com/bhrd/bhrd/pkg/config"
	"github.com/bhrd/bhrd/pkg/plane"
	"github.com/bhrd/bhrd/pkg/plane/bgpplane"
)

// The section and the settings come out of the file typed, with one
// grammar for communities (names included) and the defaults filled.
func TestDecodedTyped(t *testing.T) {
	const file = `
bgp:
  asn: 64512
  router_id: 192.0.2.254
  listen_port: -1
  peers:
    - {name: r1, address: "2001:db8::10", asn: 64512, port: 1179, families: [ipv6-unicast]}
    - {name: r2, address: 192.0.2.11, asn: 64513}
    - {name: r3, address: 192.0.2.12, asn: 64513}
enforcers:
  - {ident: b1, type: bgp, bgp: {communities: [blackhole, "64512:9"], large_communities: ["64512:666:1"], peers: [r1], next_hop_v6: "100::9"}}
  - {ident: b2, type: bgp, bgp: {peers: [r2]}}
`
	_, err := config.Parse([]byte(file + "  - {ident: b3, type: bgp, bgp: {communities: []}}\n"))
	var ps config.Problems
	if !errors.As(err, &ps) || len(ps) != 2 || ps[0].Key != "enforcers[2].bgp.peers" {
		t.Fatalf("b3 takes every peer, which b1 and b2 already feed: want two problems at enforcers[2].bgp.peers, got %v", err)
	}
	c, err := config.Parse([]byte(file + "  - {ident: b3, type: bgp, bgp: {communities: [], peers: [192.0.2.12]}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	s := bgpplane.SectionOf(c)
	if s.RouterID != netip.MustParseAddr("192.0.2.254") || s.Peers[0].Address != netip.MustParseAddr("2001:db8::10") ||
		s.Peers[0].Port != 1179 || !slices.Equal(s.Peers[0].Families, []bgp.Family{bgp.IPv6Unicast}) {
		t.Errorf("section: %+v", s)
	}
	if !s.GracefulRestart.Enabled || s.GracefulRestart.RestartTime == 0 {
		t.Errorf("graceful restart defaults lost: %+v", s.GracefulRestart)
	}
	b1, b2, b3 := bgpplane.SettingsOf(c.Enforcers[0]), bgpplane.SettingsOf(c.Enforcers[1]), bgpplane.SettingsOf(c.Enforcers[2])
	if !slices.Equal(b1.Communities, []bgp.Community{bgp.Community(bgp.CommunityBlackhole), 64512<<16 | 9}) ||
		!slices.Equal(b1.LargeCommunities, []bgp.LargeCommunity{{GlobalAdmin: 64512, LocalData1: 666, LocalData2: 1}}) ||
		b1.NextHopV6 != netip.MustParseAddr("100::9") || b1.NextHopV4 != bgp.DefaultNextHopV4 {
		t.Errorf("b1: %+v", b1)
	}
	if !slices.Equal(b2.Communities, []bgp.Community{bgp.Community(bgp.CommunityBlackhole), bgp.Community(bgp.CommunityNoExport)}) {
		t.Errorf("b2 did not get BLACKHOLE and NO_EXPORT by default: %v", b2.Communities)
	}
	if len(b3.Communities) != 0 {
		t.Errorf("b3 asked for no communities, got %v", b3.Communities)
	}
}

// The plane protects its peers, router id, listen addresses and next
// hops, as the daemon did before planes had folders.
func TestProtected(t *testing.T) {
	c := bgpplane.WithSection(config.Default(), bgpplane.Config{
		ASN: 64512, RouterID: netip.MustParseAddr("192.0.2.254"), ListenPort: 179,
		ListenAddresses: []netip.Addr{netip.MustParseAddr("192.0.2.253"), netip.IPv6Unspecified()},
		Peers:           []bgpplane.Peer{{Address: netip.MustParseAddr("::ffff:192.0.2.10"), ASN: 64500}},
	})
	c.Enforcers = []config.Enforcer{{Ident: "b1", Type: bgpplane.Name, Settings: bgpplane.Settings{NextHopV4: netip.MustParseAddr("192.0.2.66")}}}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	p, err := plane.Lookup(bgpplane.Name)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, pp := range p.Protected(c) {
		got = append(got, pp.Prefix.String())
	}
	slices.Sort(got)
	want := []string{"100::1/128", "192.0.2.10/32", "192.0.2.253/32", "192.0.2.254/32", "192.0.2.66/32"}
	if !slices.Equal(got, want) {
		t.Errorf("protected %v, want %v", got, want)
	}
}

// A passive peer with graceful restart would lose every blackhole at a
// restart of bhrd: check-config refuses the combination and says why.
func TestPassivePeerWithGracefulRestartRefused(t *testing.T) {
	base := "bgp: {asn: 64512, router_id: 192.0.2.254, %s peers: [{address: 192.0.2.10, asn: 64500, passive: true}]}\nenforcers: [{ident: b, type: bgp}]\n"
	_, err := config.Parse([]byte(fmt.Sprintf(base, "")))
	var ps config.Problems
	if !errors.As(err, &ps) || len(ps) != 1 || ps[0].Key != "bgp.peers[0].passive" || !strings.Contains(ps[0].Message, "flushes") {
		t.Fatalf("passive peer with graceful restart: %v", err)
	}
	if _, err := config.Parse([]byte(fmt.Sprintf(base, "graceful_restart: {enabled: false},"))); err != nil {
		t.Fatalf("passive peer without graceful restart: %v", err)
	}
}

// The session keys a peering engineer asks for decode typed and are
// checked together.
func TestPeerSessionKeys(t *testing.T) {
	c, err := config.Parse([]byte(`
bgp:
  asn: 64512
  router_id: 192.0.2.254
  peers: [{address: 192.0.2.10, asn: 64500, local_address: 192.0.2.20, connect_retry: 5s, ttl_security: true}]
enforcers: [{ident: b, type: bgp}]
`))
	if err != nil {
		t.Fatal(err)
	}
	p := bgpplane.SectionOf(c).Peers[0]
	if p.LocalAddress != netip.MustParseAddr("192.0.2.20") || p.ConnectRetry != 5*time.Second || !p.TTLSecurity {
		t.Errorf("peer %+v", p)
	}
	_, err = config.Parse([]byte(`
bgp:
  asn: 64512
  router_id: 192.0.2.254
  peers: [{address: 192.0.2.10, asn: 64500, local_address: "2001:db8::1", connect_retry: 1500ms, ttl_security: true, multihop_ttl: 2}]
enforcers: [{ident: b, type: bgp}]
`))
	var ps config.Problems
	if !errors.As(err, &ps) {
		t.Fatalf("%v", err)
	}
	got := map[string]bool{}
	for _, p := range ps {
		got[p.Key] = true
	}
	for _, k := range []string{"bgp.peers[0].local_address", "bgp.peers[0].connect_retry", "bgp.peers[0].ttl_security"} {
		if !got[k] {
			t.Errorf("no problem at %s: %v", k, ps)
		}
	}
}
