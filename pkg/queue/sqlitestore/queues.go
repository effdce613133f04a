package sqlitestore

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/bhrd/bhrd/pkg/queue"
)

const (
	qRegisterIdent = `INSERT INTO idents (name, added, last_seen, active, backfill_after, backfill_upto)
		VALUES (?1, ?2, ?2, 1, 0, (SELECT coalesce(max(id), 0) FROM blocks)) ON CONFLICT DO NOTHING`
	qIdentState = `SELECT active, backfill_upto IS NOT NULL, last_seen FROM idents WHERE name = ?`
	// Reactivation fixes the range of blocks the ident may have missed:
	// writes are serialised, so none is in flight.
	qReactivateIdent = `UPDATE idents SET active = 1, last_seen = ?2,
		backfill_upto = (SELECT coalesce(max(id), 0) FROM blocks) WHERE name = ?1 AND active = 0`
	qTouchIdent = `UPDATE idents SET last_seen = ?2 WHERE name = ?1`
	// Up to ?3 of an ident's queued blocks that are still expected.
	qLivePending = `SELECT count(*) FROM (SELECT 1 FROM pending p CROSS JOIN blocks b ON b.id = p.block_id
		WHERE p.ident = ?1 AND b.forced_unblock = 0 AND (b.unblock_at IS NULL OR b.unblock_at > ?2) LIMIT ?3)`
	qBackfillRange = `SELECT backfill_after, backfill_upto FROM idents WHERE name = ? AND backfill_upto IS NOT NULL`
	qBackfillEnd   = `SELECT count(*), coalesce(max(id), 0) FROM (SELECT id FROM blocks WHERE id > ?1 AND id <= ?2 ORDER BY id LIMIT ?3)`
	// One chunk of an ident's catch-up range: at most ?4 block ids read,
	// the expected ones it has no entry for queued.
	qBackfill = `INSERT INTO pending (ident, block_id)
		SELECT ?1, b.id FROM (SELECT id FROM blocks WHERE id > ?2 AND id <= ?3 ORDER BY id LIMIT ?4) c
		CROSS JOIN blocks b ON b.id = c.id
		WHERE b.forced_unblock = 0 AND (b.unblock_at IS NULL OR b.unblock_at > ?5)
		AND NOT EXISTS (SELECT 1 FROM entries e WHERE e.block_id = b.id AND e.ident = ?1)
		ON CONFLICT DO NOTHING`
	qBackfillMove = `UPDATE idents SET backfill_after = ?2, backfill_upto = ?3 WHERE name = ?1`
	// CROSS JOIN makes SQLite walk the ident's pending rows in primary-key
	// order (which is block id order) and look each block up, instead of
	// considering a scan of blocks.
	qBlockQueue = `SELECT b.id, b.cidr, b.added, b.source, b.unblock_at
		FROM pending p CROSS JOIN blocks b ON b.id = p.block_id
		WHERE p.ident = ? AND b.forced_unblock = 0 AND (b.unblock_at IS NULL OR b.unblock_at > ?)
		AND b.added > ?
		ORDER BY p.block_id LIMIT ?`
	// SetBlocked, set-based, each over a JSON array of block ids (see
	// idList): how many of them exist, the entries inserted (those the
	// ident had no entry for), their pending rows deleted, and their
	// blocks read.
	qCountBlocksIn   = `SELECT count(*) FROM blocks WHERE id IN (SELECT value FROM json_each(?1))`
	qInsertEntriesIn = `INSERT INTO entries (block_id, ident, added, unblock_at)
		SELECT b.id, ?1, ?2, b.unblock_at FROM blocks b WHERE b.id IN (SELECT value FROM json_each(?3)) ORDER BY b.id
		ON CONFLICT (block_id, ident) DO NOTHING
		RETURNING block_id`
	qDequeueEntriesIn = `DELETE FROM pending WHERE ident = ?1 AND block_id IN (SELECT value FROM json_each(?2))`
	qBlockItemsIn     = `SELECT id, cidr, added FROM blocks WHERE id IN (SELECT value FROM json_each(?1)) ORDER BY id`
	qBlockExists      = `SELECT count(*) FROM blocks WHERE id = ?`
	qDequeueEntry     = `DELETE FROM pending WHERE ident = ? AND block_id = ?`
	qUnblockQueue     = `SELECT e.id, e.block_id, b.cidr, e.ident, e.added, e.unblock_at
		FROM entries e JOIN blocks b ON b.id = e.block_id
		WHERE e.ident = ? AND e.removed IS NULL AND e.unblock_at IS NOT NULL AND e.unblock_at <= ?
		ORDER BY e.unblock_at, e.id LIMIT ?`
	qCloseEntry = `UPDATE entries SET removed = ? WHERE id = ? AND removed IS NULL`
	qEntryItem  = `SELECT e.block_id, b.cidr, e.ident, e.added, e.unblock_at, e.removed IS NULL
		FROM entries e JOIN blocks b ON b.id = e.block_id WHERE e.id = ?`
)

