package bgptest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// FRR is an FRR bgpd started by a test, standalone (no zebra: -Z, routes
// stay in bgpd's RIB), with its vty socket in the test's temporary
// directory, read with vtysh.
type FRR struct {
	t    testing.TB
	dir  string
	addr netip.Addr
	// Port is the port bgpd listens on, on Addr.
	Port int
	log  *lockedBuffer
}

// RequireFRR returns the paths of bgpd and vtysh, skipping the test when
// they are missing unless BHRD_REQUIRE_FRR=1 or CI=true (then it fails).
func RequireFRR(t testing.TB) (bgpd, vtysh string) {
	t.Helper()
	bgpd = "/usr/lib/frr/bgpd"
	_, err1 := os.Stat(bgpd)
	vtysh, err2 := exec.LookPath("vtysh")
	if err1 == nil && err2 == nil && os.Geteuid() != 0 {
		err1 = errNotRoot
	}
	requireDaemon(t, "FRR", "frr", "BHRD_REQUIRE_FRR", errors.Join(err1, err2))
	return bgpd, vtysh
}

// FRRConfig says how FRR peers with bhrd.
type FRRConfig struct {
	// RouterASN is FRR's AS, SpeakerASN bhrd's.
	RouterASN, SpeakerASN uint32
	// Addr is the loopback address bgpd listens on (127.0.0.1 when zero);
	// bhrd connects from 127.0.0.1.
	Addr netip.Addr
	// GracefulRestart makes FRR a graceful-restart helper for bhrd, with
	// a stale-path time long enough for any test.
	GracefulRestart bool
	// MaxPrefix, when set, makes FRR tear the session down (Cease 6/1)
	// when bhrd sends more IPv4 prefixes than this.
	MaxPrefix int
}

// StartFRR runs bgpd with bhrd (127.0.0.1) as a passive neighbour in both
// unicast families. It stops with the test; its log is printed if the test
// failed. It needs root (bgpd's -S skips the change to user frr).
func StartFRR(t testing.TB, c FRRConfig) *FRR {
	t.Helper()
	bgpd, _ := RequireFRR(t)
	if !c.Addr.IsValid() {
		c.Addr = Loopback
	}
	dir := t.TempDir()
	f := &FRR{t: t, dir: dir, addr: c.Addr, Port: FreePort(t), log: &lockedBuffer{}}
	gr := ""
	if c.GracefulRestart {
		gr = " bgp graceful-restart\n bgp graceful-restart stalepath-time 300\n"
	}
	maxPrefix := ""
	if c.MaxPrefix > 0 {
		maxPrefix = fmt.Sprintf("  neighbor 127.0.0.1 maximum-prefix %d\n", c.MaxPrefix)
	}
	conf := fmt.Sprintf(`frr defaults traditional
hostname frr-test
router bgp %d
 bgp router-id 10.255.2.%d
 no bgp ebgp-requires-policy
`+gr+` neighbor 127.0.0.1 remote-as %d
 neighbor 127.0.0.1 passive
 neighbor 127.0.0.1 timers 3 9
 address-family ipv4 unicast
  neighbor 127.0.0.1 activate
`+maxPrefix+` exit-address-family
 address-family ipv6 unicast
  neighbor 127.0.0.1 activate
 exit-address-family
`, c.RouterASN, c.Addr.As4()[3], c.SpeakerASN)
	startDaemon(t, "bgpd", dir, "bgpd.conf", conf, f.log,
		func(confPath string) []string {
			return []string{bgpd, "-f", confPath, "-i", filepath.Join(dir, "bgpd.pid"), "-z", filepath.Join(dir, "zserv.api"),
				"--vty_socket", dir, "-P", "0", "-p", fmt.Sprint(f.Port), "-l", c.Addr.String(), "-Z", "-S", "--log", "stdout"}
		},
		func() (bool, string) {
			out, err := f.Cmd("show bgp summary json")
			return err == nil && strings.Contains(out, "peers"), out
		})
	return f
}

// Cmd runs one vtysh command against this bgpd.
func (f *FRR) Cmd(command string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "vtysh", "--vty_socket", f.dir, "-d", "bgpd", "-c", command).CombinedOutput()
	return string(out), err
}

// Established reports whether bgpd's session with bhrd is up.
func (f *FRR) Established() (bool, string) {
	out, err := f.Cmd("show bgp neighbors 127.0.0.1 json")
	if err != nil {
		return false, out
	}
	var n map[string]struct {
		State string `json:"bgpState"`
	}
	if err := json.Unmarshal([]byte(out), &n); err != nil {
		return false, out
	}
	return n["127.0.0.1"].State == "Established", out
}

// FRRPath is one path of a prefix in bgpd's RIB.
type FRRPath struct {
	Path     string `json:"path"` // AS path
	NextHops []struct {
		IP string `json:"ip"`
	} `json:"nexthops"`
	Community *struct {
		String string `json:"string"`
	} `json:"community"`
}

// Count returns how many prefixes bgpd's RIB of one family holds.
func (f *FRR) Count(family string) int { return len(f.Prefixes(family)) }

// Prefixes returns every prefix in bgpd's RIB of one family ("ipv4" or
// "ipv6") with its paths.
func (f *FRR) Prefixes(family string) map[netip.Prefix][]FRRPath {
	f.t.Helper()
	out, err := f.Cmd("show bgp " + family + " unicast json detail")
	if err != nil {
		f.t.Fatalf("vtysh: %v\n%s", err, out)
	}
	var rib struct {
		Routes map[string][]FRRPath `json:"routes"`
	}
	if err := json.Unmarshal([]byte(out), &rib); err != nil {
		f.t.Fatalf("show bgp %s unicast json: %v\n%s", family, err, out)
	}
	res := map[netip.Prefix][]FRRPath{}
	for k, v := range rib.Routes {
		p, err := netip.ParsePrefix(k)
		if err != nil {
			f.t.Fatalf("prefix %q from FRR: %v", k, err)
		}
		res[p] = v
	}
	return res
}

// WaitPrefixes waits until bgpd's RIB of one family holds exactly want.
func (f *FRR) WaitPrefixes(family string, timeout time.Duration, want []netip.Prefix) map[netip.Prefix][]FRRPath {
	f.t.Helper()
	var got map[netip.Prefix][]FRRPath
	WaitFor(f.t, timeout, "FRR's "+family+" RIB", func() (bool, string) {
		got = f.Prefixes(family)
		var have []netip.Prefix
		for p := range got {
			have = append(have, p)
		}
		slices.SortFunc(have, netip.Prefix.Compare)
		w := slices.Clone(want)
		slices.SortFunc(w, netip.Prefix.Compare)
		return slices.Equal(have, w), fmt.Sprintf("have %v, want %v", have, w)
	})
	return got
}
