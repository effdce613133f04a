package pgstore

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/bhrd/bhrd/pkg/queue"
)

func TestMigrateTwiceIsNoop(t *testing.T) {
	ctx := context.Background()
	s, err := Open(ctx, pgtestDB(t))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	applied, err := s.Migrate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ms, err := Migrations()
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, m := range ms {
		want = append(want, m.Name)
	}
	if want[0] != "0001_init.sql" || !reflect.DeepEqual(applied, want) {
		t.Fatalf("first Migrate applied %v, want %v", applied, want)
	}
	applied, err = s.Migrate(ctx)
	if err != nil || len(applied) != 0 {
		t.Fatalf("second Migrate applied %v, %v; want nothing", applied, err)
	}
	if n := countRows(t, s, `SELECT count(*) FROM bhrd_schema_migrations`); n != int64(len(want)) {
		t.Fatalf("%d versions recorded, want %d", n, len(want))
	}
}

func TestMigrateConcurrently(t *testing.T) {
	ctx := context.Background()
	url := pgtestDB(t)
	const n = 4
	results := make(chan []string, n)
	errs := make(chan error, n)
	for range n {
		go func() {
			s, err := Open(ctx, url)
			if err != nil {
				errs <- err
				results <- nil
				return
			}
			defer s.Close()
			applied, err := s.Migrate(ctx)
			errs <- err
			results <- applied
		}()
	}
	total := 0
	for range n {
		if err := <-errs; err != nil {
			t.Error(err)
		}
		total += len(<-results)
	}
	ms, err := Migrations()
	if err != nil {
		t.Fatal(err)
	}
	if total != len(ms) {
		t.Fatalf("concurrent migrators applied %d migrations in all, want %d", total, len(ms))
	}
}

