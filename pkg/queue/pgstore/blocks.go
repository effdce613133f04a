package pgstore

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/bhrd/bhrd/pkg/queue"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
)

const blockCols = `id, cidr, who, source, why, added, unblock_at, skip_whitelist, forced_unblock, unblock_who, unblock_why`

// expectedAt is the SQL of queue.Block.ExpectedAt for alias b and the
// parameter holding now.
func expectedAt(now string) string {
	return `(NOT b.forced_unblock AND (b.unblock_at IS NULL OR b.unblock_at > ` + now + `))`
}

type scanner interface{ Scan(dest ...any) error }

func scanBlock(r scanner, extra ...any) (queue.Block, error) {
	var b queue.Block
	var unblockAt pgtype.Timestamptz
	dest := append([]any{&b.ID, &b.CIDR, &b.Who, &b.Source, &b.Why, &b.Added, &unblockAt,
		&b.SkipWhitelist, &b.ForcedUnblock, &b.UnblockWho, &b.UnblockWhy}, extra...)
	if err := r.Scan(dest...); err != nil {
		return queue.Block{}, err
	}
	b.Added = b.Added.UTC()
	b.UnblockAt = tsOut(unblockAt)
	return b, nil
}

// The state of every cidr of a batch: for each, the latest expected block
// (kind 1) and the latest block (kind 2).
var sqlReadStates = `
SELECT s.` + strings.ReplaceAll(blockCols, ", ", ", s.") + `, s.kind
FROM unnest($1::cidr[]) AS c(cidr)
CROSS JOIN LATERAL (
	(SELECT 1 AS kind, ` + blockCols + ` FROM blocks b
	 WHERE b.cidr = c.cidr AND ` + expectedAt("$2") + `
	 ORDER BY b.id DESC LIMIT 1)
	UNION ALL
	(SELECT 2 AS kind, ` + blockCols + ` FROM blocks b
	 WHERE b.cidr = c.cidr
	 ORDER BY b.id DESC LIMIT 1)
) s`

// sqlLock takes the locks of an ApplyBlocks transaction, in one order for
// everyone so that they cannot deadlock:
//  1. the idents lock, shared: block writers never wait for each other on
//     it, only for the registration of a new ident (see BlockQueue);
//  2. the bulk lock: shared, or exclusive for a batch too large to lock
//     per cidr ($3);
//  3. the cidr locks, in array order (the caller sorts), none in bulk mode.
//
// Target list items are evaluated left to right and unnest scans the array
// in order.
const sqlLock = `SELECT pg_advisory_xact_lock_shared($1, $2)::text,
	(CASE WHEN $3::bool THEN pg_advisory_xact_lock($1, $4) ELSE pg_advisory_xact_lock_shared($1, $4) END)::text,
	(SELECT count(pg_advisory_xact_lock(k)) FROM unnest($5::int8[]) AS k)`

// maxCIDRLocks bounds the advisory locks one transaction takes. They live
// in PostgreSQL's shared lock table, sized by default for 64 locks per
// connection: a batch of ten thousand cidrs locked one by one could exhaust
// it for everyone. A larger batch takes the bulk lock exclusively instead,
// which excludes every other block writer for its duration (and only then).
const maxCIDRLocks = 1024

// insertBlocks and queueInserted are shared by the insert statements:
// the column list their arguments follow, and the CTE that queues each
// expected inserted block (CTE ins, $11 = now) for every active ident.
const insertBlocks = `INSERT INTO blocks (cidr, who, source, why, added, unblock_at, skip_whitelist, forced_unblock, unblock_who, unblock_why)`

// insertedCols are what the CTE ins of an insert returns: what
// queueInserted needs, and the new ids and cidrs (the cidrs to check the
// order), which are all the statement returns: the rest of each block is
// what was inserted (see readInserted).
const insertedCols = `id, cidr, forced_unblock, unblock_at`

var queueInserted = `queued AS (
	INSERT INTO pending (ident, block_id)
	SELECT i.name, b.id FROM ins b CROSS JOIN idents i
	WHERE i.active AND ` + expectedAt("$11") + `
)`

// sqlInsert writes a plan's new blocks in one statement:
//   - closed: open entries of older blocks with an inserted cidr are
//     closed first ("block, expire, block again, then the old unblock"
//     must never leave the address open); the statement's snapshot does not
//     see the new blocks, so only older blocks are touched;
//   - ins: the blocks, in input order (ORDER BY ord), so that ids ascend in
//     input order;
//   - queued: each expected new block is queued for every known ident.
var sqlInsert = `
WITH closed AS (
	UPDATE entries e SET removed = $11
	FROM blocks b
	WHERE b.cidr = ANY($1::cidr[]) AND e.block_id = b.id AND e.removed IS NULL
), ins AS (
	` + insertBlocks + `
	SELECT cidr, who, source, why, added, unblock_at, skip_whitelist, forced_unblock, unblock_who, unblock_why
	FROM unnest($1::cidr[], $2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::timestamptz[],
	            $7::bool[], $8::bool[], $9::text[], $10::text[])
	     WITH ORDINALITY AS t(cidr, who, source, why, added, unblock_at, skip_whitelist, forced_unblock, unblock_who, unblock_why, ord)
	ORDER BY ord
	RETURNING ` + insertedCols + `
), ` + queueInserted + `
SELECT id, cidr FROM ins ORDER BY id`

