package sqlitestore

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bhrd/bhrd/internal/migrate"
	"github.com/bhrd/bhrd/pkg/auth"
	"github.com/bhrd/bhrd/pkg/queue"
	sqlite "modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

//go:embed migrations/*.sql
var migrationFiles embed.FS

// busyTimeout bounds how long a connection waits for a lock held by another
// process (e.g. "bhrd user add" while "bhrd serve" runs); within this
// process writers queue on the single write connection instead.
const busyTimeout = 10 * time.Second

var (
	_ queue.Store = (*Store)(nil)
	_ auth.Store  = (*Store)(nil)
)

// Store is the SQLite queue.Store and auth.Store. It is safe for concurrent
// use by many goroutines.
type Store struct {
	path string
	// wdb has exactly one connection: SQLite allows one writer at a time,
	// and queueing writers on a Go pool is cheaper and fairer than letting
	// several connections spin on SQLITE_BUSY.
	wdb *sql.DB
	// rdb is a pool of read-only connections; in WAL mode they read a
	// snapshot and never wait for the writer, so a long streamed listing
	// does not hold up block requests.
	rdb *sql.DB

	mu         sync.Mutex
	rstmts     map[string]*sql.Stmt
	wstmts     map[string]*sql.Stmt // read-only once writeReady is set
	writeReady atomic.Bool

	// idents caches the idents known active with nothing to catch up on
	// (or, catching up, with a full queue's worth queued), with the time
	// they were last marked seen, so that BlockQueue needs no write
	// transaction and no state read while an ident polls. Sweeps, forgets
	// and set_blocked (which shortens a queue) delete theirs; only this
	// process writes the file.
	idents sync.Map

	// lowGate admits one low-priority writer at a time (writeLow).
	lowGate chan struct{}

	// pageWindow is queue.PageWindow (tests make it small).
	pageWindow int64
}

// Open opens (creating when missing) the database file at path and its
// parent directory. Call Migrate before using a new file.
func Open(ctx context.Context, path string) (*Store, error) {
	if path == "" || path == ":memory:" || strings.HasPrefix(path, "file:") || strings.Contains(path, "?") {
		// The write connection and the read pool must see one database,
		// which an in-memory or URI name would not guarantee; the driver
		// reads anything after "?" as its own parameters.
		return nil, fmt.Errorf("open sqlite store: %q: need a plain file path", path)
	}
	if dir := filepath.Dir(path); dir != "" {
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return nil, fmt.Errorf("open sqlite store: create directory: %w", err)
		}
	}
	// The file holds password and token hashes: create it 0600 (SQLite
	// would use 0644), and its -wal and -shm files follow its mode.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open sqlite store: %w", err)
	}
	f.Close()

	common := url.Values{}
	common.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", busyTimeout.Milliseconds()))
	common.Add("_pragma", "foreign_keys(1)")
	// WAL with synchronous=NORMAL fsyncs at checkpoints, not at every
	// commit. A committed transaction is in the WAL file (at least in the
	// OS page cache) before COMMIT returns, so it survives a crash or kill
	// of bhrd; only a power loss or kernel crash can lose the last commits,
	// and even then the file is never corrupted. That is the durability a
	// block request needs, and it is what makes thousands of single-block
	// requests per second possible without a battery-backed disk.
	common.Add("_pragma", "synchronous(NORMAL)")

	w := cloneValues(common)
	w.Add("_pragma", "journal_mode(WAL)")
	// BEGIN IMMEDIATE takes the write lock when the transaction starts, so a
	// transaction never fails half-way on a lock upgrade (SQLITE_BUSY with a
	// read snapshot that cannot be refreshed) when another process writes.
	w.Set("_txlock", "immediate")
	wdb, err := sql.Open("sqlite", path+"?"+w.Encode())
	if err != nil {
		return nil, fmt.Errorf("open sqlite store %s: %w", path, err)
	}
	wdb.SetMaxOpenConns(1)
	wdb.SetMaxIdleConns(1)
	wdb.SetConnMaxLifetime(0)
	wdb.SetConnMaxIdleTime(0)
	// The write connection turns the file into WAL mode before any reader
	// opens it.
	if err := wdb.PingContext(ctx); err != nil {
		_ = wdb.Close()
		return nil, fmt.Errorf("open sqlite store %s: %w", path, err)
	}

	r := cloneValues(common)
	// A write on a reader would bypass the serialisation of writers.
	r.Add("_pragma", "query_only(1)")
	rdb, err := sql.Open("sqlite", path+"?"+r.Encode())
	if err != nil {
		_ = wdb.Close()
		return nil, fmt.Errorf("open sqlite store %s: %w", path, err)
	}
	n := max(4, runtime.GOMAXPROCS(0))
	rdb.SetMaxOpenConns(n)
	rdb.SetMaxIdleConns(n)
	if err := rdb.PingContext(ctx); err != nil {
		_ = wdb.Close()
		_ = rdb.Close()
		return nil, fmt.Errorf("open sqlite store %s: %w", path, err)
	}
	return &Store{path: path, wdb: wdb, rdb: rdb, rstmts: map[string]*sql.Stmt{}, lowGate: make(chan struct{}, 1), pageWindow: queue.PageWindow}, nil
}

