package pgstore

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/bhrd/bhrd/pkg/queue"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
)

// codeReserved is the SQLSTATE bhrd_reserved raises.
const codeReserved = "BH409"

// The block queue is an index range scan of pending(ident, block_id),
// joined row by row to the block and its entry check (which only matters
// for a row left by a set_blocked that raced with the ident's
// registration), stopping at the limit. The LATERAL ... OFFSET 0 keeps the
// join in that shape: flattened, the generic plan follows pending's
// statistics, and those of a queue that held 100,000 blocks (until the
// next analyze) made it a hash anti join of every expected block with
// every entry of the ident: 50 ms a call on an empty queue.
var sqlBlockQueue = `
SELECT b.id, b.cidr, b.added, b.source, b.unblock_at
FROM pending p CROSS JOIN LATERAL (
	SELECT b.id, b.cidr, b.added, b.source, b.unblock_at FROM blocks b
	WHERE b.id = p.block_id
	  AND ` + expectedAt("$2") + `
	  AND ($3::timestamptz IS NULL OR b.added > $3)
	  AND NOT EXISTS (SELECT 1 FROM entries e WHERE e.block_id = b.id AND e.ident = $1)
	OFFSET 0
) b
WHERE p.ident = $1
ORDER BY p.ident, p.block_id
LIMIT $4`

// Registration (RegisterIdent) and reactivation take the idents lock
// exclusively: that waits for every block-creating transaction in flight
// (they hold it shared), and every later one sees the ident active and
// queues its blocks for it. The range of blocks it may have missed is
// fixed under the same lock ((backfill_after, max(id)]), and is then
// queued for it a chunk per statement, without the lock (sqlBackfillChunk),
// so that block creation is stalled only for the one-row update, not for a
// backfill of maybe a million rows.
const sqlRegisterIdent = `
INSERT INTO idents (name, added, last_seen, active, backfill_after, backfill_upto)
SELECT $1, $2, $2, true, 0, (SELECT coalesce(max(id), 0) FROM blocks)
WHERE $3::int = 0 OR (SELECT count(*) FROM idents) < $3
ON CONFLICT DO NOTHING`

const sqlReactivateIdent = `
UPDATE idents SET active = true, last_seen = $2,
	backfill_upto = (SELECT coalesce(max(id), 0) FROM blocks)
WHERE name = $1 AND NOT active`

// A sweep marks idle idents inactive; the blocks queued for them up to
// now stay queued, so their catch-up range starts at the newest block
// (or where an unfinished backfill stood).
const sqlSweepIdents = `
UPDATE idents SET active = false,
	backfill_after = CASE WHEN backfill_upto IS NULL THEN (SELECT coalesce(max(id), 0) FROM blocks) ELSE backfill_after END,
	backfill_upto = NULL
WHERE active AND last_seen < $1 AND name <> ALL($2::text[])`

// sqlBackfillChunk queues for ident $1 the expected blocks (at $2) it has
// no entry for among the next $3 ids of its catch-up range, and moves the
// range on (clearing it at its end). It returns how many it queued and
// whether the range is done. The chunk is read LATERAL to the range, so
// that its bounds are the index scan's conditions: as a join filter
// ("FROM blocks b, st WHERE b.id > st.backfill_after"), the scan began at
// the first block every time, and a catch-up of a million ran
// quadratically (a chunk 874,000 ids in read 904,000 rows: 511 ms).
var sqlBackfillChunk = `
WITH st AS (
	SELECT backfill_after, backfill_upto FROM idents
	WHERE name = $1 AND backfill_upto IS NOT NULL FOR UPDATE
), chunk AS (
	SELECT c.id, c.expected FROM st CROSS JOIN LATERAL (
		SELECT b.id, ` + expectedAt("$2") + ` AS expected FROM blocks b
		WHERE b.id > st.backfill_after AND b.id <= st.backfill_upto
		ORDER BY b.id LIMIT $3) c
), queued AS (
	INSERT INTO pending (ident, block_id)
	SELECT $1, c.id FROM chunk c
	WHERE c.expected AND NOT EXISTS (SELECT 1 FROM entries e WHERE e.block_id = c.id AND e.ident = $1)
	ON CONFLICT DO NOTHING
	RETURNING 1
), last AS (
	SELECT count(*) AS n, max(id) AS id FROM chunk
), upd AS (
	UPDATE idents i SET
		backfill_after = CASE WHEN last.n < $3 THEN st.backfill_upto ELSE last.id END,
		backfill_upto = CASE WHEN last.n < $3 THEN NULL ELSE st.backfill_upto END
	FROM st, last WHERE i.name = $1
)
SELECT (SELECT count(*) FROM queued), (SELECT n FROM last) < $3 OR NOT EXISTS (SELECT 1 FROM st)`

