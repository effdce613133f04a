package app_test

import (
	"bytes"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/bhrd/bhrd/internal/bgptest"
	"github.com/bhrd/bhrd/pkg/bgp"
	"github.com/bhrd/bhrd/pkg/config"
)

// buildBhrd builds cmd/bhrd into dir (without the race detector: it is
// the daemon under test, not the test).
func buildBhrd(t testing.TB, dir string) string {
	t.Helper()
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the restart test builds bhrd and needs the go command: %v", err)
	}
	bin := filepath.Join(dir, "bhrd")
	start := time.Now()
	out, err := exec.Command(gobin, "build", "-o", bin, "github.com/bhrd/bhrd/cmd/bhrd").CombinedOutput()
	if err != nil {
		t.Fatalf("go build bhrd: %v\n%s", err, out)
	}
	t.Logf("built bhrd in %s", time.Since(start).Round(time.Millisecond))
	return bin
}

// daemonConfig writes a config file for the bhrd binary: SQLite store in
// dir, API on apiPort, one bgp enforcer peering with the router on
// 127.0.0.1:peerPort, graceful restart on. It returns the path and the
// parsed config (to open the same store from the test).
func daemonConfig(t testing.TB, dir string, apiPort, peerPort int) (string, config.Config) {
	t.Helper()
	yaml := fmt.Sprintf(`log:
  level: warn
store:
  driver: sqlite
  path: %s
api:
  listen: 127.0.0.1:%d
bgp:
  asn: %d
  router_id: %s
  listen_port: -1
  graceful_restart:
    enabled: true
    restart_time: 120s
  peers:
    - name: router
      address: 127.0.0.1
      asn: %d
      port: %d
      hold_time: 9s
enforcers:
  - ident: %s
    type: bgp
`, filepath.Join(dir, "bhrd.db"), apiPort, speakerASN, routerID, routerASN, peerPort, bgpIdent)
	path := filepath.Join(dir, "bhrd.yaml")
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatalf("config for the daemon: %v", err)
	}
	return path, cfg
}

// daemon is one run of the bhrd binary.
type daemon struct {
	t      testing.TB
	cmd    *exec.Cmd
	log    *syncBuffer
	exited chan struct{}
	err    error
}

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

// startDaemon runs `bhrd serve` and waits until its API answers. The
// process is killed when the test ends; its log is shown if the test
// failed.
func startDaemon(t testing.TB, bin, cfgPath, apiAddr string) *daemon {
	t.Helper()
	d := &daemon{t: t, log: &syncBuffer{}, exited: make(chan struct{})}
	d.cmd = exec.Command(bin, "serve", "-config", cfgPath)
	d.cmd.Stdout = d.log
	d.cmd.Stderr = d.log
	if err := d.cmd.Start(); err != nil {
		t.Fatalf("start bhrd: %v", err)
	}
	go func() {
		d.err = d.cmd.Wait()
		close(d.exited)
	}()
	t.Cleanup(func() {
		d.kill()
		if t.Failed() {
			t.Logf("bhrd (pid %d) log:\n%s", d.cmd.Process.Pid, d.log.String())
		}
	})
	hc := &http.Client{Timeout: time.Second}
	bgptest.WaitFor(t, 30*time.Second, "bhrd's API to answer", func() (bool, string) {
		select {
		case <-d.exited:
			t.Fatalf("bhrd exited: %v\n%s", d.err, d.log.String())
		default:
		}
		res, err := hc.Get("http://" + apiAddr + "/healthz")
		if err != nil {
			return false, err.Error()
		}
		res.Body.Close()
		return res.StatusCode == http.StatusOK, res.Status
	})
	return d
}

// kill sends SIGKILL: no clean stop, no chance to withdraw or to close
// sessions; the kernel closes the sockets.
func (d *daemon) kill() {
	select {
	case <-d.exited:
		return
	default:
	}
	_ = d.cmd.Process.Signal(syscall.SIGKILL)
	<-d.exited
}