func cloneValues(v url.Values) url.Values {
	out := url.Values{}
	for k, vs := range v {
		out[k] = append([]string(nil), vs...)
	}
	return out
}

// Close releases the connections. Pending statements are finalised.
func (s *Store) Close() error {
	s.mu.Lock()
	for _, m := range []map[string]*sql.Stmt{s.rstmts, s.wstmts} {
		for _, st := range m {
			_ = st.Close()
		}
	}
	s.mu.Unlock()
	rerr := s.rdb.Close()
	werr := s.wdb.Close()
	if err := errors.Join(werr, rerr); err != nil {
		return fmt.Errorf("close sqlite store %s: %w", s.path, err)
	}
	return nil
}

// Migrate applies the embedded migrations not yet applied and returns their
// names; running it on a current schema is a no-op.
func (s *Store) Migrate(ctx context.Context) ([]string, error) {
	ms, err := migrate.Load(migrationFiles, "migrations")
	if err != nil {
		return nil, err
	}
	applied, err := migrate.Run(ctx, &migrator{db: s.wdb}, ms)
	if err != nil {
		return applied, fmt.Errorf("sqlite store %s: %w", s.path, err)
	}
	return applied, nil
}

// migrator adapts the write connection to migrate.DB. SQLite has no
// advisory locks; instead each Apply re-checks, under the write lock of its
// own BEGIN IMMEDIATE transaction, that the version is still missing, so
// two processes migrating at once cannot apply a file twice.
type migrator struct {
	db *sql.DB
}

const versionTable = "bhrd_schema_migrations"

func (m *migrator) Applied(ctx context.Context) (map[int]bool, error) {
	if _, err := m.db.ExecContext(ctx, `CREATE TABLE IF NOT EXISTS `+versionTable+` (
		version INTEGER PRIMARY KEY,
		name    TEXT    NOT NULL,
		applied INTEGER NOT NULL
	)`); err != nil {
		return nil, fmt.Errorf("create %s: %w", versionTable, err)
	}
	rows, err := m.db.QueryContext(ctx, `SELECT version FROM `+versionTable)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", versionTable, err)
	}
	defer rows.Close()
	done := map[int]bool{}
	for rows.Next() {
		var v int
		if err := rows.Scan(&v); err != nil {
			return nil, fmt.Errorf("read %s: %w", versionTable, err)
		}
		done[v] = true
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", versionTable, err)
	}
	return done, nil
}

