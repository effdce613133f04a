package pgstore

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/bhrd/bhrd/pkg/queue"
)

// An internal enforcer's ident has one owner among the processes sharing
// the database: the owner holds a session advisory lock on the ident's
// key on a connection of its own for as long as its enforcer runs. The
// lock goes with the session, so a killed owner (or one cut off from the
// database) releases it and a standby waiting in pg_advisory_lock takes
// it over. Reports for an ident (set_blocked, set_unblocked, forgetting
// it) from anyone but the ident's own enforcer take the same key shared,
// for their transaction, without waiting: while an owner holds it they
// fail with ReservedIdentError on every instance.

// identKey is the SQL expression of ident $n's lock key. Computed by the
// database, so that every instance, whatever its version, agrees.
func identKey(param string) string {
	return `hashtextextended('bhrd ident ' || ` + param + `, 0)`
}

// ownerAppPrefix starts the application_name of an owner's session, so
// that a standby can name the holder.
const ownerAppPrefix = "bhrd owner "

// ownerPing is how often an owner's session is checked. A session that
// ended (database restart, connection cut, pg_terminate_backend) is
// noticed within it, and the owner stops enforcing; another instance may
// have taken the ident over meanwhile.
var ownerPing = 2 * time.Second

// LockIdent implements queue.IdentLocker.
func (s *Store) LockIdent(ctx context.Context, ident, instance string, held func(holder string)) (queue.IdentLease, error) {
	cfg := s.pool.Config().ConnConfig.Copy()
	if cfg.RuntimeParams == nil {
		cfg.RuntimeParams = map[string]string{}
	}
	// application_name is cut at 63 bytes by the server: the instance
	// name comes first in what is left.
	cfg.RuntimeParams["application_name"] = ownerAppPrefix + instance
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("own ident %s: connect: %w", ident, err)
	}
	fail := func(err error) (queue.IdentLease, error) {
		_ = conn.Close(context.WithoutCancel(ctx))
		return nil, fmt.Errorf("own ident %s: %w", ident, err)
	}
	var ok bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock(`+identKey("$1")+`)`, ident).Scan(&ok); err != nil {
		return fail(err)
	}
	if !ok {
		if held != nil {
			held(s.identHolder(ctx, conn, ident))
		}
		// Waits in the server until the holder's session ends; a
		// cancelled ctx cancels the wait.
		if _, err := conn.Exec(ctx, `SELECT pg_advisory_lock(`+identKey("$1")+`)`, ident); err != nil {
			return fail(err)
		}
	}
	l := &lease{conn: conn, pid: conn.PgConn().PID(), lost: make(chan struct{}), stop: make(chan struct{}), done: make(chan struct{})}
	go l.watch()
	return l, nil
}

// identHolder names the instance holding ident's lock ("" if it cannot
// tell: the holder's session may not be visible to this role).
func (s *Store) identHolder(ctx context.Context, conn *pgx.Conn, ident string) string {
	var app string
	err := conn.QueryRow(ctx, `
		WITH k AS (SELECT `+identKey("$1")+` AS key)
		SELECT coalesce(a.application_name, '') FROM k, pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
		WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
		  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
		  AND l.classid = ((k.key >> 32) & 4294967295)::oid AND l.objid = (k.key & 4294967295)::oid
		LIMIT 1`, ident).Scan(&app)
	if err != nil {
		return ""
	}
	if len(app) > len(ownerAppPrefix) && app[:len(ownerAppPrefix)] == ownerAppPrefix {
		return app[len(ownerAppPrefix):]
	}
	return app
}

// lease is one held ident lock.
type lease struct {
	conn *pgx.Conn
	pid  uint32 // the session's backend
	lost chan struct{}
	stop chan struct{}
	done chan struct{}
	once sync.Once
}

func (l *lease) Lost() <-chan struct{} { return l.lost }

// watch pings the session until Release or a failed ping.
func (l *lease) watch() {
	defer close(l.done)
	t := time.NewTicker(ownerPing)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), ownerPing)
		_, err := l.conn.Exec(ctx, `SELECT 1`)
		cancel()
		if err != nil {
			close(l.lost)
			return
		}
	}
}

// Release unlocks the ident and ends the session. The unlock comes first
// and is waited for: the server frees a closed session's locks only once
// its backend has exited, a moment after the connection closes, and a
// report made right after Release (another instance taking over, a
// remote enforcer reporting) must find the ident free. Should the
// unlock fail, the session's end still frees the lock.
func (l *lease) Release() {
	l.once.Do(func() {
		close(l.stop)
		<-l.done
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, _ = l.conn.Exec(ctx, `SELECT pg_advisory_unlock_all()`)
		_ = l.conn.Close(ctx)
	})
}
