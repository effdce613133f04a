package pgtest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		os.Exit(runChild())
	}
	os.Exit(Main(m))
}

func connect(t *testing.T, u string) *pgx.Conn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, u)
	if err != nil {
		t.Fatalf("connect %s: %v", u, err)
	}
	t.Cleanup(func() { _ = conn.Close(context.Background()) })
	return conn
}

func dbName(t *testing.T, u string) string {
	t.Helper()
	cfg, err := pgx.ParseConfig(u)
	if err != nil {
		t.Fatal(err)
	}
	return cfg.Database
}

func TestNewDatabaseIsFreshAndIsolated(t *testing.T) {
	ctx := context.Background()
	u1, u2 := NewDatabase(t), NewDatabase(t)
	if dbName(t, u1) == dbName(t, u2) {
		t.Fatalf("two calls gave the same database %q", dbName(t, u1))
	}
	c1, c2 := connect(t, u1), connect(t, u2)
	var n int
	if err := c1.QueryRow(ctx, `SELECT count(*) FROM pg_tables WHERE schemaname = 'public'`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatalf("fresh database has %d tables", n)
	}
	if _, err := c1.Exec(ctx, `CREATE TABLE only_in_one (x int)`); err != nil {
		t.Fatal(err)
	}
	if err := c2.QueryRow(ctx, `SELECT count(*) FROM pg_tables WHERE tablename = 'only_in_one'`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatal("a table created in one database is visible in the other")
	}
	var got string
	if err := c2.QueryRow(ctx, `SELECT current_database()`).Scan(&got); err != nil {
		t.Fatal(err)
	}
	if got != dbName(t, u2) {
		t.Fatalf("connected to %q, want %q", got, dbName(t, u2))
	}
}

func TestDatabaseDroppedAfterTest(t *testing.T) {
	var name string
	t.Run("inner", func(t *testing.T) {
		name = dbName(t, NewDatabase(t))
	})
	if name == "" {
		t.Fatal("inner test did not get a database")
	}
	server.mu.Lock()
	admin := server.adminURL
	server.mu.Unlock()
	conn := connect(t, admin)
	var n int
	if err := conn.QueryRow(context.Background(), `SELECT count(*) FROM pg_database WHERE datname = $1`, name).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Fatalf("database %s still exists after its test ended", name)
	}
}

func TestUsableFromBenchmark(t *testing.T) {
	var u string
	res := testing.Benchmark(func(b *testing.B) {
		u = NewDatabase(b)
		for b.Loop() {
		}
	})
	if u == "" || res.N == 0 {
		t.Fatalf("benchmark got no database (N=%d)", res.N)
	}
}

func TestServerRunsAsPostgresWhenRoot(t *testing.T) {
	u := NewDatabase(t)
	server.mu.Lock()
	c := server.cluster
	server.mu.Unlock()
	if c == nil {
		t.Skipf("using %s, not a throw-away cluster", EnvURL)
	}
	conn := connect(t, u)
	var pid int
	if err := conn.QueryRow(context.Background(), `SELECT pg_backend_pid()`).Scan(&pid); err != nil {
		t.Fatal(err)
	}
	uid := procUID(t, pid)
	if os.Geteuid() == 0 {
		pg, err := user.Lookup("postgres")
		if err != nil {
			t.Fatal(err)
		}
		if strconv.Itoa(uid) != pg.Uid {
			t.Fatalf("backend runs as uid %d, want postgres (%s)", uid, pg.Uid)
		}
	} else if uid != os.Geteuid() {
		t.Fatalf("backend runs as uid %d, want %d", uid, os.Geteuid())
	}
	// Only a unix socket: no TCP listener.
	var listen string
	if err := conn.QueryRow(context.Background(), `SHOW listen_addresses`).Scan(&listen); err != nil {
		t.Fatal(err)
	}
	if listen != "" {
		t.Fatalf("listen_addresses = %q, want empty", listen)
	}
}

func procUID(t *testing.T, pid int) int {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "Uid:" {
			uid, _ := strconv.Atoi(f[1])
			return uid
		}
	}
	t.Fatalf("no Uid in /proc/%d/status", pid)
	return -1
}

// needBinaries skips (or fails under BHRD_REQUIRE_PG=1 when no external
// server is configured) when no PostgreSQL binaries are installed.
func needBinaries(t *testing.T) string {
	t.Helper()
	dir, err := findBinDir()
	if err != nil {
		if Required() && os.Getenv(EnvURL) == "" {
			t.Fatalf("pgtest: %v", err)
		}
		t.Skipf("SKIP (no PostgreSQL binaries): %v", err)
	}
	return dir
}

func TestClusterStartStop(t *testing.T) {
	bin := needBinaries(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c, err := startCluster(ctx, bin)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, c.url)
	if err != nil {
		_ = c.stop()
		t.Fatal(err)
	}
	var one int
	err = conn.QueryRow(ctx, `SELECT 1`).Scan(&one)
	_ = conn.Close(ctx)
	if err != nil || one != 1 {
		_ = c.stop()
		t.Fatalf("SELECT 1 = %d, %v", one, err)
	}
	pid := c.proc.Pid
	if err := c.stop(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(c.dir); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("cluster dir %s not removed: %v", c.dir, err)
	}
	if alive(pid) {
		t.Fatalf("postgres %d still running after stop", pid)
	}
}

