package bgptest

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// startDaemon writes conf to dir/confName, starts the routing daemon
// args(confPath) builds the command line of, with its output in log, kills
// it when the test ends (printing log if the test failed), and waits until
// ready passes, failing at once if the daemon exits first.
func startDaemon(t testing.TB, name, dir, confName, conf string, log *lockedBuffer, args func(confPath string) []string, ready func() (bool, string)) {
	t.Helper()
	confPath := filepath.Join(dir, confName)
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	argv := args(confPath)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout = log
	cmd.Stderr = log
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
		if t.Failed() {
			t.Logf("%s log:\n%s", name, log.String())
		}
	})
	WaitFor(t, 10*time.Second, name+"'s control socket", func() (bool, string) {
		select {
		case err := <-exited:
			t.Fatalf("%s exited: %v\n%s", name, err, log.String())
		default:
		}
		return ready()
	})
}

// requireDaemon returns when err (what finding a daemon's programs said)
// is nil; otherwise it skips the test, or fails it when env=1 or CI=true.
func requireDaemon(t testing.TB, name, debianPkg, env string, err error) {
	t.Helper()
	if err == nil {
		return
	}
	if os.Getenv(env) == "1" || os.Getenv("CI") == "true" {
		t.Fatalf("%s interop test needs Debian package %s: %v", name, debianPkg, err)
	}
	t.Skipf("SKIPPING %s interop test: %v (apt-get install %s; %s=1 makes this a failure)", name, err, debianPkg, env)
}

var errNotRoot = errors.New("bgpd runs standalone only as root here")