func (m *migrator) Apply(ctx context.Context, mg migrate.Migration) error {
	tx, err := m.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer func() { _ = tx.Rollback() }()
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM `+versionTable+` WHERE version = ?`, mg.Version).Scan(&n); err != nil {
		return fmt.Errorf("check version: %w", err)
	}
	if n > 0 {
		return nil // applied by another process since Applied
	}
	if _, err := tx.ExecContext(ctx, mg.SQL); err != nil {
		return err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO `+versionTable+` (version, name, applied) VALUES (?, ?, ?)`,
		mg.Version, mg.Name, time.Now().UnixMicro()); err != nil {
		return fmt.Errorf("record version: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

func (m *migrator) Done(context.Context) error { return nil }

// writeQueries are the statements of the hot write paths. They are
// prepared on the write connection before the first write transaction: a
// statement cannot be prepared on the pool's only connection while a
// transaction holds it.
var writeQueries = []string{
	qLatestBlock, qExpectedBlock, qCloseStale, qInsertBlock, qQueueForIdents,
	qExtendBlock, qExtendEntries, qForceUnblock, qForceUnblockEntry, qDequeueBlock,
	qRegisterIdent, qBackfill, qReactivateIdent, qTouchIdent, qBackfillRange, qBackfillEnd, qBackfillMove, qBlockExists, qDequeueEntry,
	qCloseEntry, qEntryItem,
	qCountBlocksIn, qInsertEntriesIn, qDequeueEntriesIn, qBlockItemsIn,
}

// prepareWrites prepares writeQueries once, all or nothing, so that a store
// used before Migrate fails with SQLite's "no such table" and succeeds once
// migrated.
func (s *Store) prepareWrites(ctx context.Context) error {
	if s.writeReady.Load() {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.writeReady.Load() {
		return nil
	}
	prepared := make(map[string]*sql.Stmt, len(writeQueries))
	for _, q := range writeQueries {
		st, err := s.wdb.PrepareContext(ctx, q)
		if err != nil {
			for _, st := range prepared {
				_ = st.Close()
			}
			return fmt.Errorf("prepare (has the database been migrated?): %w", err)
		}
		prepared[q] = st
	}
	s.wstmts = prepared
	s.writeReady.Store(true)
	return nil
}

// readStmt returns a statement prepared once per store on the read pool
// (database/sql prepares it again on each pool connection as needed and
// keeps it there).
func (s *Store) readStmt(ctx context.Context, query string) (*sql.Stmt, error) {
	s.mu.Lock()
	st, ok := s.rstmts[query]
	s.mu.Unlock()
	if ok {
		return st, nil
	}
	st, err := s.rdb.PrepareContext(ctx, query)
	if err != nil {
		return nil, fmt.Errorf("prepare: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if old, ok := s.rstmts[query]; ok {
		_ = st.Close()
		return old, nil
	}
	s.rstmts[query] = st
	return st, nil
}

// txn is one write transaction with access to the store's prepared
// statements; queries off the hot paths run unprepared.
type txn struct {
	s   *Store
	ctx context.Context
	tx  *sql.Tx
}

func (t *txn) exec(query string, args ...any) (sql.Result, error) {
	if st, ok := t.s.wstmts[query]; ok {
		return t.tx.StmtContext(t.ctx, st).ExecContext(t.ctx, args...)
	}
	return t.tx.ExecContext(t.ctx, query, args...)
}

func (t *txn) query(query string, args ...any) (*sql.Rows, error) {
	if st, ok := t.s.wstmts[query]; ok {
		return t.tx.StmtContext(t.ctx, st).QueryContext(t.ctx, args...)
	}
	return t.tx.QueryContext(t.ctx, query, args...)
}

func (t *txn) queryRow(query string, args ...any) *sql.Row {
	if st, ok := t.s.wstmts[query]; ok {
		return t.tx.StmtContext(t.ctx, st).QueryRowContext(t.ctx, args...)
	}
	return t.tx.QueryRowContext(t.ctx, query, args...)
}

// writeLow is write for the writes that may wait: enforcers' reports,
// ident bookkeeping and catch-up, pruning. They queue for the write
// connection one at a time, so that a block or unblock request never
// waits behind more than one of them (a thousand enforcers catching up
// at once otherwise held a block POST for seconds).
func (s *Store) writeLow(ctx context.Context, fn func(t *txn) error) error {
	select {
	case s.lowGate <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-s.lowGate }()
	return s.write(ctx, fn)
}

// write runs fn in one write transaction and commits it when fn succeeds.
// fn must not call other Store methods that write: the single write
// connection is held until it returns.
func (s *Store) write(ctx context.Context, fn func(t *txn) error) error {
	if err := s.prepareWrites(ctx); err != nil {
		return err
	}
	tx, err := s.wdb.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	if err := fn(&txn{s: s, ctx: ctx, tx: tx}); err != nil {
		_ = tx.Rollback()
		return err
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

func isUnique(err error) bool {
	var se *sqlite.Error
	if !errors.As(err, &se) {
		return false
	}
	return se.Code() == sqlite3.SQLITE_CONSTRAINT_UNIQUE || se.Code() == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
}

// Times are stored as unix microseconds UTC; the zero time is NULL where a
// column may be unset.

func micros(t time.Time) int64 { return t.UnixMicro() }

func nullMicros(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UnixMicro()
}

func fromMicros(v int64) time.Time { return time.UnixMicro(v).UTC() }

func fromNullMicros(v sql.NullInt64) time.Time {
	if !v.Valid {
		return time.Time{}
	}
	return fromMicros(v.Int64)
}

// truncTime gives t the precision it has once stored.
func truncTime(t time.Time) time.Time {
	if t.IsZero() {
		return time.Time{}
	}
	return fromMicros(micros(t))
}
