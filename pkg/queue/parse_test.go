package queue

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestParseCIDR(t *testing.T) {
	cases := []struct {
		in, want string
		err      error
		msg      string
	}{
		{"1.2.3.4", "1.2.3.4/32", nil, ""},
		{" 1.2.3.4 ", "1.2.3.4/32", nil, ""},
		{"1.2.3.0/24", "1.2.3.0/24", nil, ""},
		{"2001:db8::1", "2001:db8::1/128", nil, ""},
		{"2001:db8::/64", "2001:db8::/64", nil, ""},
		{"::ffff:1.2.3.4", "1.2.3.4/32", nil, ""},
		{"1.2.3.4/24", "", ErrHostBitsSet, "did you mean 1.2.3.0/24?"},
		{"2001:db8::1/64", "", ErrHostBitsSet, "2001:db8::/64"},
		{"banana", "", ErrInvalidCIDR, "banana"},
		{"1.2.3.4/33", "", ErrInvalidCIDR, ""},
		{"1.2.3.256", "", ErrInvalidCIDR, ""},
		{"fe80::1%eth0", "", ErrInvalidCIDR, ""},
		{"", "", ErrFieldRequired, ""},
		{strings.Repeat("1", 51), "", ErrFieldTooLong, ""},
	}
	for _, c := range cases {
		got, err := ParseCIDR(c.in)
		if c.err != nil {
			if !errors.Is(err, c.err) {
				t.Errorf("ParseCIDR(%q) error %v, want %v", c.in, err, c.err)
			} else if !strings.Contains(err.Error(), c.msg) {
				t.Errorf("ParseCIDR(%q) error %q lacks %q", c.in, err, c.msg)
			}
			continue
		}
		if err != nil || got.String() != c.want {
			t.Errorf("ParseCIDR(%q) = %v, %v; want %s", c.in, got, err, c.want)
		}
	}
}

func TestParseNetworkMasks(t *testing.T) {
	p, err := ParseNetwork("10.1.2.3/8")
	if err != nil || p.String() != "10.0.0.0/8" {
		t.Fatalf("ParseNetwork = %v, %v", p, err)
	}
	if _, err := ParseNetwork("banana"); !errors.Is(err, ErrInvalidCIDR) {
		t.Fatalf("ParseNetwork(banana) = %v", err)
	}
}

func TestParseDuration(t *testing.T) {
	day := 24 * time.Hour
	cases := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"0", 0, true},
		{"300", 300 * time.Second, true},
		{"30s", 30 * time.Second, true},
		{"5m", 5 * time.Minute, true},
		{"2h", 2 * time.Hour, true},
		{"3d", 3 * day, true},
		{"1mo", 30 * day, true},
		{"2y", 730 * day, true},
		{"", 0, false},
		{"-5", 0, false},
		{"5w", 0, false},
		{"1.5h", 0, false},
		{"h", 0, false},
		{"5 m", 0, false},
		{"+5", 0, false},
		{"99999999999999999999", 0, false},
		{"1000y", 0, false},
	}
	for _, c := range cases {
		got, err := ParseDuration(c.in)
		if c.ok != (err == nil) || got != c.want {
			t.Errorf("ParseDuration(%q) = %v, %v; want %v ok=%v", c.in, got, err, c.want, c.ok)
		}
		if err != nil {
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != "duration" {
				t.Errorf("ParseDuration(%q) error %v is not a duration FieldError", c.in, err)
			}
		}
	}
}

func TestParseBoolAndTime(t *testing.T) {
	for in, want := range map[string]bool{"True": true, "False": false, "true": true, "0": false, "1": true} {
		if got, err := ParseBool("extend", in); err != nil || got != want {
			t.Errorf("ParseBool(%q) = %v, %v", in, got, err)
		}
	}
	if _, err := ParseBool("extend", "maybe"); !errors.Is(err, ErrInvalidBool) {
		t.Errorf("ParseBool(maybe) = %v", err)
	}
	for _, in := range []string{"2026-11-21T23:25:00Z", "2026-11-21T23:25:00+00:00", "2026-11-21T23:25:00", "2026-11-21 23:25:00"} {
		got, err := ParseTime("added_since", in)
		if err != nil || !got.Equal(time.Date(2026, 11, 21, 23, 25, 0, 0, time.UTC)) {
			t.Errorf("ParseTime(%q) = %v, %v", in, got, err)
		}
	}
	if _, err := ParseTime("added_since", "yesterday"); !errors.Is(err, ErrInvalidTime) {
		t.Errorf("ParseTime(yesterday) = %v", err)
	}
}

func FuzzParseCIDR(f *testing.F) {
	for _, s := range []string{"1.2.3.4", "1.2.3.4/24", "2001:db8::/64", "banana", "::ffff:1.2.3.4/120", "1.2.3.4/33", "fe80::1%eth0", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParseCIDR(s)
		if err != nil {
			var fe *FieldError
			if !errors.As(err, &fe) || fe.Field != "cidr" {
				t.Fatalf("ParseCIDR(%q): error %v is not a cidr FieldError", s, err)
			}
			return
		}
		if !p.IsValid() || p.Masked() != p {
			t.Fatalf("ParseCIDR(%q) = %v: not a valid masked prefix", s, p)
		}
		// The canonical form parses to itself.
		if q, err := ParseCIDR(p.String()); err != nil || q != p {
			t.Fatalf("round trip of %v: %v, %v", p, q, err)
		}
	})
}

func FuzzParseDuration(f *testing.F) {
	for _, s := range []string{"0", "300", "5m", "1mo", "2y", "-1", "1.5h", "99999999999999999999y", "mo", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseDuration(s)
		if err != nil {
			return
		}
		if d < 0 || d > maxDuration {
			t.Fatalf("ParseDuration(%q) = %v out of range", s, d)
		}
	})
}
