package app

import (
	"context"
	"errors"
	"net/netip"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/bhrd/bhrd/pkg/queue"
)

// countingStore counts the store's failures for bhrd_store_errors_total.
// Answers about the request (not found, duplicate, not blocked) and
// cancelled requests are not failures.
type countingStore struct {
	queue.Store
	errs prometheus.Counter
}

// countingListener keeps a shared store's change notifications visible
// to the Service through the wrapper.
type countingListener struct {
	*countingStore
	l queue.ChangeListener
}

func (c countingListener) ListenChanges(ctx context.Context, fn func(queue.ChangeKind)) error {
	return c.l.ListenChanges(ctx, fn)
}

// countingShared keeps a shared store's notifications and ident locks
// visible through the wrapper.
type countingShared struct {
	countingListener
	lk queue.IdentLocker
}

func (c countingShared) LockIdent(ctx context.Context, ident, instance string, held func(string)) (queue.IdentLease, error) {
	l, err := c.lk.LockIdent(ctx, ident, instance, held)
	return l, c.count(err)
}

func countStoreErrors(s queue.Store, errs prometheus.Counter) queue.Store {
	cs := &countingStore{Store: s, errs: errs}
	l, listens := s.(queue.ChangeListener)
	lk, locks := s.(queue.IdentLocker)
	switch {
	case listens && locks:
		return countingShared{countingListener{cs, l}, lk}
	case listens:
		return countingListener{cs, l}
	}
	return cs
}

func (c *countingStore) count(err error) error {
	switch {
	case err == nil, errors.Is(err, queue.ErrNotFound), errors.Is(err, queue.ErrNotBlocked),
		errors.Is(err, queue.ErrDuplicate), errors.Is(err, context.Canceled),
		errors.Is(err, queue.ErrUnknownIdent), errors.Is(err, queue.ErrReservedIdent),
		errors.Is(err, queue.ErrTooManyIdents):
	default:
		c.errs.Inc()
	}
	return err
}

func (c *countingStore) ApplyBlocks(ctx context.Context, cidrs []netip.Prefix, now time.Time, plan queue.PlanFunc) ([]queue.Block, error) {
	planErr := false
	bs, err := c.Store.ApplyBlocks(ctx, cidrs, now, func(st map[netip.Prefix]queue.CIDRState) (queue.Plan, error) {
		p, err := plan(st)
		planErr = err != nil
		return p, err
	})
	if planErr {
		return bs, err // the plan refused: a decision, not a failure
	}
	return bs, c.count(err)
}

func (c *countingStore) UnblockNow(ctx context.Context, cidr netip.Prefix, now time.Time, who, why string) (queue.Block, error) {
	b, err := c.Store.UnblockNow(ctx, cidr, now, who, why)
	return b, c.count(err)
}

func (c *countingStore) UnblockNowMulti(ctx context.Context, cidrs []netip.Prefix, now time.Time, who, why string) ([]queue.Block, error) {
	bs, err := c.Store.UnblockNowMulti(ctx, cidrs, now, who, why)
	return bs, c.count(err)
}

func (c *countingStore) BlockQueue(ctx context.Context, ident string, now, since time.Time, limit int) ([]queue.QueueItem, error) {
	r, err := c.Store.BlockQueue(ctx, ident, now, since, limit)
	return r, c.count(err)
}

func (c *countingStore) SetBlocked(ctx context.Context, ident string, ids []int64, now time.Time) ([]queue.QueueItem, error) {
	res, err := c.Store.SetBlocked(ctx, ident, ids, now)
	return res, c.count(err)
}

func (c *countingStore) UnblockQueue(ctx context.Context, ident string, now time.Time, limit int) ([]queue.UnblockItem, error) {
	r, err := c.Store.UnblockQueue(ctx, ident, now, limit)
	return r, c.count(err)
}

func (c *countingStore) SetUnblocked(ctx context.Context, ids []int64, now time.Time, refuse []string) ([]queue.UnblockItem, error) {
	res, err := c.Store.SetUnblocked(ctx, ids, now, refuse)
	return res, c.count(err)
}

func (c *countingStore) GetBlock(ctx context.Context, id int64) (queue.Block, error) {
	b, err := c.Store.GetBlock(ctx, id)
	return b, c.count(err)
}

func (c *countingStore) ListBlocks(ctx context.Context, opts queue.ListOptions, fn func(queue.Block) error) error {
	var fnErr error
	err := c.Store.ListBlocks(ctx, opts, func(b queue.Block) error {
		fnErr = fn(b)
		return fnErr
	})
	if fnErr != nil {
		return err // the consumer stopped (client gone, limit): not the store
	}
	return c.count(err)
}

func (c *countingStore) ListEntries(ctx context.Context, opts queue.EntryListOptions, fn func(queue.Entry) error) error {
	var fnErr error
	err := c.Store.ListEntries(ctx, opts, func(e queue.Entry) error {
		fnErr = fn(e)
		return fnErr
	})
	if fnErr != nil {
		return err
	}
	return c.count(err)
}

func (c *countingStore) Stats(ctx context.Context, now time.Time) (queue.Stats, error) {
	s, err := c.Store.Stats(ctx, now)
	return s, c.count(err)
}

func (c *countingStore) NextUnblockAt(ctx context.Context, now time.Time) (time.Time, bool, error) {
	t, ok, err := c.Store.NextUnblockAt(ctx, now)
	return t, ok, c.count(err)
}

func (c *countingStore) AddWhitelist(ctx context.Context, e queue.WhitelistEntry) (queue.WhitelistEntry, error) {
	r, err := c.Store.AddWhitelist(ctx, e)
	return r, c.count(err)
}

func (c *countingStore) ListWhitelist(ctx context.Context) ([]queue.WhitelistEntry, error) {
	r, err := c.Store.ListWhitelist(ctx)
	return r, c.count(err)
}

func (c *countingStore) AddSourceBlacklist(ctx context.Context, e queue.SourceBlacklistEntry) (queue.SourceBlacklistEntry, error) {
	r, err := c.Store.AddSourceBlacklist(ctx, e)
	return r, c.count(err)
}

func (c *countingStore) ListSourceBlacklist(ctx context.Context) ([]queue.SourceBlacklistEntry, error) {
	r, err := c.Store.ListSourceBlacklist(ctx)
	return r, c.count(err)
}

func (c *countingStore) Prune(ctx context.Context, cutoff, now time.Time) (queue.PruneResult, error) {
	r, err := c.Store.Prune(ctx, cutoff, now)
	return r, c.count(err)
}