// TestRestartAfterKill kills the bhrd binary (SIGKILL) while it announces
// 1,000 blackholes to a graceful-restart helper, changes the expected set
// in the store while bhrd is down, and starts bhrd again: the router keeps
// the routes (stale) meanwhile and ends with exactly the new set, after
// bhrd re-announced from the store and sent End-of-RIB.
func TestRestartAfterKill(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the bhrd binary; skipped with -short")
	}
	dir := t.TempDir()
	bin := buildBhrd(t, dir)
	r := bgptest.NewRouter(t, routerASN)
	r.AddPeer(speakerASN, bgptest.PeerOptions{GracefulRestart: true})
	rs := newRestartRun(t, bin, dir, r.Port)
	d1, api, first := rs.d1, rs.api, rs.first
	start := time.Now()
	r.WaitCount(bgp.IPv4Unicast, 30*time.Second, len(first))
	r.WaitRIB(bgp.IPv4Unicast, 10*time.Second, first, blackholeCheck(nextHopV4))
	t.Logf("1,000 blocks reached the router %s after mblock returned", time.Since(start).Round(time.Millisecond))

	d1.kill()
	r.WaitDown(10 * time.Second)
	// The helper keeps every route, marked stale, while bhrd is away.
	r.WaitRIB(bgp.IPv4Unicast, 5*time.Second, first, bgptest.StaleIs(true))

	want, _ := rs.changeWhileDown(t)

	start = time.Now()
	startDaemon(t, bin, rs.cfgPath, rs.apiAddr)
	// GoBGP (the router here) refuses connections for 5 s after a session
	// drops, so bhrd's first attempt is usually turned away and the
	// session comes back on a retry, some 8 s after the start.
	r.WaitEstablished(30 * time.Second)
	t.Logf("session re-established %s after the restart", time.Since(start).Round(time.Millisecond))
	r.WaitRIB(bgp.IPv4Unicast, 30*time.Second, want, blackholeCheck(nextHopV4))
	t.Logf("router held exactly the %d expected prefixes, none stale, %s after the restart",
		len(want), time.Since(start).Round(time.Millisecond))
	if n := r.Count(bgp.IPv6Unicast); n != 0 {
		t.Errorf("router has %d IPv6 prefixes, want none", n)
	}
	// bhrd's own view agrees: exactly the expected set is current.
	wantCIDRs := make([]string, len(want))
	for i, p := range want {
		wantCIDRs[i] = p.String()
	}
	bgptest.WaitFor(t, 10*time.Second, "bhrd to report the expected set as current", func() (bool, string) {
		got := api.currentBrief()
		if len(got) != len(want) {
			return false, fmt.Sprintf("%d current", len(got))
		}
		for _, c := range wantCIDRs {
			if !got[c] {
				return false, c + " not current"
			}
		}
		return true, ""
	})
}

// restartRun is a bhrd binary announcing 1,000 blocks (first) to a
// graceful-restart peer on 127.0.0.1:peerPort, with its config and token.
type restartRun struct {
	cfgPath, apiAddr string
	cfg              config.Config
	d1               *daemon
	api              *client
	first            []netip.Prefix
}

func newRestartRun(t *testing.T, bin, dir string, peerPort int) *restartRun {
	t.Helper()
	apiPort := bgptest.FreePort(t)
	rs := &restartRun{apiAddr: fmt.Sprintf("127.0.0.1:%d", apiPort)}
	rs.cfgPath, rs.cfg = daemonConfig(t, dir, apiPort, peerPort)
	_, st := seedService(t, rs.cfg, nil)
	token := newToken(t, st)
	st.Close()
	rs.d1 = startDaemon(t, bin, rs.cfgPath, rs.apiAddr)
	rs.api = newClient(t, rs.apiAddr, token)
	rs.first = hostPrefixes("198.18.0.0", 1000)
	items := make([]map[string]string, len(rs.first))
	for i, p := range rs.first {
		items[i] = map[string]string{"cidr": p.String(), "source": "e2e", "why": "restart test", "duration": "1h"}
	}
	if st, body := rs.api.do("POST", "/bhr/api/mblock", items); st != http.StatusCreated {
		t.Fatalf("POST mblock of %d: status %d: %.300s", len(items), st, body)
	}
	return rs
}

// changeWhileDown changes the expected set through the store while bhrd
// is down: the first 100 blocks are unblocked and 50 new ones added. It
// returns the new expected set and the added prefixes.
func (rs *restartRun) changeWhileDown(t *testing.T) (want, added []netip.Prefix) {
	t.Helper()
	svc, st := seedService(t, rs.cfg, nil)
	defer st.Close()
	for _, p := range rs.first[:100] {
		if _, err := svc.UnblockNow(t.Context(), p.String(), "restart test"); err != nil {
			t.Fatalf("unblock %s: %v", p, err)
		}
	}
	added = hostPrefixes("198.18.10.0", 50)
	mblock(t, svc, blockRequests(added, "1h", ""))
	return append(append([]netip.Prefix(nil), rs.first[100:]...), added...), added
}
