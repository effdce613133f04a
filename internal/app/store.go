package app

import (
	"context"
	"fmt"

	"go.uber.org/zap"

	"github.com/bhrd/bhrd/pkg/auth"
	"github.com/bhrd/bhrd/pkg/config"
	"github.com/bhrd/bhrd/pkg/queue"
	"github.com/bhrd/bhrd/pkg/queue/pgstore"
	"github.com/bhrd/bhrd/pkg/queue/sqlitestore"
)

// Store is what bhrd needs of a store: the queue and auth stores and the
// migrations, from one database.
type Store interface {
	queue.Store
	auth.Store
	Migrate(ctx context.Context) ([]string, error)
	// Unavailable tells a store that can not serve now (a client may
	// retry: 503) from any other failure.
	Unavailable(err error) bool
}

var (
	_ Store = (*sqlitestore.Store)(nil)
	_ Store = (*pgstore.Store)(nil)
)

// OpenStore opens the configured store without migrating it.
func OpenStore(ctx context.Context, c config.Store) (Store, error) {
	return openStore(ctx, c, zap.NewNop())
}

// openStore opens the store; log receives the PostgreSQL listener's
// connection errors, so that a lost cross-process notification channel
// is never silent.
func openStore(ctx context.Context, c config.Store, log *zap.Logger) (Store, error) {
	switch c.Driver {
	case "sqlite":
		s, err := sqlitestore.Open(ctx, c.Path)
		if err != nil {
			return nil, fmt.Errorf("open sqlite store %s: %w", c.Path, err)
		}
		return s, nil
	case "postgres":
		s, err := pgstore.Open(ctx, c.URL, pgstore.WithListenErrors(func(err error) {
			log.Error("postgres change listener lost its connection; reconnecting (changes by other bhrd processes are picked up again after it)", zap.Error(err))
		}))
		if err != nil {
			return nil, fmt.Errorf("open postgres store: %w", err)
		}
		return s, nil
	}
	return nil, fmt.Errorf("unknown store driver %q", c.Driver)
}

// OpenMigrated opens the store and brings its schema up to date.
func OpenMigrated(ctx context.Context, c config.Store) (Store, []string, error) {
	return openMigrated(ctx, c, zap.NewNop())
}

func openMigrated(ctx context.Context, c config.Store, log *zap.Logger) (Store, []string, error) {
	s, err := openStore(ctx, c, log)
	if err != nil {
		return nil, nil, err
	}
	applied, err := s.Migrate(ctx)
	if err != nil {
		s.Close()
		return nil, nil, fmt.Errorf("migrate: %w", err)
	}
	return s, applied, nil
}
