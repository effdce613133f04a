package sqlitestore

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/bhrd/bhrd/pkg/queue"
)

const blockCols = `b.id, b.cidr, b.who, b.source, b.why, b.added, b.unblock_at,
	b.skip_whitelist, b.forced_unblock, b.unblock_who, b.unblock_why`

// expectedCond is "expected at ?" (queue.Block.ExpectedAt) in SQL.
const expectedCond = `b.forced_unblock = 0 AND (b.unblock_at IS NULL OR b.unblock_at > ?)`

// openEntryOf is the correlated "has an open entry"; entries_current serves it.
const openEntryOf = `EXISTS (SELECT 1 FROM entries e WHERE e.block_id = b.id AND e.removed IS NULL)`

// Queries used inside write transactions, prepared once.
const (
	qLatestBlock = `SELECT ` + blockCols + ` FROM blocks b WHERE b.cidr = ?
		ORDER BY b.added DESC, b.id DESC LIMIT 1`
	qExpectedBlock = `SELECT ` + blockCols + ` FROM blocks b WHERE b.cidr = ? AND ` + expectedCond + `
		ORDER BY b.added DESC, b.id DESC LIMIT 1`
	qCloseStale = `UPDATE entries SET removed = ?
		WHERE removed IS NULL AND block_id IN (SELECT id FROM blocks WHERE cidr = ?)`
	qInsertBlock = `INSERT INTO blocks (cidr, family, net_lo, net_hi, who, source, why, added,
		unblock_at, skip_whitelist, forced_unblock, unblock_who, unblock_why)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`
	qQueueForIdents    = `INSERT INTO pending (ident, block_id) SELECT name, ? FROM idents WHERE active = 1`
	qExtendBlock       = `UPDATE blocks SET unblock_at = ? WHERE id = ?`
	qExtendEntries     = `UPDATE entries SET unblock_at = ? WHERE block_id = ?`
	qGetBlock          = `SELECT ` + blockCols + ` FROM blocks b WHERE b.id = ?`
	qForceUnblock      = `UPDATE blocks SET forced_unblock = 1, unblock_at = ?, unblock_who = ?, unblock_why = ? WHERE id = ?`
	qForceUnblockEntry = `UPDATE entries SET unblock_at = ? WHERE block_id = ? AND removed IS NULL`
	qDequeueBlock      = `DELETE FROM pending WHERE ident IN (SELECT name FROM idents) AND block_id = ?`
)

type scanner interface {
	Scan(dest ...any) error
}

func scanBlock(r scanner) (queue.Block, error) {
	var (
		b         queue.Block
		cidr      string
		added     int64
		unblockAt sql.NullInt64
	)
	if err := r.Scan(&b.ID, &cidr, &b.Who, &b.Source, &b.Why, &added, &unblockAt,
		&b.SkipWhitelist, &b.ForcedUnblock, &b.UnblockWho, &b.UnblockWhy); err != nil {
		return queue.Block{}, err
	}
	p, err := parseCIDR(cidr)
	if err != nil {
		return queue.Block{}, err
	}
	b.CIDR = p
	b.Added = fromMicros(added)
	b.UnblockAt = fromNullMicros(unblockAt)
	return b, nil
}

// queryBlock returns the block the query selects, or nil when none.
func (t *txn) queryBlock(query string, args ...any) (*queue.Block, error) {
	b, err := scanBlock(t.queryRow(query, args...))
	if errors.Is(err, sql.ErrNoRows) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return &b, nil
}

func (t *txn) cidrState(p netip.Prefix, now time.Time) (queue.CIDRState, error) {
	latest, err := t.queryBlock(qLatestBlock, p.String())
	if err != nil || latest == nil {
		return queue.CIDRState{}, err
	}
	// Nearly always the latest block is the expected one (or there is no
	// expected block), which saves the second lookup.
	if latest.ExpectedAt(now) {
		exp := *latest
		return queue.CIDRState{Expected: &exp, Latest: latest}, nil
	}
	exp, err := t.queryBlock(qExpectedBlock, p.String(), micros(now))
	if err != nil {
		return queue.CIDRState{}, err
	}
	return queue.CIDRState{Expected: exp, Latest: latest}, nil
}