// BlockQueue implements queue.Store.
func (s *Store) BlockQueue(ctx context.Context, ident string, now, since time.Time, limit int) ([]queue.QueueItem, error) {
	if err := s.prepareIdent(ctx, ident, now); err != nil {
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
			until sql.NullInt64
		)
		if err := rows.Scan(&it.ID, &cidr, &added, &it.Source, &until); err != nil {
			return nil, fmt.Errorf("block queue %s: %w", ident, err)
		}
		if it.CIDR, err = parseCIDR(cidr); err != nil {
			return nil, fmt.Errorf("block queue %s: %w", ident, err)
		}
		it.Added = fromMicros(added)
		it.UnblockAt = fromNullMicros(until)
		out = append(out, it)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("block queue %s: %w", ident, err)
	}
	return out, nil
}

// prepareIdent makes ident's pending rows complete: it marks the ident
// seen (at most every IdentTouchEvery), reactivates it when inactive, and
// runs its catch-up chunks until one queues something or the range is
// done. s.idents caches the idents known active with nothing to catch up
// on, with when they were last marked seen.
func (s *Store) prepareIdent(ctx context.Context, ident string, now time.Time) error {
	if v, ok := s.idents.Load(ident); ok && now.Sub(v.(time.Time)) < queue.IdentTouchEvery {
		return nil
	}
	var (
		active, backfilling bool
		lastSeen            int64
	)
	st, err := s.readStmt(ctx, qIdentState)
	if err != nil {
		return err
	}
	err = st.QueryRowContext(ctx, ident).Scan(&active, &backfilling, &lastSeen)
	if errors.Is(err, sql.ErrNoRows) {
		return queue.ErrUnknownIdent
	}
	if err != nil {
		return err
	}
	seen := fromMicros(lastSeen)
	if !active || now.Sub(seen) >= queue.IdentTouchEvery {
		err = s.writeLow(ctx, func(t *txn) error {
			if !active {
				_, err := t.exec(qReactivateIdent, ident, micros(now))
				return err
			}
			_, err := t.exec(qTouchIdent, ident, micros(now))
			return err
		})
		if err != nil {
			return err
		}
		seen = now
	}
	backfilling = backfilling || !active
	if backfilling {
		// Catch up only while its queue is short: an ident that polls
		// without draining (parked, or failing) does not copy the whole
		// table chunk by chunk on every wake.
		var live int
		ls, err := s.readStmt(ctx, qLivePending)
		if err != nil {
			return err
		}
		if err := ls.QueryRowContext(ctx, ident, micros(now), queue.QueueLimit).Scan(&live); err != nil {
			return err
		}
		if live >= queue.QueueLimit {
			// Until it reports blocks (SetBlocked drops this), or the
			// touch interval passes, its queue stays long enough.
			s.idents.Store(ident, seen)
			return nil
		}
	}
	for backfilling {
		var queued int64
		err := s.writeLow(ctx, func(t *txn) error {
			var after int64
			var upto sql.NullInt64
			err := t.queryRow(qBackfillRange, ident).Scan(&after, &upto)
			if errors.Is(err, sql.ErrNoRows) {
				backfilling = false
				return nil
			}
			if err != nil {
				return err
			}
			var n, last int64
			if err := t.queryRow(qBackfillEnd, after, upto.Int64, queue.IdentBackfillChunk).Scan(&n, &last); err != nil {
				return err
			}
			res, err := t.exec(qBackfill, ident, after, upto.Int64, queue.IdentBackfillChunk, micros(now))
			if err != nil {
				return err
			}
			if queued, err = res.RowsAffected(); err != nil {
				return err
			}
			next := sql.NullInt64{Int64: upto.Int64, Valid: true}
			if n < queue.IdentBackfillChunk {
				last, next, backfilling = upto.Int64, sql.NullInt64{}, false
			}
			_, err = t.exec(qBackfillMove, ident, last, next)
			return err
		})
		if err != nil {
			return fmt.Errorf("backfill queue: %w", err)
		}
		if queued > 0 && backfilling {
			return nil // the rest on the next calls; not cached
		}
	}
	s.idents.Store(ident, seen)
	return nil
}

