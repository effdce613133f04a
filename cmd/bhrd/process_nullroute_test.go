package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netns"

	"github.com/bhrd/bhrd/internal/bgptest"
)

// requireRoot skips a test that needs root, or fails it under
// BHRD_REQUIRE_ROOT=1 (CI).
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("BHRD_REQUIRE_ROOT") == "1" {
		t.Fatal("BHRD_REQUIRE_ROOT=1 but not running as root")
	}
	t.Skip("needs root (network namespaces); set BHRD_REQUIRE_ROOT=1 to fail instead")
}

// testNetns creates a named network namespace with loopback up, removed
// when the test ends.
func testNetns(t *testing.T) string {
	t.Helper()
	name := fmt.Sprintf("bhrdtest-%d-%d", os.Getpid(), time.Now().UnixNano()%1e6)
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", name).Run() })
	if out, err := exec.Command("ip", "-n", name, "link", "set", "lo", "up").CombinedOutput(); err != nil {
		t.Fatalf("lo up: %v %s", err, out)
	}
	return name
}

// nsClient is an HTTP client whose connections are made inside the named
// namespace (where the daemon's loopback is).
func nsClient(t *testing.T, name string) *http.Client {
	t.Helper()
	ns, err := netns.GetFromName(name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close() })
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		type res struct {
			c   net.Conn
			err error
		}
		ch := make(chan res, 1)
		go func() {
			// A socket stays in the namespace it was created in; the
			// thread is thrown away afterwards rather than reused.
			runtime.LockOSThread()
			if err := netns.Set(ns); err != nil {
				ch <- res{nil, err}
				return
			}
			var d net.Dialer
			c, err := d.DialContext(ctx, network, addr)
			ch <- res{c, err}
		}()
		r := <-ch
		return r.c, r.err
	}
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{DialContext: dial, DisableKeepAlives: true}}
}

// nullRoutes lists the routes of protocol proto in table table of the
// namespace, as "type dst".
func nullRoutes(t *testing.T, ns string, table, proto int) []string {
	t.Helper()
	var l []string
	for _, fam := range []struct{ flag, host string }{{"-4", "/32"}, {"-6", "/128"}} {
		out, err := exec.Command("ip", "-n", ns, fam.flag, "-json", "route", "show", "table", fmt.Sprint(table), "proto", fmt.Sprint(proto)).Output()
		if err != nil {
			t.Fatalf("ip route show: %v", err)
		}
		var rs []struct {
			Type string `json:"type"`
			Dst  string `json:"dst"`
		}
		if len(strings.TrimSpace(string(out))) > 0 {
			if err := json.Unmarshal(out, &rs); err != nil {
				t.Fatalf("ip -json: %v: %s", err, out)
			}
		}
		for _, r := range rs {
			dst := r.Dst
			if !strings.Contains(dst, "/") {
				dst += fam.host
			}
			l = append(l, r.Type+" "+dst)
		}
	}
	slices.Sort(l)
	return l
}

