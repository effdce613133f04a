package sqlitestore

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/bhrd/bhrd/pkg/queue"
)

const (
	qRegisterIdent = `INSERT INTO idents (name) VALUES (?) ON CONFLICT DO NOTHING`
	// A new ident's backlog: every block expected now that it has no entry
	// for. Later blocks are queued for it by ApplyBlocks.
	qBackfill = `INSERT INTO pending (ident, block_id)
		SELECT ?1, b.id FROM blocks b
		WHERE b.forced_unblock = 0 AND (b.unblock_at IS NULL OR b.unblock_at > ?2)
		AND NOT EXISTS (SELECT 1 FROM entries e WHERE e.block_id = b.id AND e.ident = ?1)`
	// CROSS JOIN makes SQLite walk the ident's pending rows in primary-key
	// order (which is block id order) and look each block up, instead of
	// considering a scan of blocks.
	qBlockQueue = `SELECT b.id, b.cidr, b.added
		FROM pending p CROSS JOIN blocks b ON b.id = p.block_id
		WHERE p.ident = ? AND b.forced_unblock = 0 AND (b.unblock_at IS NULL OR b.unblock_at > ?)
		AND b.added > ?
		ORDER BY p.block_id LIMIT ?`
	qInsertEntry = `INSERT INTO entries (block_id, ident, added, unblock_at)
		SELECT id, ?, ?, unblock_at FROM blocks WHERE id = ?
		ON CONFLICT (block_id, ident) DO NOTHING`
	qBlockItem    = `SELECT cidr, added FROM blocks WHERE id = ?`
	qBlockExists  = `SELECT count(*) FROM blocks WHERE id = ?`
	qDequeueEntry = `DELETE FROM pending WHERE ident = ? AND block_id = ?`
	qUnblockQueue = `SELECT e.id, e.block_id, b.cidr, e.ident, e.added, e.unblock_at
		FROM entries e JOIN blocks b ON b.id = e.block_id
		WHERE e.ident = ? AND e.removed IS NULL AND e.unblock_at IS NOT NULL AND e.unblock_at <= ?
		ORDER BY e.unblock_at, e.id LIMIT ?`
	qCloseEntry = `UPDATE entries SET removed = ? WHERE id = ? AND removed IS NULL`
	qEntryItem  = `SELECT e.block_id, b.cidr, e.ident, e.added, e.unblock_at, e.removed IS NULL
		FROM entries e JOIN blocks b ON b.id = e.block_id WHERE e.id = ?`
)

// BlockQueue implements queue.Store.
func (s *Store) BlockQueue(ctx context.Context, ident string, now, since time.Time, limit int) ([]queue.QueueItem, error) {
	if err := s.registerIdent(ctx, ident, now); err != nil {
		return nil, fmt.Errorf("block queue %s: %w", ident, err)
	}
	sinceArg := int64(math.MinInt64)
	if !since.IsZero() {
		sinceArg = micros(since)
	}
	st, err := s.readStmt(ctx, qBlockQueue)
	if err != nil {
		return nil, fmt.Errorf("block queue %s: %w", ident, err)
	}
	rows, err := st.QueryContext(ctx, ident, micros(now), sinceArg, limitArg(limit))
	if err != nil {
		return nil, fmt.Errorf("block queue %s: %w", ident, err)
	}
	defer rows.Close()
	var out []queue.QueueItem
	for rows.Next() {
		var (
			it    queue.QueueItem
			cidr  string
			added int64
		)
		if err := rows.Scan(&it.ID, &cidr, &added); err != nil {
			return nil, fmt.Errorf("block queue %s: %w", ident, err)
		}
		if it.CIDR, err = parseCIDR(cidr); err != nil {
			return nil, fmt.Errorf("block queue %s: %w", ident, err)
		}
		it.Added = fromMicros(added)
		out = append(out, it)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("block queue %s: %w", ident, err)
	}
	return out, nil
}

