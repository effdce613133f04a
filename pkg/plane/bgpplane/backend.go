package bgpplane

import (
	"context"
	"fmt"
	"net/netip"
	"slices"

	"github.com/bhrd/bhrd/pkg/bgp"
	"github.com/bhrd/bhrd/pkg/enforcer"
)

// Backend enforces blocks as blackhole announcements of one owner (the
// enforcer's ident) on an embedded speaker, with that enforcer's
// attributes.
type Backend struct {
	Speaker              *bgp.Speaker
	Owner                string
	NextHopV4, NextHopV6 netip.Addr
	Communities          []uint32
	LargeCommunities     []bgp.LargeCommunity
	LocalPref            uint32
	// Rules add communities to the routes of the blocks they select.
	Rules []Rule
}

func newBackend(sp *bgp.Speaker, owner string, st Settings) Backend {
	b := Backend{Speaker: sp, Owner: owner, NextHopV4: st.NextHopV4, NextHopV6: st.NextHopV6,
		LargeCommunities: st.LargeCommunities, LocalPref: st.LocalPref, Rules: st.Rules}
	for _, c := range st.Communities {
		b.Communities = append(b.Communities, uint32(c))
	}
	return b
}

func (b Backend) routes(ts []enforcer.Target) []bgp.Route {
	rs := make([]bgp.Route, len(ts))
	for i, t := range ts {
		nh := b.NextHopV6
		if t.Prefix.Addr().Is4() {
			nh = b.NextHopV4
		}
		rs[i] = bgp.Route{Prefix: t.Prefix, NextHop: nh, Communities: b.Communities,
			LargeCommunities: b.LargeCommunities, LocalPref: b.LocalPref}
		for _, r := range b.Rules {
			if !r.Select.Match(t.Source, t.Prefix) {
				continue
			}
			// Copies: the enforcer's own lists are shared by every route.
			for _, c := range r.Communities {
				if !slices.Contains(rs[i].Communities, uint32(c)) {
					rs[i].Communities = append(slices.Clip(rs[i].Communities), uint32(c))
				}
			}
			for _, c := range r.LargeCommunities {
				if !slices.Contains(rs[i].LargeCommunities, c) {
					rs[i].LargeCommunities = append(slices.Clip(rs[i].LargeCommunities), c)
				}
			}
		}
	}
	return rs
}

// Install announces the prefixes.
func (b Backend) Install(ctx context.Context, ts []enforcer.Target) error {
	if err := b.Speaker.Announce(ctx, b.Owner, b.routes(ts)); err != nil {
		return fmt.Errorf("bgp announce: %w", err)
	}
	return nil
}

// Remove withdraws exactly what this owner announced for the prefixes.
func (b Backend) Remove(ctx context.Context, ps []netip.Prefix) error {
	if err := b.Speaker.Withdraw(ctx, b.Owner, ps); err != nil {
		return fmt.Errorf("bgp withdraw: %w", err)
	}
	return nil
}

// Reconcile announces want and withdraws whatever else this owner still
// announces. After a restart the speaker is empty, so this re-announces
// everything; the embedder then calls Ready so that peers get End-of-RIB.
func (b Backend) Reconcile(ctx context.Context, want []enforcer.Target) (int, int, error) {
	have := map[netip.Prefix]bool{}
	for _, r := range b.Speaker.Announced(b.Owner) {
		have[r.Prefix] = true
	}
	w := make(map[netip.Prefix]bool, len(want))
	var add []netip.Prefix
	for _, t := range want {
		w[t.Prefix] = true
		if !have[t.Prefix] {
			add = append(add, t.Prefix)
		}
	}
	var del []netip.Prefix
	for p := range have {
		if !w[p] {
			del = append(del, p)
		}
	}
	// Announce is a no-op for identical attributes, so announcing all of
	// want also corrects attributes changed in the config.
	if err := b.Install(ctx, want); err != nil {
		return 0, 0, err
	}
	if len(del) > 0 {
		if err := b.Remove(ctx, del); err != nil {
			return len(add), 0, err
		}
	}
	return len(add), len(del), nil
}
