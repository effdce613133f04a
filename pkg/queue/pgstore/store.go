package pgstore

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"hash/fnv"
	"net/netip"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bhrd/bhrd/internal/migrate"
	"github.com/bhrd/bhrd/pkg/auth"
	"github.com/bhrd/bhrd/pkg/queue"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgtype"
	"github.com/jackc/pgx/v5/pgxpool"
)

//go:embed migrations/*.sql
var migrationFS embed.FS

// Channel is the LISTEN/NOTIFY channel carrying queue.ChangeKind payloads.
const Channel = "bhrd_changes"

// Advisory lock keys. Two-int keys live in a different lock space from the
// bigint keys used for cidrs, so they can never collide with them.
const (
	lockClass        = 0x62687264 // "bhrd"
	lockMigrate      = 1
	lockIdents       = 2
	lockBulk         = 3
	listenAppName    = "bhrd-listen"
	migrationsTable  = "bhrd_schema_migrations"
	maxListenBackoff = 5 * time.Second
	// notifyInterval bounds the rate of "blocks" notifications (see
	// runNotifier), and so adds at most that to the time another process
	// takes to see a change.
	notifyInterval = 2 * time.Millisecond
)

// Store is the PostgreSQL queue.Store, queue.ChangeListener and auth.Store.
type Store struct {
	pool          *pgxpool.Pool
	onListenError func(error)
	// ownPIDs holds the backend pids of the pool's connections, so that
	// ListenChanges can drop the echo of this store's own writes.
	ownPIDs sync.Map // uint32 -> struct{}

	// notify asks the notifier goroutine for a "blocks" notification;
	// stopNotifier ends it and notifierDone closes when it has.
	notify       chan struct{}
	stopNotifier context.CancelFunc
	notifierDone chan struct{}

	history historyHint // see ApplyBlocks

	// deadPending counts the pending rows this store deleted since it
	// last asked runVacuum (through vacuum) for a vacuum of pending;
	// vacuumDone closes when runVacuum has ended.
	deadPending atomic.Int64
	vacuum      chan struct{}
	vacuumDone  chan struct{}

	// pageWindow is queue.PageWindow (tests make it small).
	pageWindow int64
}

var (
	_ queue.Store          = (*Store)(nil)
	_ queue.ChangeListener = (*Store)(nil)
	_ auth.Store           = (*Store)(nil)
)

type options struct {
	maxConns      int32
	tweak         []func(*pgxpool.Config)
	onListenError func(error)
}

// Option configures Open.
type Option func(*options)

// WithMaxConns sets the size of the connection pool (default: pgxpool's,
// the larger of 4 and the number of CPUs).
func WithMaxConns(n int32) Option { return func(o *options) { o.maxConns = n } }

// WithPoolConfig lets the caller adjust the pool configuration parsed from
// the URL before the pool is created.
func WithPoolConfig(f func(*pgxpool.Config)) Option {
	return func(o *options) { o.tweak = append(o.tweak, f) }
}

// WithListenErrors sets a function told of every error that makes
// ListenChanges reconnect (to log it); by default they are dropped.
func WithListenErrors(f func(error)) Option { return func(o *options) { o.onListenError = f } }

// Open connects to the database at url (a PostgreSQL URL or keyword/value
// string) and checks that it answers. It does not migrate: call Migrate.
func Open(ctx context.Context, url string, opts ...Option) (*Store, error) {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		// The parse error may quote the URL, password included.
		return nil, errors.New("pgstore: invalid database url")
	}
	// The hot statements are prepared once per connection (pgx's statement
	// cache) and several take arrays, for which PostgreSQL's estimates
	// without the values are so pessimistic that in the default mode it
	// would plan them anew on every call: planning then costs more than
	// running them. Their generic plans are the plans wanted. Statements
	// whose best plan depends on the values (lists, stats, prune) are sent
	// with the values inlined (simple protocol) and planned each time.
	// Parallel workers and JIT compilation cost milliseconds to start:
	// more than any query of this store takes, and the pessimistic cost
	// estimates of generic plans of LIMIT queries would ask for them
	// (measured: JIT added 6 ms to an empty block queue).
	if cfg.ConnConfig.RuntimeParams == nil {
		cfg.ConnConfig.RuntimeParams = map[string]string{}
	}
	for k, v := range map[string]string{
		"plan_cache_mode":                 "force_generic_plan",
		"max_parallel_workers_per_gather": "0",
		"jit":                             "off",
	} {
		if _, set := cfg.ConnConfig.RuntimeParams[k]; !set {
			cfg.ConnConfig.RuntimeParams[k] = v
		}
	}
	if o.maxConns > 0 {
		cfg.MaxConns = o.maxConns
	}
	for _, f := range o.tweak {
		f(cfg)
	}
	s := &Store{onListenError: o.onListenError, pageWindow: queue.PageWindow}
	afterConnect, beforeClose := cfg.AfterConnect, cfg.BeforeClose
	cfg.AfterConnect = func(ctx context.Context, c *pgx.Conn) error {
		if afterConnect != nil {
			if err := afterConnect(ctx, c); err != nil {
				return err
			}
		}
		s.ownPIDs.Store(c.PgConn().PID(), struct{}{})
		return nil
	}
	cfg.BeforeClose = func(c *pgx.Conn) {
		s.ownPIDs.Delete(c.PgConn().PID())
		if beforeClose != nil {
			beforeClose(c)
		}
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("pgstore: open pool: %w", err)
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("pgstore: connect to %s/%s: %w", cfg.ConnConfig.Host, cfg.ConnConfig.Database, err)
	}
	s.pool = pool
	s.notify = make(chan struct{}, 1)
	s.notifierDone = make(chan struct{})
	s.vacuum = make(chan struct{}, 1)
	s.vacuumDone = make(chan struct{})
	nctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	s.stopNotifier = stop
	go s.runNotifier(nctx)
	go s.runVacuum(nctx)
	return s, nil
}

