package queue

import (
	"fmt"
	"net/netip"
	"slices"
)

// Selection picks the blocks an enforcer takes, by source and by prefix
// length. The zero value takes every block: what every BHR ident gets.
// An enforcer with a selection never sees the blocks it does not take
// (SkipBlocks), and current_blocks does not list it for them.
type Selection struct {
	// Sources: the block's source must be one of these; empty means any.
	Sources []string `yaml:"sources"`
	// PrefixLenV4 and PrefixLenV6 bound the prefix length per family;
	// the zero range means any length.
	PrefixLenV4 LenRange `yaml:"prefixlen_v4"`
	PrefixLenV6 LenRange `yaml:"prefixlen_v6"`
}

// LenRange is an inclusive prefix length range; a zero bound is open.
type LenRange struct {
	Min int `yaml:"min"`
	Max int `yaml:"max"`
}

func (r LenRange) has(n int) bool {
	return (r.Min == 0 || n >= r.Min) && (r.Max == 0 || n <= r.Max)
}

// All reports whether s takes every block.
func (s Selection) All() bool {
	return len(s.Sources) == 0 && s.PrefixLenV4 == (LenRange{}) && s.PrefixLenV6 == (LenRange{})
}

// Match reports whether s takes a block of source for prefix p.
func (s Selection) Match(source string, p netip.Prefix) bool {
	if len(s.Sources) > 0 && !slices.Contains(s.Sources, source) {
		return false
	}
	if p.Addr().Is4() {
		return s.PrefixLenV4.has(p.Bits())
	}
	return s.PrefixLenV6.has(p.Bits())
}

// Problems returns what is wrong with s, each as (field, message).
func (s Selection) Problems() [][2]string {
	var out [][2]string
	check := func(field string, r LenRange, bits int) {
		switch {
		case r.Min < 0 || r.Min > bits:
			out = append(out, [2]string{field + ".min", fmt.Sprintf("must be 0 (any) or 1..%d", bits)})
		case r.Max < 0 || r.Max > bits:
			out = append(out, [2]string{field + ".max", fmt.Sprintf("must be 0 (any) or 1..%d", bits)})
		case r.Max != 0 && r.Min > r.Max:
			out = append(out, [2]string{field, fmt.Sprintf("min %d is above max %d: nothing would match", r.Min, r.Max)})
		}
	}
	check("prefixlen_v4", s.PrefixLenV4, 32)
	check("prefixlen_v6", s.PrefixLenV6, 128)
	for i, src := range s.Sources {
		if src == "" {
			out = append(out, [2]string{fmt.Sprintf("sources[%d]", i), "must not be empty"})
		}
	}
	return out
}