// sqlLivePending counts up to $3 of ident's queued blocks still expected.
var sqlLivePending = `SELECT count(*) FROM (SELECT 1 FROM pending p JOIN blocks b ON b.id = p.block_id
	WHERE p.ident = $1 AND ` + expectedAt("$2") + ` LIMIT $3) x`

// BlockQueue implements queue.Store: one round trip for an active ident
// seen lately with nothing to catch up on.
func (s *Store) BlockQueue(ctx context.Context, ident string, now, since time.Time, limit int) ([]queue.QueueItem, error) {
	now = now.UTC()
	if limit <= 0 {
		return nil, nil
	}
	var (
		exists, ready, active, stale bool
		items                        []queue.QueueItem
	)
	read := func(rows pgx.Rows) error {
		items = items[:0]
		for rows.Next() {
			var it queue.QueueItem
			var until pgtype.Timestamptz
			if err := rows.Scan(&it.ID, &it.CIDR, &it.Added, &it.Source, &until); err != nil {
				return err
			}
			it.Added, it.UnblockAt = it.Added.UTC(), tsOut(until)
			items = append(items, it)
		}
		return rows.Err()
	}
	b := &pgx.Batch{}
	b.Queue(`SELECT count(*) > 0, coalesce(bool_and(active AND backfill_upto IS NULL), false),
		coalesce(bool_and(active), false), coalesce(bool_and(last_seen < $2), false)
		FROM idents WHERE name = $1`, ident, now.Add(-queue.IdentTouchEvery)).QueryRow(func(row pgx.Row) error {
		return row.Scan(&exists, &ready, &active, &stale)
	})
	b.Queue(sqlBlockQueue, ident, now, tsIn(since), limit).Query(read)
	if err := s.pool.SendBatch(ctx, b).Close(); err != nil {
		return nil, fmt.Errorf("block queue %s: %w", ident, err)
	}
	if !exists {
		return nil, fmt.Errorf("block queue %s: %w", ident, queue.ErrUnknownIdent)
	}
	if ready && !stale {
		return items, nil
	}
	if !active {
		err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1, $2)`, lockClass, lockIdents); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, sqlReactivateIdent, ident, now)
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("reactivate ident %s: %w", ident, err)
		}
	} else if stale {
		// last_seen only steers idling (hours): its commit need not wait
		// for the WAL flush, which would delay the items this call
		// returns (an enforcer's next install) by an fsync.
		if _, err := s.pool.Exec(ctx, `WITH c AS (SELECT set_config('synchronous_commit', 'off', true) AS v)
			UPDATE idents SET last_seen = $2 FROM c WHERE name = $1 AND c.v IS NOT NULL`, ident, now); err != nil {
			return nil, fmt.Errorf("block queue %s: %w", ident, err)
		}
	}
	if ready {
		return items, nil
	}
	// Catch up only while its queue is short: an ident that polls without
	// draining (parked with added_since, or failing) does not copy the
	// whole table chunk by chunk on every wake. A full page read above is
	// live queued blocks already, so it needs no count.
	if active && len(items) >= queue.QueueLimit {
		return items, nil
	}
	var live int
	if err := s.pool.QueryRow(ctx, sqlLivePending, ident, now, queue.QueueLimit).Scan(&live); err != nil {
		return nil, fmt.Errorf("block queue %s: %w", ident, err)
	}
	if active && live >= queue.QueueLimit {
		return items, nil
	}
	if err := s.backfill(ctx, ident, now); err != nil {
		return nil, err
	}
	rows, err := s.pool.Query(ctx, sqlBlockQueue, ident, now, tsIn(since), limit)
	if err != nil {
		return nil, fmt.Errorf("block queue %s: %w", ident, err)
	}
	if err := read(rows); err != nil {
		return nil, fmt.Errorf("block queue %s: %w", ident, err)
	}
	return items, nil
}

// backfill runs catch-up chunks until one queues something or the range
// is done: each is one short statement, so a large range never holds a
// lock or a snapshot for long.
func (s *Store) backfill(ctx context.Context, ident string, now time.Time) error {
	for {
		var queued int64
		var done bool
		// Values inlined: the chunk's plan depends on how many blocks are
		// expected and how many entries the ident already has.
		if err := s.pool.QueryRow(ctx, sqlBackfillChunk, valueSensitive(ident, now, queue.IdentBackfillChunk)...).Scan(&queued, &done); err != nil {
			return fmt.Errorf("backfill block queue of %s: %w", ident, err)
		}
		if queued > 0 || done {
			return nil
		}
	}
}

// RegisterIdent implements queue.Store.
func (s *Store) RegisterIdent(ctx context.Context, ident string, now time.Time, max int) error {
	var added int64
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1, $2)`, lockClass, lockIdents); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, sqlRegisterIdent, ident, now.UTC(), max)
		if err != nil {
			return err
		}
		if added = tag.RowsAffected(); added == 0 {
			var known bool
			if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM idents WHERE name = $1)`, ident).Scan(&known); err != nil {
				return err
			}
			if !known {
				return fmt.Errorf("register ident %s: the store holds %d idents (store.max_idents): %w", ident, max, queue.ErrTooManyIdents)
			}
		}
		return nil
	})
	if err != nil {
		if errors.Is(err, queue.ErrTooManyIdents) {
			return err
		}
		return fmt.Errorf("register ident %s: %w", ident, err)
	}
	return nil
}

// SweepIdents implements queue.Store. The exclusive idents lock is taken
// only when some ident is due, so a quiet sweep never stalls a block.
func (s *Store) SweepIdents(ctx context.Context, cutoff time.Time, keep []string) (int, error) {
	if keep == nil {
		keep = []string{}
	}
	var due bool
	if err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM idents WHERE active AND last_seen < $1 AND name <> ALL($2::text[]))`,
		cutoff.UTC(), keep).Scan(&due); err != nil || !due {
		if err != nil {
			return 0, fmt.Errorf("sweep idents: %w", err)
		}
		return 0, nil
	}
	var n int64
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1, $2)`, lockClass, lockIdents); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, sqlSweepIdents, cutoff.UTC(), keep)
		n = tag.RowsAffected()
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("sweep idents: %w", err)
	}
	return int(n), nil
}

// ListIdents implements queue.Store.
func (s *Store) ListIdents(ctx context.Context, now time.Time) ([]queue.IdentInfo, error) {
	rows, err := s.pool.Query(ctx, `