// sqlInsertFresh is sqlInsert for a batch of cidrs that have never been
// blocked (the guess of ApplyBlocks' first round trip): it writes only if
// none of them has a block, and then there is no entry to close. The guard
// probes blocks_cidr once per cidr; its "= ANY(array)" form would be
// planned as a sequential scan when the generic plan is made on a nearly
// empty table, and the plan stays for the life of the connection.
var sqlInsertFresh = `
WITH ins AS (
	` + insertBlocks + `
	SELECT cidr, who, source, why, added, unblock_at, skip_whitelist, forced_unblock, unblock_who, unblock_why
	FROM unnest($1::cidr[], $2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::timestamptz[],
	            $7::bool[], $8::bool[], $9::text[], $10::text[])
	     WITH ORDINALITY AS t(cidr, who, source, why, added, unblock_at, skip_whitelist, forced_unblock, unblock_who, unblock_why, ord)
	WHERE NOT EXISTS (
		SELECT 1 FROM unnest($12::cidr[]) AS c(cidr)
		CROSS JOIN LATERAL (SELECT 1 FROM blocks b WHERE b.cidr = c.cidr ORDER BY b.cidr, b.id LIMIT 1) x)
	ORDER BY ord
	RETURNING ` + insertedCols + `
), ` + queueInserted + `
SELECT id, cidr FROM ins ORDER BY id`

// sqlLockOne and sqlInsertFreshOne are sqlLock and sqlInsertFresh for a
// single cidr and block, with scalar parameters: the usual request, and
// a tenth cheaper for PostgreSQL than the array forms.
const sqlLockOne = `SELECT pg_advisory_xact_lock_shared($1, $2)::text, pg_advisory_xact_lock_shared($1, $3)::text, pg_advisory_xact_lock($4)::text`

var sqlInsertFreshOne = `
WITH ins AS (
	` + insertBlocks + `
	SELECT $1::cidr, $2::text, $3::text, $4::text, $5::timestamptz, $6::timestamptz, $7::bool, $8::bool, $9::text, $10::text
	WHERE NOT EXISTS (SELECT 1 FROM blocks b WHERE b.cidr = $1::cidr ORDER BY b.cidr, b.id LIMIT 1)
	RETURNING ` + insertedCols + `
), ` + queueInserted + `
SELECT id, cidr FROM ins`

// sqlExtend moves blocks' and their entries' ends. A block that was no
// longer expected and becomes expected again is queued again for the
// idents that have no entry for it. Unknown ids abort the transaction.
var sqlExtend = `
WITH x AS (
	SELECT * FROM unnest($1::int8[], $2::timestamptz[]) AS x(id, unblock_at)
), revived AS (
	SELECT b.id FROM blocks b JOIN x USING (id)
	WHERE NOT ` + expectedAt("$3") + ` AND NOT b.forced_unblock
	  AND (x.unblock_at IS NULL OR x.unblock_at > $3)
), ub AS (
	UPDATE blocks b SET unblock_at = x.unblock_at FROM x WHERE b.id = x.id RETURNING b.id
), ue AS (
	UPDATE entries e SET unblock_at = x.unblock_at FROM x WHERE e.block_id = x.id
), requeued AS (
	INSERT INTO pending (ident, block_id)
	SELECT i.name, r.id FROM revived r CROSS JOIN idents i
	WHERE i.active AND NOT EXISTS (SELECT 1 FROM entries e WHERE e.block_id = r.id AND e.ident = i.name)
	ON CONFLICT DO NOTHING
)
SELECT CASE WHEN count(*) = cardinality($1::int8[]) THEN true
       ELSE bhrd_not_found('extend: unknown block id among ' || array_to_string($1::int8[], ',')) END
FROM ub`

// execUntilCommit reads the results of a batch up to and including its
// COMMIT (n results before it, read by the read functions, which may be
// nil for an Exec) and checks that the transaction committed.
func execUntilCommit(br pgx.BatchResults, reads ...func(pgx.Rows) error) error {
	for _, read := range reads {
		if read == nil {
			if _, err := br.Exec(); err != nil {
				return err
			}
			continue
		}
		rows, err := br.Query()
		if err != nil {
			return err
		}
		err = read(rows)
		rows.Close()
		if err == nil {
			err = rows.Err()
		}
		if err != nil {
			return err
		}
	}
	tag, err := br.Exec()
	if err != nil {
		return err
	}
	if tag.String() != "COMMIT" {
		return fmt.Errorf("transaction ended with %s", tag)
	}
	return nil
}

