package app

import (
	"context"
	"fmt"

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
}

var (
	_ Store = (*sqlitestore.Store)(nil)
	_ Store = (*pgstore.Store)(nil)
)

// OpenStore opens the configured store without migrating it.
func OpenStore(ctx context.Context, c config.Store) (Store, error) {
	switch c.Driver {
	case "sqlite":
		s, err := sqlitestore.Open(ctx, c.Path)
		if err != nil {
			return nil, fmt.Errorf("open sqlite store %s: %w", c.Path, err)
		}
		return s, nil
	case "postgres":
		s, err := pgstore.Open(ctx, c.URL)
		if err != nil {
			return nil, fmt.Errorf("open postgres store: %w", err)
		}
		return s, nil
	}
	return nil, fmt.Errorf("unknown store driver %q", c.Driver)
}

// OpenMigrated opens the store and brings its schema up to date.
func OpenMigrated(ctx context.Context, c config.Store) (Store, []string, error) {
	s, err := OpenStore(ctx, c)
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
