package pgstore

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"
)

// After a big drain, pending is full of dead rows until vacuum: every
// block-queue poll of that ident then walks them (5-10 ms after 100k,
// against 1-2 ms once vacuumed). Migration 0003 makes autovacuum visit
// pending after 1,000 dead rows instead of 20 % of the table.
func TestPendingAutovacuumSettings(t *testing.T) {
	s := openStore(t)
	var opts []string
	err := s.Pool().QueryRow(context.Background(),
		`SELECT reloptions FROM pg_class WHERE oid = 'pending'::regclass`).Scan(&opts)
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(opts, ",")
	for _, want := range []string{"autovacuum_vacuum_scale_factor=0.0", "autovacuum_vacuum_threshold=1000", "autovacuum_vacuum_cost_delay=0"} {
		if !strings.Contains(got, want) {
			t.Errorf("pending reloptions %q lack %s", got, want)
		}
	}
}

// The store vacuums pending itself once its reports have deleted
// pendingVacuumEvery rows, without waiting for autovacuum (off for the
// table here, so every vacuum seen is the store's), and not before.
func TestPendingVacuumedAfterDrain(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	if _, err := s.pool.Exec(ctx, `ALTER TABLE pending SET (autovacuum_enabled = false)`); err != nil {
		t.Fatal(err)
	}
	vacuums := func() int64 {
		return countRows(t, s, `SELECT vacuum_count FROM pg_stat_user_tables WHERE relname = 'pending'`)
	}
	const n = pendingVacuumEvery + 1000
	queueBig(t, s, n)
	var ids []int64
	if err := s.pool.QueryRow(ctx, `SELECT array_agg(block_id ORDER BY block_id) FROM pending WHERE ident = 'big'`).Scan(&ids); err != nil {
		t.Fatal(err)
	}
	drain := func(ids []int64) {
		for i := 0; i < len(ids); i += 200 {
			setBlocked(t, s, "big", at(1), ids[i:min(i+200, len(ids))]...)
		}
	}
	drain(ids[:pendingVacuumEvery-200])
	time.Sleep(200 * time.Millisecond) // a vacuum asked for too soon would have begun
	if v := vacuums(); v != 0 {
		t.Fatalf("pending vacuumed %d times after %d deletes, want none before %d", v, pendingVacuumEvery-200, pendingVacuumEvery)
	}
	drain(ids[pendingVacuumEvery-200:])
	deadline := time.Now().Add(20 * time.Second)
	for vacuums() == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("pending not vacuumed 20 s after %d deletes", n)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// The dead index entries are gone: a read of the (empty) queue visits
	// a page or two, not the drained rows' entries.
	plan := explain(t, s.pool, `EXPLAIN (ANALYZE, BUFFERS, COSTS OFF, TIMING OFF) SELECT block_id FROM pending WHERE ident = 'big' ORDER BY ident, block_id LIMIT 200`)
	var hits int
	for _, line := range strings.Split(plan, "\n") {
		if i := strings.Index(line, "shared hit="); i >= 0 && hits == 0 {
			if _, err := fmt.Sscanf(line[i:], "shared hit=%d", &hits); err != nil {
				t.Fatalf("%q: %v", line, err)
			}
		}
	}
	if hits > 40 {
		t.Fatalf("an empty queue read hit %d buffers after the vacuum:\n%s", hits, plan)
	}
}