// ApplyBlocks implements queue.Store. Most blocks are of cidrs never
// blocked before; for a batch that can lock per cidr it first guesses that
// and writes plan's answer for empty states in one round trip (BEGIN, the
// locks and sqlInsertFresh in one implicit transaction), which writes
// nothing if any cidr has a block after all. Otherwise, or when the guess was wrong, two round trips:
// BEGIN, the sorted per-cidr locks and the state reads; then, after plan
// with the real states, the writes and COMMIT. plan may thus be called
// twice; only the plan of the last call is written.
func (s *Store) ApplyBlocks(ctx context.Context, cidrs []netip.Prefix, now time.Time, plan queue.PlanFunc) (_ []queue.Block, err error) {
	now = now.UTC()
	locked := make(map[netip.Prefix]bool, len(cidrs))
	uniq := make([]netip.Prefix, 0, len(cidrs))
	for _, p := range cidrs {
		p = p.Masked()
		if p.IsValid() && !locked[p] {
			locked[p] = true
			uniq = append(uniq, p)
		}
	}
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("apply blocks: %w", err)
	}
	defer conn.Release()
	defer finishTx(conn)

	keys := lockKeys(uniq)
	bulk := len(keys) > maxCIDRLocks
	if bulk {
		keys = nil
	}
	if !bulk && len(uniq) > 0 && !s.history.hasAny(keys) {
		// The guess is only worth a round trip if it writes something: a
		// plan that, for cidrs without state, inserts.
		if p, perr := plan(map[netip.Prefix]queue.CIDRState{}); perr == nil && len(p.Extends) == 0 && len(p.Inserts) > 0 {
			inserted, ok, err := s.applyFresh(ctx, conn, uniq, keys, locked, now, p.Inserts)
			if err != nil {
				return nil, err
			}
			if ok {
				s.history.addBlocks(inserted)
				s.notifyBlocks()
				return inserted, nil
			}
		}
	}

	states := make(map[netip.Prefix]queue.CIDRState, len(uniq))
	b := &pgx.Batch{}
	b.Queue("BEGIN")
	b.Queue(sqlLock, lockClass, lockIdents, bulk, lockBulk, keys)
	if len(uniq) > 0 {
		b.Queue(sqlReadStates, uniq, now).Query(func(rows pgx.Rows) error {
			for rows.Next() {
				var kind int32
				blk, err := scanBlock(rows, &kind)
				if err != nil {
					return err
				}
				st := states[blk.CIDR]
				bb := blk
				if kind == 1 {
					st.Expected = &bb
				} else {
					st.Latest = &bb
				}
				states[blk.CIDR] = st
			}
			return rows.Err()
		})
	}
	if err := conn.SendBatch(ctx, b).Close(); err != nil {
		return nil, fmt.Errorf("apply blocks: read state: %w", err)
	}

	for c := range states {
		s.history.add(cidrLockKey(c))
	}
	p, err := plan(states)
	if err != nil {
		return nil, err
	}
	if err := checkLocked(p.Inserts, locked); err != nil {
		return nil, err
	}

	var inserted []queue.Block
	w := &pgx.Batch{}
	if len(p.Inserts) > 0 {
		w.Queue(sqlInsert, insertArgs(p.Inserts, now)...)
	}
	var extendIDs []int64
	if len(p.Extends) > 0 {
		// The last extend of a block wins, as if they were applied in order.
		last := make(map[int64]time.Time, len(p.Extends))
		for _, e := range p.Extends {
			if _, ok := last[e.BlockID]; !ok {
				extendIDs = append(extendIDs, e.BlockID)
			}
			last[e.BlockID] = e.UnblockAt
		}
		slices.Sort(extendIDs) // row locks in a fixed order
		ends := make([]pgtype.Timestamptz, len(extendIDs))
		for i, id := range extendIDs {
			ends[i] = tsIn(last[id])
		}
		w.Queue(sqlExtend, extendIDs, ends, now)
	}
	w.Queue("COMMIT")
	var reads []func(pgx.Rows) error
	if len(p.Inserts) > 0 {
		reads = append(reads, func(rows pgx.Rows) error {
			inserted, err = readInserted(rows, p.Inserts, now)
			return err
		})
	}
	if len(extendIDs) > 0 {
		reads = append(reads, nil)
	}
	br := conn.SendBatch(ctx, w)
	err = execUntilCommit(br, reads...)
	if cerr := br.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, mapErr("apply blocks", err, queue.ErrNotFound)
	}
	if len(inserted) != len(p.Inserts) {
		return nil, fmt.Errorf("apply blocks: %d blocks inserted, want %d", len(inserted), len(p.Inserts))
	}
	s.history.addBlocks(inserted)
	if len(p.Inserts) > 0 || len(extendIDs) > 0 {
		s.notifyBlocks()
	}
	return inserted, nil
}

// applyFresh writes inserts, planned for cidrs without any block, in one
// round trip if that is what they are; ok is false (and nothing written)
// if any of them has a block.
func (s *Store) applyFresh(ctx context.Context, conn *pgxpool.Conn, uniq []netip.Prefix, keys []int64, locked map[netip.Prefix]bool, now time.Time, inserts []queue.Block) (_ []queue.Block, ok bool, _ error) {
	if err := checkLocked(inserts, locked); err != nil {
		return nil, false, err
	}
	var inserted []queue.Block
	read := func(rows pgx.Rows) error {
		var err error
		inserted, err = readInserted(rows, inserts, now)
		return err
	}
	// No BEGIN: the statements of a batch run in one implicit transaction,
	// committed at its end, and a failed statement fails the batch.
	b := &pgx.Batch{}
	if len(uniq) == 1 && len(inserts) == 1 {
		in := inserts[0]
		if in.Added.IsZero() {
			in.Added = now
		}
		b.Queue(sqlLockOne, lockClass, lockIdents, lockBulk, keys[0])
		b.Queue(sqlInsertFreshOne, in.CIDR.Masked(), in.Who, in.Source, in.Why, tsIn(in.Added), tsIn(in.UnblockAt),
			in.SkipWhitelist, in.ForcedUnblock, in.UnblockWho, in.UnblockWhy, now).Query(read)
	} else {
		b.Queue(sqlLock, lockClass, lockIdents, false, lockBulk, keys)
		b.Queue(sqlInsertFresh, append(insertArgs(inserts, now), uniq)...).Query(read)
	}
	if err := conn.SendBatch(ctx, b).Close(); err != nil {
		return nil, false, fmt.Errorf("apply blocks: %w", err)
	}
	if len(inserted) == 0 {
		return nil, false, nil
	}
	if len(inserted) != len(inserts) {
		return nil, false, fmt.Errorf("apply blocks: %d blocks inserted, want %d", len(inserted), len(inserts))
	}
	return inserted, true, nil
}

