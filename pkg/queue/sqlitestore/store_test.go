package sqlitestore

import (
	"context"
	"errors"
	"fmt"
	"github.com/bhrd/bhrd/internal/migrate"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/bhrd/bhrd/pkg/queue"
)

var ctx = context.Background()

func TestOpenSettings(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a", "b", "bhrd.db")
	s := openAt(t, path)
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("database file: %v", err)
	}
	checks := []struct {
		pragma string
		want   string
	}{
		{"journal_mode", "wal"},
		{"synchronous", "1"}, // NORMAL
		{"foreign_keys", "1"},
		{"busy_timeout", fmt.Sprint(busyTimeout.Milliseconds())},
	}
	for _, pool := range []struct {
		name string
		q    func(string) (string, error)
	}{
		{"write", func(p string) (v string, err error) { err = s.wdb.QueryRow("PRAGMA " + p).Scan(&v); return }},
		{"read", func(p string) (v string, err error) { err = s.rdb.QueryRow("PRAGMA " + p).Scan(&v); return }},
	} {
		for _, c := range checks {
			got, err := pool.q(c.pragma)
			if err != nil {
				t.Fatalf("%s PRAGMA %s: %v", pool.name, c.pragma, err)
			}
			if got != c.want {
				t.Errorf("%s connection: %s = %s, want %s", pool.name, c.pragma, got, c.want)
			}
		}
	}
	// The read pool must refuse writes: a write there would bypass the
	// serialisation of writers.
	if _, err := s.rdb.Exec(`INSERT INTO idents (name) VALUES ('x')`); err == nil {
		t.Error("read pool accepted a write")
	}
}

func TestOpenRejectsNonFilePaths(t *testing.T) {
	for _, p := range []string{"", ":memory:", "file:x.db", "x.db?mode=ro"} {
		if s, err := Open(ctx, p); err == nil {
			s.Close()
			t.Errorf("Open(%q) succeeded", p)
		}
	}
}

