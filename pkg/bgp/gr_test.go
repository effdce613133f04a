package bgp

import (
	"bufio"
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

func prefixes(ss ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParsePrefix(s)
	}
	return out
}

func blackholes(ps []netip.Prefix) []Route {
	out := make([]Route, len(ps))
	for i, p := range ps {
		out[i] = Route{Prefix: p, Communities: DefaultCommunities()}
	}
	return out
}

func grConfig(r *router) Config {
	cfg := r.speakerConfig(speakerASN)
	cfg.GracefulRestart = GracefulRestartConfig{Enabled: true, Restarting: true}
	return cfg
}

func staleIs(want bool) func(ribPath) error {
	return func(p ribPath) error {
		if p.stale != want {
			return fmt.Errorf("%s: stale %v, want %v", p.prefix, p.stale, want)
		}
		return nil
	}
}

// restartAndCheck plays bhrd's second life: announce the new set, signal
// Ready (End-of-RIB), and check that the GR helper ends with exactly the
// new set, none of it stale.
func restartAndCheck(t *testing.T, r *router, v4, v6 []netip.Prefix) {
	t.Helper()
	s := startSpeaker(t, grConfig(r))
	if err := s.Announce(ctxb, "bgp1", append(blackholes(v4), blackholes(v6)...)); err != nil {
		t.Fatalf("re-announce: %v", err)
	}
	if err := s.Ready(ctxb); err != nil {
		t.Fatalf("ready: %v", err)
	}
	waitFor(t, 20*time.Second, "router to see the new session", func() (bool, string) {
		return r.established(), "not established"
	})
	fresh := func(p ribPath) error {
		if err := staleIs(false)(p); err != nil {
			return err
		}
		return expectAttrs(map[bool]netip.Addr{true: DefaultNextHopV4, false: DefaultNextHopV6}[p.prefix.Addr().Is4()], DefaultCommunities())(p)
	}
	r.waitRIB(IPv4Unicast, 20*time.Second, v4, fresh)
	r.waitRIB(IPv6Unicast, 5*time.Second, v6, fresh)
	ps := waitPeerUp(t, s, 5*time.Second)
	if !ps.GracefulRestart {
		t.Errorf("peer state does not show graceful restart negotiated: %+v", ps)
	}
	if ps.PrefixesSent != uint64(len(v4)+len(v6)) {
		t.Errorf("prefixes sent %d, want %d", ps.PrefixesSent, len(v4)+len(v6))
	}
}

// A planned restart: Stop closes the session without a NOTIFICATION, the
// router keeps the routes as stale while bhrd is away, and after the new
// bhrd re-announces and sends End-of-RIB the router holds exactly the new
// set.
func TestGracefulRestart(t *testing.T) {
	r := newRouter(t, routerASN)
	r.addPeer(speakerASN, routerPeerOpts{gr: true})

	first4 := prefixes("198.51.100.1/32", "198.51.100.2/32", "198.51.100.3/32")
	first6 := prefixes("2001:db8::1/128")
	s1, err := New(grConfig(r), testLogger(t).Named("speaker1"))
	if err != nil {
		t.Fatal(err)
	}
	if err := s1.Start(ctxb); err != nil {
		t.Fatal(err)
	}
	if err := s1.Announce(ctxb, "bgp1", append(blackholes(first4), blackholes(first6)...)); err != nil {
		t.Fatal(err)
	}
	if err := s1.Ready(ctxb); err != nil {
		t.Fatal(err)
	}
	r.waitRIB(IPv4Unicast, 20*time.Second, first4, staleIs(false))
	r.waitRIB(IPv6Unicast, 5*time.Second, first6, staleIs(false))

	ctx, cancel := context.WithTimeout(ctxb, 10*time.Second)
	defer cancel()
	if err := s1.Stop(ctx); err != nil {
		t.Fatalf("stop: %v", err)
	}
	waitFor(t, 5*time.Second, "router to see the session down", func() (bool, string) {
		return !r.established(), "still established"
	})
	// bhrd is down: the helper keeps every route, marked stale.
	r.waitRIB(IPv4Unicast, 5*time.Second, first4, staleIs(true))
	r.waitRIB(IPv6Unicast, 5*time.Second, first6, staleIs(true))

	restartAndCheck(t, r, prefixes("198.51.100.2/32", "198.51.100.4/32"), prefixes("2001:db8::2/128"))
}