// insertArgs are the arguments $1-$11 of sqlInsert and sqlInsertFresh.
func insertArgs(inserts []queue.Block, now time.Time) []any {
	n := len(inserts)
	var (
		cidrs                  = make([]netip.Prefix, n)
		who, source, why       = make([]string, n), make([]string, n), make([]string, n)
		unblockWho, unblockWhy = make([]string, n), make([]string, n)
		added, unblockAt       = make([]pgtype.Timestamptz, n), make([]pgtype.Timestamptz, n)
		skip, forced           = make([]bool, n), make([]bool, n)
	)
	for i, ins := range inserts {
		cidrs[i] = ins.CIDR.Masked()
		who[i], source[i], why[i] = ins.Who, ins.Source, ins.Why
		unblockWho[i], unblockWhy[i] = ins.UnblockWho, ins.UnblockWhy
		if ins.Added.IsZero() {
			ins.Added = now
		}
		added[i], unblockAt[i] = tsIn(ins.Added), tsIn(ins.UnblockAt)
		skip[i], forced[i] = ins.SkipWhitelist, ins.ForcedUnblock
	}
	return []any{cidrs, who, source, why, added, unblockAt, skip, forced, unblockWho, unblockWhy, now}
}

func checkLocked(inserts []queue.Block, locked map[netip.Prefix]bool) error {
	for _, ins := range inserts {
		if !locked[ins.CIDR.Masked()] {
			return fmt.Errorf("apply blocks: plan inserts %s, which is not among the locked cidrs", ins.CIDR)
		}
	}
	return nil
}

// readInserted reads the rows an insert statement returns, one per
// planned insert in input order, and gives back the inserts as stored:
// with their ids, Added defaulted to now, and times at the store's
// precision (microseconds, UTC), as a later read would return them.
func readInserted(rows pgx.Rows, inserts []queue.Block, now time.Time) ([]queue.Block, error) {
	inserted := make([]queue.Block, 0, len(inserts))
	var (
		id   int64
		cidr netip.Prefix
	)
	for rows.Next() {
		if err := rows.Scan(&id, &cidr); err != nil {
			return nil, err
		}
		i := len(inserted)
		if i == len(inserts) {
			return nil, fmt.Errorf("apply blocks: more blocks inserted than the %d planned", len(inserts))
		}
		b := inserts[i]
		if cidr != b.CIDR.Masked() {
			// Would mean PostgreSQL assigned ids out of input order.
			return nil, fmt.Errorf("apply blocks: inserted block %d is %s, want %s", i, cidr, b.CIDR)
		}
		b.ID, b.CIDR = id, cidr
		if b.Added.IsZero() {
			b.Added = now
		}
		b.Added = storedTime(b.Added)
		b.UnblockAt = storedTime(b.UnblockAt)
		inserted = append(inserted, b)
	}
	return inserted, rows.Err()
}

// sqlUnblockNowWith is the unblock_now statement with the removal from
// the block queues given (dq).
func sqlUnblockNowWith(match, dq string) string {
	return `
WITH t AS (
	-- "IS TRUE" keeps the planner on the cidr index: matched against the
	-- partial index of expected blocks, it also read every expected
	-- block's entry of that index (0.3 ms at 20,000).
	SELECT b.id FROM blocks b WHERE ` + match + ` AND ` + expectedAt("$2") + ` IS TRUE ORDER BY b.id FOR UPDATE
), ub AS (
	UPDATE blocks b SET forced_unblock = true, unblock_at = $2, unblock_who = $3, unblock_why = $4
	FROM t WHERE b.id = t.id
	RETURNING b.*
), ue AS (
	UPDATE entries e SET unblock_at = $2 FROM t WHERE e.block_id = t.id AND e.removed IS NULL
), dq AS (
	` + dq + `
)
SELECT ` + blockCols + `, pg_notify('` + Channel + `', 'blocks')::text FROM ub ORDER BY id DESC`
}

// One cidr: its block's rows leave the queues by primary key, one probe
// per ident (pending has no index on block_id alone): the LATERAL ...
// OFFSET 0 keeps each probe a parameterized index scan, and the delete
// goes by the rows' ctids (pending rows are never updated). As a join,
// the planner, estimating hundreds of idents in a small, never analyzed
// table, scanned every pending row: 3.9 ms an unblock_now with 35,000
// rows queued.
var sqlUnblockNow = sqlUnblockNowWith("b.cidr = $1", sqlDeletePending("t CROSS JOIN idents i", "i.name", "t.id"))

// UnblockNow implements queue.Store in one round trip. Should several
// expected blocks share the cidr (the Service never makes that), all are
// forced off and the newest is returned.
func (s *Store) UnblockNow(ctx context.Context, cidr netip.Prefix, now time.Time, who, why string) (queue.Block, error) {
	return retryConflicts(ctx, func() (queue.Block, error) { return s.unblockNow(ctx, cidr, now, who, why) })
}

