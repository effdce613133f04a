package queue

import (
	"fmt"
	"math"
	"net/netip"
	"time"
)

// Policy holds the block rules that BHR kept in settings, under BHR's names.
type Policy struct {
	MinimumPrefixLen   int // IPv4; BHR default 24
	MinimumPrefixLenV6 int // IPv6; BHR default 64
	// AbsoluteMinimumPrefixLen(V6) is the shortest prefix any block may
	// have, skip_whitelist included (0: no floor but the address
	// family's).
	AbsoluteMinimumPrefixLen   int
	AbsoluteMinimumPrefixLenV6 int

	// Autoscale (see BHR-COMPAT.md).
	TimeWindowFactor       float64
	MinimumTimeWindow      float64 // seconds
	PenaltyTimeMultiplier  float64
	ReturnToBaseMultiplier float64
	ReturnToBaseFactor     float64

	// Protected networks can never be blocked, not even with
	// skip_whitelist: the BGP peers, router id, listen and next-hop
	// addresses, this host's own addresses. Blackholing them would cut
	// bhrd off from its routers or its clients. Reserved is always added.
	Protected []ProtectedPrefix
}

// Reserved are the ranges no block may overlap whatever the config: a
// blackhole there cuts the host off from itself or breaks the network's
// own machinery (RFC 6890).
var Reserved = []ProtectedPrefix{
	{netip.MustParsePrefix("0.0.0.0/8"), "reserved: this network (RFC 791)"},
	{netip.MustParsePrefix("127.0.0.0/8"), "reserved: loopback (RFC 1122)"},
	{netip.MustParsePrefix("169.254.0.0/16"), "reserved: link-local (RFC 3927)"},
	{netip.MustParsePrefix("224.0.0.0/4"), "reserved: multicast (RFC 5771)"},
	{netip.MustParsePrefix("255.255.255.255/32"), "reserved: limited broadcast (RFC 919)"},
	{netip.MustParsePrefix("::/128"), "reserved: unspecified address (RFC 4291)"},
	{netip.MustParsePrefix("::1/128"), "reserved: loopback (RFC 4291)"},
	{netip.MustParsePrefix("fe80::/10"), "reserved: link-local (RFC 4291)"},
	{netip.MustParsePrefix("ff00::/8"), "reserved: multicast (RFC 4291)"},
}

// ProtectedPrefix is an implicit whitelist entry with the reason it exists.
type ProtectedPrefix struct {
	Prefix netip.Prefix
	Reason string // e.g. "BGP peer 192.0.2.10"
}

// DefaultPolicy returns BHR's defaults.
func DefaultPolicy() Policy {
	return Policy{
		MinimumPrefixLen:           24,
		MinimumPrefixLenV6:         64,
		AbsoluteMinimumPrefixLen:   16,
		AbsoluteMinimumPrefixLenV6: 32,
		TimeWindowFactor:           2,
		MinimumTimeWindow:          43200,
		PenaltyTimeMultiplier:      2,
		ReturnToBaseMultiplier:     2,
		ReturnToBaseFactor:         2,
	}
}

// Validate reports settings that would make the rules meaningless.
func (p Policy) Validate() error {
	if p.MinimumPrefixLen < 0 || p.MinimumPrefixLen > 32 {
		return fmt.Errorf("minimum_prefixlen %d: must be 0..32", p.MinimumPrefixLen)
	}
	if p.MinimumPrefixLenV6 < 0 || p.MinimumPrefixLenV6 > 128 {
		return fmt.Errorf("minimum_prefixlen_v6 %d: must be 0..128", p.MinimumPrefixLenV6)
	}
	if p.AbsoluteMinimumPrefixLen < 0 || p.AbsoluteMinimumPrefixLen > p.MinimumPrefixLen {
		return fmt.Errorf("absolute_minimum_prefixlen %d: must be 0..minimum_prefixlen (%d)", p.AbsoluteMinimumPrefixLen, p.MinimumPrefixLen)
	}
	if p.AbsoluteMinimumPrefixLenV6 < 0 || p.AbsoluteMinimumPrefixLenV6 > p.MinimumPrefixLenV6 {
		return fmt.Errorf("absolute_minimum_prefixlen_v6 %d: must be 0..minimum_prefixlen_v6 (%d)", p.AbsoluteMinimumPrefixLenV6, p.MinimumPrefixLenV6)
	}
	for name, v := range map[string]float64{
		"time_window_factor":        p.TimeWindowFactor,
		"minimum_time_window":       p.MinimumTimeWindow,
		"penalty_time_multiplier":   p.PenaltyTimeMultiplier,
		"return_to_base_multiplier": p.ReturnToBaseMultiplier,
	} {
		if v < 0 || math.IsNaN(v) || math.IsInf(v, 0) {
			return fmt.Errorf("%s %v: must be a non-negative number", name, v)
		}
	}
	if !(p.ReturnToBaseFactor > 0) || math.IsInf(p.ReturnToBaseFactor, 0) {
		return fmt.Errorf("return_to_base_factor %v: must be greater than 0", p.ReturnToBaseFactor)
	}
	for _, pp := range p.Protected {
		if !pp.Prefix.IsValid() {
			return fmt.Errorf("protected prefix for %q is invalid", pp.Reason)
		}
	}
	return nil
}

// absMinPrefixLen returns the absolute minimum prefix length for pfx's
// family.
func (p Policy) absMinPrefixLen(pfx netip.Prefix) int {
	if pfx.Addr().Is4() {
		return p.AbsoluteMinimumPrefixLen
	}
	return p.AbsoluteMinimumPrefixLenV6
}

// minPrefixLen returns the minimum prefix length for p's family.
func (p Policy) minPrefixLen(pfx netip.Prefix) int {
	if pfx.Addr().Is4() {
		return p.MinimumPrefixLen
	}
	return p.MinimumPrefixLenV6
}

// Autoscale computes the duration of a new block from the latest block for
// the same cidr, following BHR's formula (BHR-COMPAT.md, "Autoscale"):
// repeat offenders get longer blocks, and the penalty decays once they
// have stayed away long enough.
func (p Policy) Autoscale(requested time.Duration, last *Block, now time.Time) time.Duration {
	if requested <= 0 || last == nil || last.Indefinite() {
		return requested
	}
	lastSecs := last.UnblockAt.Sub(last.Added).Seconds()
	if lastSecs <= 0 {
		return requested
	}
	age := now.Sub(last.UnblockAt).Seconds()
	var s float64
	switch {
	case age <= math.Max(p.MinimumTimeWindow, p.TimeWindowFactor*lastSecs):
		s = p.PenaltyTimeMultiplier * lastSecs
	case age <= p.TimeWindowFactor*p.ReturnToBaseMultiplier*lastSecs:
		s = lastSecs
	default:
		s = lastSecs / p.ReturnToBaseFactor
	}
	if s > maxDuration.Seconds() {
		s = maxDuration.Seconds()
	}
	scaled := time.Duration(math.Round(s)) * time.Second
	if scaled > requested {
		return scaled
	}
	return requested
}