// Pool exposes the connection pool (for health checks and tests).
func (s *Store) Pool() *pgxpool.Pool { return s.pool }

// Close sends a notification still owed, then closes the pool, waiting
// for connections in use to be returned.
func (s *Store) Close() error {
	s.stopNotifier()
	<-s.notifierDone
	<-s.vacuumDone
	s.pool.Close()
	return nil
}

// notifyBlocks asks for a "blocks" notification, after a commit. Requests
// made while one is being sent are answered by one more.
func (s *Store) notifyBlocks() {
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

// runNotifier sends the notifications asked for by notifyBlocks, each in a
// transaction of its own on a pool connection, so that writers need not
// wait for it. A NOTIFY inside the writing transaction would hold
// PostgreSQL's cluster-wide notification lock through that transaction's
// commit and WAL flush, so that concurrent writers could never share a
// flush (a global commit lock in disguise: measured, a third less
// throughput with four writers), and a notifying transaction pipelined
// after the write would still cost every write its execution (the results
// of a pipeline arrive together). Under load, one notification covers the
// writes committed while the previous one was sent or in the
// notifyInterval after it; listeners only need to know that something
// changed, and one notification costs every listening process a wake-up.
//
// The notifying transaction need not wait for its WAL flush. Should a
// notification be lost (this process ending between a commit and its
// notification, or the database failing it), other processes learn of the
// change at their next notification or when their listener reconnects;
// the change itself is committed.
func (s *Store) runNotifier(ctx context.Context) {
	defer close(s.notifierDone)
	send := func(ctx context.Context) {
		// One statement is one implicit transaction in the extended
		// protocol, so set_config(..., true) applies to it alone.
		_, _ = s.pool.Exec(ctx, `SELECT set_config('synchronous_commit', 'off', true), pg_notify('`+Channel+`', 'blocks')::text`)
	}
	for {
		select {
		case <-s.notify:
			send(ctx)
			// Requests made meanwhile wait for the next: at most one
			// notification per notifyInterval under load.
			t := time.NewTimer(notifyInterval)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
			}
		case <-ctx.Done():
			select {
			case <-s.notify:
				fctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				send(fctx)
				cancel()
			default:
			}
			return
		}
	}
}

// pendingVacuumEvery is how many pending rows this store deletes before
// it vacuums pending itself.
const pendingVacuumEvery = 20_000

// pendingDeleted records n pending rows deleted, and asks for a vacuum of
// pending every pendingVacuumEvery. Until a vacuum, a queue read walks the
// index entries of every row its ident's reports deleted (they sort
// first): 1.2–1.5 ms for a read of 200 behind 300,000 (4–5 ns an
// entry), 0.04 ms once vacuumed.
// Autovacuum (migration 0003) comes at most once per autovacuum_naptime
// (a minute by default), while an enforcer draining a big queue deletes
// 30,000 rows a second.
func (s *Store) pendingDeleted(n int64) {
	if n <= 0 || s.deadPending.Add(n) < pendingVacuumEvery {
		return
	}
	s.deadPending.Store(0)
	select {
	case s.vacuum <- struct{}{}:
	default: // one is asked for already
	}
}

// runVacuum vacuums pending when pendingDeleted asks, one at a time,
// until ctx ends (Close), which cancels a vacuum under way (safe: the
// next one, or autovacuum, does its work). SKIP_LOCKED: autovacuum or
// another bhrd's vacuum at work on the table already does it. Failures
// are not reported: autovacuum stays the safety net, and the cost of a
// missed vacuum is only slower queue reads until it comes (bhrd owns its
// tables, so VACUUM is allowed; a role that is not the owner gets a
// warning, not an error).
func (s *Store) runVacuum(ctx context.Context) {
	defer close(s.vacuumDone)
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.vacuum:
			_, _ = s.pool.Exec(ctx, `VACUUM (SKIP_LOCKED) pending`)
		}
	}
}

// Migrations returns the embedded migrations.
func Migrations() ([]migrate.Migration, error) {
	return migrate.Load(migrationFS, "migrations")
}