func (s *Store) unblockNow(ctx context.Context, cidr netip.Prefix, now time.Time, who, why string) (queue.Block, error) {
	now = now.UTC()
	cidr = cidr.Masked()
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return queue.Block{}, fmt.Errorf("unblock %s: %w", cidr, err)
	}
	defer conn.Release()
	defer finishTx(conn)

	var blocks []queue.Block
	b := &pgx.Batch{}
	b.Queue("BEGIN")
	// The same order as ApplyBlocks, idents lock aside: bulk, then cidr.
	b.Queue(`SELECT pg_advisory_xact_lock_shared($1, $2)::text, pg_advisory_xact_lock($3)::text`, lockClass, lockBulk, cidrLockKey(cidr))
	b.Queue(sqlUnblockNow, cidr, now, who, why).Query(scanUnblocked(&blocks))
	b.Queue("COMMIT")
	if err := conn.SendBatch(ctx, b).Close(); err != nil {
		return queue.Block{}, fmt.Errorf("unblock %s: %w", cidr, err)
	}
	if len(blocks) == 0 {
		return queue.Block{}, fmt.Errorf("unblock %s: %w", cidr, queue.ErrNotBlocked)
	}
	return blocks[0], nil
}

// scanUnblocked appends the blocks sqlUnblockNow returns to out.
func scanUnblocked(out *[]queue.Block) func(pgx.Rows) error {
	return func(rows pgx.Rows) error {
		for rows.Next() {
			var notify string
			blk, err := scanBlock(rows, &notify)
			if err != nil {
				return err
			}
			*out = append(*out, blk)
		}
		return rows.Err()
	}
}

// Many cidrs: blocks × idents probes could outnumber the rows queued, so
// the planner may join.
var sqlUnblockNowMulti = sqlUnblockNowWith("b.cidr = ANY($1::cidr[])",
	`DELETE FROM pending p USING t, idents i WHERE p.ident = i.name AND p.block_id = t.id`)

// UnblockNowMulti implements queue.Store in one transaction: the bulk
// lock shared and every cidr's lock, in key order (two bulk unblocks can
// not deadlock), one statement, then COMMIT, or ROLLBACK when a cidr had
// no expected block.
func (s *Store) UnblockNowMulti(ctx context.Context, cidrs []netip.Prefix, now time.Time, who, why string) ([]queue.Block, error) {
	return retryConflicts(ctx, func() ([]queue.Block, error) { return s.unblockNowMulti(ctx, cidrs, now, who, why) })
}

func (s *Store) unblockNowMulti(ctx context.Context, cidrs []netip.Prefix, now time.Time, who, why string) ([]queue.Block, error) {
	now = now.UTC()
	masked := make([]netip.Prefix, len(cidrs))
	keys := make([]int64, len(cidrs))
	for i, c := range cidrs {
		masked[i] = c.Masked()
		keys[i] = cidrLockKey(masked[i])
	}
	slices.Sort(keys)
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("unblock now: %w", err)
	}
	defer conn.Release()
	defer finishTx(conn)
	var blocks []queue.Block
	b := &pgx.Batch{}
	b.Queue("BEGIN")
	b.Queue(`SELECT pg_advisory_xact_lock_shared($1, $2)::text, (SELECT count(pg_advisory_xact_lock(k)) FROM unnest($3::int8[]) AS k)`,
		lockClass, lockBulk, keys)
	b.Queue(sqlUnblockNowMulti, masked, now, who, why).Query(scanUnblocked(&blocks))
	if err := conn.SendBatch(ctx, b).Close(); err != nil {
		return nil, fmt.Errorf("unblock now: %w", err)
	}
	got := make(map[netip.Prefix]bool, len(blocks))
	for _, blk := range blocks {
		got[blk.CIDR] = true
	}
	var missing []netip.Prefix
	for _, c := range masked {
		if !got[c] {
			missing = append(missing, c)
		}
	}
	if len(missing) > 0 {
		if _, err := conn.Exec(ctx, "ROLLBACK"); err != nil {
			return nil, fmt.Errorf("unblock now: %w", err)
		}
		return nil, fmt.Errorf("unblock now: %w", &queue.NotBlockedError{CIDRs: missing})
	}
	if _, err := conn.Exec(ctx, "COMMIT"); err != nil {
		return nil, fmt.Errorf("unblock now: %w", err)
	}
	return blocks, nil
}

// GetBlock implements queue.Store.
func (s *Store) GetBlock(ctx context.Context, id int64) (queue.Block, error) {
	blk, err := scanBlock(s.pool.QueryRow(ctx, `SELECT `+blockCols+` FROM blocks WHERE id = $1`, id))
	if err != nil {
		return queue.Block{}, mapErr("block "+strconv.FormatInt(id, 10), err, queue.ErrNotFound)
	}
	return blk, nil
}

// args numbers query parameters as they are added.
type args []any

// valueSensitive runs a query with its values inlined (pgx's simple
// protocol, with pgx's escaping), so that PostgreSQL plans it for them: the
// best plan of a list depends on its filters' values (a containment range
// becomes an index range only for a known prefix), and a forced generic
// plan would not see them (see Open).
//
// Times are truncated to microseconds as the binary protocol does (the text
// form would be rounded by the server).
func valueSensitive(a ...any) []any {
	out := make([]any, 0, len(a)+1)
	out = append(out, pgx.QueryExecModeSimpleProtocol)
	for _, v := range a {
		if t, ok := v.(time.Time); ok {
			v = t.UTC().Truncate(time.Microsecond)
		}
		out = append(out, v)
	}
	return out
}

