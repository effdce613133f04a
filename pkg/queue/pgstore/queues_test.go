package pgstore

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bhrd/bhrd/pkg/queue"
	"github.com/jackc/pgx/v5"
)

func TestBlockQueue(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	b1 := insert(t, s, at(0), newBlock("192.0.2.1/32", at(0), at(1000)))[0]
	b2 := insert(t, s, at(1), newBlock("192.0.2.2/32", at(1), at(100)))[0]
	b3 := insert(t, s, at(2), newBlock("192.0.2.3/32", at(2), at(1000)))[0]
	if _, err := s.UnblockNow(ctx, b3.CIDR, at(3), "x", "y"); err != nil {
		t.Fatal(err)
	}
	b5 := insert(t, s, at(4), newBlock("192.0.2.5/32", at(4), at(1000)))[0]
	// r0 reports a block before it ever asks for its queue.
	setBlocked(t, s, "r0", at(5), b5.ID)

	// First call registers r1 and backfills every expected block.
	if got := blockQueue(t, s, "r1", at(50)); !equalIDs(got, []int64{b1.ID, b2.ID, b5.ID}) {
		t.Fatalf("r1 first queue = %v, want %v", got, []int64{b1.ID, b2.ID, b5.ID})
	}
	if got := blockQueue(t, s, "r0", at(50)); !equalIDs(got, []int64{b1.ID, b2.ID}) {
		t.Fatalf("r0 queue = %v: the block it has an entry for must not be queued", got)
	}
	// Blocks inserted after registration are queued; expired ones drop out.
	b6 := insert(t, s, at(60), newBlock("2001:db8::6/128", at(60), time.Time{}))[0]
	if got := blockQueue(t, s, "r1", at(150)); !equalIDs(got, []int64{b1.ID, b5.ID, b6.ID}) {
		t.Fatalf("r1 queue at 150 = %v", got)
	}
	// since is exclusive; limit keeps the oldest.
	items, err := s.queueOf(ctx, "r1", at(50), at(1), 10)
	if err != nil {
		t.Fatal(err)
	}
	if got := queueIDs(items); !equalIDs(got, []int64{b5.ID, b6.ID}) {
		t.Fatalf("since at(1) = %v, want blocks added after it", got)
	}
	items, err = s.queueOf(ctx, "r1", at(50), time.Time{}, 2)
	if err != nil {
		t.Fatal(err)
	}
	if want := []queue.QueueItem{{ID: b1.ID, CIDR: b1.CIDR, Added: b1.Added, Source: b1.Source, UnblockAt: b1.UnblockAt}, {ID: b2.ID, CIDR: b2.CIDR, Added: b2.Added, Source: b2.Source, UnblockAt: b2.UnblockAt}}; !reflect.DeepEqual(items, want) {
		t.Fatalf("limit 2 = %+v, want %+v", items, want)
	}
	setBlocked(t, s, "r1", at(70), b1.ID, b6.ID)
	if got := blockQueue(t, s, "r1", at(70)); !equalIDs(got, []int64{b2.ID, b5.ID}) {
		t.Fatalf("after set blocked: %v", got)
	}
	if n := countRows(t, s, `SELECT count(*) FROM pending WHERE ident = 'r1' AND block_id IN ($1, $2)`, b1.ID, b6.ID); n != 0 {
		t.Fatalf("set blocked left %d pending rows", n)
	}
	// Another ident's progress is its own.
	if got := blockQueue(t, s, "r2", at(70)); !equalIDs(got, []int64{b1.ID, b2.ID, b5.ID, b6.ID}) {
		t.Fatalf("r2 queue = %v", got)
	}
	if n := countRows(t, s, `SELECT count(*) FROM idents`); n != 3 {
		t.Fatalf("%d idents registered, want 3", n)
	}
}