// ApplyBlocks implements queue.Store. The state map is keyed by the masked
// form of each cidr. Write transactions are serialised on the single write
// connection, which is the per-cidr lock this store needs.
func (s *Store) ApplyBlocks(ctx context.Context, cidrs []netip.Prefix, now time.Time, plan queue.PlanFunc) ([]queue.Block, error) {
	keys := make([]netip.Prefix, 0, len(cidrs))
	for _, c := range cidrs {
		p, err := canonical(c)
		if err != nil {
			return nil, fmt.Errorf("apply blocks: %w", err)
		}
		keys = append(keys, p)
	}
	slices.SortFunc(keys, func(a, b netip.Prefix) int {
		return cmp.Or(a.Addr().Compare(b.Addr()), cmp.Compare(a.Bits(), b.Bits()))
	})
	keys = slices.Compact(keys)

	var (
		inserted []queue.Block
		planErr  error
	)
	err := s.write(ctx, func(t *txn) error {
		states := make(map[netip.Prefix]queue.CIDRState, len(keys))
		// Cidrs with no block at all have no entries to close, and none
		// can appear before this transaction ends.
		fresh := make(map[netip.Prefix]bool, len(keys))
		for _, p := range keys {
			st, err := t.cidrState(p, now)
			if err != nil {
				return fmt.Errorf("load state of %s: %w", p, err)
			}
			states[p] = st
			fresh[p] = st.Latest == nil
		}
		pl, err := plan(states)
		if err != nil {
			planErr = err
			return err
		}
		inserted = make([]queue.Block, 0, len(pl.Inserts))
		for _, b := range pl.Inserts {
			nb, err := t.insertBlock(b, now, fresh)
			if err != nil {
				return err
			}
			inserted = append(inserted, nb)
		}
		for _, x := range pl.Extends {
			if err := t.extendBlock(x); err != nil {
				return err
			}
		}
		return nil
	})
	if planErr != nil {
		return nil, planErr
	}
	if err != nil {
		return nil, fmt.Errorf("apply blocks: %w", err)
	}
	return inserted, nil
}

func (t *txn) insertBlock(b queue.Block, now time.Time, fresh map[netip.Prefix]bool) (queue.Block, error) {
	p, err := canonical(b.CIDR)
	if err != nil {
		return queue.Block{}, fmt.Errorf("insert block: %w", err)
	}
	b.CIDR = p
	b.Added = truncTime(b.Added)
	b.UnblockAt = truncTime(b.UnblockAt)
	cidr := p.String()
	// Close the entries of older blocks first, so that the unblock of a
	// stale block can never remove the route the new block needs.
	if !fresh[p] {
		if _, err := t.exec(qCloseStale, micros(now), cidr); err != nil {
			return queue.Block{}, fmt.Errorf("close stale entries of %s: %w", cidr, err)
		}
	}
	r := rangeOf(p)
	res, err := t.exec(qInsertBlock, cidr, r.family, r.lo, r.hi, b.Who, b.Source, b.Why,
		micros(b.Added), nullMicros(b.UnblockAt), b.SkipWhitelist, b.ForcedUnblock, b.UnblockWho, b.UnblockWhy)
	if err != nil {
		return queue.Block{}, fmt.Errorf("insert block %s: %w", cidr, err)
	}
	if b.ID, err = res.LastInsertId(); err != nil {
		return queue.Block{}, fmt.Errorf("insert block %s: %w", cidr, err)
	}
	if b.ExpectedAt(now) {
		if _, err := t.exec(qQueueForIdents, b.ID); err != nil {
			return queue.Block{}, fmt.Errorf("queue block %d: %w", b.ID, err)
		}
	}
	return b, nil
}