func (a *args) add(v any) string {
	*a = append(*a, v)
	return "$" + strconv.Itoa(len(*a))
}

// A page read (newest first, a small limit: the web pages) is driven by
// one of three sets, chosen by probing how large each is, so that its
// cost is bounded whatever the data and whatever the planner's
// statistics say:
//
//   - driveWalk walks blocks newest first (by the primary key, or by the
//     source's index) and tests every other condition on each row; it
//     stops at the limit, so it is cheap when matches are dense.
//   - driveRange reads the Within range from blocks_cidr and sorts it.
//   - driveExpected reads the expected set from blocks_expected.
//
// A set smaller than queue.PageProbe is read whole; when none is, the walk is
// taken: every candidate set is then large, so matches are dense. A walk
// over a Within prefix goes through queue.PageWindow ids at most; what it
// has not found by then is read with driveRangeIDs: the prefix's ids from
// blocks_cidr alone (an index-only scan), then their rows through the
// primary key newest first, so that old blocks of a prefix cost the
// prefix's size rather than all of history. A condition that must not
// drive is written so that no index applies to it (IS TRUE, COALESCE,
// ORDER BY id + 0). A listing keeps driveDefault.
type driver int

const (
	driveDefault driver = iota
	driveWalk
	driveRange
	driveExpected
	driveRangeIDs
)

// pageDriver probes the candidate sets of a page read (each count stops
// at queue.PageProbe, on its index) and picks the smallest bounded one.
// With a Within prefix it also returns the newest id, where a windowed
// walk starts.
func (s *Store) pageDriver(ctx context.Context, opts queue.ListOptions) (driver, int64, error) {
	var a args
	var probes []string
	var drivers []driver
	if opts.Within.IsValid() {
		probes = append(probes, `(SELECT coalesce(max(id), 0) FROM blocks)`)
		drivers = append(drivers, driveDefault) // not a set: the newest id
		probes = append(probes, `(SELECT count(*) FROM (SELECT 1 FROM blocks WHERE cidr <<= `+a.add(opts.Within.Masked())+`::cidr LIMIT `+a.add(queue.PageProbe)+`) r)`)
		drivers = append(drivers, driveRange)
	}
	if opts.Filter == queue.FilterExpected || opts.Filter == queue.FilterPending {
		probes = append(probes, `(SELECT count(*) FROM (SELECT 1 FROM blocks b WHERE `+expectedAt(a.add(opts.Now.UTC()))+` LIMIT `+a.add(queue.PageProbe)+`) e)`)
		drivers = append(drivers, driveExpected)
	}
	if opts.Source != "" {
		probes = append(probes, `(SELECT count(*) FROM (SELECT 1 FROM blocks WHERE source = `+a.add(opts.Source)+` LIMIT `+a.add(queue.PageProbe)+`) s)`)
		drivers = append(drivers, driveWalk) // the walk goes by the source's index
	}
	if len(probes) == 0 {
		return driveWalk, 0, nil
	}
	counts := make([]int64, len(probes))
	dest := make([]any, len(probes))
	for i := range counts {
		dest[i] = &counts[i]
	}
	if err := s.pool.QueryRow(ctx, `SELECT `+strings.Join(probes, `, `), valueSensitive(a...)...).Scan(dest...); err != nil {
		return 0, 0, err
	}
	if !opts.Within.IsValid() {
		return queue.SmallestProbe(drivers, counts, driveWalk), 0, nil
	}
	return queue.SmallestProbe(drivers[1:], counts[1:], driveWalk), counts[0], nil
}

// ListBlocks implements queue.Store. Rows are read from the connection as
// fn consumes them.
func (s *Store) ListBlocks(ctx context.Context, opts queue.ListOptions, fn func(queue.Block) error) error {
	if !opts.IsPage() {
		return s.listBlocks(ctx, opts, driveDefault, fn)
	}
	drv, newest, err := s.pageDriver(ctx, opts)
	if err != nil {
		return fmt.Errorf("list blocks: %w", err)
	}
	if drv == driveWalk && opts.Within.IsValid() {
		return s.walkWindow(ctx, opts, newest, fn)
	}
	return s.listBlocks(ctx, opts, drv, fn)
}

// walkWindow walks the newest s.pageWindow ids of a page read over a
// prefix, then reads what it still needs below them with driveRangeIDs.
func (s *Store) walkWindow(ctx context.Context, opts queue.ListOptions, newest int64, fn func(queue.Block) error) error {
	recent, older, ok := opts.Window(newest, s.pageWindow)
	if !ok {
		return s.listBlocks(ctx, opts, driveWalk, fn)
	}
	found := 0
	if err := s.listBlocks(ctx, recent, driveWalk, func(b queue.Block) error { found++; return fn(b) }); err != nil {
		return err
	}
	if found >= opts.Limit {
		return nil
	}
	older.Limit -= found
	return s.listBlocks(ctx, older, driveRangeIDs, fn)
}

