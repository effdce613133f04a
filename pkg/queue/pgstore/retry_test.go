package pgstore

import (
	"context"
	"testing"
	"time"
)

// unblock_now locks a block's row and then its entries' rows; a writer
// that locks them the other way round (here a transaction standing in for
// an enforcer's report) makes a deadlock PostgreSQL breaks by aborting
// the first waiter, unblock_now. The store runs it again instead of
// failing the client's request.
func TestUnblockNowSurvivesADeadlock(t *testing.T) {
	s := openStore(t)
	ctx := context.Background()
	bs := insert(t, s, at(0), newBlock("192.0.2.7/32", at(0), at(3600)))
	setBlocked(t, s, "r1", at(1), bs[0].ID)

	tx, err := s.pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = tx.Rollback(ctx) }()
	if _, err := tx.Exec(ctx, `UPDATE entries SET unblock_at = unblock_at WHERE block_id = $1`, bs[0].ID); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := s.UnblockNow(ctx, bs[0].CIDR, at(10), "admin", "deadlock test")
		done <- err
	}()
	time.Sleep(300 * time.Millisecond) // unblock_now now holds the block row and waits for the entry
	if _, err := tx.Exec(ctx, `UPDATE blocks SET why = why WHERE id = $1`, bs[0].ID); err != nil {
		t.Fatalf("the other writer was the deadlock victim instead: %v", err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("unblock_now after a deadlock: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("unblock_now did not return")
	}
	b, err := s.GetBlock(ctx, bs[0].ID)
	if err != nil || !b.ForcedUnblock {
		t.Fatalf("block after the retried unblock_now: %+v %v", b, err)
	}
}
