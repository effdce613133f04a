package pgtest

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5"
)

// cluster is a throw-away PostgreSQL server living in a temporary
// directory: data directory, unix socket and log all inside it.
type cluster struct {
	dir  string // removed by stop
	data string
	log  string
	url  string // admin URL (database "postgres")

	proc    *os.Process
	done    chan struct{} // closed when the server process has exited
	waitErr error         // set before done is closed
}

const (
	dirPrefix = "bhrd-pg-"
	ownerFile = "owner.pid" // pid of the test binary that made the dir
)

// sweepStale removes the directories of clusters whose test binary died
// without cleaning up (the server itself died with it, see startCluster).
// A directory is left alone while its owner lives, while a server still
// runs in it, or, lacking an owner file (being created), for an hour.
func sweepStale(base string) {
	dirs, _ := filepath.Glob(filepath.Join(base, dirPrefix+"*"))
	for _, dir := range dirs {
		b, err := os.ReadFile(filepath.Join(dir, ownerFile))
		if err != nil {
			if fi, err := os.Stat(dir); err == nil && time.Since(fi.ModTime()) > time.Hour {
				_ = os.RemoveAll(dir)
			}
			continue
		}
		owner, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil || pidAlive(owner) {
			continue
		}
		if pm, err := os.ReadFile(filepath.Join(dir, "data", "postmaster.pid")); err == nil {
			if first, _, _ := strings.Cut(string(pm), "\n"); first != "" {
				if pid, err := strconv.Atoi(first); err == nil && pidAlive(pid) {
					continue
				}
			}
		}
		_ = os.RemoveAll(dir)
	}
}

// pidAlive reports whether a process exists (a zombie counts as dead).
func pidAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return syscall.Kill(pid, 0) == syscall.EPERM
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}

// findBinDir returns the directory of the highest installed PostgreSQL
// version (Debian layout), or BHRD_PG_BINDIR.
func findBinDir() (string, error) {
	if d := os.Getenv(EnvBinDir); d != "" {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err != nil {
			return "", fmt.Errorf("%s=%s: %w", EnvBinDir, d, err)
		}
		return d, nil
	}
	matches, err := filepath.Glob("/usr/lib/postgresql/*/bin/initdb")
	if err != nil || len(matches) == 0 {
		return "", errors.New("no /usr/lib/postgresql/*/bin/initdb found")
	}
	version := func(p string) float64 {
		v, _ := strconv.ParseFloat(filepath.Base(filepath.Dir(filepath.Dir(p))), 64)
		return v
	}
	sort.Slice(matches, func(i, j int) bool { return version(matches[i]) > version(matches[j]) })
	return filepath.Dir(matches[0]), nil
}

