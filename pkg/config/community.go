package config

import (
	"fmt"
	"strconv"
	"strings"
)

// Well-known communities by name (RFC 1997, RFC 7999).
var wellKnown = map[string]uint32{
	"blackhole":           0xFFFF029A, // 65535:666
	"no-export":           0xFFFFFF01,
	"no-advertise":        0xFFFFFF02,
	"no-export-subconfed": 0xFFFFFF03,
	"no-peer":             0xFFFFFF04,
}

// ParseCommunity parses "ASN:value" or a well-known name.
func ParseCommunity(s string) (uint32, error) {
	if v, ok := wellKnown[strings.ToLower(strings.TrimSpace(s))]; ok {
		return v, nil
	}
	a, b, ok := strings.Cut(strings.TrimSpace(s), ":")
	if !ok {
		return 0, fmt.Errorf("community %q: want ASN:value or one of blackhole, no-export, no-advertise, no-peer", s)
	}
	hi, err1 := strconv.ParseUint(a, 10, 16)
	lo, err2 := strconv.ParseUint(b, 10, 16)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("community %q: both halves must be 0..65535", s)
	}
	return uint32(hi)<<16 | uint32(lo), nil
}

// ParseLargeCommunity parses "global:local1:local2" (RFC 8092).
func ParseLargeCommunity(s string) ([3]uint32, error) {
	parts := strings.Split(strings.TrimSpace(s), ":")
	var out [3]uint32
	if len(parts) != 3 {
		return out, fmt.Errorf("large community %q: want global:local1:local2", s)
	}
	for i, p := range parts {
		v, err := strconv.ParseUint(p, 10, 32)
		if err != nil {
			return out, fmt.Errorf("large community %q: each part must be 0..4294967295", s)
		}
		out[i] = uint32(v)
	}
	return out, nil
}
