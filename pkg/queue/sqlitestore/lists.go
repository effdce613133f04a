package sqlitestore

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/bhrd/bhrd/pkg/queue"
)

// AddWhitelist implements queue.Store.
func (s *Store) AddWhitelist(ctx context.Context, e queue.WhitelistEntry) (queue.WhitelistEntry, error) {
	p, err := canonical(e.CIDR)
	if err != nil {
		return queue.WhitelistEntry{}, fmt.Errorf("add whitelist: %w", err)
	}
	e.CIDR = p
	e.Added = truncTime(e.Added)
	err = s.write(ctx, func(t *txn) error {
		res, err := t.exec(`INSERT INTO whitelist (cidr, who, why, added) VALUES (?, ?, ?, ?)`,
			p.String(), e.Who, e.Why, micros(e.Added))
		if err != nil {
			return err
		}
		e.ID, err = res.LastInsertId()
		return err
	})
	if err != nil {
		return queue.WhitelistEntry{}, fmt.Errorf("add whitelist %s: %w", p, err)
	}
	return e, nil
}

const whitelistCols = `id, cidr, who, why, added`

func scanWhitelist(r scanner) (queue.WhitelistEntry, error) {
	var (
		e     queue.WhitelistEntry
		cidr  string
		added int64
	)
	if err := r.Scan(&e.ID, &cidr, &e.Who, &e.Why, &added); err != nil {
		return e, err
	}
	p, err := parseCIDR(cidr)
	if err != nil {
		return e, err
	}
	e.CIDR = p
	e.Added = fromMicros(added)
	return e, nil
}

// ListWhitelist implements queue.Store.
func (s *Store) ListWhitelist(ctx context.Context) ([]queue.WhitelistEntry, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT `+whitelistCols+` FROM whitelist ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("list whitelist: %w", err)
	}
	defer rows.Close()
	var out []queue.WhitelistEntry
	for rows.Next() {
		e, err := scanWhitelist(rows)
		if err != nil {
			return nil, fmt.Errorf("list whitelist: %w", err)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list whitelist: %w", err)
	}
	return out, nil
}

// GetWhitelist implements queue.Store.
func (s *Store) GetWhitelist(ctx context.Context, id int64) (queue.WhitelistEntry, error) {
	e, err := scanWhitelist(s.rdb.QueryRowContext(ctx, `SELECT `+whitelistCols+` FROM whitelist WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return e, fmt.Errorf("whitelist entry %d: %w", id, queue.ErrNotFound)
	}
	if err != nil {
		return e, fmt.Errorf("get whitelist entry %d: %w", id, err)
	}
	return e, nil
}

// DeleteWhitelist implements queue.Store.
func (s *Store) DeleteWhitelist(ctx context.Context, id int64) error {
	return s.deleteByID(ctx, "whitelist", "whitelist entry", id)
}

// deleteByID deletes one row of table; table and what are constants.
func (s *Store) deleteByID(ctx context.Context, table, what string, id int64) error {
	err := s.write(ctx, func(t *txn) error {
		res, err := t.exec(`DELETE FROM `+table+` WHERE id = ?`, id)
		if err != nil {
			return err
		}
		n, err := res.RowsAffected()
		if err != nil {
			return err
		}
		if n == 0 {
			return queue.ErrNotFound
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("delete %s %d: %w", what, id, err)
	}
	return nil
}

// AddSourceBlacklist implements queue.Store.
func (s *Store) AddSourceBlacklist(ctx context.Context, e queue.SourceBlacklistEntry) (queue.SourceBlacklistEntry, error) {
	e.Added = truncTime(e.Added)
	err := s.write(ctx, func(t *txn) error {
		res, err := t.exec(`INSERT INTO source_blacklist (source, who, why, added) VALUES (?, ?, ?, ?)`,
			e.Source, e.Who, e.Why, micros(e.Added))
		if isUnique(err) {
			return queue.ErrDuplicate
		}
		if err != nil {
			return err
		}
		e.ID, err = res.LastInsertId()
		return err
	})
	if err != nil {
		return queue.SourceBlacklistEntry{}, fmt.Errorf("add source blacklist %q: %w", e.Source, err)
	}
	return e, nil
}

// ListSourceBlacklist implements queue.Store.
func (s *Store) ListSourceBlacklist(ctx context.Context) ([]queue.SourceBlacklistEntry, error) {
	rows, err := s.rdb.QueryContext(ctx, `SELECT id, source, who, why, added FROM source_blacklist ORDER BY id`)
	if err != nil {
		return nil, fmt.Errorf("list source blacklist: %w", err)
	}
	defer rows.Close()
	var out []queue.SourceBlacklistEntry
	for rows.Next() {
		var (
			e     queue.SourceBlacklistEntry
			added int64
		)
		if err := rows.Scan(&e.ID, &e.Source, &e.Who, &e.Why, &added); err != nil {
			return nil, fmt.Errorf("list source blacklist: %w", err)
		}
		e.Added = fromMicros(added)
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list source blacklist: %w", err)
	}
	return out, nil
}

// DeleteSourceBlacklist implements queue.Store.
func (s *Store) DeleteSourceBlacklist(ctx context.Context, id int64) error {
	return s.deleteByID(ctx, "source_blacklist", "source blacklist entry", id)
}