// RegisterIdent implements queue.Store.
func (s *Store) RegisterIdent(ctx context.Context, ident string, now time.Time, max int) error {
	err := s.writeLow(ctx, func(t *txn) error {
		var known, n int64
		if err := t.queryRow(`SELECT count(*) FILTER (WHERE name = ?), count(*) FROM idents`, ident).Scan(&known, &n); err != nil {
			return err
		}
		if known > 0 {
			return nil
		}
		if max > 0 && n >= int64(max) {
			return fmt.Errorf("the store holds %d idents (store.max_idents): %w", n, queue.ErrTooManyIdents)
		}
		_, err := t.exec(qRegisterIdent, ident, micros(now))
		return err
	})
	if err != nil {
		return fmt.Errorf("register ident %s: %w", ident, err)
	}
	return nil
}

// SweepIdents implements queue.Store.
func (s *Store) SweepIdents(ctx context.Context, cutoff time.Time, keep []string) (int, error) {
	keepJSON, err := json.Marshal(append([]string{}, keep...))
	if err != nil {
		return 0, err
	}
	var swept []string
	err = s.writeLow(ctx, func(t *txn) error {
		swept = swept[:0]
		rows, err := t.tx.QueryContext(ctx, `UPDATE idents SET active = 0,
			backfill_after = CASE WHEN backfill_upto IS NULL THEN (SELECT coalesce(max(id), 0) FROM blocks) ELSE backfill_after END,
			backfill_upto = NULL
			WHERE active = 1 AND last_seen < ? AND name NOT IN (SELECT value FROM json_each(?))
			RETURNING name`, micros(cutoff), string(keepJSON))
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var n string
			if err := rows.Scan(&n); err != nil {
				return err
			}
			swept = append(swept, n)
		}
		return rows.Err()
	})
	if err != nil {
		return 0, fmt.Errorf("sweep idents: %w", err)
	}
	for _, n := range swept {
		s.idents.Delete(n)
	}
	return len(swept), nil
}

// qListIdents is every ident with its waiting work (ListIdents).
const qListIdents = `
		SELECT i.name, i.added, i.last_seen, i.active, i.backfill_upto IS NOT NULL,
		  (SELECT count(*) FROM pending p CROSS JOIN blocks b ON b.id = p.block_id
		   WHERE p.ident = i.name AND b.forced_unblock = 0 AND (b.unblock_at IS NULL OR b.unblock_at > ?1)
		   AND NOT EXISTS (SELECT 1 FROM entries e WHERE e.block_id = b.id AND e.ident = i.name)),
		  (SELECT min(b.added) FROM pending p CROSS JOIN blocks b ON b.id = p.block_id
		   WHERE p.ident = i.name AND b.forced_unblock = 0 AND (b.unblock_at IS NULL OR b.unblock_at > ?1)
		   AND NOT EXISTS (SELECT 1 FROM entries e WHERE e.block_id = b.id AND e.ident = i.name)),
		  (SELECT count(*) FROM entries e WHERE e.ident = i.name AND e.removed IS NULL AND e.unblock_at <= ?1),
		  (SELECT min(e.unblock_at) FROM entries e WHERE e.ident = i.name AND e.removed IS NULL AND e.unblock_at <= ?1)
		FROM idents i ORDER BY i.name`

// ListIdents implements queue.Store.
func (s *Store) ListIdents(ctx context.Context, now time.Time) ([]queue.IdentInfo, error) {
	st, err := s.readStmt(ctx, qListIdents)
	if err != nil {
		return nil, fmt.Errorf("list idents: %w", err)
	}
	rows, err := st.QueryContext(ctx, micros(now))
	if err != nil {
		return nil, fmt.Errorf("list idents: %w", err)
	}
	defer rows.Close()
	var out []queue.IdentInfo
	for rows.Next() {
		var in queue.IdentInfo
		var added, seen int64
		var oldest, due sql.NullInt64
		if err := rows.Scan(&in.Name, &added, &seen, &in.Active, &in.Backfilling, &in.Queued, &oldest, &in.UnblockDue, &due); err != nil {
			return nil, fmt.Errorf("list idents: %w", err)
		}
		if added != 0 {
			in.Added = fromMicros(added)
		}
		if seen != 0 {
			in.LastSeen = fromMicros(seen)
		}
		in.OldestQueued = fromNullMicros(oldest)
		in.OldestDue = fromNullMicros(due)
		out = append(out, in)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list idents: %w", err)
	}
	return out, nil
}