func (t *txn) extendBlock(x queue.Extend) error {
	at := nullMicros(truncTime(x.UnblockAt))
	res, err := t.exec(qExtendBlock, at, x.BlockID)
	if err != nil {
		return fmt.Errorf("extend block %d: %w", x.BlockID, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("extend block %d: %w", x.BlockID, err)
	} else if n == 0 {
		return fmt.Errorf("extend block %d: %w", x.BlockID, queue.ErrNotFound)
	}
	if _, err := t.exec(qExtendEntries, at, x.BlockID); err != nil {
		return fmt.Errorf("extend entries of block %d: %w", x.BlockID, err)
	}
	return nil
}

// UnblockNow implements queue.Store.
func (s *Store) UnblockNow(ctx context.Context, cidr netip.Prefix, now time.Time, who, why string) (queue.Block, error) {
	p, err := canonical(cidr)
	if err != nil {
		return queue.Block{}, fmt.Errorf("unblock now: %w", err)
	}
	now = truncTime(now)
	var out queue.Block
	err = s.write(ctx, func(t *txn) error {
		b, err := t.queryBlock(qExpectedBlock, p.String(), micros(now))
		if err != nil {
			return err
		}
		if b == nil {
			return fmt.Errorf("%s: %w", p, queue.ErrNotBlocked)
		}
		if err := t.forceUnblock(b, now, who, why); err != nil {
			return err
		}
		out = *b
		return nil
	})
	if err != nil {
		return queue.Block{}, fmt.Errorf("unblock now: %w", err)
	}
	return out, nil
}

// forceUnblock ends the expected block b now: its row, the unblock_at
// copies of its open entries (so that every ident's unblock queue picks
// it up at once), and its place in every block queue; b is updated.
func (t *txn) forceUnblock(b *queue.Block, now time.Time, who, why string) error {
	if _, err := t.exec(qForceUnblock, micros(now), who, why, b.ID); err != nil {
		return err
	}
	if _, err := t.exec(qForceUnblockEntry, micros(now), b.ID); err != nil {
		return err
	}
	if _, err := t.exec(qDequeueBlock, b.ID); err != nil {
		return err
	}
	b.ForcedUnblock, b.UnblockAt, b.UnblockWho, b.UnblockWhy = true, now, who, why
	return nil
}

// UnblockNowMulti implements queue.Store in one write transaction.
func (s *Store) UnblockNowMulti(ctx context.Context, cidrs []netip.Prefix, now time.Time, who, why string) ([]queue.Block, error) {
	now = truncTime(now)
	var out []queue.Block
	err := s.write(ctx, func(t *txn) error {
		out = out[:0]
		var missing []netip.Prefix
		for _, c := range cidrs {
			p, err := canonical(c)
			if err != nil {
				return err
			}
			b, err := t.queryBlock(qExpectedBlock, p.String(), micros(now))
			if err != nil {
				return err
			}
			if b == nil {
				missing = append(missing, c.Masked())
				continue
			}
			if err := t.forceUnblock(b, now, who, why); err != nil {
				return err
			}
			out = append(out, *b)
		}
		if len(missing) > 0 {
			return &queue.NotBlockedError{CIDRs: missing}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("unblock now: %w", err)
	}
	return out, nil
}

// GetBlock implements queue.Store.
func (s *Store) GetBlock(ctx context.Context, id int64) (queue.Block, error) {
	st, err := s.readStmt(ctx, qGetBlock)
	if err != nil {
		return queue.Block{}, fmt.Errorf("get block %d: %w", id, err)
	}
	b, err := scanBlock(st.QueryRowContext(ctx, id))
	if errors.Is(err, sql.ErrNoRows) {
		return queue.Block{}, fmt.Errorf("block %d: %w", id, queue.ErrNotFound)
	}
	if err != nil {
		return queue.Block{}, fmt.Errorf("get block %d: %w", id, err)
	}
	return b, nil
}

// limitArg maps "0 = no limit" to SQLite's "LIMIT -1".
func limitArg(n int) int {
	if n <= 0 {
		return -1
	}
	return n
}

// expectedIDs selects the ids of the blocks expected at ?. As an IN list
// it makes SQLite find them through blocks_unblock_at and visit them in id
// order, instead of scanning all of history in id order to honour ORDER BY.
const expectedIDs = `b.id IN (SELECT id FROM blocks
	WHERE forced_unblock = 0 AND (unblock_at IS NULL OR unblock_at > ?))`

// expectedInline is the same test made on each row a walk or a range
// visits.
const expectedInline = `(b.forced_unblock = 0 AND (+b.unblock_at IS NULL OR +b.unblock_at > ?))`

func expectedBy(drv driver) string {
	if drv == driveWalk || drv == driveRange || drv == driveRangeIDs {
		return expectedInline
	}
	return expectedIDs
}

// A page read (newest first, a small limit: the web pages) is driven by
// one of three sets, chosen by probing how large each is, so that its
// cost is bounded whatever the data:
//
//   - driveWalk walks blocks newest first (by id, or by the source's
//     index) and tests every other condition on each row; it stops at the
//     limit, so it is cheap when matches are dense among recent blocks.
//   - driveRange reads the Within range from its index and sorts it.
//   - driveExpected reads the expected set from blocks_unblock_at.
//
// A set smaller than queue.PageProbe is read whole (bounded); when none is, the
// walk is taken: every candidate set is then large, so matches are dense.
// A walk over a Within prefix goes through queue.PageWindow ids at most;
// what it has not found by then is read with driveRangeIDs: the prefix's
// ids from its index alone (no row read), visited newest first, so that
// old blocks of a prefix cost the prefix's size rather than all of
// history. A listing (no limit, or oldest first) keeps driveDefault.
type driver int

const (
	driveDefault driver = iota
	driveWalk
	driveRange
	driveExpected
	driveRangeIDs
)

// pageDriver probes the candidate sets of a page read (each count stops
// at queue.PageProbe, on an index alone) and picks the smallest bounded
// one. It also returns the newest id, where a windowed walk starts.
func (s *Store) pageDriver(ctx context.Context, opts queue.ListOptions) (driver, int64, error) {
	var probes []string
	var args []any
	var drivers []driver
	if opts.Within.IsValid() {
		r := rangeOf(opts.Within)
		probes = append(probes, `(SELECT coalesce(max(id), 0) FROM blocks)`)
		drivers = append(drivers, driveDefault) // not a set: the newest id
		probes = append(probes, `(SELECT count(*) FROM (SELECT 1 FROM blocks INDEXED BY blocks_family_net_lo
			WHERE family = ? AND net_lo >= ? AND net_lo <= ? LIMIT ?))`)
		args = append(args, r.family, r.lo, r.hi, queue.PageProbe)
		drivers = append(drivers, driveRange)
	}
	if opts.Filter == queue.FilterExpected || opts.Filter == queue.FilterPending {
		probes = append(probes, `(SELECT count(*) FROM (SELECT 1 FROM blocks INDEXED BY blocks_unblock_at
			WHERE unblock_at IS NULL LIMIT ?)) + (SELECT count(*) FROM (SELECT 1 FROM blocks INDEXED BY blocks_unblock_at
			WHERE unblock_at > ? LIMIT ?))`)
		args = append(args, queue.PageProbe, micros(opts.Now), queue.PageProbe)
		drivers = append(drivers, driveExpected)
	}
	if opts.Source != "" {
		probes = append(probes, `(SELECT count(*) FROM (SELECT 1 FROM blocks INDEXED BY blocks_source_id
			WHERE source = ? LIMIT ?))`)
		args = append(args, opts.Source, queue.PageProbe)
		drivers = append(drivers, driveWalk) // the walk goes by the source's index
	}
	if len(probes) == 0 {
		return driveWalk, 0, nil
	}
	st, err := s.readStmt(ctx, `SELECT `+strings.Join(probes, `, `))
	if err != nil {
		return 0, 0, err
	}
	counts := make([]int64, len(probes))
	dest := make([]any, len(probes))
	for i := range counts {
		dest[i] = &counts[i]
	}
	if err := st.QueryRowContext(ctx, args...).Scan(dest...); err != nil {
		return 0, 0, err
	}
	if !opts.Within.IsValid() {
		return queue.SmallestProbe(drivers, counts, driveWalk), 0, nil
	}
	return queue.SmallestProbe(drivers[1:], counts[1:], driveWalk), counts[0], nil
}

// listBlocksQuery builds the SELECT for opts.
func listBlocksQuery(opts queue.ListOptions) (string, []any, error) {
	return listBlocksQueryBy(opts, driveDefault)
}

// listBlocksQueryBy builds the SELECT for opts, driven by drv. A unary +
// keeps SQLite from using an index for a term, so that the chosen set
// drives the query.
func listBlocksQueryBy(opts queue.ListOptions, drv driver) (string, []any, error) {
	var (
		where []string
		args  []any
	)
	now := micros(opts.Now)
	switch opts.Filter {
	case queue.FilterAll:
	case queue.FilterExpected:
		where = append(where, expectedBy(drv))
		args = append(args, now)
	case queue.FilterCurrent:
		// Driven from the open entries rather than from every block of
		// history.
		where = append(where, `b.id IN (SELECT block_id FROM entries WHERE removed IS NULL)`)
	case queue.FilterPending:
		where = append(where, expectedBy(drv), `NOT `+openEntryOf)
		args = append(args, now)
	case queue.FilterPendingRemoval:
		where = append(where, `b.id IN (SELECT block_id FROM entries
			WHERE removed IS NULL AND unblock_at IS NOT NULL AND unblock_at <= ?)`)
		args = append(args, now)
	default:
		return "", nil, fmt.Errorf("unknown filter %d", opts.Filter)
	}
	if opts.Source != "" {
		if drv == driveRange || drv == driveExpected || drv == driveRangeIDs {
			where = append(where, `+b.source = ?`)
		} else {
			where = append(where, `b.source = ?`)
		}
		args = append(args, opts.Source)
	}
	if opts.Within.IsValid() {
		r := rangeOf(opts.Within)
		// net_lo <= hi bounds the index range scan; net_hi <= hi is what
		// "within" means.
		switch drv {
		case driveRangeIDs:
			// The prefix's ids from its index alone, bounded by the
			// cursor; SQLite visits the list in id order, newest first.
			ids := `b.id IN (SELECT id FROM blocks INDEXED BY blocks_family_net_lo
				WHERE family = ? AND net_lo >= ? AND net_lo <= ?`
			args = append(args, r.family, r.lo, r.hi)
			if opts.AfterID != 0 && opts.Descending {
				ids += ` AND id < ?`
				args = append(args, opts.AfterID)
			}
			where = append(where, ids+`)`)
			fallthrough
		case driveWalk, driveExpected:
			where = append(where, `+b.family = ? AND +b.net_lo >= ? AND +b.net_lo <= ? AND b.net_hi <= ?`)
		default:
			where = append(where, `b.family = ? AND b.net_lo >= ? AND b.net_lo <= ? AND b.net_hi <= ?`)
		}
		args = append(args, r.family, r.lo, r.hi, r.hi)
	}
	if !opts.AddedSince.IsZero() {
		where = append(where, `b.added >= ?`)
		args = append(args, micros(opts.AddedSince))
	}
	if n := len(opts.ExcludeSources); n > 0 {
		where = append(where, `b.source NOT IN (`+strings.TrimSuffix(strings.Repeat("?,", n), ",")+`)`)
		for _, src := range opts.ExcludeSources {
			args = append(args, src)
		}
	}
	if opts.WhyContains != "" {
		where = append(where, `instr(lower(b.why), lower(?)) > 0`)
		args = append(args, opts.WhyContains)
	}
	// Under driveRangeIDs the id list drives: the bounds are tested on
	// each of its ids (and bound the list itself).
	id := `b.id`
	if drv == driveRangeIDs {
		id = `+b.id`
	}
	if opts.MinID != 0 {
		where = append(where, id+` > ?`)
		args = append(args, opts.MinID)
	}
	order := "ASC"
	if opts.Descending {
		order = "DESC"
	}
	if opts.AfterID != 0 {
		if opts.Descending {
			where = append(where, id+` < ?`)
		} else {
			where = append(where, id+` > ?`)
		}
		args = append(args, opts.AfterID)
	}
	var q strings.Builder
	q.WriteString(`SELECT ` + blockCols + ` FROM blocks b`)
	if drv == driveRange {
		q.WriteString(` INDEXED BY blocks_family_net_lo`)
	}
	if len(where) > 0 {
		q.WriteString(` WHERE ` + strings.Join(where, ` AND `))
	}
	q.WriteString(` ORDER BY b.id ` + order + ` LIMIT ? OFFSET ?`)
	args = append(args, limitArg(opts.Limit), max(opts.Offset, 0))
	return q.String(), args, nil
}

// ListBlocks implements queue.Store. Rows are read from a read-only
// snapshot while fn runs, so memory stays constant and writers are not
// held up.
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
	query, args, err := listBlocksQueryBy(opts, drv)
	if err != nil {
		return fmt.Errorf("list blocks: %w", err)
	}
	st, err := s.readStmt(ctx, query)
	if err != nil {
		return fmt.Errorf("list blocks: %w", err)
	}
	rows, err := st.QueryContext(ctx, args...)
	if err != nil {
		return fmt.Errorf("list blocks: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		b, err := scanBlock(rows)
		if err != nil {
			return fmt.Errorf("list blocks: %w", err)
		}
		if err := fn(b); err != nil {
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
	const day = int64(24 * time.Hour / time.Microsecond)
	rows, err := s.rdb.QueryContext(ctx, `SELECT added / ?, source, count(*) FROM blocks
		WHERE added >= ? GROUP BY 1, 2 ORDER BY 1, 2`, day, micros(since))
	if err != nil {
		return nil, fmt.Errorf("added per day: %w", err)
	}
	defer rows.Close()
	var out []queue.DayCount
	for rows.Next() {
		var d queue.DayCount
		var n int64
		if err := rows.Scan(&n, &d.Source, &d.Count); err != nil {
			return nil, fmt.Errorf("added per day: %w", err)
		}
		d.Day = time.UnixMicro(n * day).UTC()
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("added per day: %w", err)
	}
	return out, nil
}

const (
	qStatsSources      = `SELECT b.source, count(*) FROM blocks b WHERE ` + expectedCond + ` GROUP BY b.source`
	qStatsCurrent      = `SELECT count(DISTINCT block_id) FROM entries WHERE removed IS NULL`
	qStatsBlockPending = `SELECT count(*) FROM blocks b WHERE ` + expectedCond + ` AND NOT ` + openEntryOf
	// A block is counted once however many idents have it due.
	qStatsUnblockPending = `SELECT count(DISTINCT block_id) FROM entries
		WHERE removed IS NULL AND unblock_at IS NOT NULL AND unblock_at <= ?`
	qNextUnblock = `SELECT min(unblock_at) FROM entries
		WHERE removed IS NULL AND unblock_at IS NOT NULL AND unblock_at > ?`
)

// Stats implements queue.Store. The counts come from one read snapshot, so
// they are consistent with each other.
func (s *Store) Stats(ctx context.Context, now time.Time) (queue.Stats, error) {
	st := queue.Stats{Sources: map[string]int64{}}
	tx, err := s.rdb.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return st, fmt.Errorf("stats: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	at := micros(now)

	rows, err := tx.QueryContext(ctx, qStatsSources, at)
	if err != nil {
		return st, fmt.Errorf("stats: %w", err)
	}
	for rows.Next() {
		var src string
		var n int64
		if err := rows.Scan(&src, &n); err != nil {
			rows.Close()
			return st, fmt.Errorf("stats: %w", err)
		}
		st.Sources[src] = n
		st.Expected += n
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return st, fmt.Errorf("stats: %w", err)
	}
	for _, c := range []struct {
		dst   *int64
		query string
		args  []any
	}{
		{&st.Current, qStatsCurrent, nil},
		{&st.BlockPending, qStatsBlockPending, []any{at}},
		{&st.UnblockPending, qStatsUnblockPending, []any{at}},
	} {
		if err := tx.QueryRowContext(ctx, c.query, c.args...).Scan(c.dst); err != nil {
			return st, fmt.Errorf("stats: %w", err)
		}
	}
	return st, nil
}

// NextUnblockAt implements queue.Store.
func (s *Store) NextUnblockAt(ctx context.Context, now time.Time) (time.Time, bool, error) {
	st, err := s.readStmt(ctx, qNextUnblock)
	if err != nil {
		return time.Time{}, false, fmt.Errorf("next unblock: %w", err)
	}
	var v sql.NullInt64
	if err := st.QueryRowContext(ctx, micros(now)).Scan(&v); err != nil {
		return time.Time{}, false, fmt.Errorf("next unblock: %w", err)
	}
	if !v.Valid {
		return time.Time{}, false, nil
	}
	return fromMicros(v.Int64), true, nil
}

// pruneCond selects closed history: not expected at ?now, no open entry,
// ended before ?cutoff. It depends only on a block and its own entries, so
// deleting the entries of the selected blocks does not change which blocks
// it selects, and the two deletes below agree.
const pruneCond = `NOT (b.forced_unblock = 0 AND (b.unblock_at IS NULL OR b.unblock_at > :now))
	AND (b.unblock_at IS NULL OR b.unblock_at < :cutoff)
	AND NOT EXISTS (SELECT 1 FROM entries e WHERE e.block_id = b.id
		AND (e.removed IS NULL OR e.removed >= :cutoff))`

// Prune implements queue.Store.
func (s *Store) Prune(ctx context.Context, cutoff, now time.Time) (queue.PruneResult, error) {
	var out queue.PruneResult
	err := s.writeLow(ctx, func(t *txn) error {
		args := []any{sql.Named("now", micros(now)), sql.Named("cutoff", micros(cutoff))}
		if _, err := t.tx.ExecContext(ctx, `DELETE FROM pending WHERE EXISTS (
			SELECT 1 FROM blocks b WHERE b.id = pending.block_id
			AND NOT (b.forced_unblock = 0 AND (b.unblock_at IS NULL OR b.unblock_at > ?)))`, micros(now)); err != nil {
			return fmt.Errorf("drop stale queue rows: %w", err)
		}
		res, err := t.tx.ExecContext(ctx, `DELETE FROM entries WHERE block_id IN (
			SELECT b.id FROM blocks b WHERE `+pruneCond+`)`, args...)
		if err != nil {
			return fmt.Errorf("delete entries: %w", err)
		}
		if out.Entries, err = res.RowsAffected(); err != nil {
			return err
		}
		res, err = t.tx.ExecContext(ctx, `DELETE FROM blocks AS b WHERE `+pruneCond, args...)
		if err != nil {
			return fmt.Errorf("delete blocks: %w", err)
		}
		if out.Blocks, err = res.RowsAffected(); err != nil {
			return err
		}
		return nil
	})
	if err != nil {
		return queue.PruneResult{}, fmt.Errorf("prune: %w", err)
	}
	return out, nil
}