func (s *Store) listBlocks(ctx context.Context, opts queue.ListOptions, drv driver, fn func(queue.Block) error) error {
	var a args
	var where []string
	now := opts.Now.UTC()
	expected := func() string {
		if drv == driveWalk || drv == driveRange || drv == driveRangeIDs {
			// Not a condition of blocks_expected: tested on each row.
			return `(b.forced_unblock IS NOT TRUE AND COALESCE(b.unblock_at, 'infinity') > ` + a.add(now) + `)`
		}
		return expectedAt(a.add(now))
	}
	openEntry := `EXISTS (SELECT 1 FROM entries e WHERE e.block_id = b.id AND e.removed IS NULL`
	switch opts.Filter {
	case queue.FilterAll:
	case queue.FilterExpected:
		where = append(where, expected())
	case queue.FilterCurrent:
		where = append(where, openEntry+`)`)
	case queue.FilterPending:
		where = append(where, expected(), `NOT `+openEntry+`)`)
	case queue.FilterPendingRemoval:
		where = append(where, openEntry+` AND e.unblock_at <= `+a.add(now)+`)`)
	default:
		return fmt.Errorf("list blocks: unknown filter %d", opts.Filter)
	}
	if opts.Source != "" {
		if drv == driveRange || drv == driveExpected || drv == driveRangeIDs {
			where = append(where, `(b.source = `+a.add(opts.Source)+`) IS TRUE`)
		} else {
			where = append(where, `b.source = `+a.add(opts.Source))
		}
	}
	if opts.Within.IsValid() {
		switch drv {
		case driveRangeIDs:
			// The prefix's ids from blocks_cidr alone, bounded by the
			// cursor, looked up through the primary key newest first.
			ids := `b.id = ANY(ARRAY(SELECT id FROM blocks WHERE cidr <<= ` + a.add(opts.Within.Masked()) + `::cidr`
			if opts.AfterID != 0 && opts.Descending {
				ids += ` AND id < ` + a.add(opts.AfterID)
			}
			where = append(where, ids+`))`)
			fallthrough
		case driveWalk, driveExpected:
			where = append(where, `(b.cidr <<= `+a.add(opts.Within.Masked())+`::cidr) IS TRUE`)
		default:
			where = append(where, `b.cidr <<= `+a.add(opts.Within.Masked())+`::cidr`)
		}
	}
	if !opts.AddedSince.IsZero() {
		where = append(where, `b.added >= `+a.add(opts.AddedSince.UTC()))
	}
	if len(opts.ExcludeSources) > 0 {
		where = append(where, `b.source <> ALL(`+a.add(opts.ExcludeSources)+`::text[])`)
	}
	if opts.WhyContains != "" {
		where = append(where, `strpos(lower(b.why), lower(`+a.add(opts.WhyContains)+`)) > 0`)
	}
	if opts.MinID != 0 {
		where = append(where, `b.id > `+a.add(opts.MinID))
	}
	order := "ASC"
	if opts.Descending {
		order = "DESC"
	}
	if opts.AfterID != 0 {
		op := ">"
		if opts.Descending {
			op = "<"
		}
		where = append(where, `b.id `+op+` `+a.add(opts.AfterID))
	}
	var q strings.Builder
	q.WriteString(`SELECT ` + blockCols + ` FROM blocks b`)
	if len(where) > 0 {
		q.WriteString(` WHERE ` + strings.Join(where, ` AND `))
	}
	if drv == driveRange || drv == driveExpected {
		// Sorted after the set is read, not walked in id order.
		q.WriteString(` ORDER BY b.id + 0 ` + order)
	} else {
		q.WriteString(` ORDER BY b.id ` + order)
	}
	if opts.Offset > 0 {
		q.WriteString(` OFFSET ` + a.add(opts.Offset))
	}
	if opts.Limit > 0 {
		q.WriteString(` LIMIT ` + a.add(opts.Limit))
	}
	rows, err := s.pool.Query(ctx, q.String(), valueSensitive(a...)...)
	if err != nil {
		return fmt.Errorf("list blocks: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		blk, err := scanBlock(rows)
		if err != nil {
			return fmt.Errorf("list blocks: %w", err)
		}
		if err := fn(blk); err != nil {
			return err
		}
	}
	if err := rows.Err(); err != nil {
		return fmt.Errorf("list blocks: %w", err)
	}
	return nil
}

// AddedPerDay implements queue.Store.
func (s *Store) AddedPerDay(ctx context.Context, since time.Time) ([]queue.DayCount, error) {
	rows, err := s.pool.Query(ctx, `SELECT date_trunc('day', added AT TIME ZONE 'UTC'), source, count(*)
		FROM blocks WHERE added >= $1 GROUP BY 1, 2 ORDER BY 1, 2`, since.UTC())
	if err != nil {
		return nil, fmt.Errorf("added per day: %w", err)
	}
	defer rows.Close()
	var out []queue.DayCount
	for rows.Next() {
		var d queue.DayCount
		if err := rows.Scan(&d.Day, &d.Source, &d.Count); err != nil {
			return nil, fmt.Errorf("added per day: %w", err)
		}
		d.Day = time.Date(d.Day.Year(), d.Day.Month(), d.Day.Day(), 0, 0, 0, 0, time.UTC)
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("added per day: %w", err)
	}
	return out, nil
}

var sqlStats = `
SELECT
	(SELECT count(*) FROM (SELECT DISTINCT block_id FROM entries WHERE removed IS NULL) c),
	(SELECT count(*) FROM blocks b WHERE ` + expectedAt("$1") + `
	   AND NOT EXISTS (SELECT 1 FROM entries e WHERE e.block_id = b.id AND e.removed IS NULL)),
	(SELECT count(*) FROM (SELECT DISTINCT block_id FROM entries WHERE removed IS NULL AND unblock_at <= $1) u)`

var sqlSourceStats = `SELECT source, count(*) FROM blocks b WHERE ` + expectedAt("$1") + ` GROUP BY source`

// Stats implements queue.Store: one round trip, one snapshot, values
// inlined so that the plans fit them.
func (s *Store) Stats(ctx context.Context, now time.Time) (queue.Stats, error) {
	now = now.UTC()
	st := queue.Stats{Sources: map[string]int64{}}
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		rows, err := tx.Query(ctx, sqlSourceStats, valueSensitive(now)...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var src string
			var n int64
			if err := rows.Scan(&src, &n); err != nil {
				return err
			}
			st.Sources[src] = n
			st.Expected += n
		}
		if err := rows.Err(); err != nil {
			return err
		}
		return tx.QueryRow(ctx, sqlStats, valueSensitive(now)...).Scan(&st.Current, &st.BlockPending, &st.UnblockPending)
	})
	if err != nil {
		return queue.Stats{}, fmt.Errorf("stats: %w", err)
	}
	return st, nil
}

