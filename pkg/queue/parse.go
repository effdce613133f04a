package queue

import (
	"net/netip"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// MaxCIDRLength is BHR's limit on the cidr field.
const MaxCIDRLength = 50

// MaxSourceLength is BHR's limit on the source field.
const MaxSourceLength = 30

// MaxWhyLength bounds the why of a block, an unblock or a list entry, in
// bytes: a reason, not a document (it is copied into every audit line).
const MaxWhyLength = 10000

// CheckText refuses a string no store can keep as the same text: invalid
// UTF-8 (PostgreSQL refuses it, SQLite would keep the bytes and break
// every reader that expects text) or a NUL byte. Front ends use it for
// text they pass on as filters (?source=, ?ident=).
func CheckText(field, s string) error {
	if !utf8.ValidString(s) || strings.IndexByte(s, 0) >= 0 {
		return fieldErr(field, ErrInvalidText, "Must be UTF-8 text without NUL characters.")
	}
	return nil
}

// checkWhy is the rule of every why: required, text, MaxWhyLength.
func checkWhy(why string) error {
	if why == "" {
		return fieldErr("why", ErrFieldRequired, "This field is required.")
	}
	if err := CheckText("why", why); err != nil {
		return err
	}
	if len(why) > MaxWhyLength {
		return fieldErr("why", ErrFieldTooLong, "Ensure this field has no more than %d bytes.", MaxWhyLength)
	}
	return nil
}

// checkSource is the rule of every source: required, text, at most
// MaxSourceLength characters.
func checkSource(source string) error {
	switch {
	case source == "":
		return fieldErr("source", ErrFieldRequired, "This field is required.")
	case !utf8.ValidString(source) || strings.IndexByte(source, 0) >= 0:
		return CheckText("source", source)
	case utf8.RuneCountInString(source) > MaxSourceLength:
		return fieldErr("source", ErrFieldTooLong, "Ensure this field has no more than %d characters.", MaxSourceLength)
	}
	return nil
}

// maxDuration keeps now+duration far from time.Time's range.
const maxDuration = 200 * 365 * 24 * time.Hour

// ParseCIDR parses a block's cidr the way BHR clients send it. A host
// address means /32 or /128. A prefix with host bits set is refused with a
// message naming the network that was probably meant, since silently
// masking "10.1.2.3/8" would blackhole far more than the sender thought.
// IPv4-mapped IPv6 is unmapped so one address has one spelling.
func ParseCIDR(s string) (netip.Prefix, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return netip.Prefix{}, fieldErr("cidr", ErrFieldRequired, "This field is required.")
	}
	if len(s) > MaxCIDRLength {
		return netip.Prefix{}, fieldErr("cidr", ErrFieldTooLong, "Ensure this field has no more than %d characters.", MaxCIDRLength)
	}
	var p netip.Prefix
	if strings.Contains(s, "/") {
		var err error
		p, err = netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fieldErr("cidr", ErrInvalidCIDR, "%q is not a valid CIDR", s)
		}
	} else {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			return netip.Prefix{}, fieldErr("cidr", ErrInvalidCIDR, "%q is not a valid IP address or CIDR", s)
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	if p.Addr().Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	}
	if m := p.Masked(); m != p {
		return netip.Prefix{}, fieldErr("cidr", ErrHostBitsSet, "%s has host bits set; did you mean %s?", s, m)
	}
	return p, nil
}

// ParseNetwork parses a cidr for lookups (query, whitelist). Unlike
// ParseCIDR it masks host bits: a query for 10.1.2.3/24 means 10.1.2.0/24.
func ParseNetwork(s string) (netip.Prefix, error) {
	p, err := ParseCIDR(s)
	if err == nil {
		return p, nil
	}
	if p2, perr := netip.ParsePrefix(strings.TrimSpace(s)); perr == nil && len(s) <= MaxCIDRLength {
		p2 = p2.Masked()
		if p2.Addr().Is4In6() && p2.Bits() >= 96 {
			p2 = netip.PrefixFrom(p2.Addr().Unmap(), p2.Bits()-96)
		}
		return p2, nil
	}
	return netip.Prefix{}, err
}

// ParseDuration parses BHR's duration syntax: integer seconds, or an
// integer with one suffix y (365 days), mo (30 days), d, h, m or s. Zero
// means indefinite and is returned as 0.
func ParseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, fieldErr("duration", ErrFieldRequired, "This field is required.")
	}
	num, unit := s, time.Second
	for _, u := range []struct {
		suffix string
		d      time.Duration
	}{
		{"mo", 30 * 24 * time.Hour}, // before "m" and "o"-less suffixes
		{"y", 365 * 24 * time.Hour},
		{"d", 24 * time.Hour},
		{"h", time.Hour},
		{"m", time.Minute},
		{"s", time.Second},
	} {
		if strings.HasSuffix(s, u.suffix) {
			num, unit = strings.TrimSuffix(s, u.suffix), u.d
			break
		}
	}
	// Digits only: no sign, no spaces, no decimal point.
	if num == "" || strings.TrimLeft(num, "0123456789") != "" {
		return 0, fieldErr("duration", ErrInvalidDuration, "Invalid duration")
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n > int64(maxDuration/unit) {
		return 0, fieldErr("duration", ErrInvalidDuration, "Invalid duration")
	}
	return time.Duration(n) * unit, nil
}

// ParseTime parses an ISO 8601 time as BHR clients send it (with or
// without zone; no zone means UTC, as Django's USE_TZ default).
func ParseTime(field, s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	for _, layout := range []string{
		time.RFC3339Nano,
		"2006-01-02T15:04:05.999999999",
		"2006-01-02 15:04:05.999999999Z07:00",
		"2006-01-02 15:04:05.999999999",
		"2006-01-02T15:04",
		"2006-01-02",
	} {
		if t, err := time.Parse(layout, s); err == nil {
			return t.UTC().Truncate(time.Microsecond), nil
		}
	}
	return time.Time{}, fieldErr(field, ErrInvalidTime, "Datetime has wrong format. Use ISO 8601, e.g. 2026-11-21T23:25:00Z.")
}

// ParseBool accepts the spellings BHR clients use: true/false/True/False/1/0
// (and on/off, yes/no, as Django forms do).
func ParseBool(field, s string) (bool, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "true", "1", "on", "yes", "t", "y":
		return true, nil
	case "false", "0", "off", "no", "f", "n", "":
		return false, nil
	}
	return false, fieldErr(field, ErrInvalidBool, "Must be a valid boolean.")
}
