package bgp

import (
	"net/netip"
	"testing"
)

func TestAnnouncementsOwnersAndCounts(t *testing.T) {
	tb := newAnnouncements()
	v4 := netip.MustParsePrefix("198.51.100.1/32")
	v6 := netip.MustParsePrefix("2001:db8::1/128")
	add := func(p netip.Prefix, owner uint32, comms ...uint32) {
		t.Helper()
		r, err := Route{Prefix: p, Communities: comms}.normalize()
		if err != nil {
			t.Fatal(err)
		}
		as, err := tb.acquire(r, nil)
		if err != nil {
			t.Fatal(err)
		}
		tb.set(p, owner, as)
	}
	check := func(wantV4, wantV6, wantAttrs int) {
		t.Helper()
		if a, b := tb.counts(); a != wantV4 || b != wantV6 {
			t.Errorf("counts %d/%d, want %d/%d", a, b, wantV4, wantV6)
		}
		if n := tb.interned(); n != wantAttrs {
			t.Errorf("%d attribute sets interned, want %d", n, wantAttrs)
		}
	}

	add(v4, 1, CommunityBlackhole)
	add(v4, 2, CommunityBlackhole, CommunityNoExport)
	add(v4, 3, CommunityBlackhole)
	add(v6, 2, CommunityBlackhole)
	check(1, 1, 3) // v4 and v6 defaults differ in next hop
	add(v4, 3, CommunityNoExport)
	if as := tb.lookup(v4, 3); as == nil || len(as.communities) != 1 || as.communities[0] != CommunityNoExport {
		t.Errorf("owner 3's attributes not replaced: %+v", as)
	}
	check(1, 1, 4)

	tb.remove(v4, 1) // the first owner goes; the others stay
	check(1, 1, 3)
	if tb.lookup(v4, 1) != nil || tb.lookup(v4, 2) == nil || tb.lookup(v4, 3) == nil {
		t.Error("removing owner 1 disturbed the others")
	}
	if got := tb.byOwner(2); len(got) != 2 || got[0].Prefix != v4 || got[1].Prefix != v6 {
		t.Errorf("byOwner(2) = %v", got)
	}
	tb.remove(v4, 3)
	tb.remove(v4, 3) // twice is harmless
	tb.remove(v4, 2)
	check(0, 1, 1)
	tb.remove(v6, 2)
	check(0, 0, 0)
}
