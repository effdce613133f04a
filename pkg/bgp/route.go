package bgp

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/osrg/gobgp/v3/pkg/packet/bgp"
)

// Well-known communities used for blackholing.
const (
	// CommunityBlackhole is BLACKHOLE, 65535:666 (RFC 7999).
	CommunityBlackhole uint32 = 0xFFFF029A
	// CommunityNoExport is NO_EXPORT, 65535:65281 (RFC 1997).
	CommunityNoExport uint32 = 0xFFFFFF01
)

// Default next hops: addresses routers conventionally route to a discard
// interface for remote-triggered blackholing (RFC 5737 TEST-NET-1 and the
// RFC 6666 discard prefix).
var (
	DefaultNextHopV4 = netip.MustParseAddr("192.0.2.1")
	DefaultNextHopV6 = netip.MustParseAddr("100::1")
)

// ErrInvalidRoute is wrapped by Announce and Withdraw errors about their
// input; nothing was sent when it is returned.
var ErrInvalidRoute = errors.New("invalid route")

// LargeCommunity is an RFC 8092 large community, GlobalAdmin:Local1:Local2.
type LargeCommunity struct {
	GlobalAdmin, LocalData1, LocalData2 uint32
}

func (c LargeCommunity) String() string {
	return fmt.Sprintf("%d:%d:%d", c.GlobalAdmin, c.LocalData1, c.LocalData2)
}

// Route is one blackhole announcement.
type Route struct {
	// Prefix is the destination to blackhole; host bits must be zero.
	Prefix netip.Prefix
	// NextHop is the discard address; the zero value means
	// DefaultNextHopV4 or DefaultNextHopV6 by the prefix's family. It must be
	// of the prefix's family: an IPv6 prefix travels in MP_REACH_NLRI with
	// its IPv6 next hop even over an IPv4 session.
	NextHop netip.Addr
	// Communities are RFC 1997 communities, sent as given (nil sends none);
	// see DefaultCommunities.
	Communities []uint32
	// LargeCommunities are RFC 8092 large communities.
	LargeCommunities []LargeCommunity
	// LocalPref is the LOCAL_PREF for iBGP peers; 0 leaves it out (GoBGP
	// then sends 100 to iBGP peers). eBGP peers never receive LOCAL_PREF.
	LocalPref uint32
}

// DefaultCommunities returns BLACKHOLE and NO_EXPORT, the communities of a
// blackhole that must stay inside the receiving AS.
func DefaultCommunities() []uint32 {
	return []uint32{CommunityBlackhole, CommunityNoExport}
}

// FormatCommunity renders a community as "high:low".
func FormatCommunity(c uint32) string {
	return strconv.FormatUint(uint64(c>>16), 10) + ":" + strconv.FormatUint(uint64(c&0xffff), 10)
}

// wellKnown are the communities a config may name (RFC 1997, RFC 7999,
// RFC 3765).
var wellKnown = map[string]uint32{
	"blackhole":           CommunityBlackhole,
	"no-export":           CommunityNoExport,
	"no-advertise":        0xFFFFFF02,
	"no-export-subconfed": 0xFFFFFF03,
	"no-peer":             0xFFFFFF04,
}

// ParseCommunity parses "high:low" (each 0..65535) or a well-known name
// (blackhole, no-export, no-advertise, no-export-subconfed, no-peer) into
// a community. It is bhrd's one grammar for communities.
func ParseCommunity(s string) (uint32, error) {
	s = strings.TrimSpace(s)
	if v, ok := wellKnown[strings.ToLower(s)]; ok {
		return v, nil
	}
	hi, lo, ok := strings.Cut(s, ":")
	if !ok {
		return 0, fmt.Errorf("community %q: want ASN:VALUE or one of blackhole, no-export, no-advertise, no-export-subconfed, no-peer", s)
	}
	h, err1 := strconv.ParseUint(hi, 10, 16)
	l, err2 := strconv.ParseUint(lo, 10, 16)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("community %q: both halves must be 0..65535", s)
	}
	return uint32(h)<<16 | uint32(l), nil
}

// Community is a standard community as a config file writes it (see
// ParseCommunity).
type Community uint32

// UnmarshalText parses a community with ParseCommunity.
func (c *Community) UnmarshalText(b []byte) error {
	v, err := ParseCommunity(string(b))
	*c = Community(v)
	return err
}

// String renders the community as "high:low".
func (c Community) String() string { return FormatCommunity(uint32(c)) }

// ParseLargeCommunity parses "global:local1:local2", each 0..4294967295.
func ParseLargeCommunity(s string) (LargeCommunity, error) {
	parts := strings.Split(strings.TrimSpace(s), ":")
	if len(parts) != 3 {
		return LargeCommunity{}, fmt.Errorf("large community %q: want GLOBAL:LOCAL1:LOCAL2", s)
	}
	var v [3]uint32
	for i, p := range parts {
		n, err := strconv.ParseUint(p, 10, 32)
		if err != nil {
			return LargeCommunity{}, fmt.Errorf("large community %q: each part must be 0..4294967295", s)
		}
		v[i] = uint32(n)
	}
	return LargeCommunity{v[0], v[1], v[2]}, nil
}

// UnmarshalText parses a large community with ParseLargeCommunity.
func (c *LargeCommunity) UnmarshalText(b []byte) error {
	v, err := ParseLargeCommunity(string(b))
	*c = v
	return err
}

