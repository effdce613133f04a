package dnsbl

import (
	"math"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// Http:BL types (bit set). 0 is "search engine": bhrd never answers it.
const (
	TypeSuspicious     = 1
	TypeHarvester      = 2
	TypeCommentSpammer = 4
)

// Listing encodes an Http:BL answer, 127.<days>.<threat>.<type>.
func Listing(days, threat, typ uint8) netip.Addr {
	return netip.AddrFrom4([4]byte{127, days, threat, typ})
}

// Days is the whole days from added to now, 0–255.
func Days(added, now time.Time) uint8 {
	d := now.Sub(added) / (24 * time.Hour)
	switch {
	case d < 0:
		return 0
	case d > 255:
		return 255
	}
	return uint8(d)
}

// IndefiniteDays is the duration, in days, an indefinite block counts as
// in Threat.
const IndefiniteDays = 1000

// Threat scores a block on Http:BL's logarithmic scale: the source's base
// plus 25·log10(the block's duration in days), the duration taken as at
// least one day and an indefinite block as IndefiniteDays; clamped to
// 1–255 (never 0, so that no listing reads 127.0.0.1, the address RFC
// 5782 reserves as never listed, which some clients take as an error). A one-day block scores its base, a 10-day one base+25, a
// 100-day one base+50, an indefinite one base+75. Repeat offenders score
// higher through autoscale, which lengthens each repeat block.
func Threat(base int, added, unblockAt time.Time) uint8 {
	days := float64(IndefiniteDays)
	if !unblockAt.IsZero() {
		days = max(unblockAt.Sub(added).Hours()/24, 1)
	}
	t := base + int(math.Round(25*math.Log10(days)))
	return uint8(min(max(t, 1), 255))
}

// query is a parsed question name inside one of the zones.
type query struct {
	zone string     // the zone, lower case, fully qualified
	apex bool       // the zone's own name
	key  string     // the access key label, "" if none
	addr netip.Addr // invalid: not an address name
}

// parseName splits a lower-case fully qualified name into zone, optional
// key and address: d.c.b.a, or 32 reversed nibbles for IPv6. ok is false
// when the name is in none of the zones (sorted longest first).
func parseName(name string, zones []string) (q query, ok bool) {
	// Labels as presented: a dot inside a label stays escaped ("a\.b"),
	// so it never splits one.
	all := dns.SplitDomainName(name)
	var labels []string
	for _, z := range zones {
		zl := dns.SplitDomainName(z)
		if len(zl) > len(all) || !slices.Equal(all[len(all)-len(zl):], zl) {
			continue
		}
		if len(zl) == len(all) {
			return query{zone: z, apex: true}, true
		}
		q.zone, ok, labels = z, true, all[:len(all)-len(zl)]
		break
	}
	if !ok {
		return q, false
	}
	switch len(labels) {
	case 5, 33:
		q.key, labels = labels[0], labels[1:]
	}
	switch len(labels) {
	case 4:
		var b [4]byte
		for i, l := range labels {
			n, err := strconv.ParseUint(l, 10, 8)
			if err != nil || len(l) > 3 {
				return q, true
			}
			b[3-i] = byte(n)
		}
		q.addr = netip.AddrFrom4(b)
	case 32:
		var b [16]byte
		for i, l := range labels {
			if len(l) != 1 {
				return q, true
			}
			n, err := strconv.ParseUint(l, 16, 8)
			if err != nil {
				return q, true
			}
			// labels[0] is the last nibble.
			j := 31 - i
			if j%2 == 0 {
				b[j/2] |= byte(n) << 4
			} else {
				b[j/2] |= byte(n)
			}
		}
		q.addr = netip.AddrFrom16(b)
	}
	return q, true
}

// Name returns the query name of addr in zone (with key as first label
// when not empty): what a DNSBL client asks.
func Name(addr netip.Addr, zone, key string) string {
	var sb strings.Builder
	if key != "" {
		sb.WriteString(key + ".")
	}
	addr = addr.Unmap()
	if addr.Is4() {
		b := addr.As4()
		for i := 3; i >= 0; i-- {
			sb.WriteString(strconv.Itoa(int(b[i])) + ".")
		}
	} else {
		b := addr.As16()
		const hex = "0123456789abcdef"
		for i := 15; i >= 0; i-- {
			sb.WriteByte(hex[b[i]&0xf])
			sb.WriteByte('.')
			sb.WriteByte(hex[b[i]>>4])
			sb.WriteByte('.')
		}
	}
	sb.WriteString(strings.TrimSuffix(strings.ToLower(zone), ".") + ".")
	return sb.String()
}
