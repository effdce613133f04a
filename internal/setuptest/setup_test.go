// Package setuptest checks the README's two commands the way a fresh
// Debian machine runs them: with a PATH that has no Go.
package setuptest

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// cleanEnv is what a new login on Debian has: no Go on the PATH (not
// /usr/local/go, not ~/go/bin), HOME for Go's caches.
func cleanEnv() []string {
	return []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=" + os.Getenv("HOME")}
}

// TestTwoCommandsWithoutGoOnPath runs `make deps` (make test's set-up:
// a go found or installed from Debian's packages, the test packages)
// and `make run` (build, then serve the example config) with a PATH
// that has no go, and checks that the daemon built and answers. It
// installs packages when they are missing, so it needs root (or sudo)
// the first time on a machine.
func TestTwoCommandsWithoutGoOnPath(t *testing.T) {
	if testing.Short() {
		t.Skip("runs make, may install packages")
	}
	if os.Getuid() != 0 && os.Getenv("BHRD_REQUIRE_ROOT") != "1" {
		if _, err := exec.LookPath("sudo"); err != nil {
			t.Skip("SKIP: needs root or sudo to install what is missing (BHRD_REQUIRE_ROOT=1 makes this fail instead)")
		}
	}
	repo, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	env := cleanEnv()
	if out, err := runIn(repo, env, "sh", "-c", "command -v go"); err == nil {
		t.Fatalf("the clean PATH has a go: %s", out)
	}

	// make test's set-up alone.
	out, err := runIn(repo, env, "make", "deps")
	if err != nil {
		t.Fatalf("make deps: %v\n%s", err, out)
	}
	t.Logf("make deps:\n%s", out)
	gopath, err := runIn(repo, env, "./scripts/deps.sh", "go")
	if err != nil {
		t.Fatalf("deps.sh go after make deps: %v\n%s", err, gopath)
	}
	gopath = strings.TrimSpace(lastLine(gopath))
	t.Logf("go found: %s", gopath)
	// The found go runs the release go.mod names (toolchain switching).
	ver, err := runIn(repo, append(env, "GOTOOLCHAIN=auto"), gopath, "env", "GOVERSION")
	if err != nil {
		t.Fatalf("%s env GOVERSION: %v\n%s", gopath, err, ver)
	}
	mod, err := os.ReadFile(filepath.Join(repo, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	var want string
	for line := range strings.Lines(string(mod)) {
		if v, ok := strings.CutPrefix(strings.TrimSpace(line), "go "); ok {
			want = "go" + v
		}
	}
	if got := strings.TrimSpace(lastLine(ver)); got != want {
		t.Errorf("the found go runs %s, go.mod says %s", got, want)
	}

	// make run: builds, then serves the example config until SIGINT.
	bin := filepath.Join(t.TempDir(), "bhrd")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "make", "run", "BIN="+bin)
	cmd.Dir, cmd.Env = repo, env
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var log bytes.Buffer
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGINT)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		}
		if t.Failed() {
			t.Logf("make run:\n%s", log.String())
		}
	}()
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(5 * time.Minute)
	for {
		resp, err := client.Get("http://127.0.0.1:8080/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		select {
		case err := <-exited:
			t.Fatalf("make run ended before the daemon was ready: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the daemon of make run was not ready within 5 minutes: %v", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if fi, err := os.Stat(bin); err != nil || fi.Mode()&0o111 == 0 {
		t.Fatalf("make run built no binary at %s: %v", bin, err)
	}
	t.Logf("make run serves the example config with a go found at %s", gopath)
}

func runIn(dir string, env []string, name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	cmd.Dir, cmd.Env = dir, env
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func lastLine(s string) string {
	s = strings.TrimRight(s, "\n")
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}