// normalize fills defaults and checks a route, returning the canonical form
// the speaker stores.
func (r Route) normalize() (Route, error) {
	p := r.Prefix
	if !p.IsValid() {
		return r, fmt.Errorf("%w: prefix is not set or not valid", ErrInvalidRoute)
	}
	if p.Addr().Is4In6() {
		return r, fmt.Errorf("%w: %s: write an IPv4-mapped prefix as plain IPv4", ErrInvalidRoute, p)
	}
	if p.Addr().Zone() != "" {
		return r, fmt.Errorf("%w: %s: zones are not supported", ErrInvalidRoute, p)
	}
	if p.Masked() != p {
		return r, fmt.Errorf("%w: %s has host bits set (did you mean %s?)", ErrInvalidRoute, p, p.Masked())
	}
	if !r.NextHop.IsValid() {
		if p.Addr().Is4() {
			r.NextHop = DefaultNextHopV4
		} else {
			r.NextHop = DefaultNextHopV6
		}
	}
	if r.NextHop.Is4() != p.Addr().Is4() || r.NextHop.Is4In6() {
		return r, fmt.Errorf("%w: %s: next hop %s is not of the prefix's address family", ErrInvalidRoute, p, r.NextHop)
	}
	if r.NextHop.Zone() != "" || r.NextHop.IsUnspecified() {
		// GoBGP replaces an unspecified next hop with its session address,
		// which would attract the traffic to bhrd instead of discarding it.
		return r, fmt.Errorf("%w: %s: next hop %s is not usable", ErrInvalidRoute, p, r.NextHop)
	}
	return r, nil
}

// attrKey identifies the path attributes of a route other than its prefix,
// so that routes sharing them share one encoding in memory.
func (r Route) attrKey() string {
	var b strings.Builder
	b.WriteString(r.NextHop.String())
	b.WriteByte('|')
	for _, c := range r.Communities {
		b.WriteString(strconv.FormatUint(uint64(c), 10))
		b.WriteByte(',')
	}
	b.WriteByte('|')
	for _, c := range r.LargeCommunities {
		b.WriteString(c.String())
		b.WriteByte(',')
	}
	b.WriteByte('|')
	b.WriteString(strconv.FormatUint(uint64(r.LocalPref), 10))
	return b.String()
}

// attrSet is an interned, pre-encoded set of path attributes shared by all
// announced prefixes that carry it; a million blackholes with the default
// attributes cost one of these, not a million.
type attrSet struct {
	key         string
	nextHop     netip.Addr
	communities []uint32
	large       []LargeCommunity
	localPref   uint32
	// wire holds ORIGIN, AS_PATH, NEXT_HOP (IPv4 only), COMMUNITIES,
	// LARGE_COMMUNITY and LOCAL_PREF in wire format. For IPv6 the next hop
	// goes in MP_REACH_NLRI, which also carries the prefix and is therefore
	// encoded per announcement.
	wire [][]byte
	refs int
}

func newAttrSet(r Route) (*attrSet, error) {
	a := &attrSet{
		key:         r.attrKey(),
		nextHop:     r.NextHop,
		communities: slices.Clone(r.Communities),
		large:       slices.Clone(r.LargeCommunities),
		localPref:   r.LocalPref,
	}
	attrs := []bgp.PathAttributeInterface{
		bgp.NewPathAttributeOrigin(bgp.BGP_ORIGIN_ATTR_TYPE_IGP),
		bgp.NewPathAttributeAsPath(nil),
	}
	if r.NextHop.Is4() {
		attrs = append(attrs, bgp.NewPathAttributeNextHop(r.NextHop.String()))
	}
	if len(r.Communities) > 0 {
		attrs = append(attrs, bgp.NewPathAttributeCommunities(slices.Clone(r.Communities)))
	}
	if len(r.LargeCommunities) > 0 {
		lcs := make([]*bgp.LargeCommunity, len(r.LargeCommunities))
		for i, c := range r.LargeCommunities {
			lcs[i] = bgp.NewLargeCommunity(c.GlobalAdmin, c.LocalData1, c.LocalData2)
		}
		attrs = append(attrs, bgp.NewPathAttributeLargeCommunities(lcs))
	}
	if r.LocalPref != 0 {
		attrs = append(attrs, bgp.NewPathAttributeLocalPref(r.LocalPref))
	}
	for _, at := range attrs {
		b, err := at.Serialize()
		if err != nil {
			return nil, fmt.Errorf("encode %s attribute: %w", at.GetType(), err)
		}
		a.wire = append(a.wire, b)
	}
	return a, nil
}

// route rebuilds the public form of an announcement.
func (a *attrSet) route(p netip.Prefix) Route {
	return Route{
		Prefix:           p,
		NextHop:          a.nextHop,
		Communities:      slices.Clone(a.communities),
		LargeCommunities: slices.Clone(a.large),
		LocalPref:        a.localPref,
	}
}

func nlriFor(p netip.Prefix) bgp.AddrPrefixInterface {
	if p.Addr().Is4() {
		return bgp.NewIPAddrPrefix(uint8(p.Bits()), p.Addr().String())
	}
	return bgp.NewIPv6AddrPrefix(uint8(p.Bits()), p.Addr().String())
}