// TestProcessNullroute runs the real binary as an operator would, inside
// a network namespace the test creates (ip netns exec, stdin /dev/null,
// nothing but a config file): blocks become blackhole routes of bhrd's
// protocol in the main table, unblock and expiry remove them, another
// protocol's route is left alone, and after kill -9 and changes made
// while bhrd was down the kernel ends with exactly the expected set.
func TestProcessNullroute(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	requireRoot(t)
	dir := t.TempDir()
	bin := buildBinary(t, dir)
	ns := testNetns(t)
	const table, proto = 254, 66
	port := bgptest.FreePort(t)
	cfgPath := filepath.Join(dir, "bhrd.yaml")
	y := fmt.Sprintf("store: {driver: sqlite, path: %s}\napi: {listen: \"127.0.0.1:%d\"}\nenforcers: [{ident: kernel1, type: nullroute}]\n",
		filepath.Join(dir, "bhrd.db"), port)
	if err := os.WriteFile(cfgPath, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bin, "check-config", "-config", cfgPath).CombinedOutput(); err != nil {
		t.Fatalf("check-config: %v %s", err, out)
	}
	run := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(bin, args...).Output()
		if err != nil {
			t.Fatalf("bhrd %v: %v", args, err)
		}
		return strings.TrimSpace(string(out))
	}
	run("user", "add", "-config", cfgPath, "-username", "ops", "-role", "admin")
	token := run("token", "create", "-config", cfgPath, "-username", "ops")
	// Somebody else's route in the same table, of another protocol.
	if out, err := exec.Command("ip", "-n", ns, "route", "add", "blackhole", "198.51.100.99/32", "proto", "static").CombinedOutput(); err != nil {
		t.Fatalf("static route: %v %s", err, out)
	}

	client := nsClient(t, ns)
	base := fmt.Sprintf("http://127.0.0.1:%d", port)
	var logs []*syncBuffer
	start := func() (*exec.Cmd, chan error) {
		t.Helper()
		var log syncBuffer
		logs = append(logs, &log)
		cmd := exec.Command("ip", "netns", "exec", ns, bin, "serve", "-config", cfgPath)
		cmd.Stdin = nil // /dev/null, as under systemd
		cmd.Stderr = &log
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		bgptest.WaitFor(t, 30*time.Second, "/readyz", func() (bool, string) {
			select {
			case err := <-exited:
				t.Fatalf("bhrd exited: %v\n%s", err, log.String())
			default:
			}
			resp, err := client.Get(base + "/readyz")
			if err != nil {
				return false, err.Error()
			}
			resp.Body.Close()
			return resp.StatusCode == 200, resp.Status
		})
		return cmd, exited
	}
	defer func() {
		if t.Failed() {
			for i, l := range logs {
				t.Logf("bhrd log %d:\n%s", i, l.String())
			}
		}
	}()
	post := func(path string, form url.Values, want int) {
		t.Helper()
		postFormAs(t, client, base+path, token, form, want)
	}
	block := func(cidr, duration string) {
		t.Helper()
		post("/bhr/api/block", url.Values{"cidr": {cidr}, "source": {"test"}, "why": {"null route test"}, "duration": {duration}}, 201)
	}
	waitRoutes := func(what string, want ...string) {
		t.Helper()
		slices.Sort(want)
		bgptest.WaitFor(t, 15*time.Second, what, func() (bool, string) {
			got := nullRoutes(t, ns, table, proto)
			return slices.Equal(got, want), strings.Join(got, ", ")
		})
	}

	cmd, exited := start()
	block("203.0.113.7", "1h")
	block("203.0.113.8", "1h")
	block("203.0.113.9", "6")
	block("2001:db8::/64", "1h")
	waitRoutes("routes for the blocks", "blackhole 203.0.113.7/32", "blackhole 203.0.113.8/32", "blackhole 203.0.113.9/32", "blackhole 2001:db8::/64")
	post("/bhr/api/unblock_now", url.Values{"cidr": {"203.0.113.8"}, "why": {"done"}}, 200)
	waitRoutes("unblock and expiry", "blackhole 203.0.113.7/32", "blackhole 2001:db8::/64")

	// kill -9, then while bhrd is down: a block ends, our route of a live
	// block is deleted by hand, a stray route of our protocol appears.
	block("203.0.113.10", "3")
	waitRoutes("short block", "blackhole 203.0.113.7/32", "blackhole 203.0.113.10/32", "blackhole 2001:db8::/64")
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-exited
	for _, args := range [][]string{
		{"route", "del", "blackhole", "203.0.113.7/32", "proto", fmt.Sprint(proto)},
		{"route", "add", "blackhole", "203.0.113.50/32", "proto", fmt.Sprint(proto)},
	} {
		if out, err := exec.Command("ip", append([]string{"-n", ns}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v %s", args, err, out)
		}
	}
	time.Sleep(3500 * time.Millisecond) // 203.0.113.10 ends while bhrd is down
	cmd, exited = start()
	waitRoutes("reconciled after restart", "blackhole 203.0.113.7/32", "blackhole 2001:db8::/64")
	if got := nullRoutes(t, ns, table, 4); !slices.Equal(got, []string{"blackhole 198.51.100.99/32"}) {
		t.Errorf("the static route was touched: %v", got)
	}
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("exit: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("bhrd did not stop")
	}
	// Routes stay after a clean stop: the kernel keeps blackholing.
	if got := nullRoutes(t, ns, table, proto); len(got) != 2 {
		t.Errorf("routes after stop: %v", got)
	}
}