// ForgetIdent implements queue.Store.
func (s *Store) ForgetIdent(ctx context.Context, ident string) error {
	var n int64
	err := s.writeLow(ctx, func(t *txn) error {
		res, err := t.exec(`DELETE FROM idents WHERE name = ?`, ident)
		if err != nil {
			return err
		}
		if n, err = res.RowsAffected(); err != nil || n == 0 {
			return err
		}
		_, err = t.exec(`DELETE FROM pending WHERE ident = ?`, ident)
		return err
	})
	s.idents.Delete(ident)
	if err != nil {
		return fmt.Errorf("forget ident %s: %w", ident, err)
	}
	if n == 0 {
		return fmt.Errorf("forget ident %s: %w", ident, queue.ErrNotFound)
	}
	return nil
}

// SetBlocked implements queue.Store.
func (s *Store) SetBlocked(ctx context.Context, ident string, blockIDs []int64, now time.Time) ([]queue.QueueItem, error) {
	if len(blockIDs) == 0 {
		return nil, nil
	}
	list, distinct := idList(blockIDs)
	var added []queue.QueueItem
	err := s.writeLow(ctx, func(t *txn) error {
		added = added[:0]
		// Four statements whatever the number of ids (one insert, dequeue
		// and read per id cost three statements' overhead each).
		var known int
		if err := t.queryRow(qCountBlocksIn, list).Scan(&known); err != nil {
			return err
		}
		if known != distinct {
			// The whole call fails; name the first unknown id.
			for _, id := range blockIDs {
				if err := t.mustExist(qBlockExists, "block", id); err != nil {
					return err
				}
			}
		}
		rows, err := t.query(qInsertEntriesIn, ident, micros(now), list)
		if err != nil {
			return err
		}
		var ins []int64
		for rows.Next() {
			var id int64
			if err := rows.Scan(&id); err != nil {
				rows.Close()
				return err
			}
			ins = append(ins, id)
		}
		if err := rows.Close(); err != nil {
			return err
		}
		if err := rows.Err(); err != nil {
			return err
		}
		if len(ins) == 0 {
			return nil
		}
		insList, _ := idList(ins)
		if _, err := t.exec(qDequeueEntriesIn, ident, insList); err != nil {
			return err
		}
		rows, err = t.query(qBlockItemsIn, insList)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var it queue.QueueItem
			var cidr string
			var at int64
			if err := rows.Scan(&it.ID, &cidr, &at); err != nil {
				return err
			}
			if it.CIDR, err = parseCIDR(cidr); err != nil {
				return fmt.Errorf("block %d: %w", it.ID, err)
			}
			it.Added = fromMicros(at)
			added = append(added, it)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, fmt.Errorf("set blocked %s: %w", ident, err)
	}
	if len(added) > 0 {
		// Its queue got shorter: a catching-up ident copies its next
		// chunk at its next call.
		s.idents.Delete(ident)
	}
	return added, nil
}

// idList is ids as a JSON array (for json_each) and how many distinct ids
// it holds.
func idList(ids []int64) (string, int) {
	sorted := slices.Clone(ids)
	slices.Sort(sorted)
	sorted = slices.Compact(sorted)
	b := make([]byte, 0, 2+len(sorted)*8)
	b = append(b, '[')
	for i, id := range sorted {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendInt(b, id, 10)
	}
	return string(append(b, ']')), len(sorted)
}

// SkipBlocks implements queue.Store.
func (s *Store) SkipBlocks(ctx context.Context, ident string, blockIDs []int64) error {
	err := s.writeLow(ctx, func(t *txn) error {
		for _, id := range blockIDs {
			if _, err := t.exec(qDequeueEntry, ident, id); err != nil {
				return fmt.Errorf("block %d: %w", id, err)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("skip blocks %s: %w", ident, err)
	}
	// Its queue got shorter, as after SetBlocked.
	s.idents.Delete(ident)
	return nil
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
	err := s.writeLow(ctx, func(t *txn) error {
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
	q.WriteString(`SELECT e.id, e.block_id, b.cidr, e.ident, e.added, e.removed, e.unblock_at, b.source, b.added
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
			added, blockAdded  int64
			removed, unblockAt sql.NullInt64
		)
		if err := rows.Scan(&e.ID, &e.BlockID, &cidr, &e.Ident, &added, &removed, &unblockAt, &e.Source, &blockAdded); err != nil {
			return fmt.Errorf("list entries: %w", err)
		}
		if e.CIDR, err = parseCIDR(cidr); err != nil {
			return fmt.Errorf("list entries: %w", err)
		}
		e.Added = fromMicros(added)
		e.Removed = fromNullMicros(removed)
		e.UnblockAt = fromNullMicros(unblockAt)
		e.BlockAdded = fromMicros(blockAdded)
		if err := fn(e); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("list entries: %w", err)
	}
	return nil
}
