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
SELECT b.id, b.cidr, b.added
FROM pending p CROSS JOIN LATERAL (
	SELECT b.id, b.cidr, b.added FROM blocks b
	WHERE b.id = p.block_id
	  AND ` + expectedAt("$2") + `
	  AND ($3::timestamptz IS NULL OR b.added > $3)
	  AND NOT EXISTS (SELECT 1 FROM entries e WHERE e.block_id = b.id AND e.ident = $1)
	OFFSET 0
) b
WHERE p.ident = $1
ORDER BY p.ident, p.block_id
LIMIT $4`

// Registration is in two steps. First the ident is inserted under the
// exclusive idents lock: that waits for every block-creating transaction in
// flight (they hold it shared), and every later one sees the new ident and
// queues its blocks for it. Then, after that commit and without the lock,
// the backfill queues every expected block the ident has no entry for: its
// snapshot holds every block committed before the registration. Block
// creation is thus stalled only for the insert, not for a backfill of maybe
// a hundred thousand rows. Until the backfill has committed the ident is
// not ready, so a failure in between is repaired by the next call.
const sqlRegisterIdent = `INSERT INTO idents (name) VALUES ($1) ON CONFLICT DO NOTHING`

var sqlBackfillIdent = `
WITH queued AS (
	INSERT INTO pending (ident, block_id)
	SELECT $1, b.id FROM blocks b
	WHERE ` + expectedAt("$2") + `
	  AND NOT EXISTS (SELECT 1 FROM entries e WHERE e.block_id = b.id AND e.ident = $1)
	ON CONFLICT DO NOTHING
)
UPDATE idents SET ready = true WHERE name = $1`

// BlockQueue implements queue.Store: one round trip for a known ident. The
// first time an ident asks it is registered (see sqlRegisterIdent).
func (s *Store) BlockQueue(ctx context.Context, ident string, now, since time.Time, limit int) ([]queue.QueueItem, error) {
	now = now.UTC()
	if limit <= 0 {
		return nil, nil
	}
	var exists, ready bool
	var items []queue.QueueItem
	read := func(rows pgx.Rows) error {
		items = items[:0]
		for rows.Next() {
			var it queue.QueueItem
			if err := rows.Scan(&it.ID, &it.CIDR, &it.Added); err != nil {
				return err
			}
			it.Added = it.Added.UTC()
			items = append(items, it)
		}
		return rows.Err()
	}
	b := &pgx.Batch{}
	b.Queue(`SELECT count(*) > 0, coalesce(bool_and(ready), false) FROM idents WHERE name = $1`, ident).QueryRow(func(row pgx.Row) error {
		return row.Scan(&exists, &ready)
	})
	b.Queue(sqlBlockQueue, ident, now, tsIn(since), limit).Query(read)
	if err := s.pool.SendBatch(ctx, b).Close(); err != nil {
		return nil, fmt.Errorf("block queue %s: %w", ident, err)
	}
	if ready {
		return items, nil
	}

	if !exists {
		err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1, $2)`, lockClass, lockIdents); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, sqlRegisterIdent, ident)
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("register ident %s: %w", ident, err)
		}
	}
	// Values inlined: the backfill's plan depends on how many blocks are
	// expected and how many entries the ident already has.
	if _, err := s.pool.Exec(ctx, sqlBackfillIdent, valueSensitive(ident, now)...); err != nil {
		return nil, fmt.Errorf("backfill block queue of %s: %w", ident, err)
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

// One statement checks the ids and writes, so an unknown id leaves
// everything as it was. chk is the outer side of the last join, with no
// filter on the inner side, so that it is always evaluated (a filter on
// x would let the planner scan an empty x first and never raise). Entries are inserted in block id order so that
// concurrent calls lock index entries in the same order. It returns the
// blocks whose entry it created.
const sqlSetBlocked = `
WITH req AS (
	SELECT DISTINCT id FROM unnest($2::int8[]) AS r(id)
), b AS (
	SELECT blocks.id, blocks.cidr, blocks.added, blocks.unblock_at FROM blocks JOIN req USING (id)
), chk AS (
	SELECT CASE WHEN (SELECT count(*) FROM b) = (SELECT count(*) FROM req) THEN true
	       ELSE bhrd_not_found('unknown block ids: ' ||
	            (SELECT string_agg(id::text, ',' ORDER BY id) FROM req WHERE id NOT IN (SELECT id FROM b))) END AS ok
), ins AS (
	INSERT INTO entries (block_id, ident, added, unblock_at)
	SELECT b.id, $1, $3, b.unblock_at FROM b, chk WHERE chk.ok ORDER BY b.id
	ON CONFLICT (block_id, ident) DO NOTHING
	RETURNING block_id
), dq AS (
	DELETE FROM pending p USING b WHERE p.ident = $1 AND p.block_id = b.id
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
	if len(blockIDs) == 0 {
		return nil, nil
	}
	rows, err := s.pool.Query(ctx, sqlSetBlocked, ident, blockIDs, now.UTC())
	if err != nil {
		return nil, mapErr("set blocked "+ident, err, queue.ErrNotFound)
	}
	var added []queue.QueueItem
	for rows.Next() {
		var id *int64
		var it queue.QueueItem
		var cidr *netip.Prefix
		var at *time.Time
		if err := rows.Scan(&id, &cidr, &at); err != nil {
			rows.Close()
			return nil, mapErr("set blocked "+ident, err, queue.ErrNotFound)
		}
		if id == nil {
			continue // chk's row when nothing was inserted
		}
		it.ID, it.CIDR, it.Added = *id, *cidr, at.UTC()
		added = append(added, it)
	}
	if err := rows.Err(); err != nil {
		return nil, mapErr("set blocked "+ident, err, queue.ErrNotFound)
	}
	if len(added) > 0 {
		s.notifyBlocks()
	}
	return added, nil
}

var sqlUnblockQueue = `
SELECT e.id, e.block_id, b.cidr, e.ident, e.added, e.unblock_at
FROM entries e JOIN blocks b ON b.id = e.block_id
WHERE e.ident = $1 AND e.removed IS NULL AND e.unblock_at <= $2
ORDER BY e.unblock_at, e.id
LIMIT $3`

// UnblockQueue implements queue.Store.
func (s *Store) UnblockQueue(ctx context.Context, ident string, now time.Time, limit int) ([]queue.UnblockItem, error) {
	if limit <= 0 {
		return nil, nil
	}
	rows, err := s.pool.Query(ctx, sqlUnblockQueue, ident, now.UTC(), limit)
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

// An entry of a refused ident aborts the statement (bhrd_reserved) before
// anything is written. It returns the entries it closed.
const sqlSetUnblocked = `
WITH req AS (
	SELECT DISTINCT id FROM unnest($1::int8[]) AS r(id)
), found AS (
	SELECT e.id, e.block_id, e.ident, e.added, e.unblock_at, e.removed FROM entries e
	WHERE e.id IN (SELECT id FROM req) ORDER BY e.id FOR UPDATE
), chk AS (
	SELECT CASE WHEN (SELECT count(*) FROM found) <> (SELECT count(*) FROM req) THEN
	            bhrd_not_found('unknown entry ids: ' ||
	            (SELECT string_agg(id::text, ',' ORDER BY id) FROM req WHERE id NOT IN (SELECT id FROM found)))
	       WHEN EXISTS (SELECT 1 FROM found WHERE ident = ANY($3::text[])) THEN
	            bhrd_reserved((SELECT min(ident) FROM found WHERE ident = ANY($3::text[])))
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
	if len(entryIDs) == 0 {
		return nil, nil
	}
	if refuse == nil {
		refuse = []string{}
	}
	rows, err := s.pool.Query(ctx, sqlSetUnblocked, entryIDs, now.UTC(), refuse)
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

func mapSetUnblocked(err error) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) && pe.Code == codeReserved {
		return &queue.ReservedIdentError{Ident: pe.Message}
	}
	return mapErr("set unblocked", err, queue.ErrNotFound)
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
	q.WriteString(`SELECT e.id, e.block_id, b.cidr, e.ident, e.added, e.removed, e.unblock_at
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
		if err := rows.Scan(&e.ID, &e.BlockID, &e.CIDR, &e.Ident, &e.Added, &removed, &unblockAt); err != nil {
			return fmt.Errorf("list entries: %w", err)
		}
		e.Added, e.Removed, e.UnblockAt = e.Added.UTC(), tsOut(removed), tsOut(unblockAt)
		if err := fn(e); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("list entries: %w", err)
	}
	return nil
}