// registerIdent makes sure ident has its pending rows. Writes are
// serialised, so no block can be inserted between the registration and the
// backfill and be missed by both.
func (s *Store) registerIdent(ctx context.Context, ident string, now time.Time) error {
	if _, ok := s.idents.Load(ident); ok {
		return nil
	}
	err := s.write(ctx, func(t *txn) error {
		res, err := t.exec(qRegisterIdent, ident)
		if err != nil {
			return fmt.Errorf("register ident: %w", err)
		}
		if n, err := res.RowsAffected(); err != nil || n == 0 {
			return err // already registered (by an earlier run of bhrd)
		}
		if _, err := t.exec(qBackfill, ident, micros(now)); err != nil {
			return fmt.Errorf("backfill queue: %w", err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	s.idents.Store(ident, struct{}{})
	return nil
}

// SetBlocked implements queue.Store.
func (s *Store) SetBlocked(ctx context.Context, ident string, blockIDs []int64, now time.Time) ([]queue.QueueItem, error) {
	var added []queue.QueueItem
	err := s.write(ctx, func(t *txn) error {
		added = added[:0]
		for _, id := range blockIDs {
			res, err := t.exec(qInsertEntry, ident, micros(now), id)
			if err != nil {
				return fmt.Errorf("block %d: %w", id, err)
			}
			n, err := res.RowsAffected()
			if err != nil {
				return fmt.Errorf("block %d: %w", id, err)
			}
			if n == 1 {
				if _, err := t.exec(qDequeueEntry, ident, id); err != nil {
					return fmt.Errorf("block %d: %w", id, err)
				}
				it := queue.QueueItem{ID: id}
				var cidr string
				var at int64
				if err := t.queryRow(qBlockItem, id).Scan(&cidr, &at); err != nil {
					return fmt.Errorf("block %d: %w", id, err)
				}
				if it.CIDR, err = parseCIDR(cidr); err != nil {
					return fmt.Errorf("block %d: %w", id, err)
				}
				it.Added = fromMicros(at)
				added = append(added, it)
				continue
			}
			// Nothing inserted: either the entry exists (fine) or the
			// block does not (the whole call fails).
			if err := t.mustExist(qBlockExists, "block", id); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("set blocked %s: %w", ident, err)
	}
	slices.SortFunc(added, func(a, b queue.QueueItem) int { return cmp.Compare(a.ID, b.ID) })
	return added, nil
}

func (t *txn) mustExist(query, what string, id int64) error {
	var n int
	if err := t.queryRow(query, id).Scan(&n); err != nil {
		return fmt.Errorf("%s %d: %w", what, id, err)
	}
	if n == 0 {
		return fmt.Errorf("%s %d: %w", what, id, queue.ErrNotFound)
	}
	return nil
}

// UnblockQueue implements queue.Store.
func (s *Store) UnblockQueue(ctx context.Context, ident string, now time.Time, limit int) ([]queue.UnblockItem, error) {
	st, err := s.readStmt(ctx, qUnblockQueue)
	if err != nil {
		return nil, fmt.Errorf("unblock queue %s: %w", ident, err)
	}
	rows, err := st.QueryContext(ctx, ident, micros(now), limitArg(limit))
	if err != nil {
		return nil, fmt.Errorf("unblock queue %s: %w", ident, err)
	}
	defer rows.Close()
	var out []queue.UnblockItem
	for rows.Next() {
		var (
			it               queue.UnblockItem
			cidr             string
			added, unblockAt int64
		)
		if err := rows.Scan(&it.ID, &it.BlockID, &cidr, &it.Ident, &added, &unblockAt); err != nil {
			return nil, fmt.Errorf("unblock queue %s: %w", ident, err)
		}
		if it.CIDR, err = parseCIDR(cidr); err != nil {
			return nil, fmt.Errorf("unblock queue %s: %w", ident, err)
		}
		it.Added = fromMicros(added)
		it.UnblockAt = fromMicros(unblockAt)
		out = append(out, it)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("unblock queue %s: %w", ident, err)
	}
	return out, nil
}

// SetUnblocked implements queue.Store: every entry is read first, so
// that an unknown id or a refused ident changes nothing.
func (s *Store) SetUnblocked(ctx context.Context, entryIDs []int64, now time.Time, refuse []string) ([]queue.UnblockItem, error) {
	var closed []queue.UnblockItem
	err := s.write(ctx, func(t *txn) error {
		closed = closed[:0]
		seen := make(map[int64]bool, len(entryIDs))
		for _, id := range entryIDs {
			if seen[id] {
				continue
			}
			seen[id] = true
			it := queue.UnblockItem{ID: id}
			var (
				cidr      string
				added     int64
				unblockAt sql.NullInt64
				open      bool
			)
			err := t.queryRow(qEntryItem, id).Scan(&it.BlockID, &cidr, &it.Ident, &added, &unblockAt, &open)
			if errors.Is(err, sql.ErrNoRows) {
				return fmt.Errorf("entry %d: %w", id, queue.ErrNotFound)
			}
			if err != nil {
				return fmt.Errorf("entry %d: %w", id, err)
			}
			if slices.Contains(refuse, it.Ident) {
				return &queue.ReservedIdentError{Ident: it.Ident}
			}
			if !open {
				continue
			}
			if it.CIDR, err = parseCIDR(cidr); err != nil {
				return fmt.Errorf("entry %d: %w", id, err)
			}
			it.Added, it.UnblockAt = fromMicros(added), fromNullMicros(unblockAt)
			closed = append(closed, it)
		}
		for _, it := range closed {
			if _, err := t.exec(qCloseEntry, micros(now), it.ID); err != nil {
				return fmt.Errorf("entry %d: %w", it.ID, err)
			}
		}
		return nil
	})
	var re *queue.ReservedIdentError
	if errors.As(err, &re) {
		return nil, re
	}
	if err != nil {
		return nil, fmt.Errorf("set unblocked: %w", err)
	}
	slices.SortFunc(closed, func(a, b queue.UnblockItem) int { return cmp.Compare(a.ID, b.ID) })
	return closed, nil
}

// ListEntries implements queue.Store.
func (s *Store) ListEntries(ctx context.Context, opts queue.EntryListOptions, fn func(queue.Entry) error) error {
	var (
		where []string
		args  []any
	)
	if opts.BlockID != 0 {
		where = append(where, `e.block_id = ?`)
		args = append(args, opts.BlockID)
	}
	if opts.Ident != "" {
		where = append(where, `e.ident = ?`)
		args = append(args, opts.Ident)
	}
	if opts.OpenOnly {
		where = append(where, `e.removed IS NULL`)
	}
	if opts.AfterID != 0 {
		where = append(where, `e.id > ?`)
		args = append(args, opts.AfterID)
	}
	var q strings.Builder
	q.WriteString(`SELECT e.id, e.block_id, b.cidr, e.ident, e.added, e.removed, e.unblock_at
		FROM entries e JOIN blocks b ON b.id = e.block_id`)
	if len(where) > 0 {
		q.WriteString(` WHERE ` + strings.Join(where, ` AND `))
	}
	q.WriteString(` ORDER BY e.id LIMIT ? OFFSET ?`)
	args = append(args, limitArg(opts.Limit), max(opts.Offset, 0))

	st, err := s.readStmt(ctx, q.String())
	if err != nil {
		return fmt.Errorf("list entries: %w", err)
	}
	rows, err := st.QueryContext(ctx, args...)
	if err != nil {
		return fmt.Errorf("list entries: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var (
			e                  queue.Entry
			cidr               string
			added              int64
			removed, unblockAt sql.NullInt64
		)
		if err := rows.Scan(&e.ID, &e.BlockID, &cidr, &e.Ident, &added, &removed, &unblockAt); err != nil {
			return fmt.Errorf("list entries: %w", err)
		}
		if e.CIDR, err = parseCIDR(cidr); err != nil {
			return fmt.Errorf("list entries: %w", err)
		}
		e.Added = fromMicros(added)
		e.Removed = fromNullMicros(removed)
		e.UnblockAt = fromNullMicros(unblockAt)
		if err := fn(e); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("list entries: %w", err)
	}
	return nil
}