// Idents register while blocks are being created: no block may be missed
// by any ident, whichever commits first.
func TestBlockQueueRegistrationRace(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	const inserters, perInserter, idents = 6, 40, 24
	var inserted atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, inserters+idents)
	for g := range inserters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perInserter {
				b := newBlock(fmt.Sprintf("10.%d.%d.0/24", g, i), at(0), at(100000))
				_, err := s.ApplyBlocks(ctx, []netip.Prefix{b.CIDR}, at(0), func(map[netip.Prefix]queue.CIDRState) (queue.Plan, error) {
					return queue.Plan{Inserts: []queue.Block{b}}, nil
				})
				if err != nil {
					errs <- err
					return
				}
				inserted.Add(1)
			}
		}()
	}
	for i := range idents {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Spread registrations over the whole insert phase.
			threshold := int64(i * inserters * perInserter / idents)
			for inserted.Load() < threshold {
				runtime.Gosched()
			}
			if _, err := s.queueOf(ctx, fmt.Sprintf("ident-%02d", i), at(1), time.Time{}, 1); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	total := inserters * perInserter
	for i := range idents {
		ident := fmt.Sprintf("ident-%02d", i)
		items, err := s.queueOf(ctx, ident, at(1), time.Time{}, 10*total)
		if err != nil {
			t.Fatal(err)
		}
		if len(items) != total {
			t.Errorf("%s: %d blocks queued, want %d", ident, len(items), total)
		}
	}
}

