package pgstore

import (
	"context"
	"fmt"
	"time"

	"github.com/bhrd/bhrd/pkg/queue"
	"github.com/jackc/pgx/v5"
)

// ListenChanges implements queue.ChangeListener. It holds a connection of
// its own (outside the pool) with LISTEN bhrd_changes and calls fn with the
// payload of every notification committed by another process (or another
// Store), in commit order, from this goroutine.
//
// This Store's own writes are not echoed: the caller already knows of them,
// and an echo arriving later would be a spurious wake-up. Changes committed
// before the first LISTEN is in place (the time to connect) are not
// reported: load state before calling. After a lost connection, once LISTEN
// is back, fn is called once with every kind, since changes may have been
// missed meanwhile. Connection errors are reported to the WithListenErrors
// handler and retried with exponential backoff (up to 5s). It returns
// ctx.Err() when ctx ends.
func (s *Store) ListenChanges(ctx context.Context, fn func(kind queue.ChangeKind)) error {
	const minBackoff = 100 * time.Millisecond
	backoff := minBackoff
	for first := true; ; first = false {
		listened, err := s.listenOnce(ctx, fn, !first)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if s.onListenError != nil {
			s.onListenError(err)
		}
		if listened {
			backoff = minBackoff
		}
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		backoff = min(2*backoff, maxListenBackoff)
	}
}

// listenOnce listens on one connection until it fails; listened reports
// whether LISTEN succeeded (to reset the backoff).
func (s *Store) listenOnce(ctx context.Context, fn func(queue.ChangeKind), resync bool) (listened bool, err error) {
	cfg := s.pool.Config().ConnConfig
	if cfg.RuntimeParams == nil {
		cfg.RuntimeParams = map[string]string{}
	}
	cfg.RuntimeParams["application_name"] = listenAppName
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return false, fmt.Errorf("listen: connect: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	if _, err := conn.Exec(ctx, "LISTEN "+Channel); err != nil {
		return false, fmt.Errorf("listen: %w", err)
	}
	if resync {
		fn(queue.ChangeBlocks)
		fn(queue.ChangeWhitelist)
		fn(queue.ChangeAuth)
	}
	for {
		n, err := conn.WaitForNotification(ctx)
		if err != nil {
			return true, fmt.Errorf("listen: %w", err)
		}
		if _, own := s.ownPIDs.Load(n.PID); own {
			continue
		}
		fn(queue.ChangeKind(n.Payload))
	}
}
