package queue_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/bhrd/bhrd/pkg/queue"
)

// The reserved ranges and the absolute minimum prefix length hold even
// for a caller allowed to skip the whitelist, and the refusal names the
// protection.
func TestNeverBlockableEvenWithSkipWhitelist(t *testing.T) {
	svc := newSQLiteService(t, queue.DefaultPolicy())
	ctx := context.Background()
	skip := func(cidr string) queue.BlockRequest {
		r := req(cidr)
		r.SkipWhitelist, r.MaySkipWhitelist = true, true
		return r
	}
	for cidr, want := range map[string]string{
		"0.0.0.0/32":       "this network",
		"0.0.0.0/1":        "this network",
		"127.0.0.1":        "loopback",
		"169.254.169.254":  "link-local",
		"224.0.0.5":        "multicast",
		"255.255.255.255":  "broadcast",
		"::/128":           "unspecified",
		"::1":              "loopback",
		"fe80::1/128":      "link-local",
		"ff02::1":          "multicast",
		"8000::/1":         "reserved",
		"198.50.0.0/15":    "absolute minimum",
		"2001:db8::/31":    "absolute minimum",
		"::ffff:127.0.0.1": "loopback",
	} {
		_, err := svc.Block(ctx, skip(cidr))
		var pe *queue.PolicyError
		switch {
		case err == nil:
			t.Errorf("%s: blocked with skip_whitelist", cidr)
		case !errors.As(err, &pe) || !strings.Contains(err.Error(), want):
			t.Errorf("%s: %v, want a policy refusal saying %q", cidr, err, want)
		}
	}
	// Just above the floor skip_whitelist still works.
	if _, err := svc.Block(ctx, skip("198.51.0.0/16")); err != nil {
		t.Errorf("a /16 with skip_whitelist: %v", err)
	}
	if _, err := svc.Block(ctx, req("198.51.0.0/16")); !errors.Is(err, queue.ErrPrefixTooShort) {
		t.Errorf("a /16 without skip_whitelist: %v", err)
	}
}

func TestAbsoluteMinimumIsAtMostTheMinimum(t *testing.T) {
	p := queue.DefaultPolicy()
	p.AbsoluteMinimumPrefixLen = p.MinimumPrefixLen + 1
	if err := p.Validate(); err == nil {
		t.Error("an absolute minimum above minimum_prefixlen validated")
	}
	p = queue.DefaultPolicy()
	p.AbsoluteMinimumPrefixLenV6 = -1
	if err := p.Validate(); err == nil {
		t.Error("a negative absolute minimum validated")
	}
}
