package pgstore

import (
	"context"
	"strings"
	"testing"
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
