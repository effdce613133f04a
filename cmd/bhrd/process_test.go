package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/bhrd/bhrd/internal/bgptest"
	"github.com/bhrd/bhrd/pkg/bgp"
)

// syncBuffer collects a child's stderr while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// buildBinary builds bhrd into dir.
func buildBinary(t *testing.T, dir string) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("go tool not found: %v", err)
	}
	bin := filepath.Join(dir, "bhrd")
	out, err := exec.Command(goBin, "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// served is one `bhrd serve` the test started.
type served struct {
	cmd    *exec.Cmd
	log    *syncBuffer
	exited chan error // receives Wait's result once
}

// serve starts `bin serve -config cfgPath`; it is killed when the test
// ends, and its log printed if the test failed.
func serve(t *testing.T, bin, cfgPath string) *served {
	t.Helper()
	s := &served{cmd: exec.Command(bin, "serve", "-config", cfgPath), log: &syncBuffer{}, exited: make(chan error, 1)}
	s.cmd.Stderr = s.log
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { s.exited <- s.cmd.Wait() }()
	t.Cleanup(func() {
		if s.cmd.ProcessState == nil {
			_ = s.cmd.Process.Kill()
			<-s.exited
		}
		if t.Failed() {
			t.Logf("bhrd log:\n%s", s.log.String())
		}
	})
	return s
}

// waitReadyz waits until base's /readyz answers 200.
func waitReadyz(t *testing.T, client *http.Client, base string, timeout time.Duration) {
	t.Helper()
	bgptest.WaitFor(t, timeout, "/readyz", func() (bool, string) {
		resp, err := client.Get(base + "/readyz")
		if err != nil {
			return false, err.Error()
		}
		resp.Body.Close()
		return resp.StatusCode == 200, resp.Status
	})
}

// adminToken adds an admin user with the CLI and returns a token of it.
func adminToken(t *testing.T, bin, cfgPath string) string {
	t.Helper()
	if out, err := exec.Command(bin, "user", "add", "-config", cfgPath, "-username", "alice", "-role", "admin").CombinedOutput(); err != nil {
		t.Fatalf("user add: %v %s", err, out)
	}
	tok, err := exec.Command(bin, "token", "create", "-config", cfgPath, "-username", "alice").Output()
	if err != nil {
		t.Fatalf("token create: %v", err)
	}
	return strings.TrimSpace(string(tok))
}

func fileContains(path, s string) (bool, string) {
	b, _ := os.ReadFile(path)
	return strings.Contains(string(b), s), string(b)
}

// TestProcess runs the real binary: user and token commands, serve with
// an embedded store and a BGP enforcer peering with an in-test GoBGP
// router, readiness through /readyz, a block over HTTP seen in the audit
// file, /metrics and the router's RIB, then SIGHUP and SIGTERM.
func TestProcess(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	dir := t.TempDir()
	bin := buildBinary(t, dir)
	r := bgptest.NewRouter(t, testRouterASN)
	r.AddPeer(testSpeakerASN, bgptest.PeerOptions{})
	port := bgptest.FreePort(t)
	auditPath := filepath.Join(dir, "audit.log")
	cfgPath := filepath.Join(dir, "bhrd.yaml")
	writeCfg := func(level string, minLen int) {
		y := fmt.Sprintf(`instance: edge-1
log:
  level: %s
  audit: %s
store:
  driver: sqlite
  path: %s
api:
  listen: 127.0.0.1:%d
  shutdown_timeout: 5s
policy:
  minimum_prefixlen: %d
bgp:
  asn: %d
  router_id: 192.0.2.254
  listen_port: -1
  peers:
    - name: router
      address: 127.0.0.1
      asn: %d
      port: %d
      hold_time: 9s
enforcers:
  - ident: %s
    type: bgp
`, level, auditPath, filepath.Join(dir, "bhrd.db"), port, minLen, testSpeakerASN, testRouterASN, r.Port, testIdent)
		if err := os.WriteFile(cfgPath, []byte(y), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writeCfg("info", 24)

	run := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(bin, args...).Output()
		if err != nil {
			t.Fatalf("bhrd %v: %v", args, err)
		}
		return strings.TrimSpace(string(out))
	}
	run("user", "add", "-config", cfgPath, "-username", "alice", "-role", "admin")
	token := run("token", "create", "-config", cfgPath, "-username", "alice")

	var logBuf syncBuffer
	cmd := exec.Command(bin, "serve", "-config", cfgPath)
	cmd.Stderr = &logBuf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("bhrd log:\n%s", logBuf.String())
		}
	}()

	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	client := &http.Client{Timeout: 5 * time.Second}
	bgptest.WaitFor(t, 30*time.Second, "/readyz", func() (bool, string) {
		resp, err := client.Get(base + "/readyz")
		if err != nil {
			return false, err.Error()
		}
		resp.Body.Close()
		return resp.StatusCode == 200, resp.Status
	})

	form := url.Values{"cidr": {"203.0.113.7"}, "source": {"test"}, "why": {"process test"}, "duration": {"300"}}
	req, _ := http.NewRequest("POST", base+"/bhr/api/block", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Authorization", "Token "+token)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 201 {
		t.Fatalf("block: %s", resp.Status)
	}

	r.WaitRIB(bgp.IPv4Unicast, 20*time.Second, []netip.Prefix{netip.MustParsePrefix("203.0.113.7/32")}, nil)
	bgptest.WaitFor(t, 10*time.Second, "audit lines", func() (bool, string) {
		b, _ := os.ReadFile(auditPath)
		s := string(b)
		ok := strings.Contains(s, `"event":"block_created"`) && strings.Contains(s, `"cidr":"203.0.113.7/32"`) &&
			strings.Contains(s, `"actor":"alice"`) && strings.Contains(s, `"event":"set_blocked"`) &&
			strings.Contains(s, `"event":"token_created"`) && strings.Contains(s, `"event":"bgp_peer_up"`)
		return ok, s
	})
	bgptest.WaitFor(t, 10*time.Second, "metrics", func() (bool, string) {
		resp, err := client.Get(base + "/metrics")
		if err != nil {
			return false, err.Error()
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		_, _ = b.ReadFrom(resp.Body)
		s := b.String()
		return strings.Contains(s, `bhrd_blocks{state="current"} 1`) &&
			strings.Contains(s, `bhrd_bgp_prefixes_advertised{ident="r1",peer="127.0.0.1"} 1`), s
	})

	// Unblock and expiry withdraw; after kill -9, a block that ended
	// while bhrd was down is not announced again, the rest is.
	postForm := func(path string, form url.Values, want int) {
		t.Helper()
		postFormAs(t, client, base+path, token, form, want)
	}
	pfx := func(ss ...string) []netip.Prefix {
		var out []netip.Prefix
		for _, s := range ss {
			out = append(out, netip.MustParsePrefix(s))
		}
		return out
	}
	for _, b := range []struct{ cidr, d string }{{"203.0.113.8", "1h"}, {"203.0.113.9", "4"}} {
		postForm("/bhr/api/block", url.Values{"cidr": {b.cidr}, "source": {"test"}, "why": {"process test"}, "duration": {b.d}}, 201)
	}
	r.WaitRIB(bgp.IPv4Unicast, 20*time.Second, pfx("203.0.113.7/32", "203.0.113.8/32", "203.0.113.9/32"), nil)
	postForm("/bhr/api/unblock_now", url.Values{"cidr": {"203.0.113.8"}, "why": {"done"}}, 200)
	r.WaitRIB(bgp.IPv4Unicast, 20*time.Second, pfx("203.0.113.7/32", "203.0.113.9/32"), nil)
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-exited
	time.Sleep(4 * time.Second) // 203.0.113.9 ends while bhrd is down
	cmd = exec.Command(bin, "serve", "-config", cfgPath)
	cmd.Stderr = &logBuf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited = make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	r.WaitRIB(bgp.IPv4Unicast, 30*time.Second, pfx("203.0.113.7/32"), nil)

	// SIGHUP after logrotate moved the audit file: a new file, the
	// reload in both logs, and what needs a restart.
	if err := os.Rename(auditPath, auditPath+".1"); err != nil {
		t.Fatal(err)
	}
	writeCfg("debug", 23)
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	bgptest.WaitFor(t, 10*time.Second, "config_reloaded in the new audit file", func() (bool, string) {
		return fileContains(auditPath, `"event":"config_reloaded"`)
	})
	if ok, s := fileContains(auditPath, `"applied":["log.level","policy","log.audit (reopened)"]`); !ok {
		t.Errorf("config_reloaded line: %s", s)
	}
	if !strings.Contains(logBuf.String(), `"msg":"config reloaded"`) {
		t.Errorf("no config reloaded line in the log")
	}

	// A broken file changes nothing and does not stop bhrd.
	if err := os.WriteFile(cfgPath, []byte("nonsense: [\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	bgptest.WaitFor(t, 10*time.Second, "reload failure logged", func() (bool, string) {
		return strings.Contains(logBuf.String(), "config reload failed; nothing changed"), ""
	})

	start := time.Now()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("exit after SIGTERM: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("bhrd did not exit within 15s of SIGTERM (shutdown_timeout 5s)")
	}
	t.Logf("stopped in %s", time.Since(start).Round(time.Millisecond))
	if !strings.Contains(logBuf.String(), `"msg":"bhrd stopped"`) {
		t.Errorf("no \"bhrd stopped\" in the log")
	}
	// Every log and audit line (the daemon's and the commands') names
	// the instance.
	b, _ := os.ReadFile(auditPath)
	b1, _ := os.ReadFile(auditPath + ".1")
	for what, text := range map[string]string{"log": logBuf.String(), "audit": string(b1) + string(b)} {
		n := 0
		for line := range strings.Lines(text) {
			var m map[string]any
			if json.Unmarshal([]byte(line), &m) != nil {
				continue // not a JSON line (a panic trace would be)
			}
			n++
			if m["instance"] != "edge-1" {
				t.Errorf("%s line without instance edge-1: %s", what, line)
			}
		}
		if n < 5 {
			t.Errorf("only %d %s lines", n, what)
		}
	}
}

// postFormAs POSTs a form with a token and checks the status.
func postFormAs(t *testing.T, client *http.Client, url, token string, form url.Values, want int) {
	t.Helper()
	req, _ := http.NewRequest("POST", url, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Authorization", "Token "+token)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != want {
		t.Fatalf("POST %s: %s, want %d", url, resp.Status, want)
	}
}