const childEnv = "BHRD_PGTEST_CHILD"

// runChild starts a cluster, reports it and dies without any cleanup, as a
// test binary that panics would.
func runChild() int {
	bin, err := findBinDir()
	if err != nil {
		fmt.Println("ERR", err)
		return 1
	}
	c, err := startCluster(context.Background(), bin)
	if err != nil {
		fmt.Println("ERR", err)
		return 1
	}
	fmt.Printf("PID %d %s\n", c.proc.Pid, c.dir)
	os.Exit(3)
	return 3
}

func TestServerDiesWithTestBinary(t *testing.T) {
	needBinaries(t)
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var pid int
	var dir string
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "ERR ") {
			t.Fatalf("child: %s", line)
		}
		if _, err := fmt.Sscanf(line, "PID %d %s", &pid, &dir); err == nil {
			break
		}
	}
	err = cmd.Wait()
	if pid == 0 {
		t.Fatalf("child reported no server (exit: %v)", err)
	}
	if ee := (*exec.ExitError)(nil); !errors.As(err, &ee) || ee.ExitCode() != 3 {
		t.Fatalf("child exit: %v, want status 3", err)
	}
	defer os.RemoveAll(dir)
	deadline := time.Now().Add(30 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("postgres %d survived its test binary", pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// alive reports whether pid exists and is not a zombie (in a container
// nobody may reap the orphaned postmaster).
func alive(pid int) bool { return pidAlive(pid) }

func TestSweepStale(t *testing.T) {
	base := t.TempDir()
	dead := exec.Command("true")
	if err := dead.Run(); err != nil {
		t.Fatal(err)
	}
	mk := func(name, owner string, age time.Duration) string {
		d := base + "/" + dirPrefix + name
		if err := os.MkdirAll(d+"/data", 0o755); err != nil {
			t.Fatal(err)
		}
		if owner != "" {
			if err := os.WriteFile(d+"/"+ownerFile, []byte(owner), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		old := time.Now().Add(-age)
		if err := os.Chtimes(d, old, old); err != nil {
			t.Fatal(err)
		}
		return d
	}
	stale := mk("dead", strconv.Itoa(dead.Process.Pid), 0)
	mine := mk("mine", strconv.Itoa(os.Getpid()), 0)
	fresh := mk("fresh", "", 0)
	abandoned := mk("abandoned", "", 2*time.Hour)
	running := mk("running", strconv.Itoa(dead.Process.Pid), 0)
	if err := os.WriteFile(running+"/data/postmaster.pid", []byte(strconv.Itoa(os.Getpid())+"\n/x\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	sweepStale(base)
	for dir, wantKept := range map[string]bool{stale: false, mine: true, fresh: true, abandoned: false, running: true} {
		_, err := os.Stat(dir)
		if kept := err == nil; kept != wantKept {
			t.Errorf("%s: kept = %v, want %v", dir, kept, wantKept)
		}
	}
}

func TestWithDatabase(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"postgres://u:p@h:5/postgres?sslmode=disable", "postgres://u:p@h:5/x?sslmode=disable"},
		{"postgresql://u@h/", "postgresql://u@h/x"},
		{"postgres://postgres@/postgres?host=%2Ftmp%2Fd", "postgres://postgres@/x?host=%2Ftmp%2Fd"},
		{"host=/tmp user=u dbname=postgres", "host=/tmp user=u dbname=postgres dbname=x"},
	} {
		got, err := withDatabase(tc.in, "x")
		if err != nil || got != tc.want {
			t.Errorf("withDatabase(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
		cfg, err := pgx.ParseConfig(got)
		if err != nil || cfg.Database != "x" {
			t.Errorf("%q parses to database %q, %v", got, cfg.Database, err)
		}
	}
	if got := redact("postgres://u:secret@h/x"); strings.Contains(got, "secret") {
		t.Errorf("redact left the password: %s", got)
	}
}

func TestClusterStartFailureCleansUp(t *testing.T) {
	ours := func() map[string]bool {
		base := os.TempDir()
		if os.Geteuid() == 0 {
			base = "/tmp"
		}
		dirs, _ := filepath.Glob(base + "/" + dirPrefix + "*")
		out := map[string]bool{}
		for _, d := range dirs {
			if b, err := os.ReadFile(d + "/" + ownerFile); err == nil && string(b) == strconv.Itoa(os.Getpid()) {
				out[d] = true
			}
		}
		return out
	}
	before := ours()
	bin := t.TempDir()
	if err := os.WriteFile(bin+"/initdb", []byte("#!/bin/sh\necho broken >&2\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if c, err := startCluster(ctx, bin); err == nil {
		_ = c.stop()
		t.Fatal("a broken initdb started a cluster")
	}
	for d := range ours() {
		if !before[d] {
			t.Errorf("failed start left %s behind", d)
		}
	}
}