// The next unblock_at is the least of each ident's next one, each an index
// probe: a loose scan over the idents with open entries.
const sqlNextUnblockAt = `
WITH RECURSIVE open_idents AS (
	(SELECT ident FROM entries WHERE removed IS NULL ORDER BY ident LIMIT 1)
	UNION ALL
	SELECT (SELECT e.ident FROM entries e WHERE e.removed IS NULL AND e.ident > o.ident ORDER BY e.ident LIMIT 1)
	FROM open_idents o WHERE o.ident IS NOT NULL
)
SELECT min(n.unblock_at)
FROM open_idents o CROSS JOIN LATERAL (
	SELECT e.unblock_at FROM entries e
	WHERE e.ident = o.ident AND e.removed IS NULL AND e.unblock_at > $1
	ORDER BY e.unblock_at LIMIT 1
) n`

// NextUnblockAt implements queue.Store.
func (s *Store) NextUnblockAt(ctx context.Context, now time.Time) (time.Time, bool, error) {
	var t pgtype.Timestamptz
	if err := s.pool.QueryRow(ctx, sqlNextUnblockAt, now.UTC()).Scan(&t); err != nil {
		return time.Time{}, false, fmt.Errorf("next unblock_at: %w", err)
	}
	return tsOut(t), t.Valid, nil
}

// A block's end is the later of its unblock_at (its added time if it was
// forced off with none) and its entries' last removal.
var sqlPrune = `
WITH doomed AS (
	SELECT b.id FROM blocks b
	WHERE NOT ` + expectedAt("$2") + `
	  AND NOT EXISTS (SELECT 1 FROM entries e WHERE e.block_id = b.id AND e.removed IS NULL)
	  AND GREATEST(COALESCE(b.unblock_at, b.added),
	               (SELECT max(e.removed) FROM entries e WHERE e.block_id = b.id)) < $1
	FOR UPDATE
), de AS (
	DELETE FROM entries e USING doomed d WHERE e.block_id = d.id RETURNING 1
), dp AS (
	DELETE FROM pending p USING doomed d WHERE p.block_id = d.id
), db AS (
	DELETE FROM blocks b USING doomed d WHERE b.id = d.id RETURNING 1
)
SELECT (SELECT count(*) FROM db), (SELECT count(*) FROM de)`

// Queue bookkeeping that can no longer matter: rows of blocks that are
// gone or not expected, and rows whose ident has an entry after all (a
// set_blocked that raced with the ident's registration).
var sqlPrunePending = `
DELETE FROM pending p
WHERE NOT EXISTS (SELECT 1 FROM blocks b WHERE b.id = p.block_id AND ` + expectedAt("$1") + `)
   OR EXISTS (SELECT 1 FROM entries e WHERE e.block_id = p.block_id AND e.ident = p.ident)`

// Prune implements queue.Store in one transaction.
func (s *Store) Prune(ctx context.Context, cutoff, now time.Time) (queue.PruneResult, error) {
	var res queue.PruneResult
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if err := tx.QueryRow(ctx, sqlPrune, valueSensitive(cutoff, now)...).Scan(&res.Blocks, &res.Entries); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, sqlPrunePending, valueSensitive(now)...)
		return err
	})
	if err != nil {
		return queue.PruneResult{}, fmt.Errorf("prune: %w", err)
	}
	return res, nil
}

// historyHint remembers, by lock key, cidrs this process has seen with a
// block (written or read), so that blocking one of them again (a repeat
// offender, a detector repeating itself) skips the one-round-trip guess
// that would fail and cost a round trip more than the locked path. It is
// only a hint: a cidr blocked by another process, before a restart, or
// pushed out of its 65,536 direct-mapped slots is guessed at once, and
// the guess is checked anyway.
type historyHint [1 << 16]atomic.Uint64

// slot stores key with its low bit set, so that no key is the empty 0.
func (h *historyHint) add(key int64) { h[uint64(key)&(1<<16-1)].Store(uint64(key) | 1) }

func (h *historyHint) has(key int64) bool {
	return h[uint64(key)&(1<<16-1)].Load() == uint64(key)|1
}

func (h *historyHint) hasAny(keys []int64) bool {
	for _, k := range keys {
		if h.has(k) {
			return true
		}
	}
	return false
}

func (h *historyHint) addBlocks(bs []queue.Block) {
	for _, b := range bs {
		h.add(cidrLockKey(b.CIDR))
	}
}