// The registration of a new ident must wait for block writers in flight:
// the plan callback runs while ApplyBlocks holds its locks, so a
// registration started there must block until the new block is committed,
// and then have it queued.
func TestBlockQueueRegistrationWaitsForWriters(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	// An expired block of the cidr: plan is then called under the locks
	// (after a first call, without them, for the guess that the cidr was
	// never blocked).
	insert(t, s, at(-100), newBlock("192.0.2.1/32", at(-100), at(-50)))
	regDone := make(chan error, 1)
	var waited bool
	got, err := s.ApplyBlocks(ctx, pfxs("192.0.2.1/32"), at(0), func(st map[netip.Prefix]queue.CIDRState) (queue.Plan, error) {
		if len(st) == 0 {
			return queue.Plan{Inserts: []queue.Block{newBlock("192.0.2.1/32", at(0), at(100))}}, nil
		}
		go func() {
			_, err := s.queueOf(ctx, "late", at(0), time.Time{}, 10)
			regDone <- err
		}()
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			var n int64
			err := s.pool.QueryRow(ctx, `SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND NOT granted
				AND classid = $1::int8::oid AND objid = $2::int8::oid AND objsubid = 2`, int64(lockClass), int64(lockIdents)).Scan(&n)
			if err != nil {
				return queue.Plan{}, err
			}
			if n > 0 {
				waited = true
				break
			}
			select {
			case err := <-regDone:
				return queue.Plan{}, fmt.Errorf("registration finished (%v) while a block writer was in flight", err)
			case <-time.After(5 * time.Millisecond):
			}
		}
		return queue.Plan{Inserts: []queue.Block{newBlock("192.0.2.1/32", at(0), at(100))}}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !waited {
		t.Fatal("the registration never waited for the idents lock")
	}
	if err := <-regDone; err != nil {
		t.Fatal(err)
	}
	if q := blockQueue(t, s, "late", at(0)); !equalIDs(q, blockIDs(got)) {
		t.Fatalf("late ident's queue = %v, want the block written while it registered %v", q, blockIDs(got))
	}
}

// An ident whose backfill never finished is caught up by its next call.
func TestBlockQueueUnreadyIdentIsBackfilled(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	b := insert(t, s, at(0), newBlock("192.0.2.1/32", at(0), at(100)))[0]
	if _, err := s.pool.Exec(ctx, `INSERT INTO idents (name, backfill_upto) VALUES ('half', (SELECT max(id) FROM blocks))`); err != nil {
		t.Fatal(err)
	}
	if q := blockQueue(t, s, "half", at(0)); !equalIDs(q, []int64{b.ID}) {
		t.Fatalf("queue = %v, want %d", q, b.ID)
	}
	if n := countRows(t, s, `SELECT count(*) FROM idents WHERE name = 'half' AND backfill_upto IS NULL`); n != 1 {
		t.Fatal("ident's catch-up range not cleared after its backfill")
	}
}

func TestSetBlocked(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	bs := insert(t, s, at(0),
		newBlock("192.0.2.1/32", at(0), at(1000)),
		newBlock("192.0.2.2/32", at(0), time.Time{}),
		newBlock("192.0.2.3/32", at(0), at(500)))
	setBlocked(t, s, "r1", at(10), bs[0].ID, bs[1].ID, bs[0].ID) // duplicate ids are fine
	es := entriesOf(t, s, queue.EntryListOptions{Ident: "r1"})
	want := []queue.Entry{
		{ID: es[0].ID, BlockID: bs[0].ID, CIDR: bs[0].CIDR, Ident: "r1", Added: at(10), UnblockAt: at(1000), Source: bs[0].Source, BlockAdded: at(0)},
		{ID: es[1].ID, BlockID: bs[1].ID, CIDR: bs[1].CIDR, Ident: "r1", Added: at(10), Source: bs[1].Source, BlockAdded: at(0)},
	}
	if !reflect.DeepEqual(es, want) {
		t.Fatalf("entries = %+v\nwant      %+v", es, want)
	}
	// Idempotent: marking again changes nothing, even a removed entry.
	if _, err := s.SetUnblocked(ctx, []int64{es[1].ID}, at(15), nil); err != nil {
		t.Fatal(err)
	}
	want[1].Removed = at(15)
	setBlocked(t, s, "r1", at(20), bs[0].ID, bs[1].ID)
	if es := entriesOf(t, s, queue.EntryListOptions{Ident: "r1"}); !reflect.DeepEqual(es, want) {
		t.Fatalf("after repeat: %+v\nwant       %+v", es, want)
	}
	// Atomic: one unknown id and nothing is written.
	_, err := s.SetBlocked(ctx, "r2", []int64{bs[2].ID, 424242, bs[0].ID}, at(30))
	if !errors.Is(err, queue.ErrNotFound) || !strings.Contains(err.Error(), "424242") {
		t.Fatalf("unknown id: err = %v, want ErrNotFound naming 424242", err)
	}
	if es := entriesOf(t, s, queue.EntryListOptions{Ident: "r2"}); len(es) != 0 {
		t.Fatalf("failed call wrote %+v", es)
	}
	if _, err := s.SetBlocked(ctx, "r2", nil, at(30)); err != nil {
		t.Fatalf("empty list: %v", err)
	}
}

func TestUnblockQueueOrdering(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	bs := insert(t, s, at(0),
		newBlock("192.0.2.1/32", at(0), at(300)),
		newBlock("192.0.2.2/32", at(0), at(100)),
		newBlock("192.0.2.3/32", at(0), at(200)),
		newBlock("192.0.2.4/32", at(0), time.Time{}),
		newBlock("192.0.2.5/32", at(0), at(100)),
		newBlock("192.0.2.6/32", at(0), at(50)))
	// Entry ids in a different order than the ends.
	setBlocked(t, s, "r1", at(1), bs[4].ID)
	setBlocked(t, s, "r1", at(2), bs[0].ID, bs[1].ID, bs[2].ID, bs[3].ID)
	setBlocked(t, s, "r1", at(3), bs[5].ID)
	setBlocked(t, s, "r2", at(1), bs[1].ID)
	var removed int64
	for _, e := range entriesOf(t, s, queue.EntryListOptions{Ident: "r1"}) {
		if e.BlockID == bs[5].ID {
			removed = e.ID
		}
	}
	if _, err := s.SetUnblocked(ctx, []int64{removed}, at(60), nil); err != nil {
		t.Fatal(err)
	}
	items := mustUnblockQueue(t, s, "r1", at(250))
	// Ends 100 (entry of block 5 first: lower entry id), 100, 200; 300 is
	// later, indefinite never, the removed one is done.
	if got := ids(items, func(u queue.UnblockItem) int64 { return u.BlockID }); !equalIDs(got, []int64{bs[4].ID, bs[1].ID, bs[2].ID}) {
		t.Fatalf("unblock queue blocks = %v", got)
	}
	first := items[0]
	if first.Ident != "r1" || first.CIDR != bs[4].CIDR || !first.Added.Equal(at(1)) || !first.UnblockAt.Equal(at(100)) || first.ID == 0 {
		t.Fatalf("item = %+v", first)
	}
	if got, _ := s.UnblockQueue(ctx, "r1", at(250), 2); len(got) != 2 || got[1].BlockID != bs[1].ID {
		t.Fatalf("limit 2 = %+v", got)
	}
	// "Not after now": exactly at unblock_at counts.
	if got := mustUnblockQueue(t, s, "r1", at(100)); len(got) != 2 {
		t.Fatalf("at 100: %d items, want 2", len(got))
	}
	if got := mustUnblockQueue(t, s, "r1", at(99)); len(got) != 0 {
		t.Fatalf("at 99: %+v", got)
	}
}

func TestSetUnblocked(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	bs := insert(t, s, at(0), newBlock("192.0.2.1/32", at(0), at(10)), newBlock("192.0.2.2/32", at(0), at(10)))
	setBlocked(t, s, "r1", at(1), bs[0].ID, bs[1].ID)
	es := entriesOf(t, s, queue.EntryListOptions{})
	if _, err := s.SetUnblocked(ctx, []int64{es[0].ID}, at(20), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SetUnblocked(ctx, []int64{es[0].ID, es[0].ID}, at(30), nil); err != nil {
		t.Fatalf("repeat: %v", err)
	}
	// Atomic with an unknown id.
	_, err := s.SetUnblocked(ctx, []int64{es[1].ID, 777777}, at(40), nil)
	if !errors.Is(err, queue.ErrNotFound) || !strings.Contains(err.Error(), "777777") {
		t.Fatalf("unknown id: err = %v, want ErrNotFound naming 777777", err)
	}
	got := entriesOf(t, s, queue.EntryListOptions{})
	if !got[0].Removed.Equal(at(20)) || !got[1].Removed.IsZero() {
		t.Fatalf("removed = %v, %v; want %v and still open", got[0].Removed, got[1].Removed, at(20))
	}
	if items := mustUnblockQueue(t, s, "r1", at(50)); len(items) != 1 || items[0].ID != es[1].ID {
		t.Fatalf("unblock queue = %+v, want only the open entry", items)
	}
}

func TestListEntries(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	bs := insert(t, s, at(0), newBlock("192.0.2.1/32", at(0), at(10)), newBlock("192.0.2.2/32", at(0), at(10)))
	setBlocked(t, s, "r1", at(1), bs[0].ID, bs[1].ID)
	setBlocked(t, s, "r2", at(2), bs[0].ID)
	all := entriesOf(t, s, queue.EntryListOptions{})
	if len(all) != 3 {
		t.Fatalf("%d entries, want 3", len(all))
	}
	if _, err := s.SetUnblocked(ctx, []int64{all[0].ID}, at(5), nil); err != nil {
		t.Fatal(err)
	}
	eid := func(es []queue.Entry) []int64 { return ids(es, func(e queue.Entry) int64 { return e.ID }) }
	for _, tc := range []struct {
		name string
		opts queue.EntryListOptions
		want []int64
	}{
		{"block", queue.EntryListOptions{BlockID: bs[0].ID}, []int64{all[0].ID, all[2].ID}},
		{"ident", queue.EntryListOptions{Ident: "r1"}, []int64{all[0].ID, all[1].ID}},
		{"open", queue.EntryListOptions{OpenOnly: true}, []int64{all[1].ID, all[2].ID}},
		{"block ident open", queue.EntryListOptions{BlockID: bs[0].ID, Ident: "r1", OpenOnly: true}, nil},
		{"after", queue.EntryListOptions{AfterID: all[0].ID}, []int64{all[1].ID, all[2].ID}},
		{"offset limit", queue.EntryListOptions{Offset: 1, Limit: 1}, []int64{all[1].ID}},
	} {
		if got := eid(entriesOf(t, s, tc.opts)); !equalIDs(got, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
	stop := errors.New("stop")
	if err := s.ListEntries(ctx, queue.EntryListOptions{}, func(queue.Entry) error { return stop }); err != stop {
		t.Fatalf("fn error: %v", err)
	}
}

// Sixteen writers race on overlapping cidrs with the Service's duplicate
// rule (insert when nothing is expected, else extend to a later end): each
// cidr must end with exactly one expected block carrying the latest end
// anyone asked for.
func TestApplyBlocksConcurrentOverlapping(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	const writers, rounds, ncidr = 16, 25, 12
	cidrs := make([]netip.Prefix, ncidr)
	for i := range cidrs {
		cidrs[i] = pfx(fmt.Sprintf("198.51.100.%d/32", i))
	}
	now := at(0)
	var mu sync.Mutex
	maxEnd := map[netip.Prefix]time.Time{}
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range rounds {
				// Overlapping windows of 5 cidrs, in varying order.
				batch := make([]netip.Prefix, 0, 5)
				for k := range 5 {
					batch = append(batch, cidrs[(w*3+r*5+k*7)%ncidr])
				}
				end := at(1000 + (w*rounds+r)*37%5000)
				_, err := s.ApplyBlocks(ctx, batch, now, func(st map[netip.Prefix]queue.CIDRState) (queue.Plan, error) {
					var p queue.Plan
					done := map[netip.Prefix]bool{}
					for _, c := range batch {
						if done[c] {
							continue
						}
						done[c] = true
						if e := st[c].Expected; e == nil {
							p.Inserts = append(p.Inserts, queue.Block{CIDR: c, Who: "w", Source: "race", Added: now, UnblockAt: end})
						} else if end.After(e.UnblockAt) {
							p.Extends = append(p.Extends, queue.Extend{BlockID: e.ID, UnblockAt: end})
						}
					}
					return p, nil
				})
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				for _, c := range batch {
					if end.After(maxEnd[c]) {
						maxEnd[c] = end
					}
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	got := map[netip.Prefix][]queue.Block{}
	err := s.ListBlocks(ctx, queue.ListOptions{Filter: queue.FilterExpected, Now: now}, func(b queue.Block) error {
		got[b.CIDR] = append(got[b.CIDR], b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cidrs {
		bs := got[c]
		if len(bs) != 1 {
			t.Errorf("%s: %d expected blocks, want 1", c, len(bs))
			continue
		}
		if !bs[0].UnblockAt.Equal(maxEnd[c]) {
			t.Errorf("%s: unblock_at %v, want the max requested %v", c, bs[0].UnblockAt, maxEnd[c])
		}
	}
	if n := countRows(t, s, `SELECT count(*) FROM blocks`); n != ncidr {
		t.Errorf("%d blocks in all, want %d", n, ncidr)
	}
}

// explain runs an EXPLAIN statement on q and returns the plan's text.
func explain(t *testing.T, q interface {
	Query(context.Context, string, ...any) (pgx.Rows, error)
}, stmt string, args ...any) string {
	t.Helper()
	rows, err := q.Query(context.Background(), stmt, args...)
	if err != nil {
		t.Fatal(err)
	}
	lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	return strings.Join(lines, "\n")
}

// queueBig registers ident "big" and queues n new blocks for it, written
// straight into the tables (no statistics taken).
func queueBig(t *testing.T, s *Store, n int) {
	t.Helper()
	blockQueue(t, s, "big", at(0))
	if _, err := s.pool.Exec(context.Background(), `
		WITH b AS (
			INSERT INTO blocks (cidr, added, unblock_at)
			SELECT ('10.0.0.0'::inet + g)::cidr, $1, $2 FROM generate_series(1, $3::int) g
			RETURNING id)
		INSERT INTO pending (ident, block_id) SELECT 'big', id FROM b`, at(0), at(3600), n); err != nil {
		t.Fatal(err)
	}
}

// The block queue's plan must not follow pending's statistics into a
// join of every expected block with every entry: after a queue of 20,000
// was drained, and before anything vacuums or analyzes pending again, the
// generic plan of an empty queue walks pending's index only.
func TestBlockQueuePlanAfterBigDrain(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	const n = 20000
	if _, err := s.pool.Exec(ctx, `ALTER TABLE pending SET (autovacuum_enabled = false)`); err != nil {
		t.Fatal(err)
	}
	queueBig(t, s, n)
	var ids []int64
	if err := s.pool.QueryRow(ctx, `SELECT array_agg(block_id) FROM pending WHERE ident = 'big'`).Scan(&ids); err != nil {
		t.Fatal(err)
	}
	setBlocked(t, s, "big", at(1), ids...)
	// Statistics taken while the queue was full (and its blocks already
	// had their entries), then the drain's deletes.
	if _, err := s.pool.Exec(ctx, `INSERT INTO pending (ident, block_id) SELECT 'big', unnest($1::int8[])`, ids); err != nil {
		t.Fatal(err)
	}
	if _, err := s.pool.Exec(ctx, `ANALYZE blocks, entries, pending`); err != nil {
		t.Fatal(err)
	}
	if _, err := s.pool.Exec(ctx, `DELETE FROM pending`); err != nil {
		t.Fatal(err)
	}

	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	if _, err := conn.Exec(ctx, `PREPARE bq AS `+sqlBlockQueue); err != nil {
		t.Fatal(err)
	}
	plan := explain(t, conn, `EXPLAIN EXECUTE bq('big', '`+at(2).Format(time.RFC3339)+`', NULL, 1000)`)
	for _, bad := range []string{"Hash", "Seq Scan on blocks", "Seq Scan on entries", "Bitmap Heap Scan on blocks", "Seq Scan on pending"} {
		if strings.Contains(plan, bad) {
			t.Fatalf("block queue plan has %q:\n%s", bad, plan)
		}
	}
	if !strings.Contains(plan, "using pending_pkey on pending") {
		t.Fatalf("block queue plan does not walk pending's index:\n%s", plan)
	}
	if q := blockQueue(t, s, "big", at(2)); len(q) != 0 {
		t.Fatalf("drained queue has %d blocks", len(q))
	}
}

// SetBlocked's plan probes blocks and pending by primary key, one id at
// a time, whatever the statistics: on tables never analyzed (here, as
// after a big load before autoanalyze) "JOIN req" became a hash join
// over every block and "block_id = ANY($2)" a scan of every pending row
// of the ident, filtered by the list.
func TestSetBlockedPlanKeyed(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	const n = 20000
	if _, err := s.pool.Exec(ctx, `ALTER TABLE pending SET (autovacuum_enabled = false);
		ALTER TABLE blocks SET (autovacuum_enabled = false)`); err != nil {
		t.Fatal(err)
	}
	queueBig(t, s, n)
	var ids []int64
	if err := s.pool.QueryRow(ctx, `SELECT array_agg(block_id ORDER BY block_id) FROM (SELECT block_id FROM pending WHERE ident = 'big' ORDER BY block_id LIMIT 200) p`).Scan(&ids); err != nil {
		t.Fatal(err)
	}
	plan := explain(t, s.pool, `EXPLAIN `+sqlSetBlocked, "big", ids, at(1).UTC(), true)
	for _, bad := range []string{"Seq Scan on blocks", "Seq Scan on pending", "Bitmap Heap Scan on pending", "Bitmap Heap Scan on blocks"} {
		if strings.Contains(plan, bad) {
			t.Fatalf("set_blocked plan has %q:\n%s", bad, plan)
		}
	}
	for _, want := range []string{"Index Scan using blocks_pkey on blocks", "Index Scan using pending_pkey on pending", "Tid Scan on pending"} {
		if !strings.Contains(plan, want) {
			t.Fatalf("set_blocked plan lacks %q:\n%s", want, plan)
		}
	}
	// And it still does its job: 200 entries, 200 fewer queued.
	setBlocked(t, s, "big", at(1), ids...)
	if got := countRows(t, s, `SELECT count(*) FROM pending WHERE ident = 'big'`); got != n-200 {
		t.Errorf("%d queued after set_blocked of 200, want %d", got, n-200)
	}
	if got := countRows(t, s, `SELECT count(*) FROM entries WHERE ident = 'big'`); got != 200 {
		t.Errorf("%d entries, want 200", got)
	}
}

// A catch-up chunk reads only its own ids: its bounds must be the index
// scan's conditions, not a filter over every block from the first (which
// made a catch-up of a million quadratic: a chunk 900,000 ids in read
// 904,000 rows of blocks_pkey, 500 ms).
func TestBackfillChunkReadsOnlyItsRange(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	const n = 30000
	if _, err := s.pool.Exec(ctx, `
		INSERT INTO blocks (cidr, added, unblock_at)
		SELECT ('10.0.0.0'::inet + g)::cidr, $1, $2 FROM generate_series(1, $3::int) g`, at(0), at(3600), n); err != nil {
		t.Fatal(err)
	}
	if _, err := s.pool.Exec(ctx, `ANALYZE blocks`); err != nil {
		t.Fatal(err)
	}
	// An ident whose catch-up stands at the last two chunks.
	var maxID int64
	if err := s.pool.QueryRow(ctx, `SELECT max(id) FROM blocks`).Scan(&maxID); err != nil {
		t.Fatal(err)
	}
	after := maxID - 2*queue.IdentBackfillChunk + 7
	if _, err := s.pool.Exec(ctx, `INSERT INTO idents (name, added, last_seen, active, backfill_after, backfill_upto)
		VALUES ('late', $1, $1, true, $2, $3)`, at(0), after, maxID); err != nil {
		t.Fatal(err)
	}
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	// As backfill runs it (values inlined), analyzed, rolled back.
	plan := explain(t, tx, `EXPLAIN (ANALYZE, COSTS OFF, TIMING OFF) `+sqlBackfillChunk,
		valueSensitive("late", at(1), queue.IdentBackfillChunk)...)
	var read int
	for _, line := range strings.Split(plan, "\n") {
		if strings.Contains(line, "on blocks b") {
			i := strings.Index(line, "rows=")
			if i < 0 {
				t.Fatalf("no row count in %q", line)
			}
			if _, err := fmt.Sscanf(line[i:], "rows=%d", &read); err != nil {
				t.Fatalf("%q: %v", line, err)
			}
		}
	}
	if read == 0 || read > queue.IdentBackfillChunk {
		t.Fatalf("the chunk read %d rows of blocks (want 1..%d):\n%s", read, queue.IdentBackfillChunk, plan)
	}
	if strings.Contains(plan, "Rows Removed by Join Filter") {
		t.Fatalf("the chunk's bounds are a join filter:\n%s", plan)
	}
	// And it queued that chunk.
	var got int
	if err := tx.QueryRow(ctx, `SELECT count(*) FROM pending WHERE ident = 'late'`).Scan(&got); err != nil {
		t.Fatal(err)
	}
	if got != queue.IdentBackfillChunk {
		t.Errorf("%d queued, want %d", got, queue.IdentBackfillChunk)
	}
}

// The unblock queue's plan must not follow statistics taken when the
// ident had a few dozen entries (a fresh store's first autoanalyze) once
// it has tens of thousands: the entries walked in the queue's index
// order, each block one primary-key probe, whether none is due or all.
func TestUnblockQueuePlanAfterGrowth(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	if _, err := s.pool.Exec(ctx, `ALTER TABLE entries SET (autovacuum_enabled = false)`); err != nil {
		t.Fatal(err)
	}
	const n = 50000
	queueBig(t, s, n)
	open := func(k int) {
		if _, err := s.pool.Exec(ctx, `INSERT INTO entries (block_id, ident, added, unblock_at)
			SELECT block_id, 'big', $1, $2 FROM pending p
			WHERE NOT EXISTS (SELECT 1 FROM entries e WHERE e.block_id = p.block_id)
			ORDER BY block_id LIMIT $3`, at(0), at(3600), k); err != nil {
			t.Fatal(err)
		}
	}
	open(60)
	if _, err := s.pool.Exec(ctx, `ANALYZE entries, blocks`); err != nil {
		t.Fatal(err)
	}
	open(n)
	for _, now := range []time.Time{at(2), at(4000)} {
		plan := explain(t, s.pool, `EXPLAIN `+sqlUnblockQueue, valueSensitive("big", now, queue.QueueLimit)...)
		for _, bad := range []string{"Seq Scan", "Merge Join", "Hash", "Bitmap"} {
			if strings.Contains(plan, bad) {
				t.Fatalf("unblock queue plan at %s has %q:\n%s", now, bad, plan)
			}
		}
		for _, want := range []string{"Index Scan using entries_unblock_queue on entries", "Index Scan using blocks_pkey on blocks"} {
			if !strings.Contains(plan, want) {
				t.Fatalf("unblock queue plan at %s lacks %q:\n%s", now, want, plan)
			}
		}
	}
	// And it answers: nothing due, then the oldest 200 of all due.
	if q, err := s.UnblockQueue(ctx, "big", at(2), queue.QueueLimit); err != nil || len(q) != 0 {
		t.Fatalf("unblock queue before expiry: %d items, %v", len(q), err)
	}
	q, err := s.UnblockQueue(ctx, "big", at(4000), queue.QueueLimit)
	if err != nil {
		t.Fatal(err)
	}
	var first []int64
	if err := s.pool.QueryRow(ctx, `SELECT array_agg(id ORDER BY id) FROM (SELECT id FROM entries ORDER BY unblock_at, id LIMIT $1) x`, queue.QueueLimit).Scan(&first); err != nil {
		t.Fatal(err)
	}
	if len(q) != len(first) {
		t.Fatalf("%d due entries, want %d", len(q), len(first))
	}
	for i, it := range q {
		if it.ID != first[i] || !it.CIDR.IsValid() || it.Ident != "big" {
			t.Fatalf("item %d: %+v, want entry %d", i, it, first[i])
		}
	}
}
