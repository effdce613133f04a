package sqlitestore

import (
	"fmt"
	"net/netip"
)

// netRange is how a cidr is stored for containment queries: its family and
// its first and last addresses as 16 big-endian bytes (IPv4 in the 4-in-6
// form), so that SQLite's memcmp order on BLOBs is address order and
// "within q" is a range scan of the (family, net_lo) index.
type netRange struct {
	family int
	lo, hi []byte
}

func rangeOf(p netip.Prefix) netRange {
	p = p.Masked()
	a := p.Addr().As16()
	bits := p.Bits()
	family := 6
	if p.Addr().Is4() {
		family = 4
		bits += 96
	}
	lo := a
	hi := a
	for i := bits; i < 128; i++ {
		hi[i/8] |= 0x80 >> (i % 8)
	}
	return netRange{family: family, lo: lo[:], hi: hi[:]}
}

// canonical validates and masks a prefix for storage.
func canonical(p netip.Prefix) (netip.Prefix, error) {
	if !p.IsValid() {
		return netip.Prefix{}, fmt.Errorf("invalid cidr %v", p)
	}
	return p.Masked(), nil
}

func parseCIDR(s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if err != nil {
		return netip.Prefix{}, fmt.Errorf("stored cidr %q: %w", s, err)
	}
	return p, nil
}
