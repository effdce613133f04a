package sqlitestore

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/bhrd/bhrd/pkg/queue"
)

// The hot queries must be served by indexes: a full scan of blocks (all of
// history) or of pending, or a sort of a whole listing, would make them slow
// exactly when the store is big. This pins the plans SQLite chooses.
func TestQueryPlans(t *testing.T) {
	s := newStore(t)
	insert(t, s, t0, blk("192.0.2.0/24", t0, time.Time{}))

	type q struct {
		name  string
		query string
		args  []any
	}
	cases := []q{
		{"block queue", qBlockQueue, []any{"x", 1, 1, 1}},
		{"unblock queue", qUnblockQueue, []any{"x", 1, 1}},
		{"latest block", qLatestBlock, []any{"x"}},
		{"expected block", qExpectedBlock, []any{"x", 1}},
		{"close stale", qCloseStale, []any{1, "x"}},
		{"backfill", qBackfill, []any{"x", 0, 100, 10, 1}},
		{"backfill end", qBackfillEnd, []any{0, 100, 10}},
		{"dequeue block", qDequeueBlock, []any{1}},
		{"dequeue entry", qDequeueEntry, []any{"x", 1}},
		{"next unblock", qNextUnblock, []any{1}},
		{"stats sources", qStatsSources, []any{1}},
		{"stats current", qStatsCurrent, nil},
		{"stats block pending", qStatsBlockPending, []any{1}},
		{"stats unblock pending", qStatsUnblockPending, []any{1}},
	}
	for _, f := range []queue.BlockFilter{queue.FilterExpected, queue.FilterCurrent, queue.FilterPending, queue.FilterPendingRemoval} {
		for _, o := range []queue.ListOptions{{}, {Descending: true}, {AfterID: 5, Limit: 10}, {Descending: true, AfterID: 5}} {
			o.Filter, o.Now = f, t0
			query, args, err := listBlocksQuery(o)
			if err != nil {
				t.Fatal(err)
			}
			cases = append(cases, q{fmt.Sprintf("list filter %d %+v", f, o), query, args})
		}
	}
	query, args, _ := listBlocksQuery(queue.ListOptions{Within: pfx("10.0.0.0/8")})
	cases = append(cases, q{"list within", query, args})

	for _, c := range cases {
		plan := explain(t, s, c.name, c.query, c.args)
		for _, d := range plan {
			// A scan of a subquery is of its (limited) rows, not of a table.
			subquery := d == "SCAN c" || strings.HasPrefix(d, "SCAN (subquery")
			fullScan := strings.HasPrefix(d, "SCAN ") && !strings.Contains(d, " USING ") && !subquery
			sortsAll := strings.HasPrefix(c.name, "list filter") && strings.Contains(d, "FOR ORDER BY")
			if fullScan || sortsAll {
				t.Errorf("%s: plan step %q\nquery: %s\nplan: %s", c.name, d, c.query, strings.Join(plan, " | "))
			}
		}
	}
}

// A page read is driven by the set its probe chose: each driver's query
// uses that set's index (or walks ids newest first) and never sorts a
// walk.
func TestPagePlans(t *testing.T) {
	s := newStore(t)
	insert(t, s, t0, blk("192.0.2.0/24", t0, time.Time{}))
	page := queue.ListOptions{Filter: queue.FilterExpected, Source: "test", Within: pfx("192.0.2.0/24"), Descending: true, Limit: 50, Now: t0}
	noSource := page
	noSource.Source = ""
	withCursor := page
	withCursor.AfterID = 1 << 40
	cases := []struct {
		name string
		opts queue.ListOptions
		drv  driver
		want string
	}{
		{"range", page, driveRange, "USING INDEX blocks_family_net_lo"},
		{"expected", page, driveExpected, "blocks_unblock_at"},
		{"walk by source", page, driveWalk, "USING INDEX blocks_source_id"},
		{"walk by id", noSource, driveWalk, "SCAN b"},
		{"range ids", page, driveRangeIDs, "COVERING INDEX blocks_family_net_lo"},
		{"range ids below a cursor", withCursor, driveRangeIDs, "COVERING INDEX blocks_family_net_lo"},
	}
	for _, c := range cases {
		query, args, err := listBlocksQueryBy(c.opts, c.drv)
		if err != nil {
			t.Fatal(err)
		}
		all := strings.Join(explain(t, s, c.name, query, args), " | ")
		if !strings.Contains(all, c.want) {
			t.Errorf("%s: plan %q lacks %q", c.name, all, c.want)
		}
		if (c.drv == driveWalk || c.drv == driveRangeIDs) && strings.Contains(all, "TEMP B-TREE") {
			t.Errorf("%s: a walk sorts: %s", c.name, all)
		}
		if c.drv == driveRangeIDs && !strings.Contains(all, "INTEGER PRIMARY KEY (rowid=?)") {
			t.Errorf("%s: the id list does not drive: %s", c.name, all)
		}
		// The same rows whatever drives the query.
		var got []int64
		if err := s.ListBlocks(context.Background(), c.opts, func(b queue.Block) error { got = append(got, b.ID); return nil }); err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 {
			t.Errorf("%s: %v", c.name, got)
		}
	}
	// One block: every probed set is small, the smallest wins.
	drv, newest, err := s.pageDriver(context.Background(), page)
	if err != nil || drv == driveDefault || newest != 1 {
		t.Errorf("pageDriver: %v %d %v", drv, newest, err)
	}
	if (queue.ListOptions{Limit: 50}).IsPage() || !page.IsPage() {
		t.Error("IsPage: an oldest-first listing is not a page; newest first with a limit is")
	}
}

// explain is SQLite's plan of a query, one step a line.
func explain(t *testing.T, s *Store, name, query string, args []any) []string {
	t.Helper()
	rows, err := s.wdb.Query("EXPLAIN QUERY PLAN "+query, args...)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, detail)
	}
	return plan
}