// startCluster initialises and starts a server. As root, initdb and
// postgres run as the "postgres" user, which owns the directory.
func startCluster(ctx context.Context, binDir string) (_ *cluster, err error) {
	asRoot := os.Geteuid() == 0
	var cred *syscall.Credential
	base := os.TempDir()
	if asRoot {
		pg, err := user.Lookup("postgres")
		if err != nil {
			return nil, fmt.Errorf("running as root needs a postgres user: %w", err)
		}
		uid, _ := strconv.Atoi(pg.Uid)
		gid, _ := strconv.Atoi(pg.Gid)
		cred = &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
		// root's TMPDIR may be private; /tmp is reachable by everyone.
		base = "/tmp"
	}
	// The socket path must fit in sun_path (107 bytes).
	if len(base) > 60 {
		base = "/tmp"
	}
	sweepStale(base)
	dir, err := os.MkdirTemp(base, dirPrefix)
	if err != nil {
		return nil, fmt.Errorf("temp dir: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, ownerFile), []byte(strconv.Itoa(os.Getpid())), 0o644); err != nil {
		_ = os.RemoveAll(dir)
		return nil, fmt.Errorf("temp dir: %w", err)
	}
	c := &cluster{
		dir:  dir,
		data: filepath.Join(dir, "data"),
		log:  filepath.Join(dir, "postgres.log"),
		done: make(chan struct{}),
	}
	defer func() {
		if err != nil {
			_ = c.stop()
		}
	}()
	if cred != nil {
		if err := os.Chown(dir, int(cred.Uid), int(cred.Gid)); err != nil {
			return nil, fmt.Errorf("chown %s: %w", dir, err)
		}
	}

	// --no-sync only skips flushing what initdb writes: the cluster is
	// thrown away if the machine crashes. The server keeps fsync on so that
	// benchmarks measure real commits.
	initdb := []string{filepath.Join(binDir, "initdb"),
		"-D", c.data, "-U", "postgres", "-A", "trust", "-E", "UTF8", "--locale=C", "--no-sync"}
	if asRoot {
		initdb = append([]string{"runuser", "-u", "postgres", "--"}, initdb...)
	}
	cmd := exec.CommandContext(ctx, initdb[0], initdb[1:]...)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("initdb: %w\n%s", err, out)
	}

	logFile, err := os.OpenFile(c.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, fmt.Errorf("log file: %w", err)
	}
	defer logFile.Close()
	srv := exec.Command(filepath.Join(binDir, "postgres"),
		"-D", c.data,
		"-k", dir,
		"-p", "5432",
		"-c", "listen_addresses=",
		"-c", "max_connections=300",
		"-c", "shared_buffers=256MB",
		"-c", "dynamic_shared_memory_type=mmap",
		"-c", "logging_collector=off",
		"-c", "log_min_messages=warning",
	)
	srv.Dir = dir
	srv.Stdout = logFile
	srv.Stderr = logFile
	// The server runs directly under our credentials switch rather than
	// through runuser so that the parent-death signal and our stop signal
	// reach postgres itself, not a wrapper that relays them its own way.
	// SIGQUIT is an immediate shutdown: if the test binary dies, so does
	// the server.
	srv.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGQUIT, Setpgid: true}
	started := make(chan error, 1)
	go func() {
		// Pdeathsig fires when the *thread* that forked exits; pin this
		// goroutine to its thread and keep it alive as long as the server.
		runtime.LockOSThread()
		if err := srv.Start(); err != nil {
			started <- err
			close(c.done)
			return
		}
		started <- nil
		c.waitErr = srv.Wait()
		close(c.done)
	}()
	if err := <-started; err != nil {
		return nil, fmt.Errorf("start postgres: %w", err)
	}
	c.proc = srv.Process

	q := url.Values{"host": {dir}, "port": {"5432"}, "sslmode": {"disable"}}
	c.url = "postgres://postgres@/postgres?" + q.Encode()
	if err := c.waitReady(ctx); err != nil {
		return nil, err
	}
	return c, nil
}

// waitReady polls until the server accepts a connection, it exits, or ctx
// ends. There is no event to wait for short of parsing the log.
func (c *cluster) waitReady(ctx context.Context) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	var lastErr error
	for {
		cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		conn, err := pgx.Connect(cctx, c.url)
		cancel()
		if err == nil {
			_ = conn.Close(ctx)
			return nil
		}
		lastErr = err
		select {
		case <-c.done:
			return fmt.Errorf("postgres exited (%v) before accepting connections:\n%s", c.waitErr, c.logTail())
		case <-ctx.Done():
			return fmt.Errorf("postgres not ready: %v (last: %v)\n%s", ctx.Err(), lastErr, c.logTail())
		case <-tick.C:
		}
	}
}

func (c *cluster) logTail() string {
	b, _ := os.ReadFile(c.log)
	s := string(b)
	if len(s) > 4000 {
		s = s[len(s)-4000:]
	}
	return strings.TrimSpace(s)
}

// stop shuts the server down (fast shutdown, escalating if it hangs) and
// removes the directory.
func (c *cluster) stop() error {
	var errs []error
	if c.proc != nil {
		select {
		case <-c.done:
		default:
			_ = c.proc.Signal(syscall.SIGINT)
			select {
			case <-c.done:
			case <-time.After(30 * time.Second):
				_ = c.proc.Signal(syscall.SIGQUIT)
				select {
				case <-c.done:
				case <-time.After(10 * time.Second):
					_ = c.proc.Kill()
					<-c.done
				}
				errs = append(errs, errors.New("postgres did not stop on SIGINT within 30s"))
			}
		}
	}
	if err := os.RemoveAll(c.dir); err != nil {
		errs = append(errs, fmt.Errorf("remove %s: %w", c.dir, err))
	}
	return errors.Join(errs...)
}