SELECT i.name, i.added, i.last_seen, i.active, i.backfill_upto IS NOT NULL, q.n, q.oldest, u.n, u.oldest
FROM idents i CROSS JOIN LATERAL (
	SELECT count(*) AS n, min(b.added) AS oldest FROM pending p JOIN blocks b ON b.id = p.block_id
	WHERE p.ident = i.name AND `+expectedAt("$1")+`
	  AND NOT EXISTS (SELECT 1 FROM entries e WHERE e.block_id = b.id AND e.ident = i.name)
) q CROSS JOIN LATERAL (
	SELECT count(*) AS n, min(e.unblock_at) AS oldest FROM entries e
	WHERE e.ident = i.name AND e.removed IS NULL AND e.unblock_at <= $1
) u
ORDER BY i.name`, now.UTC())
	if err != nil {
		return nil, fmt.Errorf("list idents: %w", err)
	}
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (queue.IdentInfo, error) {
		var in queue.IdentInfo
		var oldest, due pgtype.Timestamptz
		err := row.Scan(&in.Name, &in.Added, &in.LastSeen, &in.Active, &in.Backfilling, &in.Queued, &oldest, &in.UnblockDue, &due)
		in.Added, in.LastSeen, in.OldestQueued, in.OldestDue = in.Added.UTC(), in.LastSeen.UTC(), tsOut(oldest), tsOut(due)
		return in, err
	})
	if err != nil {
		return nil, fmt.Errorf("list idents: %w", err)
	}
	return out, nil
}

// ForgetIdent implements queue.Store.
func (s *Store) ForgetIdent(ctx context.Context, ident string) error {
	var n int64
	var reserved bool
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var free bool
		if err := tx.QueryRow(ctx, `SELECT pg_try_advisory_xact_lock_shared(`+identKey("$1")+`)`, ident).Scan(&free); err != nil {
			return err
		}
		if reserved = !free; reserved {
			return nil // another process's enforcer owns it
		}
		tag, err := tx.Exec(ctx, `DELETE FROM idents WHERE name = $1`, ident)
		if err != nil {
			return err
		}
		if n = tag.RowsAffected(); n == 0 {
			return nil
		}
		_, err = tx.Exec(ctx, `DELETE FROM pending WHERE ident = $1`, ident)
		return err
	})
	if err != nil {
		return fmt.Errorf("forget ident %s: %w", ident, err)
	}
	if reserved {
		return &queue.ReservedIdentError{Ident: ident}
	}
	if n == 0 {
		return fmt.Errorf("forget ident %s: %w", ident, queue.ErrNotFound)
	}
	return nil
}

// sqlDeletePending deletes the pending rows (ident, blockID) for each row
// of from, keyed: one probe of the primary key per pair, whatever the
// statistics say (LATERAL ... OFFSET 0), and the delete by the rows'
// ctids (pending rows are never updated). Planned as a join, or as
// "block_id = ANY(...)", it followed the statistics into scans of every
// pending row (see sqlSetBlocked and sqlUnblockNow).
func sqlDeletePending(from, ident, blockID string) string {
	return `DELETE FROM pending WHERE ctid = ANY(ARRAY(
		SELECT q.ctid FROM ` + from + ` CROSS JOIN LATERAL (
			SELECT p.ctid FROM pending p WHERE p.ident = ` + ident + ` AND p.block_id = ` + blockID + ` OFFSET 0) q))`
}

// One statement checks the ids and writes, so an unknown id leaves
// everything as it was. Unless $4 (the caller is the ident's own
// enforcer), an ident another process's enforcer owns (see owner.go) is
// refused first. chk is the outer side of the last join, with no
// filter on the inner side, so that it is always evaluated (a filter on
// x would let the planner scan an empty x first and never raise). Entries are inserted in block id order so that
// concurrent calls lock index entries in the same order. It returns the
// blocks whose entry it created.
var sqlSetBlocked = `
WITH req AS (
	SELECT DISTINCT id FROM unnest($2::int8[]) AS r(id)
), b AS (
	-- One primary-key probe per id (LATERAL ... OFFSET 0): as a join, a
	-- never analyzed or grown table made it a hash join over a scan of
	-- every block.
	SELECT x.id, x.cidr, x.added, x.unblock_at FROM req CROSS JOIN LATERAL (
		SELECT blocks.id, blocks.cidr, blocks.added, blocks.unblock_at FROM blocks WHERE blocks.id = req.id OFFSET 0) x
), chk AS (
	SELECT CASE WHEN NOT $4::bool AND NOT pg_try_advisory_xact_lock_shared(` + identKey("$1") + `) THEN bhrd_reserved($1)
	       WHEN (SELECT count(*) FROM b) = (SELECT count(*) FROM req) THEN true
	       ELSE bhrd_not_found('unknown block ids: ' ||
	            (SELECT string_agg(id::text, ',' ORDER BY id) FROM req WHERE id NOT IN (SELECT id FROM b))) END AS ok
), ins AS (
	INSERT INTO entries (block_id, ident, added, unblock_at)
	SELECT b.id, $1, $3, b.unblock_at FROM b, chk WHERE chk.ok ORDER BY b.id
	ON CONFLICT (block_id, ident) DO NOTHING
	RETURNING block_id
), dq AS (
	-- Keyed (sqlDeletePending). A join with b was
	-- planned as a scan of every pending row of the ident when they
	-- described a queue emptied but not vacuumed, and "block_id =
	-- ANY($2)" as a scan of the ident's rows filtered by the list when
	-- the table had never been analyzed (3.5 ms a call with 20,000
	-- queued). An unknown id aborts the statement in chk.
	` + sqlDeletePending("req", "$1", "req.id") + `
)
SELECT x.id, x.cidr, x.added FROM chk LEFT JOIN LATERAL (
	SELECT b.id, b.cidr, b.added FROM ins JOIN b ON b.id = ins.block_id
) x ON true
ORDER BY x.id`

// SetBlocked implements queue.Store in one statement (one implicit
// transaction). New entries notify "blocks" after the commit (see
// runNotifier): another bhrd's expiry timer must learn of their
// unblock_at.
func (s *Store) SetBlocked(ctx context.Context, ident string, blockIDs []int64, now time.Time) ([]queue.QueueItem, error) {
	return retryConflicts(ctx, func() ([]queue.QueueItem, error) { return s.setBlocked(ctx, ident, blockIDs, now) })
}

func (s *Store) setBlocked(ctx context.Context, ident string, blockIDs []int64, now time.Time) ([]queue.QueueItem, error) {
	if len(blockIDs) == 0 {
		return nil, nil
	}
	own := queue.ActorFrom(ctx).EnforcerIdent() == ident
	rows, err := s.pool.Query(ctx, sqlSetBlocked, ident, blockIDs, now.UTC(), own)
	if err != nil {
		return nil, mapReported("set blocked "+ident, err)
	}
	var added []queue.QueueItem
	for rows.Next() {
		var id *int64
		var it queue.QueueItem
		var cidr *netip.Prefix
		var at *time.Time
		if err := rows.Scan(&id, &cidr, &at); err != nil {
			rows.Close()
			return nil, mapReported("set blocked "+ident, err)
		}
		if id == nil {
			continue // chk's row when nothing was inserted
		}
		it.ID, it.CIDR, it.Added = *id, *cidr, at.UTC()
		added = append(added, it)
	}
	if err := rows.Err(); err != nil {
		return nil, mapReported("set blocked "+ident, err)
	}
	if len(added) > 0 {
		s.notifyBlocks()
	}
	s.pendingDeleted(int64(len(added)))
	return added, nil
}

// SkipBlocks implements queue.Store.
func (s *Store) SkipBlocks(ctx context.Context, ident string, blockIDs []int64) error {
	if len(blockIDs) == 0 {
		return nil
	}
	tag, err := s.pool.Exec(ctx, sqlDeletePending("unnest($2::int8[]) AS r(id)", "$1", "r.id"), ident, blockIDs)
	if err != nil {
		return mapErr("skip blocks "+ident, err, queue.ErrNotFound)
	}
	s.pendingDeleted(tag.RowsAffected())
	return nil
}

// The unblock queue is planned on every call (values inlined), with the
// table as large as it is then, and each entry's block is one primary-key
// probe (LATERAL ... OFFSET 0). Prepared once, its generic plan was made
// when the connection first ran it and kept until the next analyze: one
// made after autoanalyze saw a few dozen entries (a fresh store's first
// drain) was a scan and sort of every entry, merge-joined with blocks,
// and stayed so while an ident's entries grew to hundreds of thousands
// (20 ms a call for the first minute of a new ident's catch-up of a
// million); and as a join, an estimate of one due entry made it a merge
// join walking blocks' primary key from the first due block to the last.
var sqlUnblockQueue = `
SELECT e.id, e.block_id, b.cidr, e.ident, e.added, e.unblock_at
FROM (
	SELECT e.id, e.block_id, e.ident, e.added, e.unblock_at FROM entries e
	WHERE e.ident = $1 AND e.removed IS NULL AND e.unblock_at <= $2
	ORDER BY e.unblock_at, e.id
	LIMIT $3
) e CROSS JOIN LATERAL (SELECT b.cidr FROM blocks b WHERE b.id = e.block_id OFFSET 0) b
ORDER BY e.unblock_at, e.id`

// UnblockQueue implements queue.Store.
func (s *Store) UnblockQueue(ctx context.Context, ident string, now time.Time, limit int) ([]queue.UnblockItem, error) {
	if limit <= 0 {
		return nil, nil
	}
	rows, err := s.pool.Query(ctx, sqlUnblockQueue, valueSensitive(ident, now, limit)...)
	if err != nil {
		return nil, fmt.Errorf("unblock queue %s: %w", ident, err)
	}
	items, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (queue.UnblockItem, error) {
		var it queue.UnblockItem
		err := row.Scan(&it.ID, &it.BlockID, &it.CIDR, &it.Ident, &it.Added, &it.UnblockAt)
		it.Added, it.UnblockAt = it.Added.UTC(), it.UnblockAt.UTC()
		return it, err
	})
	if err != nil {
		return nil, fmt.Errorf("unblock queue %s: %w", ident, err)
	}
	return items, nil
}

// An entry of a refused ident, or of an ident another process's enforcer
// owns (unless it is $4, the caller's own), aborts the statement
// (bhrd_reserved) before anything is written. It returns the entries it closed.
var sqlSetUnblocked = `
WITH req AS (
	SELECT DISTINCT id FROM unnest($1::int8[]) AS r(id)
), found AS (
	SELECT e.id, e.block_id, e.ident, e.added, e.unblock_at, e.removed FROM entries e
	WHERE e.id IN (SELECT id FROM req) ORDER BY e.id FOR UPDATE
), owned AS (
	SELECT d.ident FROM (SELECT DISTINCT ident FROM found) d
	WHERE d.ident <> $4 AND NOT pg_try_advisory_xact_lock_shared(` + identKey("d.ident") + `)
), chk AS (
	SELECT CASE WHEN (SELECT count(*) FROM found) <> (SELECT count(*) FROM req) THEN
	            bhrd_not_found('unknown entry ids: ' ||
	            (SELECT string_agg(id::text, ',' ORDER BY id) FROM req WHERE id NOT IN (SELECT id FROM found)))
	       WHEN EXISTS (SELECT 1 FROM found WHERE ident = ANY($3::text[])) THEN
	            bhrd_reserved((SELECT min(ident) FROM found WHERE ident = ANY($3::text[])))
	       WHEN EXISTS (SELECT 1 FROM owned) THEN bhrd_reserved((SELECT min(ident) FROM owned))
	       ELSE true END AS ok
), upd AS (
	UPDATE entries e SET removed = $2
	FROM found f, chk
	WHERE chk.ok AND e.id = f.id AND f.removed IS NULL
	RETURNING e.id
)
SELECT x.id, x.block_id, x.cidr, x.ident, x.added, x.unblock_at FROM chk LEFT JOIN LATERAL (
	SELECT f.id, f.block_id, b.cidr, f.ident, f.added, f.unblock_at
	FROM upd JOIN found f ON f.id = upd.id JOIN blocks b ON b.id = f.block_id
) x ON true
ORDER BY x.id`

// SetUnblocked implements queue.Store.
func (s *Store) SetUnblocked(ctx context.Context, entryIDs []int64, now time.Time, refuse []string) ([]queue.UnblockItem, error) {
	return retryConflicts(ctx, func() ([]queue.UnblockItem, error) { return s.setUnblocked(ctx, entryIDs, now, refuse) })
}

func (s *Store) setUnblocked(ctx context.Context, entryIDs []int64, now time.Time, refuse []string) ([]queue.UnblockItem, error) {
	if len(entryIDs) == 0 {
		return nil, nil
	}
	if refuse == nil {
		refuse = []string{}
	}
	rows, err := s.pool.Query(ctx, sqlSetUnblocked, entryIDs, now.UTC(), refuse, queue.ActorFrom(ctx).EnforcerIdent())
	if err != nil {
		return nil, mapSetUnblocked(err)
	}
	var closed []queue.UnblockItem
	for rows.Next() {
		var (
			id, blockID *int64
			cidr        *netip.Prefix
			ident       *string
			added       *time.Time
			unblockAt   pgtype.Timestamptz
		)
		if err := rows.Scan(&id, &blockID, &cidr, &ident, &added, &unblockAt); err != nil {
			rows.Close()
			return nil, mapSetUnblocked(err)
		}
		if id == nil {
			continue // chk's row when nothing was closed
		}
		closed = append(closed, queue.UnblockItem{ID: *id, BlockID: *blockID, CIDR: *cidr, Ident: *ident,
			Added: added.UTC(), UnblockAt: tsOut(unblockAt)})
	}
	if err := rows.Err(); err != nil {
		return nil, mapSetUnblocked(err)
	}
	return closed, nil
}

func mapSetUnblocked(err error) error { return mapReported("set unblocked", err) }

// mapReported maps the errors of a report: bhrd_reserved to a
// ReservedIdentError, bhrd_not_found to ErrNotFound.
func mapReported(op string, err error) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == codeReserved {
		return &queue.ReservedIdentError{Ident: pe.Message}
	}
	return mapErr(op, err, queue.ErrNotFound)
}

// ListEntries implements queue.Store, streaming like ListBlocks.
func (s *Store) ListEntries(ctx context.Context, opts queue.EntryListOptions, fn func(queue.Entry) error) error {
	var a args
	var where []string
	if opts.BlockID != 0 {
		where = append(where, `e.block_id = `+a.add(opts.BlockID))
	}
	if opts.Ident != "" {
		where = append(where, `e.ident = `+a.add(opts.Ident))
	}
	if opts.OpenOnly {
		where = append(where, `e.removed IS NULL`)
	}
	if opts.AfterID != 0 {
		where = append(where, `e.id > `+a.add(opts.AfterID))
	}
	var q strings.Builder
	q.WriteString(`SELECT e.id, e.block_id, b.cidr, e.ident, e.added, e.removed, e.unblock_at, b.source, b.added
		FROM entries e JOIN blocks b ON b.id = e.block_id`)
	if len(where) > 0 {
		q.WriteString(` WHERE ` + strings.Join(where, ` AND `))
	}
	q.WriteString(` ORDER BY e.id`)
	if opts.Offset > 0 {
		q.WriteString(` OFFSET ` + a.add(opts.Offset))
	}
	if opts.Limit > 0 {
		q.WriteString(` LIMIT ` + a.add(opts.Limit))
	}
	rows, err := s.pool.Query(ctx, q.String(), valueSensitive(a...)...)
	if err != nil {
		return fmt.Errorf("list entries: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var e queue.Entry
		var removed, unblockAt pgtype.Timestamptz
		if err := rows.Scan(&e.ID, &e.BlockID, &e.CIDR, &e.Ident, &e.Added, &removed, &unblockAt, &e.Source, &e.BlockAdded); err != nil {
			return fmt.Errorf("list entries: %w", err)
		}
		e.Added, e.Removed, e.UnblockAt, e.BlockAdded = e.Added.UTC(), tsOut(removed), tsOut(unblockAt), e.BlockAdded.UTC()
		if err := fn(e); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("list entries: %w", err)
	}
	return nil
}
