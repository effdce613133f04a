package pgstore

import (
	"context"
	"fmt"
	"strconv"

	"github.com/bhrd/bhrd/pkg/queue"
	"github.com/jackc/pgx/v5"
)

// Whitelist and source blacklist writes run with their notification in
// one batch: the batch is one implicit transaction, and the notification is
// delivered on its commit.
const sqlNotifyWhitelist = `SELECT pg_notify('` + Channel + `', 'whitelist')`

const whitelistCols = `id, cidr, who, why, added`

func scanWhitelist(r scanner) (queue.WhitelistEntry, error) {
	var e queue.WhitelistEntry
	err := r.Scan(&e.ID, &e.CIDR, &e.Who, &e.Why, &e.Added)
	e.Added = e.Added.UTC()
	return e, err
}

// AddWhitelist implements queue.Store.
func (s *Store) AddWhitelist(ctx context.Context, e queue.WhitelistEntry) (queue.WhitelistEntry, error) {
	var out queue.WhitelistEntry
	b := &pgx.Batch{}
	b.Queue(`INSERT INTO whitelist (cidr, who, why, added) VALUES ($1, $2, $3, $4) RETURNING `+whitelistCols,
		e.CIDR.Masked(), e.Who, e.Why, e.Added.UTC()).QueryRow(func(row pgx.Row) error {
		var err error
		out, err = scanWhitelist(row)
		return err
	})
	b.Queue(sqlNotifyWhitelist)
	if err := s.pool.SendBatch(ctx, b).Close(); err != nil {
		return queue.WhitelistEntry{}, fmt.Errorf("add whitelist %s: %w", e.CIDR, err)
	}
	return out, nil
}

// ListWhitelist implements queue.Store, in id order.
func (s *Store) ListWhitelist(ctx context.Context) ([]queue.WhitelistEntry, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+whitelistCols+` FROM whitelist ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("list whitelist: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (queue.WhitelistEntry, error) { return scanWhitelist(r) })
	if err != nil {
		return nil, fmt.Errorf("list whitelist: %w", err)
	}
	return out, nil
}

// GetWhitelist implements queue.Store.
func (s *Store) GetWhitelist(ctx context.Context, id int64) (queue.WhitelistEntry, error) {
	e, err := scanWhitelist(s.pool.QueryRow(ctx, `SELECT `+whitelistCols+` FROM whitelist WHERE id = $1`, id))
	if err != nil {
		return queue.WhitelistEntry{}, mapErr("whitelist entry "+strconv.FormatInt(id, 10), err, queue.ErrNotFound)
	}
	return e, nil
}

// DeleteWhitelist implements queue.Store.
func (s *Store) DeleteWhitelist(ctx context.Context, id int64) error {
	return s.deleteNotify(ctx, "whitelist", "whitelist entry", id)
}

// deleteNotify deletes row id of table and notifies "whitelist" if it
// existed.
func (s *Store) deleteNotify(ctx context.Context, table, what string, id int64) error {
	var n int64
	err := s.pool.QueryRow(ctx, `
		WITH d AS (DELETE FROM `+table+` WHERE id = $1 RETURNING id)
		SELECT count(*), CASE WHEN count(*) > 0 THEN pg_notify('`+Channel+`', 'whitelist')::text END FROM d`, id).
		Scan(&n, nil)
	if err != nil {
		return fmt.Errorf("delete %s %d: %w", what, id, err)
	}
	if n == 0 {
		return fmt.Errorf("delete %s %d: %w", what, id, queue.ErrNotFound)
	}
	return nil
}

const blacklistCols = `id, source, who, why, added`

func scanBlacklist(r scanner) (queue.SourceBlacklistEntry, error) {
	var e queue.SourceBlacklistEntry
	err := r.Scan(&e.ID, &e.Source, &e.Who, &e.Why, &e.Added)
	e.Added = e.Added.UTC()
	return e, err
}

// AddSourceBlacklist implements queue.Store.
func (s *Store) AddSourceBlacklist(ctx context.Context, e queue.SourceBlacklistEntry) (queue.SourceBlacklistEntry, error) {
	var out queue.SourceBlacklistEntry
	b := &pgx.Batch{}
	b.Queue(`INSERT INTO source_blacklist (source, who, why, added) VALUES ($1, $2, $3, $4) RETURNING `+blacklistCols,
		e.Source, e.Who, e.Why, e.Added.UTC()).QueryRow(func(row pgx.Row) error {
		var err error
		out, err = scanBlacklist(row)
		return err
	})
	b.Queue(sqlNotifyWhitelist)
	if err := s.pool.SendBatch(ctx, b).Close(); err != nil {
		if isUniqueViolation(err) {
			return queue.SourceBlacklistEntry{}, fmt.Errorf("source blacklist %q: %w", e.Source, queue.ErrDuplicate)
		}
		return queue.SourceBlacklistEntry{}, fmt.Errorf("add source blacklist %q: %w", e.Source, err)
	}
	return out, nil
}

// ListSourceBlacklist implements queue.Store, in id order.
func (s *Store) ListSourceBlacklist(ctx context.Context) ([]queue.SourceBlacklistEntry, error) {
	rows, err := s.pool.Query(ctx, `SELECT `+blacklistCols+` FROM source_blacklist ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("list source blacklist: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (queue.SourceBlacklistEntry, error) { return scanBlacklist(r) })
	if err != nil {
		return nil, fmt.Errorf("list source blacklist: %w", err)
	}
	return out, nil
}

// DeleteSourceBlacklist implements queue.Store.
func (s *Store) DeleteSourceBlacklist(ctx context.Context, id int64) error {
	return s.deleteNotify(ctx, "source_blacklist", "source blacklist entry", id)
}