const crashHelperEnv = "BHRD_BGP_CRASH_HELPER_ROUTER_PORT"

// crashHelper is the bhrd that TestGracefulRestartAfterCrash kills: the
// test binary, run again with crashHelperEnv set (see TestMain). It brings
// its session up, says so on stdout, and waits for SIGKILL.
func crashHelper() int {
	port, err := strconv.Atoi(os.Getenv(crashHelperEnv))
	if err != nil {
		fmt.Fprintln(os.Stderr, "crash helper:", err)
		return 2
	}
	cfg := (&router{asn: routerASN, port: port}).speakerConfig(speakerASN)
	cfg.GracefulRestart = GracefulRestartConfig{Enabled: true, Restarting: true}
	s, err := New(cfg, nil)
	up := make(chan struct{}, 1)
	if err == nil {
		s.OnPeerEvent(func(e PeerEvent) {
			if e.Up {
				select {
				case up <- struct{}{}:
				default:
				}
			}
		})
		err = s.Start(ctxb)
	}
	if err == nil {
		var ps []netip.Prefix
		for _, p := range strings.Split(os.Getenv(crashHelperEnv+"_PREFIXES"), ",") {
			ps = append(ps, netip.MustParsePrefix(p))
		}
		err = s.Announce(ctxb, "bgp1", blackholes(ps))
	}
	if err == nil {
		err = s.Ready(ctxb)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "crash helper:", err)
		return 1
	}
	<-up // the parent gives up after its own deadline and kills us
	fmt.Println("SPEAKER-UP")
	// Wait to be killed; stdin closes if the parent dies first.
	_, _ = bufio.NewReader(os.Stdin).ReadString('\n')
	return 0
}

// A crash: bhrd is SIGKILLed, so the kernel closes its sockets. The router
// keeps the routes as stale until the restarted bhrd sends End-of-RIB.
func TestGracefulRestartAfterCrash(t *testing.T) {
	r := newRouter(t, routerASN)
	r.addPeer(speakerASN, routerPeerOpts{gr: true})
	first := prefixes("198.51.100.11/32", "198.51.100.12/32", "198.51.100.13/32")

	cmd := exec.Command(os.Args[0])
	var names []string
	for _, p := range first {
		names = append(names, p.String())
	}
	cmd.Env = append(os.Environ(),
		crashHelperEnv+"="+strconv.Itoa(r.port),
		crashHelperEnv+"_PREFIXES="+strings.Join(names, ","))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	defer stdin.Close()
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start helper process: %v", err)
	}
	killed := false
	defer func() {
		if !killed {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	}()
	up := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if strings.Contains(sc.Text(), "SPEAKER-UP") {
				up <- nil
				_, _ = bufio.NewReader(stdout).WriteTo(os.Stderr)
				return
			}
		}
		up <- fmt.Errorf("helper process exited before its session came up: %v", sc.Err())
	}()
	select {
	case err := <-up:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("helper process did not bring its session up within 30s")
	}
	r.waitRIB(IPv4Unicast, 10*time.Second, first, staleIs(false))

	if err := cmd.Process.Kill(); err != nil {
		t.Fatalf("kill helper: %v", err)
	}
	_ = cmd.Wait()
	killed = true
	waitFor(t, 5*time.Second, "router to see the session down", func() (bool, string) {
		return !r.established(), "still established"
	})
	r.waitRIB(IPv4Unicast, 5*time.Second, first, staleIs(true))

	restartAndCheck(t, r, prefixes("198.51.100.13/32", "198.51.100.15/32"), nil)
}
