package bgptest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bhrd/bhrd/pkg/bgp"
)

// BIRD is a BIRD 2 daemon started by a test, in the foreground, with its
// control socket in the test's temporary directory. Its BGP protocol is
// named "bhrd".
type BIRD struct {
	t     testing.TB
	birdc string
	sock  string
	// Port is the port BIRD accepts bhrd's session on, on 127.0.0.1.
	Port int
	log  *lockedBuffer
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// RequireBIRD returns the paths of bird and birdc, skipping the test when
// they are missing unless BHRD_REQUIRE_BIRD=1 or CI=true (then it fails).
func RequireBIRD(t testing.TB) (bird, birdc string) {
	t.Helper()
	bird, err1 := exec.LookPath("bird")
	if err1 != nil {
		bird, err1 = exec.LookPath("/usr/sbin/bird")
	}
	birdc, err2 := exec.LookPath("birdc")
	if err2 != nil {
		birdc, err2 = exec.LookPath("/usr/sbin/birdc")
	}
	requireDaemon(t, "BIRD", "bird2", "BHRD_REQUIRE_BIRD", errors.Join(err1, err2))
	return bird, birdc
}

// BIRDConfig says how BIRD peers with bhrd.
type BIRDConfig struct {
	// RouterASN is BIRD's AS, SpeakerASN bhrd's.
	RouterASN, SpeakerASN uint32
	// NextHopV4 and NextHopV6 are the discard addresses BIRD routes to a
	// blackhole, like a real RTBH router, so that the recursive next hop
	// of every blackhole resolves. Zero means bhrd's defaults.
	NextHopV4, NextHopV6 netip.Addr
}

// StartBIRD runs BIRD passive on a free port of 127.0.0.1, importing both
// unicast families from bhrd over one IPv4 session. It stops with the test;
// its log is printed if the test failed.
func StartBIRD(t testing.TB, c BIRDConfig) *BIRD {
	t.Helper()
	bird, birdc := RequireBIRD(t)
	if !c.NextHopV4.IsValid() {
		c.NextHopV4 = bgp.DefaultNextHopV4
	}
	if !c.NextHopV6.IsValid() {
		c.NextHopV6 = bgp.DefaultNextHopV6
	}
	dir := t.TempDir()
	d := &BIRD{t: t, birdc: birdc, sock: filepath.Join(dir, "bird.ctl"), Port: FreePort(t), log: &lockedBuffer{}}
	conf := fmt.Sprintf(`
log stderr all;
router id 10.255.0.3;
protocol device {}
protocol static discard4 { ipv4; route %s/32 blackhole; }
protocol static discard6 { ipv6; route %s/128 blackhole; }
protocol bgp bhrd {
	local 127.0.0.1 port %d as %d;
	neighbor 127.0.0.1 as %d;
	passive on;
	multihop;
	hold time 9;
	graceful restart aware;
	ipv4 { import all; export none; gateway recursive; };
	# An IPv6 channel on an IPv4 session needs an IPv6 next hop for
	# exports; bhrd gets none, but BIRD warns without one.
	ipv6 { import all; export none; gateway recursive; next hop address ::1; };
}
`, c.NextHopV4, c.NextHopV6, d.Port, c.RouterASN, c.SpeakerASN)
	startDaemon(t, "bird", dir, "bird.conf", conf, d.log,
		func(confPath string) []string { return []string{bird, "-f", "-c", confPath, "-s", d.sock} },
		func() (bool, string) {
			out, err := d.Cmd("show", "status")
			return err == nil && strings.Contains(out, "Daemon is up and running"), out
		})
	return d
}

// Cmd runs birdc with args against this BIRD.
func (d *BIRD) Cmd(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, d.birdc, append([]string{"-s", d.sock}, args...)...).CombinedOutput()
	return string(out), err
}

// Route returns BIRD's "show route all" for one prefix, or "" when BIRD
// has no such route.
func (d *BIRD) Route(p netip.Prefix) string {
	d.t.Helper()
	table := "master4"
	if !p.Addr().Is4() {
		table = "master6"
	}
	out, err := d.Cmd("show", "route", "all", "table", table, "for", p.String())
	if strings.Contains(out, "Network not found") {
		return "" // birdc also exits 1 then
	}
	if err != nil {
		d.t.Fatalf("birdc show route: %v\n%s", err, out)
	}
	if !strings.Contains(out, p.String()) {
		return ""
	}
	return out
}

// SessionUp reports whether BIRD's session with bhrd is established, with
// birdc's output.
func (d *BIRD) SessionUp() (bool, string) {
	out, _ := d.Cmd("show", "protocols", "bhrd")
	return strings.Contains(out, "Established"), out
}

// BlackholedBy returns a check of BIRD's route output: learned over BGP
// from bhrd (AS path speakerASN), with the next hop and the communities of
// a blackhole (BLACKHOLE and NO_EXPORT), resolved through the discard route.
func BlackholedBy(nextHop netip.Addr, speakerASN uint32) func(string) error {
	return func(out string) error {
		for _, want := range []string{
			"[bhrd ",
			"BGP.next_hop: " + nextHop.String(),
			"BGP.community: (65535,666) (65535,65281)",
			"blackhole",
			fmt.Sprintf("BGP.as_path: %d", speakerASN),
		} {
			if !strings.Contains(out, want) {
				return fmt.Errorf("want %q in:\n%s", want, out)
			}
		}
		return nil
	}
}

// WaitRoute waits until BIRD has a route for p that passes check.
func (d *BIRD) WaitRoute(p netip.Prefix, timeout time.Duration, check func(string) error) string {
	d.t.Helper()
	var out string
	WaitFor(d.t, timeout, "BIRD's route for "+p.String(), func() (bool, string) {
		out = d.Route(p)
		if out == "" {
			return false, "no route"
		}
		if err := check(out); err != nil {
			return false, err.Error()
		}
		return true, ""
	})
	return out
}

// WaitNoRoute waits until BIRD has no route for p.
func (d *BIRD) WaitNoRoute(p netip.Prefix, timeout time.Duration) {
	d.t.Helper()
	WaitFor(d.t, timeout, "BIRD to drop "+p.String(), func() (bool, string) {
		out := d.Route(p)
		return out == "", out
	})
}

// WaitSessionUp waits until BIRD's session with bhrd is established.
func (d *BIRD) WaitSessionUp(timeout time.Duration) {
	d.t.Helper()
	WaitFor(d.t, timeout, "BIRD's session with bhrd", d.SessionUp)
}
