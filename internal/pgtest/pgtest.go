package pgtest

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// Environment variables that steer the helper.
const (
	// EnvURL names a server to use instead of starting one. Its user must
	// be allowed to CREATE DATABASE; the database in the URL is only used
	// to issue CREATE/DROP DATABASE.
	EnvURL = "BHRD_TEST_DATABASE_URL"
	// EnvRequire, set to 1, turns every "no PostgreSQL" skip into a failure.
	EnvRequire = "BHRD_REQUIRE_PG"
	// EnvBinDir overrides the directory holding initdb and postgres.
	EnvBinDir = "BHRD_PG_BINDIR"
)

// server is the process-wide state: one server per test binary, started on
// the first NewDatabase so that a run selecting no database test pays
// nothing.
var server struct {
	mu         sync.Mutex
	mainCalled bool
	started    bool   // setup attempted
	adminURL   string // "" when unavailable
	reason     string // why unavailable
	cluster    *cluster
	admin      *pgx.Conn
}

var dbCounter atomic.Int64

// Required reports whether BHRD_REQUIRE_PG=1, i.e. whether a missing
// PostgreSQL must fail tests instead of skipping them.
func Required() bool { return os.Getenv(EnvRequire) == "1" }

// Main runs the tests of a package that uses NewDatabase and stops the
// throw-away cluster, if one was started, when they end (whatever their
// outcome). Use it as:
//
//	func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }
//
// Should the test binary die without returning here (a panic in a test),
// the server still goes down: it is bound to the binary's lifetime by a
// parent-death signal. Only its temporary directory stays behind then,
// until the next cluster start sweeps it away.
func Main(m *testing.M) int {
	server.mu.Lock()
	server.mainCalled = true
	server.mu.Unlock()
	defer shutdown()
	code := m.Run()
	server.mu.Lock()
	unavailable := server.started && server.adminURL == ""
	reason := server.reason
	server.mu.Unlock()
	if unavailable {
		// Repeated after the run so that it is the last thing a reader of
		// a long log sees: some tests did not really run.
		fmt.Fprint(os.Stderr, banner(reason))
	}
	return code
}

// NewDatabase creates a fresh, empty database for the calling test or
// benchmark and returns a URL to it. The database is dropped when tb
// ends. Without PostgreSQL it skips tb, or fails it under BHRD_REQUIRE_PG=1.
func NewDatabase(tb testing.TB) string {
	tb.Helper()
	u, err := newDatabase(tb)
	if err != nil {
		if errors.Is(err, errUnavailable) && !Required() {
			tb.Skipf("SKIP (no PostgreSQL): %v", err)
		}
		tb.Fatalf("pgtest: %v", err)
	}
	return u
}

var errUnavailable = errors.New("PostgreSQL unavailable")

func newDatabase(tb testing.TB) (string, error) {
	server.mu.Lock()
	defer server.mu.Unlock()
	if err := ensureServerLocked(); err != nil {
		return "", err
	}
	name := fmt.Sprintf("bhrd_test_%d_%d_%d", os.Getpid(), time.Now().UnixNano()%1e6, dbCounter.Add(1))
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := adminExecLocked(ctx, "CREATE DATABASE "+pgx.Identifier{name}.Sanitize()); err != nil {
		return "", fmt.Errorf("create database %s: %w", name, err)
	}
	tb.Cleanup(func() {
		server.mu.Lock()
		defer server.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		// FORCE: a test that failed half way may still hold connections.
		if err := adminExecLocked(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{name}.Sanitize()+" WITH (FORCE)"); err != nil {
			tb.Errorf("pgtest: drop database %s: %v", name, err)
		}
	})
	return withDatabase(server.adminURL, name)
}

// ensureServerLocked finds or starts the server once per process.
func ensureServerLocked() error {
	if !server.started {
		server.started = true
		server.adminURL, server.reason = setup()
		if server.adminURL == "" {
			fmt.Fprint(os.Stderr, banner(server.reason))
		}
	}
	if server.adminURL == "" {
		return fmt.Errorf("%w: %s", errUnavailable, server.reason)
	}
	return nil
}

// setup returns the admin URL, or "" and the reason there is none.
func setup() (adminURL, reason string) {
	if u := os.Getenv(EnvURL); u != "" {
		return u, ""
	}
	if !server.mainCalled {
		// Without Main nobody would stop the cluster; refuse rather than
		// leak a server per test binary.
		return "", "pgtest.Main is not called from TestMain (and " + EnvURL + " is unset)"
	}
	binDir, err := findBinDir()
	if err != nil {
		return "", err.Error()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := startCluster(ctx, binDir)
	if err != nil {
		return "", fmt.Sprintf("start throw-away cluster from %s: %v", binDir, err)
	}
	server.cluster = c
	return c.url, ""
}

func adminExecLocked(ctx context.Context, sql string) error {
	if server.admin == nil || server.admin.IsClosed() {
		conn, err := pgx.Connect(ctx, server.adminURL)
		if err != nil {
			return fmt.Errorf("connect to %s: %w", redact(server.adminURL), err)
		}
		server.admin = conn
	}
	_, err := server.admin.Exec(ctx, sql)
	return err
}

func shutdown() {
	server.mu.Lock()
	defer server.mu.Unlock()
	if server.admin != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = server.admin.Close(ctx)
		cancel()
		server.admin = nil
	}
	if server.cluster != nil {
		if err := server.cluster.stop(); err != nil {
			fmt.Fprintf(os.Stderr, "pgtest: stop cluster: %v\n", err)
		}
		server.cluster = nil
	}
}

// withDatabase returns adminURL pointing at database name. Both URLs
// (postgres://...) and keyword/value strings (host=... dbname=...) work.
func withDatabase(adminURL, name string) (string, error) {
	if strings.HasPrefix(adminURL, "postgres://") || strings.HasPrefix(adminURL, "postgresql://") {
		u, err := url.Parse(adminURL)
		if err != nil {
			return "", fmt.Errorf("parse %s: %w", EnvURL, err)
		}
		u.Path = "/" + name
		u.RawPath = ""
		return u.String(), nil
	}
	// In a keyword/value string a later keyword overrides an earlier one.
	return adminURL + " dbname=" + name, nil
}

func redact(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.User == nil {
		return s
	}
	if _, ok := u.User.Password(); ok {
		u.User = url.UserPassword(u.User.Username(), "xxx")
	}
	return u.String()
}

func banner(reason string) string {
	what := "SKIPPED"
	if Required() {
		what = "FAILED (" + EnvRequire + "=1)"
	}
	line := strings.Repeat("!", 78)
	return fmt.Sprintf("\n%s\n!!! pgtest: NO POSTGRESQL: tests that need it are %s\n!!! reason: %s\n!!! fix: install postgresql or set %s\n%s\n\n",
		line, what, reason, EnvURL, line)
}