func TestApplyBlocksInsertsAndExtends(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	now := at(0)
	in := []queue.Block{
		{CIDR: pfx("192.0.2.1/32"), Who: "alice", Source: "ids", Why: "scan", Added: now, UnblockAt: at(3600), SkipWhitelist: true},
		{CIDR: pfx("2001:db8::/64"), Who: "bob", Source: "manual", Why: "abuse", Added: now},
	}
	var seen map[netip.Prefix]queue.CIDRState
	got, err := s.ApplyBlocks(ctx, []netip.Prefix{in[0].CIDR, in[1].CIDR}, now, func(st map[netip.Prefix]queue.CIDRState) (queue.Plan, error) {
		seen = copyStates(st)
		return queue.Plan{Inserts: in}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(seen) != 0 {
		t.Fatalf("plan saw state %v for new cidrs, want none", seen)
	}
	if len(got) != 2 || got[0].ID == 0 || got[1].ID <= got[0].ID {
		t.Fatalf("ids %v: want two ascending ids in input order", blockIDs(got))
	}
	for i := range in {
		want := in[i]
		want.ID = got[i].ID
		if !reflect.DeepEqual(got[i], want) {
			t.Errorf("inserted %+v\nwant     %+v", got[i], want)
		}
		stored, err := s.GetBlock(ctx, got[i].ID)
		if err != nil || !reflect.DeepEqual(stored, want) {
			t.Errorf("GetBlock = %+v, %v\nwant        %+v", stored, err, want)
		}
	}
	if got[0].Added.Location() != time.UTC {
		t.Errorf("times come back in %v, want UTC", got[0].Added.Location())
	}

	setBlocked(t, s, "r1", at(10), got[0].ID)
	setBlocked(t, s, "r2", at(10), got[0].ID)
	if _, err := s.SetUnblocked(ctx, ids(entriesOf(t, s, queue.EntryListOptions{Ident: "r2"}), func(e queue.Entry) int64 { return e.ID }), at(20), nil); err != nil {
		t.Fatal(err)
	}

	// Second request: the plan sees both cidrs' state and extends.
	_, err = s.ApplyBlocks(ctx, []netip.Prefix{in[0].CIDR, in[1].CIDR, pfx("198.51.100.0/24")}, at(30), func(st map[netip.Prefix]queue.CIDRState) (queue.Plan, error) {
		seen = copyStates(st)
		return queue.Plan{Extends: []queue.Extend{
			{BlockID: got[0].ID, UnblockAt: at(7200)},
			{BlockID: got[1].ID, UnblockAt: at(9000)}, // indefinite -> finite: the store does what it is told
		}}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for i, b := range got {
		st, ok := seen[b.CIDR]
		if !ok || st.Expected == nil || st.Latest == nil || st.Expected.ID != b.ID || st.Latest.ID != b.ID {
			t.Fatalf("state of %s = %+v, want expected and latest = block %d", b.CIDR, st, got[i].ID)
		}
	}
	if _, ok := seen[pfx("198.51.100.0/24")]; ok {
		t.Fatal("a cidr with no block has a state entry")
	}
	b0, _ := s.GetBlock(ctx, got[0].ID)
	b1, _ := s.GetBlock(ctx, got[1].ID)
	if !b0.UnblockAt.Equal(at(7200)) || !b1.UnblockAt.Equal(at(9000)) {
		t.Fatalf("after extend unblock_at = %v, %v", b0.UnblockAt, b1.UnblockAt)
	}
	// Every entry's copy moves, open or not.
	for _, e := range entriesOf(t, s, queue.EntryListOptions{BlockID: got[0].ID}) {
		if !e.UnblockAt.Equal(at(7200)) {
			t.Errorf("entry %d (%s) unblock_at = %v, want %v", e.ID, e.Ident, e.UnblockAt, at(7200))
		}
	}

	// Extend to indefinite stores NULL.
	_, err = s.ApplyBlocks(ctx, []netip.Prefix{in[0].CIDR}, at(40), func(map[netip.Prefix]queue.CIDRState) (queue.Plan, error) {
		return queue.Plan{Extends: []queue.Extend{{BlockID: got[0].ID}}}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	b0, _ = s.GetBlock(ctx, got[0].ID)
	if !b0.Indefinite() {
		t.Fatalf("extend to zero time gave unblock_at %v", b0.UnblockAt)
	}
	if next, ok, err := s.NextUnblockAt(ctx, at(40)); err != nil || ok {
		t.Fatalf("NextUnblockAt after indefinite extend = %v, %v, %v; want none", next, ok, err)
	}
}

func copyStates(st map[netip.Prefix]queue.CIDRState) map[netip.Prefix]queue.CIDRState {
	out := make(map[netip.Prefix]queue.CIDRState, len(st))
	for k, v := range st {
		out[k] = v
	}
	return out
}

func TestApplyBlocksStateSeesLatestAndExpected(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	old := insert(t, s, at(0), newBlock("203.0.113.7/32", at(0), at(100)))[0]
	// Expired: no expected block, but the latest is the old one.
	var st queue.CIDRState
	_, err := s.ApplyBlocks(ctx, pfxs("203.0.113.7/32"), at(200), func(m map[netip.Prefix]queue.CIDRState) (queue.Plan, error) {
		st = m[pfx("203.0.113.7/32")]
		return queue.Plan{}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if st.Expected != nil || st.Latest == nil || st.Latest.ID != old.ID {
		t.Fatalf("state = %+v, want no expected and latest %d", st, old.ID)
	}
	cur := insert(t, s, at(300), newBlock("203.0.113.7/32", at(300), at(400)))[0]
	_, err = s.ApplyBlocks(ctx, pfxs("203.0.113.7/32"), at(301), func(m map[netip.Prefix]queue.CIDRState) (queue.Plan, error) {
		st = m[pfx("203.0.113.7/32")]
		return queue.Plan{}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if st.Expected == nil || st.Expected.ID != cur.ID || st.Latest.ID != cur.ID {
		t.Fatalf("state = %+v, want expected and latest %d", st, cur.ID)
	}
}

func TestApplyBlocksClosesStaleEntries(t *testing.T) {
	s := openStore(t)
	cidr := "192.0.2.50/32"
	old := insert(t, s, at(0), newBlock(cidr, at(0), at(100)))[0]
	other := insert(t, s, at(0), newBlock("192.0.2.51/32", at(0), at(100)))[0]
	setBlocked(t, s, "r1", at(1), old.ID, other.ID)
	setBlocked(t, s, "r2", at(1), old.ID)
	// The old block expired, its entries are still open (the enforcers
	// have not unblocked yet) when the cidr is blocked again.
	if got := ids(mustUnblockQueue(t, s, "r1", at(150)), func(u queue.UnblockItem) int64 { return u.BlockID }); !equalIDs(got, []int64{old.ID, other.ID}) {
		t.Fatalf("unblock queue before re-block: blocks %v", got)
	}
	nb := insert(t, s, at(150), newBlock(cidr, at(150), at(1000)))[0]
	for _, e := range entriesOf(t, s, queue.EntryListOptions{BlockID: old.ID}) {
		if !e.Removed.Equal(at(150)) {
			t.Errorf("stale entry %d of %s: removed = %v, want %v", e.ID, e.Ident, e.Removed, at(150))
		}
	}
	// The other cidr is untouched, and the old unblock can no longer come.
	if got := ids(mustUnblockQueue(t, s, "r1", at(150)), func(u queue.UnblockItem) int64 { return u.BlockID }); !equalIDs(got, []int64{other.ID}) {
		t.Fatalf("unblock queue after re-block: blocks %v, want only %d", got, other.ID)
	}
	if got := blockQueue(t, s, "r1", at(150)); !equalIDs(got, []int64{nb.ID}) {
		t.Fatalf("block queue = %v, want the new block %d", got, nb.ID)
	}
}

func mustUnblockQueue(t *testing.T, s *Store, ident string, now time.Time) []queue.UnblockItem {
	t.Helper()
	items, err := s.UnblockQueue(context.Background(), ident, now, 1000)
	if err != nil {
		t.Fatal(err)
	}
	return items
}

func TestApplyBlocksPlanErrorWritesNothing(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	existing := insert(t, s, at(0), newBlock("192.0.2.1/32", at(0), at(100)))[0]
	setBlocked(t, s, "r1", at(1), existing.ID)

	planErr := errors.New("plan says no")
	_, err := s.ApplyBlocks(ctx, pfxs("192.0.2.1/32", "192.0.2.2/32"), at(5), func(map[netip.Prefix]queue.CIDRState) (queue.Plan, error) {
		return queue.Plan{Inserts: []queue.Block{newBlock("192.0.2.1/32", at(5), at(50))}}, planErr
	})
	if err != planErr {
		t.Fatalf("err = %v, want the plan's error unchanged", err)
	}
	// An unknown extend id fails the whole plan, inserts and stale
	// closing included.
	_, err = s.ApplyBlocks(ctx, pfxs("192.0.2.1/32"), at(5), func(map[netip.Prefix]queue.CIDRState) (queue.Plan, error) {
		return queue.Plan{
			Inserts: []queue.Block{newBlock("192.0.2.1/32", at(5), at(50))},
			Extends: []queue.Extend{{BlockID: existing.ID + 1000, UnblockAt: at(60)}},
		}, nil
	})
	if !errors.Is(err, queue.ErrNotFound) {
		t.Fatalf("extend of unknown id: err = %v, want ErrNotFound", err)
	}
	// An insert outside the locked cidrs is refused.
	_, err = s.ApplyBlocks(ctx, pfxs("192.0.2.1/32"), at(5), func(map[netip.Prefix]queue.CIDRState) (queue.Plan, error) {
		return queue.Plan{Inserts: []queue.Block{newBlock("192.0.2.9/32", at(5), at(50))}}, nil
	})
	if err == nil {
		t.Fatal("insert of an unlocked cidr accepted")
	}
	if n := countRows(t, s, `SELECT count(*) FROM blocks`); n != 1 {
		t.Fatalf("%d blocks stored, want only the first", n)
	}
	if e := entriesOf(t, s, queue.EntryListOptions{}); len(e) != 1 || !e[0].Removed.IsZero() {
		t.Fatalf("entries = %+v, want the one open entry untouched", e)
	}
	// The connection went back clean: the store still works.
	if _, err := s.GetBlock(ctx, existing.ID); err != nil {
		t.Fatal(err)
	}
}

func TestApplyBlocksEmptyPlan(t *testing.T) {
	s := openStore(t)
	got, err := s.ApplyBlocks(context.Background(), nil, at(0), func(st map[netip.Prefix]queue.CIDRState) (queue.Plan, error) {
		if len(st) != 0 {
			t.Errorf("state for no cidrs: %v", st)
		}
		return queue.Plan{}, nil
	})
	if err != nil || len(got) != 0 {
		t.Fatalf("empty apply = %v, %v", got, err)
	}
}

func TestApplyBlocksRevivedBlockIsQueuedAgain(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	blockQueue(t, s, "r1", at(0)) // register
	b := insert(t, s, at(0), newBlock("192.0.2.1/32", at(0), at(100)))[0]
	if got := blockQueue(t, s, "r1", at(200)); len(got) != 0 {
		t.Fatalf("expired block queued: %v", got)
	}
	if _, err := s.Prune(ctx, at(0), at(200)); err != nil { // drops its pending row
		t.Fatal(err)
	}
	_, err := s.ApplyBlocks(ctx, pfxs("192.0.2.1/32"), at(200), func(map[netip.Prefix]queue.CIDRState) (queue.Plan, error) {
		return queue.Plan{Extends: []queue.Extend{{BlockID: b.ID, UnblockAt: at(500)}}}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := blockQueue(t, s, "r1", at(200)); !equalIDs(got, []int64{b.ID}) {
		t.Fatalf("block queue after reviving extend = %v, want %d", got, b.ID)
	}
}

func TestUnblockNow(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	blockQueue(t, s, "r1", at(0))
	blockQueue(t, s, "r2", at(0))
	b := insert(t, s, at(0), newBlock("198.51.100.0/24", at(0), time.Time{}))[0]
	keep := insert(t, s, at(0), newBlock("198.51.100.1/32", at(0), time.Time{}))[0]
	setBlocked(t, s, "r1", at(1), b.ID) // r2 has it still queued

	got, err := s.UnblockNow(ctx, pfx("198.51.100.0/24"), at(10), "carol", "false positive")
	if err != nil {
		t.Fatal(err)
	}
	want := b
	want.ForcedUnblock, want.UnblockAt, want.UnblockWho, want.UnblockWhy = true, at(10), "carol", "false positive"
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("UnblockNow = %+v\nwant         %+v", got, want)
	}
	if stored, _ := s.GetBlock(ctx, b.ID); !reflect.DeepEqual(stored, want) {
		t.Fatalf("stored %+v", stored)
	}
	un := mustUnblockQueue(t, s, "r1", at(10))
	if len(un) != 1 || un[0].BlockID != b.ID || !un[0].UnblockAt.Equal(at(10)) || un[0].CIDR != b.CIDR {
		t.Fatalf("r1 unblock queue = %+v, want the forced block's entry at once", un)
	}
	if q := blockQueue(t, s, "r2", at(10)); !equalIDs(q, []int64{keep.ID}) {
		t.Fatalf("r2 block queue = %v, want only %d", q, keep.ID)
	}
	if n := countRows(t, s, `SELECT count(*) FROM pending WHERE block_id = $1`, b.ID); n != 0 {
		t.Fatalf("%d pending rows left for the forced block", n)
	}
	// Not expected any more, and never was for another cidr.
	for _, c := range []string{"198.51.100.0/24", "203.0.113.0/24"} {
		if _, err := s.UnblockNow(ctx, pfx(c), at(11), "carol", "again"); !errors.Is(err, queue.ErrNotBlocked) {
			t.Errorf("UnblockNow(%s) err = %v, want ErrNotBlocked", c, err)
		}
	}
	// An expired block is not "currently blocked" either.
	exp := insert(t, s, at(0), newBlock("192.0.2.99/32", at(0), at(5)))[0]
	if _, err := s.UnblockNow(ctx, exp.CIDR, at(6), "carol", "late"); !errors.Is(err, queue.ErrNotBlocked) {
		t.Errorf("UnblockNow of an expired block: err = %v, want ErrNotBlocked", err)
	}
}

// scenario builds blocks in every state at now = at(1000):
//
//	pend:      expected, no entry                 -> expected, pending
//	cur:       expected, open entry (r1)          -> expected, current
//	remv:      expired, open entry (r1)           -> current, pending removal
//	done:      expired, entry removed             -> none
//	forced:    forced off, open entry             -> current, pending removal
//	indef:     indefinite, source other, v6       -> expected, pending
//	half:      expected, r1 open, r2 removed      -> expected, current
type scenario struct {
	now                                        time.Time
	pend, cur, remv, done, forced, indef, half queue.Block
}

func buildScenario(t *testing.T, s *Store) scenario {
	t.Helper()
	ctx := context.Background()
	sc := scenario{now: at(1000)}
	sc.pend = insert(t, s, at(0), newBlock("10.1.0.0/24", at(0), at(5000)))[0]
	sc.cur = insert(t, s, at(10), newBlock("10.1.0.5/32", at(10), at(5000)))[0]
	sc.remv = insert(t, s, at(20), newBlock("10.1.1.0/24", at(20), at(500)))[0]
	sc.done = insert(t, s, at(30), newBlock("10.2.0.1/32", at(30), at(500)))[0]
	sc.forced = insert(t, s, at(40), newBlock("10.1.0.9/32", at(40), at(5000)))[0]
	b := newBlock("2001:db8::/48", at(50), time.Time{})
	b.Source = "other"
	sc.indef = insert(t, s, at(50), b)[0]
	sc.half = insert(t, s, at(60), newBlock("10.1.0.128/25", at(60), at(6000)))[0]
	setBlocked(t, s, "r1", at(100), sc.cur.ID, sc.remv.ID, sc.done.ID, sc.forced.ID, sc.half.ID)
	setBlocked(t, s, "r2", at(100), sc.half.ID)
	var close []int64
	for _, e := range entriesOf(t, s, queue.EntryListOptions{}) {
		if e.BlockID == sc.done.ID || (e.BlockID == sc.half.ID && e.Ident == "r2") {
			close = append(close, e.ID)
		}
	}
	if _, err := s.SetUnblocked(ctx, close, at(600), nil); err != nil {
		t.Fatal(err)
	}
	var err error
	if sc.forced, err = s.UnblockNow(ctx, sc.forced.CIDR, at(700), "x", "y"); err != nil {
		t.Fatal(err)
	}
	return sc
}

func TestListBlocksFilters(t *testing.T) {
	s := openStore(t)
	sc := buildScenario(t, s)
	all := []int64{sc.pend.ID, sc.cur.ID, sc.remv.ID, sc.done.ID, sc.forced.ID, sc.indef.ID, sc.half.ID}
	for _, tc := range []struct {
		name string
		opts queue.ListOptions
		want []int64
	}{
		{"all", queue.ListOptions{}, all},
		{"expected", queue.ListOptions{Filter: queue.FilterExpected, Now: sc.now}, []int64{sc.pend.ID, sc.cur.ID, sc.indef.ID, sc.half.ID}},
		{"expected later", queue.ListOptions{Filter: queue.FilterExpected, Now: at(5000)}, []int64{sc.indef.ID, sc.half.ID}},
		{"current", queue.ListOptions{Filter: queue.FilterCurrent, Now: sc.now}, []int64{sc.cur.ID, sc.remv.ID, sc.forced.ID, sc.half.ID}},
		{"pending", queue.ListOptions{Filter: queue.FilterPending, Now: sc.now}, []int64{sc.pend.ID, sc.indef.ID}},
		{"pending removal", queue.ListOptions{Filter: queue.FilterPendingRemoval, Now: sc.now}, []int64{sc.remv.ID, sc.forced.ID}},
		{"pending removal later", queue.ListOptions{Filter: queue.FilterPendingRemoval, Now: at(5000)}, []int64{sc.cur.ID, sc.remv.ID, sc.forced.ID}},
		{"source", queue.ListOptions{Source: "other"}, []int64{sc.indef.ID}},
		{"source expected", queue.ListOptions{Filter: queue.FilterExpected, Now: sc.now, Source: "test"}, []int64{sc.pend.ID, sc.cur.ID, sc.half.ID}},
		{"within /24", queue.ListOptions{Within: pfx("10.1.0.0/24")}, []int64{sc.pend.ID, sc.cur.ID, sc.forced.ID, sc.half.ID}},
		{"within /32", queue.ListOptions{Within: pfx("10.1.0.5/32")}, []int64{sc.cur.ID}},
		{"within /8", queue.ListOptions{Within: pfx("10.0.0.0/8")}, []int64{sc.pend.ID, sc.cur.ID, sc.remv.ID, sc.done.ID, sc.forced.ID, sc.half.ID}},
		{"within v6", queue.ListOptions{Within: pfx("2001:db8::/32")}, []int64{sc.indef.ID}},
		{"within more specific than block", queue.ListOptions{Within: pfx("2001:db8::/64")}, nil},
		{"within ::/0 only v6", queue.ListOptions{Within: pfx("::/0")}, []int64{sc.indef.ID}},
		{"within host bits masked", queue.ListOptions{Within: pfx("10.1.0.77/24")}, []int64{sc.pend.ID, sc.cur.ID, sc.forced.ID, sc.half.ID}},
		{"added since (inclusive)", queue.ListOptions{AddedSince: at(40)}, []int64{sc.forced.ID, sc.indef.ID, sc.half.ID}},
		{"after id", queue.ListOptions{AfterID: sc.forced.ID}, []int64{sc.indef.ID, sc.half.ID}},
		{"descending", queue.ListOptions{Descending: true}, reversed(all)},
		{"descending after id", queue.ListOptions{Descending: true, AfterID: sc.remv.ID}, []int64{sc.cur.ID, sc.pend.ID}},
		{"offset limit", queue.ListOptions{Offset: 2, Limit: 3}, all[2:5]},
		{"limit expected", queue.ListOptions{Filter: queue.FilterExpected, Now: sc.now, Limit: 2}, []int64{sc.pend.ID, sc.cur.ID}},
		{"combined", queue.ListOptions{Filter: queue.FilterCurrent, Now: sc.now, Within: pfx("10.1.0.0/16"), AddedSince: at(20), Descending: true, Limit: 2}, []int64{sc.half.ID, sc.forced.ID}},
	} {
		if got := listIDs(t, s, tc.opts); !equalIDs(got, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, got, tc.want)
		}
	}
	// Streamed blocks are complete.
	var forced queue.Block
	_ = s.ListBlocks(context.Background(), queue.ListOptions{AfterID: sc.forced.ID - 1, Limit: 1}, func(b queue.Block) error {
		forced = b
		return nil
	})
	if !reflect.DeepEqual(forced, sc.forced) {
		t.Errorf("listed %+v\nwant   %+v", forced, sc.forced)
	}
	// An error from fn stops the listing and comes back unchanged.
	stop := errors.New("stop")
	n := 0
	err := s.ListBlocks(context.Background(), queue.ListOptions{}, func(queue.Block) error {
		n++
		return stop
	})
	if err != stop || n != 1 {
		t.Fatalf("fn error: err = %v after %d calls, want stop after 1", err, n)
	}
}

func reversed(s []int64) []int64 {
	out := slices.Clone(s)
	slices.Reverse(out)
	return out
}

func TestStats(t *testing.T) {
	s := openStore(t)
	sc := buildScenario(t, s)
	st, err := s.Stats(context.Background(), sc.now)
	if err != nil {
		t.Fatal(err)
	}
	want := queue.Stats{
		Expected:       4, // pend, cur, indef, half
		Current:        4, // cur, remv, forced, half
		BlockPending:   2, // pend, indef
		UnblockPending: 2, // remv, forced
		Sources:        map[string]int64{"test": 3, "other": 1},
	}
	if !reflect.DeepEqual(st, want) {
		t.Fatalf("Stats = %+v, want %+v", st, want)
	}
	empty := openStore(t)
	st, err = empty.Stats(context.Background(), sc.now)
	if err != nil || st.Sources == nil || st.Expected != 0 {
		t.Fatalf("empty Stats = %+v, %v", st, err)
	}
}

func TestNextUnblockAt(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	if _, ok, err := s.NextUnblockAt(ctx, at(0)); err != nil || ok {
		t.Fatalf("empty store: ok = %v, %v", ok, err)
	}
	sc := buildScenario(t, s)
	// Open entries with unblock_at after 1000: cur (5000), half r1 (6000).
	next, ok, err := s.NextUnblockAt(ctx, sc.now)
	if err != nil || !ok || !next.Equal(at(5000)) || next.Location() != time.UTC {
		t.Fatalf("NextUnblockAt = %v, %v, %v; want %v UTC", next, ok, err, at(5000))
	}
	if next, ok, _ = s.NextUnblockAt(ctx, at(5000)); !ok || !next.Equal(at(6000)) {
		t.Fatalf("NextUnblockAt(5000) = %v, %v; want %v", next, ok, at(6000))
	}
	if _, ok, _ = s.NextUnblockAt(ctx, at(6000)); ok {
		t.Fatal("NextUnblockAt past every end found one")
	}
}

func TestGetBlockNotFound(t *testing.T) {
	s := openStore(t)
	if _, err := s.GetBlock(context.Background(), 42); !errors.Is(err, queue.ErrNotFound) {
		t.Fatalf("err = %v, want ErrNotFound", err)
	}
}

func TestPrune(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	blockQueue(t, s, "r3", at(0)) // so that every block gets a pending row
	sc := buildScenario(t, s)     // now 1000
	if n := countRows(t, s, `SELECT count(*) FROM pending WHERE block_id IN ($1, $2)`, sc.remv.ID, sc.done.ID); n != 2 {
		t.Fatalf("setup: %d pending rows for the expired blocks, want 2", n)
	}
	oldNoEntry := insert(t, s, at(0), newBlock("10.9.0.1/32", at(0), at(50)))[0] // ended at 50, never enforced
	// done: ended 500, its entry removed at 600. Only a cutoff after 600
	// prunes it.
	res, err := s.Prune(ctx, at(550), sc.now)
	if err != nil {
		t.Fatal(err)
	}
	if res != (queue.PruneResult{Blocks: 1, Entries: 0}) {
		t.Fatalf("Prune(550) = %+v, want only the unenforced block", res)
	}
	if _, err := s.GetBlock(ctx, oldNoEntry.ID); !errors.Is(err, queue.ErrNotFound) {
		t.Fatalf("pruned block still there: %v", err)
	}
	res, err = s.Prune(ctx, at(10000), sc.now)
	if err != nil {
		t.Fatal(err)
	}
	// remv and forced still have open entries; the rest is expected.
	if res != (queue.PruneResult{Blocks: 1, Entries: 1}) {
		t.Fatalf("Prune(10000) = %+v, want done and its entry", res)
	}
	if _, err := s.GetBlock(ctx, sc.done.ID); !errors.Is(err, queue.ErrNotFound) {
		t.Fatal("done not pruned")
	}
	for _, b := range []queue.Block{sc.pend, sc.cur, sc.remv, sc.forced, sc.indef, sc.half} {
		if _, err := s.GetBlock(ctx, b.ID); err != nil {
			t.Errorf("block %d pruned: %v", b.ID, err)
		}
	}
	// Queue bookkeeping of non-expected blocks is gone, the rest stays.
	if n := countRows(t, s, `SELECT count(*) FROM pending p JOIN blocks b ON b.id = p.block_id WHERE b.forced_unblock OR b.unblock_at <= $1`, sc.now); n != 0 {
		t.Fatalf("%d pending rows of non-expected blocks left", n)
	}
	if got := blockQueue(t, s, "r3", sc.now); !equalIDs(got, []int64{sc.pend.ID, sc.cur.ID, sc.indef.ID, sc.half.ID}) {
		t.Fatalf("r3 queue after prune = %v", got)
	}
}

// Batches up to maxCIDRLocks lock each cidr; larger ones take the bulk
// lock exclusively instead, so that a huge batch cannot exhaust the shared
// lock table, and other writers wait for it.
func TestApplyBlocksLockModes(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	heldCIDRLocks := func() int64 {
		return countRows(t, s, `SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 1`)
	}
	cidrs := func(base, n int) []netip.Prefix {
		out := make([]netip.Prefix, n)
		for i := range out {
			out[i] = benchCIDR(base + i)
		}
		return out
	}
	// during runs when plan is called under the locks: with the states of
	// the cidrs, which have all been blocked before (a batch of cidrs never
	// blocked is first tried in one round trip, with plan called before any
	// lock is taken).
	insertPlan := func(batch []netip.Prefix, during func() error) queue.PlanFunc {
		return func(st map[netip.Prefix]queue.CIDRState) (queue.Plan, error) {
			if len(st) > 0 {
				if err := during(); err != nil {
					return queue.Plan{}, err
				}
			}
			return newBlockPlan(batch, at(0))(nil)
		}
	}
	expired := func(batch []netip.Prefix) {
		old := make([]queue.Block, len(batch))
		for i, c := range batch {
			old[i] = queue.Block{CIDR: c, Added: at(-100), UnblockAt: at(-50)}
		}
		insert(t, s, at(-100), old...)
	}

	small := cidrs(0, maxCIDRLocks)
	expired(small)
	var held int64
	got, err := s.ApplyBlocks(ctx, small, at(0), insertPlan(small, func() error { held = heldCIDRLocks(); return nil }))
	if err != nil || len(got) != len(small) {
		t.Fatalf("small batch: %v, %d blocks", err, len(got))
	}
	if held != int64(maxCIDRLocks) {
		t.Fatalf("batch of %d held %d cidr locks, want one each", len(small), held)
	}

	big := cidrs(10000, maxCIDRLocks+500)
	expired(big)
	other := make(chan error, 1)
	got, err = s.ApplyBlocks(ctx, big, at(0), insertPlan(big, func() error {
		if n := heldCIDRLocks(); n != 0 {
			return fmt.Errorf("bulk batch holds %d cidr locks", n)
		}
		go func() {
			c := []netip.Prefix{benchCIDR(50000)}
			_, err := s.ApplyBlocks(ctx, c, at(0), newBlockPlan(c, at(0)))
			other <- err
		}()
		deadline := time.Now().Add(10 * time.Second)
		for countRows(t, s, `SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted
			AND classid = $1::int8::oid AND objid = $2::int8::oid AND objsubid = 2`, int64(lockClass), int64(lockBulk)) == 0 {
			select {
			case err := <-other:
				return fmt.Errorf("another writer finished (%v) during a bulk batch", err)
			default:
			}
			if time.Now().After(deadline) {
				return errors.New("another writer never waited for the bulk lock")
			}
			time.Sleep(5 * time.Millisecond)
		}
		return nil
	}))
	if err != nil || len(got) != len(big) {
		t.Fatalf("big batch: %v, %d blocks", err, len(got))
	}
	for i, b := range got {
		if b.CIDR != big[i] || (i > 0 && b.ID <= got[i-1].ID) {
			t.Fatalf("block %d = %d %s, want %s after id %d", i, b.ID, b.CIDR, big[i], got[max(i-1, 0)].ID)
		}
	}
	if err := <-other; err != nil {
		t.Fatal(err)
	}
	if n := countRows(t, s, `SELECT count(*) FROM blocks`); n != int64(2*len(small)+2*len(big)+1) {
		t.Fatalf("%d blocks stored", n)
	}
}

// Blocks of cidrs never blocked are written in one round trip, planned
// before any lock; any cidr with history sends the batch through the
// locked read and a second plan, which alone is written.
func TestApplyBlocksFreshGuess(t *testing.T) {
	ctx := context.Background()
	url := pgtestDB(t)
	s, other := openStoreAt(t, url), openStoreAt(t, url)
	blockQueue(t, s, "bgp1", at(0)) // a known ident: inserts are queued
	var calls []map[netip.Prefix]queue.CIDRState
	apply := func(cidrs ...string) []queue.Block {
		t.Helper()
		calls = nil
		batch := pfxs(cidrs...)
		got, err := s.ApplyBlocks(ctx, batch, at(0), func(st map[netip.Prefix]queue.CIDRState) (queue.Plan, error) {
			calls = append(calls, maps.Clone(st))
			return newBlockPlan(batch, at(0))(st)
		})
		if err != nil {
			t.Fatal(err)
		}
		return got
	}

	// One fresh cidr (the scalar statement), then a fresh batch (arrays).
	one := apply("192.0.2.1/32")
	if len(calls) != 1 || len(one) != 1 || one[0].CIDR != pfx("192.0.2.1/32") {
		t.Fatalf("fresh cidr: %d plan calls, blocks %v", len(calls), one)
	}
	three := apply("192.0.2.2/32", "192.0.2.3/32", "2001:db8::/64")
	if len(calls) != 1 || len(three) != 3 || three[2].CIDR != pfx("2001:db8::/64") {
		t.Fatalf("fresh batch: %d plan calls, blocks %v", len(calls), three)
	}
	if q := blockQueue(t, s, "bgp1", at(0)); !equalIDs(q, blockIDs(append(one, three...))) {
		t.Fatalf("queue %v, want every block", q)
	}

	// One cidr of the batch has a block, written by another process (so
	// not in this one's history hint): nothing of the guess is written,
	// plan sees the real state and its plan is what is written.
	insert(t, other, at(0), newBlock("192.0.2.9/32", at(0), at(100)))
	if got := apply("192.0.2.4/32", "192.0.2.9/32"); len(calls) != 2 || len(calls[0]) != 0 || calls[1][pfx("192.0.2.9/32")].Expected == nil {
		t.Fatalf("batch with a blocked cidr: %d plan calls (%v), blocks %v", len(calls), calls, got)
	} else if len(got) != 1 || got[0].CIDR != pfx("192.0.2.4/32") {
		t.Fatalf("batch with a blocked cidr wrote %v, want only 192.0.2.4/32", got)
	}
	// A cidr this store has seen blocked goes straight to the locked read.
	if got := apply("192.0.2.1/32"); len(calls) != 1 || calls[0][pfx("192.0.2.1/32")].Expected == nil || len(got) != 0 {
		t.Fatalf("repeated cidr: plan calls with %v, blocks %v; want one call, with its state", calls, got)
	}
	if n := countRows(t, s, `SELECT count(*) FROM blocks`); n != 6 {
		t.Fatalf("%d blocks stored, want 6", n)
	}
}

// The guess reads a cidr's blocks only once it holds the cidr's lock: a
// block committed by the writer it waited for is seen, and the request
// becomes a duplicate instead of a second expected block.
func TestApplyBlocksFreshGuessWaitsForLock(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	cidr := pfx("198.51.100.7/32")
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, cidrLockKey(cidr)); err != nil {
		t.Fatal(err)
	}
	type result struct {
		blocks []queue.Block
		states []map[netip.Prefix]queue.CIDRState
		err    error
	}
	done := make(chan result, 1)
	go func() {
		var r result
		batch := []netip.Prefix{cidr}
		r.blocks, r.err = s.ApplyBlocks(ctx, batch, at(0), func(st map[netip.Prefix]queue.CIDRState) (queue.Plan, error) {
			r.states = append(r.states, maps.Clone(st))
			return newBlockPlan(batch, at(0))(st)
		})
		done <- r
	}()
	deadline := time.Now().Add(10 * time.Second)
	for countRows(t, s, `SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted AND objsubid = 1`) == 0 {
		select {
		case r := <-done:
			t.Fatalf("ApplyBlocks finished (%v, %v) while the cidr's lock was held elsewhere", r.blocks, r.err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("ApplyBlocks never waited for the cidr's lock")
		}
		time.Sleep(5 * time.Millisecond)
	}
	// The lock holder blocks the cidr, as a concurrent writer would.
	if _, err := tx.Exec(ctx, `INSERT INTO blocks (cidr, added, unblock_at) VALUES ($1, $2, $3)`, cidr, at(0), at(3600)); err != nil {
		t.Fatal(err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	if len(r.blocks) != 0 || len(r.states) != 2 || r.states[1][cidr].Expected == nil {
		t.Fatalf("wrote %v after plan calls with states %v; want nothing, planned over the committed block", r.blocks, r.states)
	}
	if n := countRows(t, s, `SELECT count(*) FROM blocks WHERE cidr = $1`, cidr); n != 1 {
		t.Fatalf("%d blocks of %s, want 1", n, cidr)
	}
}
