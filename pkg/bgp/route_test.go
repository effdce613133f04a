package bgp

import (
	"errors"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/osrg/gobgp/v3/pkg/apiutil"
	"github.com/osrg/gobgp/v3/pkg/packet/bgp"
)

func TestRouteNormalize(t *testing.T) {
	tests := []struct {
		name    string
		route   Route
		nextHop string // expected next hop after defaults; "" when an error is expected
		err     string
	}{
		{"v4 default next hop", Route{Prefix: netip.MustParsePrefix("198.51.100.1/32")}, "192.0.2.1", ""},
		{"v6 default next hop", Route{Prefix: netip.MustParsePrefix("2001:db8::1/128")}, "100::1", ""},
		{"explicit next hop", Route{Prefix: netip.MustParsePrefix("198.51.100.0/24"), NextHop: netip.MustParseAddr("192.0.2.66")}, "192.0.2.66", ""},
		{"no prefix", Route{}, "", "prefix is not set"},
		{"host bits", Route{Prefix: netip.MustParsePrefix("198.51.100.1/24")}, "", "did you mean 198.51.100.0/24"},
		{"mapped prefix", Route{Prefix: netip.MustParsePrefix("::ffff:198.51.100.1/128")}, "", "plain IPv4"},
		{"v6 next hop for v4", Route{Prefix: netip.MustParsePrefix("198.51.100.1/32"), NextHop: netip.MustParseAddr("100::1")}, "", "not of the prefix's address family"},
		{"v4 next hop for v6", Route{Prefix: netip.MustParsePrefix("2001:db8::1/128"), NextHop: netip.MustParseAddr("192.0.2.1")}, "", "not of the prefix's address family"},
		{"unspecified next hop", Route{Prefix: netip.MustParsePrefix("198.51.100.1/32"), NextHop: netip.MustParseAddr("0.0.0.0")}, "", "not usable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.route.normalize()
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) || !errors.Is(err, ErrInvalidRoute) {
					t.Fatalf("error %v, want ErrInvalidRoute containing %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got.NextHop.String() != tt.nextHop {
				t.Errorf("next hop %s, want %s", got.NextHop, tt.nextHop)
			}
		})
	}
}

func TestCommunities(t *testing.T) {
	if FormatCommunity(CommunityBlackhole) != "65535:666" || FormatCommunity(CommunityNoExport) != "65535:65281" {
		t.Errorf("well-known communities render as %s, %s", FormatCommunity(CommunityBlackhole), FormatCommunity(CommunityNoExport))
	}
	for _, s := range []string{"65535:666", "0:0", "64512:1"} {
		c, err := ParseCommunity(s)
		if err != nil || FormatCommunity(c) != s {
			t.Errorf("round trip %s: %s, %v", s, FormatCommunity(c), err)
		}
	}
	for in, want := range map[string]uint32{"blackhole": CommunityBlackhole, "No-Export": CommunityNoExport, "no-peer": 0xFFFFFF04, " 64512:100 ": 64512<<16 | 100} {
		if got, err := ParseCommunity(in); err != nil || got != want {
			t.Errorf("ParseCommunity(%q) = %x, %v", in, got, err)
		}
	}
	for _, s := range []string{"", "65536:1", "1:-1", "1", "a:b", "1:2:3", "banana"} {
		if _, err := ParseCommunity(s); err == nil {
			t.Errorf("ParseCommunity(%q) accepted", s)
		}
	}
	lc, err := ParseLargeCommunity("4200000000:666:1")
	if err != nil || lc != (LargeCommunity{4200000000, 666, 1}) || lc.String() != "4200000000:666:1" {
		t.Errorf("large community: %v %v", lc, err)
	}
	for _, s := range []string{"1:2", "1:2:x", "4294967296:1:1"} {
		if _, err := ParseLargeCommunity(s); err == nil {
			t.Errorf("ParseLargeCommunity(%q) accepted", s)
		}
	}
}

// The wire encoding handed to GoBGP must decode to exactly the route.
func TestAPIPathEncoding(t *testing.T) {
	for _, r := range []Route{
		{Prefix: netip.MustParsePrefix("198.51.100.0/23"), Communities: DefaultCommunities(), LocalPref: 200,
			LargeCommunities: []LargeCommunity{{65000, 666, 7}}},
		{Prefix: netip.MustParsePrefix("2001:db8:1::/48"), Communities: []uint32{CommunityBlackhole}},
		{Prefix: netip.MustParsePrefix("0.0.0.0/0")},
	} {
		t.Run(r.Prefix.String(), func(t *testing.T) {
			n, err := r.normalize()
			if err != nil {
				t.Fatal(err)
			}
			as, err := newAttrSet(n)
			if err != nil {
				t.Fatal(err)
			}
			p := apiPath(n.Prefix, as, 7)
			if p.Identifier != 7 {
				t.Errorf("identifier %d", p.Identifier)
			}
			nlri, err := apiutil.GetNativeNlri(p)
			if err != nil {
				t.Fatal(err)
			}
			if nlri.String() != n.Prefix.String() {
				t.Errorf("nlri %s, want %s", nlri, n.Prefix)
			}
			attrs, err := apiutil.GetNativePathAttributes(p)
			if err != nil {
				t.Fatal(err)
			}
			rp := decodePath(t, n.Prefix.String(), p)
			if rp.nextHop != n.NextHop || !slices.Equal(rp.communities, n.Communities) ||
				!slices.Equal(rp.large, n.LargeCommunities) || rp.localPref != n.LocalPref {
				t.Errorf("decoded %s, want %+v", rp, n)
			}
			var origin bool
			for _, a := range attrs {
				if o, ok := a.(*bgp.PathAttributeOrigin); ok && o.Value == bgp.BGP_ORIGIN_ATTR_TYPE_IGP {
					origin = true
				}
				if mp, ok := a.(*bgp.PathAttributeMpReachNLRI); ok && (len(mp.Value) != 1 || mp.Value[0].String() != n.Prefix.String()) {
					t.Errorf("MP_REACH_NLRI carries %v", mp.Value)
				}
			}
			if !origin {
				t.Error("no ORIGIN IGP attribute")
			}
		})
	}
}
