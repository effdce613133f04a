package pgstore

import (
	"context"
	"errors"
	"math/rand/v2"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
)

// conflictRetries bounds how often a write PostgreSQL aborted as a
// deadlock victim or a serialization failure is run again.
const conflictRetries = 4

// isConflict reports a deadlock (40P01) or serialization failure (40001):
// the transaction was rolled back whole and may simply run again.
func isConflict(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && (pe.Code == "40P01" || pe.Code == "40001")
}

// retryConflicts runs fn, again after a short random pause when
// PostgreSQL aborted it as a conflict, at most conflictRetries more times.
// Writes whose lock order can not be one with every other writer's
// (unblock_now against an enforcer's set_blocked on the same entries)
// go through it, so that such a conflict is never the client's error.
func retryConflicts[T any](ctx context.Context, fn func() (T, error)) (T, error) {
	for i := 0; ; i++ {
		v, err := fn()
		if err == nil || !isConflict(err) || i == conflictRetries {
			return v, err
		}
		select {
		case <-ctx.Done():
			return v, err
		case <-time.After(time.Duration(1+rand.IntN(10*(i+1))) * time.Millisecond):
		}
	}
}
