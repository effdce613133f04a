package nullrouteplane

import (
	"context"
	"fmt"
	"net/netip"

	"github.com/bhrd/bhrd/pkg/enforcer"
	"github.com/bhrd/bhrd/pkg/nullroute"
)

// Backend enforces blocks as kernel blackhole routes.
type Backend struct {
	Table *nullroute.Table
}

// Install adds blackhole routes. A partial failure fails the batch: the
// enforcer retries it whole (adding is idempotent) and marks nothing until
// every prefix is in.
func (b Backend) Install(ctx context.Context, ts []enforcer.Target) error {
	if err := b.Table.Add(ctx, enforcer.Prefixes(ts)); err != nil {
		return fmt.Errorf("null routes: %w", err)
	}
	return nil
}

// Remove deletes our blackhole routes.
func (b Backend) Remove(ctx context.Context, ps []netip.Prefix) error {
	if err := b.Table.Delete(ctx, ps); err != nil {
		return fmt.Errorf("null routes: %w", err)
	}
	return nil
}

// Reconcile adds missing routes and deletes our tagged routes the store
// does not expect.
func (b Backend) Reconcile(ctx context.Context, want []enforcer.Target) (int, int, error) {
	added, removed, err := b.Table.Reconcile(ctx, enforcer.Prefixes(want))
	if err != nil {
		return len(added), len(removed), fmt.Errorf("null routes: %w", err)
	}
	return len(added), len(removed), nil
}