// Migrate applies the migrations not yet applied and returns their names
// (none when the schema is current). Concurrent migrators (several bhrd
// starting at once) are serialised by a session advisory lock.
func (s *Store) Migrate(ctx context.Context) ([]string, error) {
	ms, err := Migrations()
	if err != nil {
		return nil, fmt.Errorf("pgstore: %w", err)
	}
	applied, err := migrate.Run(ctx, &migrator{pool: s.pool}, ms)
	if err != nil {
		return applied, fmt.Errorf("pgstore: %w", err)
	}
	return applied, nil
}

// migrator is the internal/migrate adapter. It works on one dedicated
// connection, closed at Done, so that the session advisory lock can never
// outlive it inside the pool.
type migrator struct {
	pool *pgxpool.Pool
	conn *pgx.Conn
}

func (m *migrator) Applied(ctx context.Context) (_ map[int]bool, err error) {
	conn, err := pgx.ConnectConfig(ctx, m.pool.Config().ConnConfig)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	defer func() {
		if err != nil {
			_ = conn.Close(context.WithoutCancel(ctx))
		}
	}()
	if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock($1, $2)`, lockClass, lockMigrate); err != nil {
		return nil, fmt.Errorf("lock: %w", err)
	}
	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS `+migrationsTable+` (
		version    integer     PRIMARY KEY,
		name       text        NOT NULL,
		applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return nil, fmt.Errorf("create %s: %w", migrationsTable, err)
	}
	rows, err := conn.Query(ctx, `SELECT version FROM `+migrationsTable)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", migrationsTable, err)
	}
	versions, err := pgx.CollectRows(rows, pgx.RowTo[int32])
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", migrationsTable, err)
	}
	done := make(map[int]bool, len(versions))
	for _, v := range versions {
		done[int(v)] = true
	}
	m.conn = conn
	return done, nil
}

func (m *migrator) Apply(ctx context.Context, mig migrate.Migration) error {
	return pgx.BeginFunc(ctx, m.conn, func(tx pgx.Tx) error {
		// No arguments: pgx uses the simple protocol, which runs a file
		// of several statements.
		if _, err := tx.Exec(ctx, mig.SQL); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `INSERT INTO `+migrationsTable+` (version, name) VALUES ($1, $2)`, mig.Version, mig.Name)
		return err
	})
}

func (m *migrator) Done(ctx context.Context) error {
	if m.conn == nil {
		return nil
	}
	// Closing the session releases the lock even if the unlock fails.
	_, err := m.conn.Exec(ctx, `SELECT pg_advisory_unlock($1, $2)`, lockClass, lockMigrate)
	cerr := m.conn.Close(context.WithoutCancel(ctx))
	m.conn = nil
	if err != nil {
		return fmt.Errorf("unlock: %w", err)
	}
	return cerr
}

// cidrLockKey is the advisory lock key of one cidr. A collision only makes
// two cidrs share a lock.
func cidrLockKey(p netip.Prefix) int64 {
	h := fnv.New64a()
	b, _ := p.MarshalBinary()
	_, _ = h.Write(b)
	return int64(h.Sum64())
}

// lockKeys returns the sorted, distinct lock keys of cidrs.
func lockKeys(cidrs []netip.Prefix) []int64 {
	keys := make([]int64, 0, len(cidrs))
	seen := make(map[int64]bool, len(cidrs))
	for _, p := range cidrs {
		k := cidrLockKey(p)
		if !seen[k] {
			seen[k] = true
			keys = append(keys, k)
		}
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i] < keys[j] })
	return keys
}

// Time conversion: the store keeps timestamptz (microseconds) and hands
// out UTC; the zero time.Time is NULL where a column is nullable.

func tsIn(t time.Time) pgtype.Timestamptz {
	if t.IsZero() {
		return pgtype.Timestamptz{}
	}
	return pgtype.Timestamptz{Time: t.UTC(), Valid: true}
}

// storedTime is t as the store gives it back: UTC, truncated to the
// microsecond as pgx encodes it.
func storedTime(t time.Time) time.Time {
	if t.IsZero() {
		return t
	}
	return t.UTC().Truncate(time.Microsecond)
}

func tsOut(t pgtype.Timestamptz) time.Time {
	if !t.Valid {
		return time.Time{}
	}
	return t.Time.UTC()
}

// notFound turns the P0002 raised by bhrd_not_found (and pgx.ErrNoRows)
// into an error wrapping sentinel; other errors are wrapped with op.
func mapErr(op string, err error, sentinel error) error {
	var pgErr *pgconn.PgError
	switch {
	case errors.As(err, &pgErr) && pgErr.Code == "P0002":
		return fmt.Errorf("%s: %s: %w", op, pgErr.Message, sentinel)
	case errors.Is(err, pgx.ErrNoRows):
		return fmt.Errorf("%s: %w", op, sentinel)
	}
	return fmt.Errorf("%s: %w", op, err)
}

func isUniqueViolation(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "23505"
}

func isForeignKeyViolation(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "23503"
}

// finishTx ends a transaction that a batch left open or failed, so that
// the connection goes back to the pool idle. If even that fails the pool
// drops the connection on release (it is not idle).
func finishTx(conn *pgxpool.Conn) {
	if conn.Conn().PgConn().TxStatus() != 'I' && !conn.Conn().IsClosed() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, _ = conn.Exec(ctx, "ROLLBACK")
	}
}
