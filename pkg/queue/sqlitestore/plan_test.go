package sqlitestore

import (
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
		rows, err := s.wdb.Query("EXPLAIN QUERY PLAN "+c.query, c.args...)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		var plan []string
		for rows.Next() {
			var id, parent, unused int
			var detail string
			if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
				t.Fatal(err)
			}
			plan = append(plan, detail)
		}
		rows.Close()
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