func TestMigrateTwice(t *testing.T) {
	s, err := Open(ctx, filepath.Join(t.TempDir(), "m.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	applied, err := s.Migrate(ctx)
	if err != nil {
		t.Fatalf("first Migrate: %v", err)
	}
	ms, err := migrate.Load(migrationFiles, "migrations")
	if err != nil {
		t.Fatal(err)
	}
	if len(applied) != len(ms) || applied[0] != "0001_init.sql" {
		t.Errorf("first Migrate applied %v, want all %d", applied, len(ms))
	}
	applied, err = s.Migrate(ctx)
	if err != nil {
		t.Fatalf("second Migrate: %v", err)
	}
	if len(applied) != 0 {
		t.Errorf("second Migrate applied %v, want nothing", applied)
	}
	var n int
	if err := s.rdb.QueryRow(`SELECT count(*) FROM bhrd_schema_migrations`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != len(ms) {
		t.Errorf("%d version rows, want %d", n, len(ms))
	}
}

func TestReopenKeepsData(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bhrd.db")
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	b := insert(t, s, t0, blk("192.0.2.0/24", t0, t0.Add(time.Hour)))[0]
	if _, err := s.queueOf(ctx, "bgp1", t0, time.Time{}, 10); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s2 := openAt(t, path) // migrates again: a no-op
	if got := mustGet(t, s2, b.ID); !reflect.DeepEqual(got, b) {
		t.Errorf("after reopen: %+v, want %+v", got, b)
	}
	// The ident registration survived: a block added now is queued for it
	// (through the pending rows, not a backfill).
	b2 := insert(t, s2, t0, blk("198.51.100.0/24", t0, time.Time{}))[0]
	var n int
	if err := s2.rdb.QueryRow(`SELECT count(*) FROM pending WHERE ident = 'bgp1' AND block_id = ?`, b2.ID).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Errorf("new block not queued for the ident registered before reopen")
	}
	eqIDs(t, "queue after reopen", queueIDs(t, s2, "bgp1", t0, time.Time{}, 10), ids(b, b2))
}

func TestApplyBlocksInsert(t *testing.T) {
	s := newStore(t)
	req := []queue.Block{
		{CIDR: pfx("192.0.2.0/24"), Who: "alice", Source: "ids", Why: "scan", Added: t0, UnblockAt: t0.Add(time.Hour), SkipWhitelist: true},
		{CIDR: pfx("2001:db8::/48"), Who: "bob", Source: "zeek", Why: "brute force", Added: t0},
	}
	var seen map[netip.Prefix]queue.CIDRState
	out, err := s.ApplyBlocks(ctx, []netip.Prefix{req[0].CIDR, req[1].CIDR}, t0, func(st map[netip.Prefix]queue.CIDRState) (queue.Plan, error) {
		seen = map[netip.Prefix]queue.CIDRState{}
		for k, v := range st {
			seen[k] = v
		}
		return queue.Plan{Inserts: req}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(seen) != 2 || seen[req[0].CIDR] != (queue.CIDRState{}) || seen[req[1].CIDR] != (queue.CIDRState{}) {
		t.Errorf("states of new cidrs: %+v, want two empty states", seen)
	}
	if len(out) != 2 || out[0].ID <= 0 || out[1].ID <= out[0].ID {
		t.Fatalf("inserted ids not increasing in plan order: %+v", out)
	}
	for i, b := range out {
		want := req[i]
		want.ID = b.ID
		want.Added = t0.Truncate(time.Microsecond)
		if !want.UnblockAt.IsZero() {
			want.UnblockAt = want.UnblockAt.Truncate(time.Microsecond)
		}
		if !reflect.DeepEqual(b, want) {
			t.Errorf("returned block %d: %+v, want %+v", i, b, want)
		}
		if got := mustGet(t, s, b.ID); !reflect.DeepEqual(got, want) {
			t.Errorf("stored block %d: %+v, want %+v", i, got, want)
		}
	}
	if !out[1].Indefinite() {
		t.Error("zero unblock_at did not stay indefinite")
	}
	if _, err := s.GetBlock(ctx, 999); !errors.Is(err, queue.ErrNotFound) {
		t.Errorf("GetBlock(unknown) = %v, want ErrNotFound", err)
	}
}

func TestApplyBlocksStates(t *testing.T) {
	s := newStore(t)
	c := pfx("203.0.113.7/32")
	old := insert(t, s, t0, blk("203.0.113.7/32", t0, t0.Add(time.Minute)))[0]
	state := func(now time.Time) queue.CIDRState {
		var got queue.CIDRState
		_, err := s.ApplyBlocks(ctx, []netip.Prefix{c}, now, func(st map[netip.Prefix]queue.CIDRState) (queue.Plan, error) {
			got = st[c]
			return queue.Plan{}, nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	st := state(t0.Add(30 * time.Second))
	if st.Expected == nil || st.Expected.ID != old.ID || st.Latest == nil || st.Latest.ID != old.ID {
		t.Fatalf("while expected: %+v", st)
	}
	// Expiry is exclusive: at unblock_at the block is no longer expected.
	st = state(t0.Add(time.Minute))
	if st.Expected != nil || st.Latest == nil || st.Latest.ID != old.ID {
		t.Fatalf("at unblock_at: %+v", st)
	}

	later := t0.Add(2 * time.Minute)
	nb := insert(t, s, later, blk("203.0.113.7/32", later, time.Time{}))[0]
	st = state(later)
	if st.Expected == nil || st.Expected.ID != nb.ID || st.Latest == nil || st.Latest.ID != nb.ID {
		t.Fatalf("after re-block: %+v", st)
	}
	if _, err := s.UnblockNow(ctx, c, later, "op", "done"); err != nil {
		t.Fatal(err)
	}
	st = state(later)
	if st.Expected != nil || st.Latest == nil || st.Latest.ID != nb.ID || !st.Latest.ForcedUnblock {
		t.Fatalf("after unblock_now: %+v", st)
	}
	// Unmasked input is keyed by its network.
	var keys []netip.Prefix
	if _, err := s.ApplyBlocks(ctx, []netip.Prefix{pfx("10.1.2.3/8"), pfx("10.0.0.0/8")}, t0, func(st map[netip.Prefix]queue.CIDRState) (queue.Plan, error) {
		for k := range st {
			keys = append(keys, k)
		}
		return queue.Plan{}, nil
	}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(keys, []netip.Prefix{pfx("10.0.0.0/8")}) {
		t.Errorf("state keys %v, want [10.0.0.0/8]", keys)
	}
}

func TestApplyBlocksExtend(t *testing.T) {
	s := newStore(t)
	b := insert(t, s, t0, blk("192.0.2.1/32", t0, t0.Add(time.Hour)))[0]
	if _, err := s.SetBlocked(ctx, "a", []int64{b.ID}, t0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SetBlocked(ctx, "b", []int64{b.ID}, t0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SetUnblocked(ctx, []int64{entryOf(t, s, b.ID, "b").ID}, t0.Add(time.Second), nil); err != nil {
		t.Fatal(err)
	}
	for _, end := range []time.Time{t0.Add(3 * time.Hour).Add(time.Nanosecond * 1500), {}} {
		out, err := s.ApplyBlocks(ctx, []netip.Prefix{b.CIDR}, t0, func(map[netip.Prefix]queue.CIDRState) (queue.Plan, error) {
			return queue.Plan{Extends: []queue.Extend{{BlockID: b.ID, UnblockAt: end}}}, nil
		})
		if err != nil || len(out) != 0 {
			t.Fatalf("extend: %v, %v", out, err)
		}
		want := end.Truncate(time.Microsecond)
		if got := mustGet(t, s, b.ID); !got.UnblockAt.Equal(want) || got.UnblockAt.IsZero() != end.IsZero() {
			t.Errorf("block unblock_at = %v, want %v", got.UnblockAt, want)
		}
		for _, ident := range []string{"a", "b"} {
			if e := entryOf(t, s, b.ID, ident); !e.UnblockAt.Equal(want) || e.UnblockAt.IsZero() != end.IsZero() {
				t.Errorf("entry of %s unblock_at = %v, want %v", ident, e.UnblockAt, want)
			}
		}
	}
	// Extending an unknown block fails the whole plan.
	_, err := s.ApplyBlocks(ctx, []netip.Prefix{pfx("192.0.2.9/32")}, t0, func(map[netip.Prefix]queue.CIDRState) (queue.Plan, error) {
		return queue.Plan{
			Inserts: []queue.Block{blk("192.0.2.9/32", t0, time.Time{})},
			Extends: []queue.Extend{{BlockID: 12345, UnblockAt: t0}},
		}, nil
	})
	if !errors.Is(err, queue.ErrNotFound) {
		t.Errorf("extend unknown block: %v, want ErrNotFound", err)
	}
	if got := listIDs(t, s, queue.ListOptions{Within: pfx("192.0.2.9/32"), Now: t0}); len(got) != 0 {
		t.Errorf("insert of a failed plan was written: %v", got)
	}
}

func TestApplyBlocksClosesStaleEntries(t *testing.T) {
	s := newStore(t)
	old := insert(t, s, t0, blk("192.0.2.0/24", t0, t0.Add(time.Minute)))[0]
	other := insert(t, s, t0, blk("192.0.2.0/25", t0, t0.Add(time.Minute)))[0]
	for _, ident := range []string{"a", "b"} {
		if _, err := s.SetBlocked(ctx, ident, []int64{old.ID, other.ID}, t0); err != nil {
			t.Fatal(err)
		}
	}
	// "b" already unblocked the old block earlier: its removed must stay.
	eb := entryOf(t, s, old.ID, "b")
	if _, err := s.SetUnblocked(ctx, []int64{eb.ID}, t0.Add(2*time.Minute), nil); err != nil {
		t.Fatal(err)
	}

	// The old block expired, "a" has not unblocked it yet; a new block for
	// the same cidr arrives.
	now := t0.Add(5 * time.Minute)
	nb := insert(t, s, now, blk("192.0.2.0/24", now, now.Add(time.Hour)))[0]
	if e := entryOf(t, s, old.ID, "a"); !e.Removed.Equal(now.Truncate(time.Microsecond)) {
		t.Errorf("stale entry of a: removed = %v, want %v", e.Removed, now)
	}
	if e := entryOf(t, s, old.ID, "b"); !e.Removed.Equal(t0.Add(2 * time.Minute).Truncate(time.Microsecond)) {
		t.Errorf("closed entry of b changed: removed = %v", e.Removed)
	}
	for _, ident := range []string{"a", "b"} {
		if e := entryOf(t, s, other.ID, ident); !e.Removed.IsZero() {
			t.Errorf("entry of another cidr closed: %+v", e)
		}
	}
	// The stale block is out of the unblock queue; the new one must be
	// installed again.
	eqIDs(t, "unblock queue of a", unblockIDs(t, s, "a", now, 10), []int64{entryOf(t, s, other.ID, "a").ID})
	eqIDs(t, "block queue of a", queueIDs(t, s, "a", now, time.Time{}, 10), ids(nb))
}

func TestApplyBlocksPlanErrorWritesNothing(t *testing.T) {
	s := newStore(t)
	b := insert(t, s, t0, blk("192.0.2.1/32", t0, t0.Add(time.Hour)))[0]
	sentinel := errors.New("policy says no")
	out, err := s.ApplyBlocks(ctx, []netip.Prefix{b.CIDR}, t0, func(map[netip.Prefix]queue.CIDRState) (queue.Plan, error) {
		return queue.Plan{
			Inserts: []queue.Block{blk("192.0.2.2/32", t0, time.Time{})},
			Extends: []queue.Extend{{BlockID: b.ID}},
		}, sentinel
	})
	if err != sentinel || out != nil {
		t.Fatalf("ApplyBlocks = %v, %v; want nil and the plan's error unchanged", out, err)
	}
	eqIDs(t, "blocks", listIDs(t, s, queue.ListOptions{Now: t0}), ids(b))
	if got := mustGet(t, s, b.ID); !reflect.DeepEqual(got, b) {
		t.Errorf("block changed: %+v", got)
	}

	// A batch error (from the Service's all-or-nothing check) stays
	// matchable with errors.As.
	_, err = s.ApplyBlocks(ctx, []netip.Prefix{b.CIDR}, t0, func(map[netip.Prefix]queue.CIDRState) (queue.Plan, error) {
		return queue.Plan{}, &queue.BatchError{Items: []error{queue.ErrWhitelisted}}
	})
	var be *queue.BatchError
	if !errors.As(err, &be) {
		t.Errorf("batch error lost: %v", err)
	}
	if _, err := s.ApplyBlocks(ctx, []netip.Prefix{{}}, t0, nil); err == nil {
		t.Error("invalid cidr accepted")
	}
}

func TestBlockQueue(t *testing.T) {
	s := newStore(t)
	end := t0.Add(time.Hour)
	b1 := insert(t, s, t0, blk("192.0.2.1/32", t0, end))[0]
	b2 := insert(t, s, t0, blk("192.0.2.2/32", t0.Add(time.Second), time.Time{}))[0]
	insert(t, s, t0, blk("192.0.2.3/32", t0, t0.Add(time.Minute))) // expired before now: never queued
	forced := insert(t, s, t0, blk("192.0.2.4/32", t0, end))[0]
	if _, err := s.UnblockNow(ctx, forced.CIDR, t0, "op", "x"); err != nil {
		t.Fatal(err)
	}
	// "late" marks b2 blocked before it ever asks for its queue.
	if _, err := s.SetBlocked(ctx, "late", []int64{b2.ID}, t0); err != nil {
		t.Fatal(err)
	}
	now := t0.Add(2 * time.Minute)

	// First query registers and backfills: expected blocks without an
	// entry for the ident, oldest first.
	eqIDs(t, "new ident", queueIDs(t, s, "bgp", now, time.Time{}, 0), ids(b1, b2))
	eqIDs(t, "new ident with entry", queueIDs(t, s, "late", now, time.Time{}, 0), ids(b1))
	eqIDs(t, "limit", queueIDs(t, s, "bgp", now, time.Time{}, 1), ids(b1))
	eqIDs(t, "since is exclusive", queueIDs(t, s, "bgp", now, t0, 0), ids(b2))
	eqIDs(t, "since after all", queueIDs(t, s, "bgp", now, t0.Add(time.Second), 0), nil)

	// Blocks added after registration are queued for every known ident.
	b3 := insert(t, s, now, blk("2001:db8::1/128", now, time.Time{}))[0]
	eqIDs(t, "after insert", queueIDs(t, s, "bgp", now, time.Time{}, 0), ids(b1, b2, b3))
	eqIDs(t, "other ident", queueIDs(t, s, "late", now, time.Time{}, 0), ids(b1, b3))

	// Marking blocked removes from that ident's queue only.
	if _, err := s.SetBlocked(ctx, "bgp", []int64{b1.ID, b3.ID}, now); err != nil {
		t.Fatal(err)
	}
	eqIDs(t, "after set blocked", queueIDs(t, s, "bgp", now, time.Time{}, 0), ids(b2))
	eqIDs(t, "other ident unchanged", queueIDs(t, s, "late", now, time.Time{}, 0), ids(b1, b3))

	// Expiry removes from the queue without any write.
	eqIDs(t, "at expiry", queueIDs(t, s, "late", end, time.Time{}, 0), ids(b3))
	// UnblockNow removes at once.
	if _, err := s.UnblockNow(ctx, b3.CIDR, now, "op", "x"); err != nil {
		t.Fatal(err)
	}
	eqIDs(t, "after unblock now", queueIDs(t, s, "late", now, time.Time{}, 0), ids(b1))

	q, err := s.queueOf(ctx, "bgp", now, time.Time{}, 10)
	if err != nil {
		t.Fatal(err)
	}
	want := []queue.QueueItem{{ID: b2.ID, CIDR: b2.CIDR, Added: b2.Added, Source: b2.Source}}
	if !reflect.DeepEqual(q, want) {
		t.Errorf("queue items %+v, want %+v", q, want)
	}
}

func TestBlockQueueConcurrentRegistration(t *testing.T) {
	s := newStore(t)
	bs := insert(t, s, t0, blk("192.0.2.1/32", t0, time.Time{}), blk("192.0.2.2/32", t0, time.Time{}))
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			q, err := s.queueOf(ctx, "bgp", t0, time.Time{}, 0)
			if err == nil && len(q) != 2 {
				err = fmt.Errorf("queue has %d items, want 2", len(q))
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	eqIDs(t, "queue", queueIDs(t, s, "bgp", t0, time.Time{}, 0), ids(bs...))
}

func TestSetBlocked(t *testing.T) {
	s := newStore(t)
	end := t0.Add(time.Hour)
	bs := insert(t, s, t0, blk("192.0.2.1/32", t0, end), blk("192.0.2.2/32", t0, time.Time{}))
	eqIDs(t, "queue", queueIDs(t, s, "bgp", t0, time.Time{}, 0), ids(bs...))

	at := t0.Add(time.Second)
	if _, err := s.SetBlocked(ctx, "bgp", []int64{bs[0].ID, bs[1].ID}, at); err != nil {
		t.Fatal(err)
	}
	e0 := entryOf(t, s, bs[0].ID, "bgp")
	want := queue.Entry{ID: e0.ID, BlockID: bs[0].ID, CIDR: bs[0].CIDR, Ident: "bgp",
		Added: at.Truncate(time.Microsecond), UnblockAt: end.Truncate(time.Microsecond),
		Source: bs[0].Source, BlockAdded: t0.Truncate(time.Microsecond)}
	if !reflect.DeepEqual(e0, want) {
		t.Errorf("entry %+v, want %+v", e0, want)
	}
	if e1 := entryOf(t, s, bs[1].ID, "bgp"); !e1.UnblockAt.IsZero() {
		t.Errorf("entry of an indefinite block has unblock_at %v", e1.UnblockAt)
	}
	eqIDs(t, "queue after", queueIDs(t, s, "bgp", t0, time.Time{}, 0), nil)

	// Idempotent: the existing entry is left as it is, also when the
	// same id appears twice in one call.
	if _, err := s.SetBlocked(ctx, "bgp", []int64{bs[0].ID, bs[0].ID}, at.Add(time.Hour)); err != nil {
		t.Fatalf("second SetBlocked: %v", err)
	}
	if e := entryOf(t, s, bs[0].ID, "bgp"); !reflect.DeepEqual(e, e0) {
		t.Errorf("entry changed by a repeated SetBlocked: %+v", e)
	}

	// Atomic: an unknown id fails the call and writes nothing.
	_, err := s.SetBlocked(ctx, "other", []int64{bs[0].ID, 424242, bs[1].ID}, at)
	if !errors.Is(err, queue.ErrNotFound) {
		t.Fatalf("unknown id: %v, want ErrNotFound", err)
	}
	if es := entries(t, s, queue.EntryListOptions{Ident: "other"}); len(es) != 0 {
		t.Errorf("failed SetBlocked wrote entries: %+v", es)
	}
	if _, err := s.SetBlocked(ctx, "other", nil, at); err != nil {
		t.Errorf("empty SetBlocked: %v", err)
	}
}

func TestUnblockQueueAndSetUnblocked(t *testing.T) {
	s := newStore(t)
	bs := insert(t, s, t0,
		blk("192.0.2.1/32", t0, t0.Add(3*time.Minute)),
		blk("192.0.2.2/32", t0, t0.Add(1*time.Minute)),
		blk("192.0.2.3/32", t0, t0.Add(2*time.Minute)),
		blk("192.0.2.4/32", t0, time.Time{}),
		blk("192.0.2.5/32", t0, t0.Add(time.Hour)),
	)
	all := ids(bs...)
	for _, ident := range []string{"a", "b"} {
		if _, err := s.SetBlocked(ctx, ident, all, t0); err != nil {
			t.Fatal(err)
		}
	}
	e := func(i int, ident string) int64 { return entryOf(t, s, bs[i].ID, ident).ID }

	eqIDs(t, "nothing due", unblockIDs(t, s, "a", t0, 0), nil)
	now := t0.Add(3 * time.Minute)
	// By unblock_at; unblock_at equal to now is due.
	eqIDs(t, "due, by unblock_at", unblockIDs(t, s, "a", now, 0), []int64{e(1, "a"), e(2, "a"), e(0, "a")})
	eqIDs(t, "limit", unblockIDs(t, s, "a", now, 2), []int64{e(1, "a"), e(2, "a")})

	q, err := s.UnblockQueue(ctx, "b", now, 1)
	if err != nil {
		t.Fatal(err)
	}
	want := []queue.UnblockItem{{ID: e(1, "b"), BlockID: bs[1].ID, CIDR: bs[1].CIDR, Ident: "b",
		Added: t0.Truncate(time.Microsecond), UnblockAt: bs[1].UnblockAt}}
	if !reflect.DeepEqual(q, want) {
		t.Errorf("unblock items %+v, want %+v", q, want)
	}

	at := now.Add(time.Second)
	if _, err := s.SetUnblocked(ctx, []int64{e(1, "a"), e(2, "a")}, at, nil); err != nil {
		t.Fatal(err)
	}
	eqIDs(t, "after set unblocked", unblockIDs(t, s, "a", now, 0), []int64{e(0, "a")})
	eqIDs(t, "other ident untouched", unblockIDs(t, s, "b", now, 0), []int64{e(1, "b"), e(2, "b"), e(0, "b")})

	// Idempotent: removed keeps its first value.
	if _, err := s.SetUnblocked(ctx, []int64{e(1, "a")}, at.Add(time.Hour), nil); err != nil {
		t.Fatal(err)
	}
	if got := entryOf(t, s, bs[1].ID, "a").Removed; !got.Equal(at.Truncate(time.Microsecond)) {
		t.Errorf("removed = %v after a repeated SetUnblocked, want %v", got, at)
	}
	// Atomic with an unknown id.
	_, err = s.SetUnblocked(ctx, []int64{e(0, "a"), 999999}, at, nil)
	if !errors.Is(err, queue.ErrNotFound) {
		t.Fatalf("unknown entry: %v, want ErrNotFound", err)
	}
	if got := entryOf(t, s, bs[0].ID, "a").Removed; !got.IsZero() {
		t.Errorf("failed SetUnblocked closed an entry: %v", got)
	}
	// An indefinite block is never due.
	far := t0.Add(100 * 365 * 24 * time.Hour)
	if slices.Contains(unblockIDs(t, s, "b", far, 0), e(3, "b")) {
		t.Error("indefinite entry in the unblock queue")
	}
}

func TestUnblockNow(t *testing.T) {
	s := newStore(t)
	end := t0.Add(time.Hour)
	b := insert(t, s, t0, blk("192.0.2.0/24", t0, end))[0]
	expired := insert(t, s, t0, blk("198.51.100.0/24", t0, t0.Add(time.Second)))[0]
	for _, ident := range []string{"a", "b"} {
		if _, err := s.SetBlocked(ctx, ident, []int64{b.ID}, t0); err != nil {
			t.Fatal(err)
		}
	}
	eqIDs(t, "queue of c", queueIDs(t, s, "c", t0, time.Time{}, 0), ids(b, expired))
	if _, err := s.SetUnblocked(ctx, []int64{entryOf(t, s, b.ID, "b").ID}, t0.Add(time.Second), nil); err != nil {
		t.Fatal(err)
	}

	now := t0.Add(time.Minute).Add(789 * time.Nanosecond)
	for _, c := range []string{"203.0.113.0/24", "192.0.2.0/25", "198.51.100.0/24"} {
		if _, err := s.UnblockNow(ctx, pfx(c), now, "op", "x"); !errors.Is(err, queue.ErrNotBlocked) {
			t.Errorf("UnblockNow(%s) = %v, want ErrNotBlocked", c, err)
		}
	}
	got, err := s.UnblockNow(ctx, b.CIDR, now, "op", "false positive")
	if err != nil {
		t.Fatal(err)
	}
	want := b
	want.ForcedUnblock = true
	want.UnblockAt = now.Truncate(time.Microsecond)
	want.UnblockWho = "op"
	want.UnblockWhy = "false positive"
	if !reflect.DeepEqual(got, want) {
		t.Errorf("returned %+v, want %+v", got, want)
	}
	if stored := mustGet(t, s, b.ID); !reflect.DeepEqual(stored, want) {
		t.Errorf("stored %+v, want %+v", stored, want)
	}
	// The open entry is due at once, the closed one stays closed.
	ea := entryOf(t, s, b.ID, "a")
	eqIDs(t, "unblock queue of a", unblockIDs(t, s, "a", now, 0), []int64{ea.ID})
	if !ea.UnblockAt.Equal(want.UnblockAt) {
		t.Errorf("open entry unblock_at = %v, want %v", ea.UnblockAt, want.UnblockAt)
	}
	if eb := entryOf(t, s, b.ID, "b"); !eb.UnblockAt.Equal(end.Truncate(time.Microsecond)) {
		t.Errorf("closed entry unblock_at changed to %v", eb.UnblockAt)
	}
	eqIDs(t, "queue of c", queueIDs(t, s, "c", now, time.Time{}, 0), nil)
	var n int
	if err := s.rdb.QueryRow(`SELECT count(*) FROM pending WHERE block_id = ?`, b.ID).Scan(&n); err != nil || n != 0 {
		t.Errorf("pending rows left: %d, %v", n, err)
	}
	if _, err := s.UnblockNow(ctx, b.CIDR, now, "op", "again"); !errors.Is(err, queue.ErrNotBlocked) {
		t.Errorf("second UnblockNow = %v, want ErrNotBlocked", err)
	}
}

func TestListBlocks(t *testing.T) {
	s := newStore(t)
	now := t0.Add(10 * time.Minute)
	mk := func(cidr, source string, added time.Time, end time.Time) queue.Block {
		b := blk(cidr, added, end)
		b.Source = source
		return insert(t, s, added, b)[0]
	}
	pendingB := mk("192.0.2.0/24", "ids", t0, time.Time{})                             // expected, no entry
	currentB := mk("192.0.2.128/25", "zeek", t0.Add(time.Minute), now.Add(time.Hour))  // expected, open entry
	dueB := mk("10.0.0.0/8", "ids", t0.Add(2*time.Minute), now.Add(-time.Minute))      // expired, open entry
	doneB := mk("2001:db8::/32", "zeek", t0.Add(3*time.Minute), now.Add(-time.Minute)) // expired, closed entry
	v6B := mk("2001:db8:1::/48", "ids", t0.Add(4*time.Minute), time.Time{})            // expected, no entry
	forcedB := mk("192.0.2.7/32", "ids", t0.Add(5*time.Minute), time.Time{})           // forced, open entry
	edgeB := mk("198.51.100.0/24", "ids", t0.Add(6*time.Minute), now)                  // ends exactly at now
	if _, err := s.SetBlocked(ctx, "bgp", []int64{currentB.ID, dueB.ID, doneB.ID, forcedB.ID}, t0.Add(6*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SetUnblocked(ctx, []int64{entryOf(t, s, doneB.ID, "bgp").ID}, now.Add(-time.Second), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.UnblockNow(ctx, forcedB.CIDR, t0.Add(7*time.Minute), "op", "x"); err != nil {
		t.Fatal(err)
	}
	all := ids(pendingB, currentB, dueB, doneB, v6B, forcedB, edgeB)

	cases := []struct {
		name string
		opts queue.ListOptions
		want []int64
	}{
		{"all", queue.ListOptions{}, all},
		{"expected", queue.ListOptions{Filter: queue.FilterExpected}, ids(pendingB, currentB, v6B)},
		{"expected before edge", queue.ListOptions{Filter: queue.FilterExpected, Now: now.Add(-time.Microsecond)}, ids(pendingB, currentB, v6B, edgeB)},
		{"current", queue.ListOptions{Filter: queue.FilterCurrent}, ids(currentB, dueB, forcedB)},
		{"pending", queue.ListOptions{Filter: queue.FilterPending}, ids(pendingB, v6B)},
		{"pending removal", queue.ListOptions{Filter: queue.FilterPendingRemoval}, ids(dueB, forcedB)},
		{"pending removal earlier", queue.ListOptions{Filter: queue.FilterPendingRemoval, Now: t0.Add(7*time.Minute - time.Microsecond)}, nil},
		{"source", queue.ListOptions{Source: "zeek"}, ids(currentB, doneB)},
		{"source expected", queue.ListOptions{Filter: queue.FilterExpected, Source: "ids"}, ids(pendingB, v6B)},
		{"within equal", queue.ListOptions{Within: pfx("192.0.2.0/24")}, ids(pendingB, currentB, forcedB)},
		{"within narrower", queue.ListOptions{Within: pfx("192.0.2.128/25")}, ids(currentB)},
		{"within host", queue.ListOptions{Within: pfx("192.0.2.7/32")}, ids(forcedB)},
		{"within excludes containing", queue.ListOptions{Within: pfx("192.0.2.0/26")}, ids(forcedB)},
		{"within unmasked", queue.ListOptions{Within: pfx("192.0.2.200/24")}, ids(pendingB, currentB, forcedB)},
		{"within v4 everything", queue.ListOptions{Within: pfx("0.0.0.0/0")}, ids(pendingB, currentB, dueB, forcedB, edgeB)},
		{"within v6 everything", queue.ListOptions{Within: pfx("::/0")}, ids(doneB, v6B)},
		{"within v6", queue.ListOptions{Within: pfx("2001:db8:1::/47")}, ids(v6B)},
		{"within 4-in-6 is v6", queue.ListOptions{Within: pfx("::ffff:0.0.0.0/96")}, nil},
		{"added since inclusive", queue.ListOptions{AddedSince: t0.Add(5 * time.Minute)}, ids(forcedB, edgeB)},
		{"after id", queue.ListOptions{AfterID: dueB.ID}, ids(doneB, v6B, forcedB, edgeB)},
		{"descending", queue.ListOptions{Descending: true}, reversed(all)},
		{"descending after id", queue.ListOptions{Descending: true, AfterID: dueB.ID}, ids(currentB, pendingB)},
		{"offset limit", queue.ListOptions{Offset: 2, Limit: 3}, all[2:5]},
		{"offset past end", queue.ListOptions{Offset: 100}, nil},
		{"limit descending", queue.ListOptions{Descending: true, Limit: 2}, ids(edgeB, forcedB)},
		{"combined", queue.ListOptions{Filter: queue.FilterExpected, Source: "ids", Within: pfx("192.0.0.0/8"),
			AddedSince: t0, Limit: 1}, ids(pendingB)},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.opts.Now.IsZero() {
				c.opts.Now = now
			}
			eqIDs(t, c.name, listIDs(t, s, c.opts), c.want)
		})
	}

	// Cursor paging visits every block exactly once.
	var paged []int64
	for after := int64(0); ; {
		page := listIDs(t, s, queue.ListOptions{Now: now, AfterID: after, Limit: 3})
		if len(page) == 0 {
			break
		}
		paged = append(paged, page...)
		after = page[len(page)-1]
	}
	eqIDs(t, "cursor paging", paged, all)

	// An error from fn stops the listing and comes back unchanged.
	stop := errors.New("stop")
	calls := 0
	err := s.ListBlocks(ctx, queue.ListOptions{Now: now}, func(queue.Block) error { calls++; return stop })
	if err != stop || calls != 1 {
		t.Errorf("fn error: err=%v calls=%d, want stop after 1", err, calls)
	}
	if err := s.ListBlocks(ctx, queue.ListOptions{Filter: 99}, func(queue.Block) error { return nil }); err == nil {
		t.Error("unknown filter accepted")
	}
}

func reversed(s []int64) []int64 {
	out := slices.Clone(s)
	slices.Reverse(out)
	return out
}

// A listing in progress must not hold up writers: rows are streamed from a
// read snapshot while the writer goes on.
func TestListBlocksStreamsWithoutBlockingWrites(t *testing.T) {
	s := newStore(t)
	var batch []queue.Block
	for i := range 300 {
		batch = append(batch, blk(fmt.Sprintf("10.0.%d.%d/32", i/256, i%256), t0, time.Time{}))
	}
	insert(t, s, t0, batch...)
	n := 0
	err := s.ListBlocks(ctx, queue.ListOptions{Now: t0}, func(b queue.Block) error {
		n++
		if n == 1 {
			// Writes while the read is open; with a shared lock this
			// would wait for busy_timeout and fail.
			wctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			defer cancel()
			if _, err := request(wctx, s, t0, map[netip.Prefix]time.Time{pfx("172.16.0.0/12"): {}}); err != nil {
				return fmt.Errorf("write during listing: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// The listing read one snapshot: the block written during it is not
	// part of it.
	if n != 300 {
		t.Errorf("listed %d blocks, want the 300 of the snapshot", n)
	}
	if got := listIDs(t, s, queue.ListOptions{Now: t0}); len(got) != 301 {
		t.Errorf("%d blocks after the listing, want 301", len(got))
	}
}

func TestListEntries(t *testing.T) {
	s := newStore(t)
	bs := insert(t, s, t0, blk("192.0.2.1/32", t0, time.Time{}), blk("192.0.2.2/32", t0, time.Time{}))
	if _, err := s.SetBlocked(ctx, "a", ids(bs...), t0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SetBlocked(ctx, "b", ids(bs...), t0); err != nil {
		t.Fatal(err)
	}
	all := entries(t, s, queue.EntryListOptions{})
	if len(all) != 4 {
		t.Fatalf("%d entries, want 4", len(all))
	}
	for i := 1; i < len(all); i++ {
		if all[i].ID <= all[i-1].ID {
			t.Fatalf("entries not in id order: %+v", all)
		}
	}
	if _, err := s.SetUnblocked(ctx, []int64{all[0].ID}, t0, nil); err != nil {
		t.Fatal(err)
	}
	eid := func(es []queue.Entry) []int64 {
		out := make([]int64, len(es))
		for i, e := range es {
			out[i] = e.ID
		}
		return out
	}
	byKey := map[[2]any]int64{}
	for _, e := range all {
		byKey[[2]any{e.BlockID, e.Ident}] = e.ID
	}
	a1, a2 := byKey[[2]any{bs[0].ID, "a"}], byKey[[2]any{bs[1].ID, "a"}]
	b1, b2 := byKey[[2]any{bs[0].ID, "b"}], byKey[[2]any{bs[1].ID, "b"}]
	for _, c := range []struct {
		name string
		opts queue.EntryListOptions
		want []int64
	}{
		{"block", queue.EntryListOptions{BlockID: bs[0].ID}, sorted(a1, b1)},
		{"ident", queue.EntryListOptions{Ident: "b"}, sorted(b1, b2)},
		{"open", queue.EntryListOptions{OpenOnly: true}, eid(all[1:])},
		{"after", queue.EntryListOptions{AfterID: all[1].ID}, eid(all[2:])},
		{"offset limit", queue.EntryListOptions{Offset: 1, Limit: 2}, eid(all[1:3])},
		{"combined", queue.EntryListOptions{Ident: "a", OpenOnly: true}, []int64{a2}},
	} {
		eqIDs(t, c.name, eid(entries(t, s, c.opts)), c.want)
	}
	stop := errors.New("stop")
	if err := s.ListEntries(ctx, queue.EntryListOptions{}, func(queue.Entry) error { return stop }); err != stop {
		t.Errorf("fn error: %v", err)
	}
}

func sorted(v ...int64) []int64 { slices.Sort(v); return v }

func TestStatsAndNextUnblockAt(t *testing.T) {
	s := newStore(t)
	st, err := s.Stats(ctx, t0)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(st, queue.Stats{Sources: map[string]int64{}}) {
		t.Errorf("empty stats %+v", st)
	}
	if _, ok, err := s.NextUnblockAt(ctx, t0); err != nil || ok {
		t.Errorf("NextUnblockAt on empty store: %v, %v", ok, err)
	}

	now := t0.Add(10 * time.Minute)
	mk := func(cidr, source string, end time.Time) queue.Block {
		b := blk(cidr, t0, end)
		b.Source = source
		return insert(t, s, t0, b)[0]
	}
	mk("192.0.2.1/32", "ids", time.Time{}) // p1: pending
	p2 := mk("192.0.2.2/32", "zeek", now.Add(time.Hour))
	cur := mk("192.0.2.3/32", "ids", now.Add(2*time.Hour))
	due := mk("192.0.2.4/32", "ids", now.Add(-time.Minute))
	mk("192.0.2.5/32", "manual", now.Add(-time.Minute)) // expired, never enforced: in no count
	if _, err := s.SetBlocked(ctx, "a", []int64{cur.ID, due.ID, p2.ID}, t0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SetBlocked(ctx, "b", []int64{cur.ID, due.ID}, t0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SetUnblocked(ctx, []int64{entryOf(t, s, p2.ID, "a").ID}, t0, nil); err != nil {
		t.Fatal(err)
	}
	st, err = s.Stats(ctx, now)
	if err != nil {
		t.Fatal(err)
	}
	want := queue.Stats{
		BlockPending:   2, // p1, p2 (its only entry is closed)
		UnblockPending: 1, // due, counted once for two idents
		Current:        2, // cur, due
		Expected:       3, // p1, p2, cur
		Sources:        map[string]int64{"ids": 2, "zeek": 1},
	}
	if !reflect.DeepEqual(st, want) {
		t.Errorf("stats %+v, want %+v", st, want)
	}

	// The earliest open entry end strictly after now: cur (p2's entry is
	// closed, due's has passed).
	next, ok, err := s.NextUnblockAt(ctx, now)
	if err != nil || !ok || !next.Equal(cur.UnblockAt) {
		t.Errorf("NextUnblockAt = %v, %v, %v; want %v", next, ok, err, cur.UnblockAt)
	}
	if _, ok, _ := s.NextUnblockAt(ctx, cur.UnblockAt); ok {
		t.Error("NextUnblockAt at the last end still found one")
	}
}

func TestWhitelist(t *testing.T) {
	s := newStore(t)
	e1, err := s.AddWhitelist(ctx, queue.WhitelistEntry{CIDR: pfx("192.0.2.0/24"), Who: "op", Why: "ours", Added: t0})
	if err != nil {
		t.Fatal(err)
	}
	e2, err := s.AddWhitelist(ctx, queue.WhitelistEntry{CIDR: pfx("2001:db8::1/64"), Who: "op", Why: "dns", Added: t0})
	if err != nil {
		t.Fatal(err)
	}
	if e1.ID <= 0 || e2.ID <= e1.ID || e2.CIDR != pfx("2001:db8::/64") || !e1.Added.Equal(t0.Truncate(time.Microsecond)) {
		t.Errorf("added entries %+v %+v", e1, e2)
	}
	got, err := s.GetWhitelist(ctx, e2.ID)
	if err != nil || !reflect.DeepEqual(got, e2) {
		t.Errorf("GetWhitelist = %+v, %v; want %+v", got, err, e2)
	}
	l, err := s.ListWhitelist(ctx)
	if err != nil || !reflect.DeepEqual(l, []queue.WhitelistEntry{e1, e2}) {
		t.Errorf("ListWhitelist = %+v, %v", l, err)
	}
	if err := s.DeleteWhitelist(ctx, e1.ID); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteWhitelist(ctx, e1.ID); !errors.Is(err, queue.ErrNotFound) {
		t.Errorf("second delete: %v, want ErrNotFound", err)
	}
	if _, err := s.GetWhitelist(ctx, e1.ID); !errors.Is(err, queue.ErrNotFound) {
		t.Errorf("get deleted: %v, want ErrNotFound", err)
	}
	l, _ = s.ListWhitelist(ctx)
	if !reflect.DeepEqual(l, []queue.WhitelistEntry{e2}) {
		t.Errorf("after delete %+v", l)
	}
}

func TestSourceBlacklist(t *testing.T) {
	s := newStore(t)
	l, err := s.ListSourceBlacklist(ctx)
	if err != nil || len(l) != 0 {
		t.Fatalf("empty list %v, %v", l, err)
	}
	e, err := s.AddSourceBlacklist(ctx, queue.SourceBlacklistEntry{Source: "noisy", Who: "op", Why: "fp", Added: t0})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.AddSourceBlacklist(ctx, queue.SourceBlacklistEntry{Source: "noisy", Who: "x", Added: t0}); !errors.Is(err, queue.ErrDuplicate) {
		t.Errorf("duplicate source: %v, want ErrDuplicate", err)
	}
	l, err = s.ListSourceBlacklist(ctx)
	if err != nil || !reflect.DeepEqual(l, []queue.SourceBlacklistEntry{e}) {
		t.Errorf("list %+v, %v; want %+v", l, err, e)
	}
	if err := s.DeleteSourceBlacklist(ctx, e.ID); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteSourceBlacklist(ctx, e.ID); !errors.Is(err, queue.ErrNotFound) {
		t.Errorf("second delete: %v", err)
	}
	// The source is free again.
	if _, err := s.AddSourceBlacklist(ctx, queue.SourceBlacklistEntry{Source: "noisy", Added: t0}); err != nil {
		t.Errorf("re-add after delete: %v", err)
	}
}

func TestPrune(t *testing.T) {
	s := newStore(t)
	day := 24 * time.Hour
	now := t0.Add(30 * day)
	cutoff := now.Add(-7 * day)
	old := insert(t, s, t0, blk("192.0.2.1/32", t0, t0.Add(day)))[0]                    // ended long ago, entry closed long ago
	oldNoEntry := insert(t, s, t0, blk("192.0.2.2/32", t0, t0.Add(day)))[0]             // ended long ago, never enforced
	lateRemoval := insert(t, s, t0, blk("192.0.2.3/32", t0, t0.Add(day)))[0]            // ended long ago, entry closed recently
	openEntry := insert(t, s, t0, blk("192.0.2.4/32", t0, t0.Add(day)))[0]              // ended long ago, still installed
	recent := insert(t, s, t0, blk("192.0.2.5/32", t0, now.Add(-day)))[0]               // ended after cutoff
	indefinite := insert(t, s, t0, blk("192.0.2.6/32", t0, time.Time{}))[0]             // expected
	forced := insert(t, s, t0, blk("192.0.2.7/32", t0, time.Time{}))[0]                 // forced long ago
	pendingExpired := insert(t, s, t0, blk("192.0.2.8/32", t0, now.Add(-time.Hour)))[0] // expired, still in a queue
	if _, err := s.UnblockNow(ctx, forced.CIDR, t0.Add(day), "op", "x"); err != nil {
		t.Fatal(err)
	}
	// "q" registered while everything was expected: pending rows for all.
	if _, err := s.queueOf(ctx, "q", t0, time.Time{}, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SetBlocked(ctx, "bgp", []int64{old.ID, lateRemoval.ID, openEntry.ID}, t0); err != nil {
		t.Fatal(err)
	}
	closeEntry := func(b queue.Block, at time.Time) {
		if _, err := s.SetUnblocked(ctx, []int64{entryOf(t, s, b.ID, "bgp").ID}, at, nil); err != nil {
			t.Fatal(err)
		}
	}
	closeEntry(old, t0.Add(day))
	closeEntry(lateRemoval, now.Add(-day))

	res, err := s.Prune(ctx, cutoff, now)
	if err != nil {
		t.Fatal(err)
	}
	if res != (queue.PruneResult{Blocks: 3, Entries: 1}) {
		t.Errorf("prune result %+v, want 3 blocks (old, oldNoEntry, forced), 1 entry", res)
	}
	eqIDs(t, "kept blocks", listIDs(t, s, queue.ListOptions{Now: now}),
		ids(lateRemoval, openEntry, recent, indefinite, pendingExpired))
	for _, b := range []queue.Block{old, oldNoEntry, forced} {
		if _, err := s.GetBlock(ctx, b.ID); !errors.Is(err, queue.ErrNotFound) {
			t.Errorf("pruned block %s: %v, want ErrNotFound", b.CIDR, err)
		}
	}
	if es := entries(t, s, queue.EntryListOptions{BlockID: old.ID}); len(es) != 0 {
		t.Errorf("entries of a pruned block left: %+v", es)
	}
	// Queue bookkeeping of blocks no longer expected is gone, that of
	// expected blocks stays.
	var pend []int64
	rows, err := s.rdb.Query(`SELECT block_id FROM pending WHERE ident = 'q' ORDER BY block_id`)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var id int64
		if err := rows.Scan(&id); err != nil {
			t.Fatal(err)
		}
		pend = append(pend, id)
	}
	rows.Close()
	eqIDs(t, "pending rows after prune", pend, ids(indefinite))
	eqIDs(t, "queue after prune", queueIDs(t, s, "q", now, time.Time{}, 0), ids(indefinite))

	res, err = s.Prune(ctx, cutoff, now)
	if err != nil || res != (queue.PruneResult{}) {
		t.Errorf("second prune: %+v, %v", res, err)
	}
	// Ids are never reused after a prune.
	nb := insert(t, s, now, blk("192.0.2.9/32", now, time.Time{}))[0]
	if nb.ID <= pendingExpired.ID {
		t.Errorf("new id %d reuses a pruned id", nb.ID)
	}
}

// Sixteen writers on overlapping cidrs: each cidr ends with exactly one
// expected block, carrying the latest end anyone asked for.
func TestConcurrentApplyBlocks(t *testing.T) {
	s := newStore(t)
	const (
		writers = 16
		rounds  = 30
		ncidr   = 12
	)
	cidrs := make([]netip.Prefix, ncidr)
	for i := range cidrs {
		cidrs[i] = pfx(fmt.Sprintf("198.51.100.%d/32", i))
	}
	end := func(w, r, c int) time.Time {
		if c == 0 && w == 7 && r == 14 {
			return time.Time{} // one indefinite request wins for cidr 0
		}
		return t0.Add(time.Duration(1+(w*31+r*17+c*7)%500) * time.Minute)
	}
	maxEnd := make([]time.Time, ncidr)
	indef := make([]bool, ncidr)
	for w := range writers {
		for r := range rounds {
			for c := range ncidr {
				if (w+r+c)%3 != 0 {
					continue
				}
				e := end(w, r, c)
				if e.IsZero() {
					indef[c] = true
				} else if e.After(maxEnd[c]) {
					maxEnd[c] = e
				}
			}
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range rounds {
				req := map[netip.Prefix]time.Time{}
				for c := range ncidr {
					if (w+r+c)%3 == 0 {
						req[cidrs[c]] = end(w, r, c)
					}
				}
				if _, err := request(ctx, s, t0, req); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for c, p := range cidrs {
		var got []queue.Block
		if err := s.ListBlocks(ctx, queue.ListOptions{Filter: queue.FilterExpected, Now: t0, Within: p}, func(b queue.Block) error {
			got = append(got, b)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 {
			t.Errorf("%s: %d expected blocks, want 1", p, len(got))
			continue
		}
		if all := listIDs(t, s, queue.ListOptions{Within: p, Now: t0}); len(all) != 1 {
			t.Errorf("%s: %d blocks in all, want 1 (the rest should be extends)", p, len(all))
		}
		want := maxEnd[c].Truncate(time.Microsecond)
		if indef[c] {
			// Once indefinite, a block is never shortened or moved.
			if !got[0].Indefinite() {
				t.Errorf("%s: unblock_at %v, want indefinite", p, got[0].UnblockAt)
			}
			continue
		}
		if !got[0].UnblockAt.Equal(want) {
			t.Errorf("%s: unblock_at %v, want the latest end %v", p, got[0].UnblockAt, want)
		}
	}
}

// A new database file, and the WAL files SQLite adds, are readable by
// their owner only: they hold password and token hashes.
func TestNewFileIsPrivate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "bhrd.db")
	s, err := Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Migrate(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{path, path + "-wal", path + "-shm"} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if m := fi.Mode().Perm(); m&0o077 != 0 {
			t.Errorf("%s: mode %o, want no group or other access", p, m)
		}
	}
}
