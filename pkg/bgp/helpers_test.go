// GoBGP sets TCP-MD5 keys and the TTL on its listening socket, which Go
// 1.24+ makes Multipath TCP by default, and the kernel refuses both options
// on MPTCP sockets (ENOPROTOOPT). bhrd's main package needs the same line.
//go:debug multipathtcp=0

package bgp

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/apiutil"
	"github.com/osrg/gobgp/v3/pkg/packet/bgp"
	"github.com/osrg/gobgp/v3/pkg/server"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
)

var loopback = netip.MustParseAddr("127.0.0.1")

// TestMain lets tests run this binary again as a helper process: a bhrd to
// kill, or a speaker under another GODEBUG.
func TestMain(m *testing.M) {
	switch {
	case os.Getenv(crashHelperEnv) != "":
		os.Exit(crashHelper())
	case os.Getenv(mptcpHelperEnv) != "":
		os.Exit(mptcpHelper())
	}
	os.Exit(m.Run())
}

// freePort returns a TCP port that was free on 127.0.0.1 a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("find a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func testLogger(t testing.TB) *zap.Logger {
	return zaptest.NewLogger(t, zaptest.Level(zapcore.WarnLevel))
}

// router is a second, independent GoBGP server playing the peering router.
type router struct {
	t    testing.TB
	srv  *server.BgpServer
	asn  uint32
	port int
}

func newRouter(t testing.TB, asn uint32) *router {
	t.Helper()
	return newRouterAt(t, asn, loopback)
}

// newRouterAt starts a router listening on addr (a loopback address).
func newRouterAt(t testing.TB, asn uint32, addr netip.Addr) *router {
	t.Helper()
	r := &router{t: t, asn: asn, port: freePort(t)}
	// A router id of its own per address: GoBGP sends no route to a peer
	// whose id is the route's source's.
	routerID := "10.255.0.1"
	if addr != loopback {
		routerID = fmt.Sprintf("10.255.1.%d", addr.As4()[3])
	}
	r.srv = server.NewBgpServer(server.LoggerOption(NewGoBGPLogger(testLogger(t).Named("router"))))
	go r.srv.Serve()
	err := r.srv.StartBgp(context.Background(), &api.StartBgpRequest{Global: &api.Global{
		Asn:             asn,
		RouterId:        routerID,
		ListenPort:      int32(r.port),
		ListenAddresses: []string{addr.String()},
	}})
	if err != nil {
		t.Fatalf("start router: %v", err)
	}
	t.Cleanup(func() { r.srv.Stop() })
	return r
}

type routerPeerOpts struct {
	password string
	gr       bool
}

// addPeer configures the speaker (on 127.0.0.1, connecting in) as a passive
// neighbor with both unicast families.
func (r *router) addPeer(speakerASN uint32, o routerPeerOpts) {
	r.t.Helper()
	p := &api.Peer{
		Conf:      &api.PeerConf{NeighborAddress: "127.0.0.1", PeerAsn: speakerASN, AuthPassword: o.password},
		Transport: &api.Transport{PassiveMode: true},
		Timers: &api.Timers{Config: &api.TimersConfig{
			HoldTime: 9, KeepaliveInterval: 3, ConnectRetry: 1,
			// GoBGP refuses incoming connections while idle after a reset;
			// the default 30 s would stall the restart tests.
			IdleHoldTimeAfterReset: 1,
		}},
	}
	for _, f := range []Family{IPv4Unicast, IPv6Unicast} {
		af := &api.AfiSafi{Config: &api.AfiSafiConfig{Family: apiFamily(f), Enabled: true}}
		if o.gr {
			af.MpGracefulRestart = &api.MpGracefulRestart{Config: &api.MpGracefulRestartConfig{Enabled: true}}
		}
		p.AfiSafis = append(p.AfiSafis, af)
	}
	if o.gr {
		// The router is the GR helper (receiving speaker).
		p.GracefulRestart = &api.GracefulRestart{Enabled: true, RestartTime: 120, HelperOnly: true}
	}
	if err := r.srv.AddPeer(context.Background(), &api.AddPeerRequest{Peer: p}); err != nil {
		r.t.Fatalf("router: add peer: %v", err)
	}
}

// speakerConfig returns a speaker config with one peer: this router.
func (r *router) speakerConfig(asn uint32) Config {
	return Config{
		ASN:        asn,
		RouterID:   netip.MustParseAddr("10.255.0.2"),
		ListenPort: -1,
		Peers: []PeerConfig{{
			Address:      loopback,
			ASN:          r.asn,
			Port:         uint16(r.port),
			HoldTime:     9 * time.Second,
			ConnectRetry: time.Second,
		}},
	}
}

// ribPath is what the router holds for one prefix, decoded.
type ribPath struct {
	prefix      netip.Prefix
	nextHop     netip.Addr
	communities []uint32
	large       []LargeCommunity
	localPref   uint32
	hasLP       bool
	asPath      []uint32
	stale       bool
}

func (p ribPath) String() string {
	cs := make([]string, len(p.communities))
	for i, c := range p.communities {
		cs[i] = FormatCommunity(c)
	}
	return fmt.Sprintf("%s via %s comm [%s] large %v lp %d(%v) aspath %v stale %v",
		p.prefix, p.nextHop, strings.Join(cs, " "), p.large, p.localPref, p.hasLP, p.asPath, p.stale)
}

// rib returns the router's best paths of one family, by prefix.
func (r *router) rib(f Family) map[netip.Prefix]ribPath {
	r.t.Helper()
	out := make(map[netip.Prefix]ribPath)
	err := r.srv.ListPath(context.Background(), &api.ListPathRequest{
		TableType: api.TableType_GLOBAL,
		Family:    apiFamily(f),
	}, func(d *api.Destination) {
		for _, p := range d.Paths {
			if !p.Best {
				continue
			}
			rp := decodePath(r.t, d.Prefix, p)
			out[rp.prefix] = rp
		}
	})
	if err != nil {
		r.t.Fatalf("router: list paths: %v", err)
	}
	// GoBGP's ListPath converts the RIB's path objects after leaving its
	// event loop, and the loop later mutates some of them in place (marking
	// them stale, recording a peer's new OPEN in their source). Another
	// call through the loop orders our reads before any such write, which
	// the race detector otherwise reports against GoBGP.
	r.count(f)
	return out
}

func decodePath(t testing.TB, prefix string, p *api.Path) ribPath {
	t.Helper()
	rp := ribPath{prefix: netip.MustParsePrefix(prefix), stale: p.Stale}
	attrs, err := apiutil.GetNativePathAttributes(p)
	if err != nil {
		t.Fatalf("decode attributes of %s: %v", prefix, err)
	}
	for _, a := range attrs {
		switch a := a.(type) {
		case *bgp.PathAttributeNextHop:
			rp.nextHop, _ = netip.AddrFromSlice(a.Value.To4())
		case *bgp.PathAttributeMpReachNLRI:
			rp.nextHop, _ = netip.AddrFromSlice(a.Nexthop)
			rp.nextHop = rp.nextHop.Unmap()
		case *bgp.PathAttributeCommunities:
			rp.communities = slices.Clone(a.Value)
		case *bgp.PathAttributeLargeCommunities:
			for _, c := range a.Values {
				rp.large = append(rp.large, LargeCommunity{c.ASN, c.LocalData1, c.LocalData2})
			}
		case *bgp.PathAttributeLocalPref:
			rp.localPref, rp.hasLP = a.Value, true
		case *bgp.PathAttributeAsPath:
			for _, seg := range a.Value {
				rp.asPath = append(rp.asPath, seg.GetAS()...)
			}
		}
	}
	return rp
}

// count returns the number of destinations in the router's RIB.
func (r *router) count(f Family) int {
	r.t.Helper()
	res, err := r.srv.GetTable(context.Background(), &api.GetTableRequest{TableType: api.TableType_GLOBAL, Family: apiFamily(f)})
	if err != nil {
		r.t.Fatalf("router: get table: %v", err)
	}
	return int(res.NumDestination)
}

// established reports whether the router's session with the speaker is up.
func (r *router) established() bool {
	up := false
	_ = r.srv.ListPeer(context.Background(), &api.ListPeerRequest{}, func(p *api.Peer) {
		up = up || p.State.GetSessionState() == api.PeerState_ESTABLISHED
	})
	return up
}

// waitFor polls cond until it holds or the deadline passes; describe says
// what was seen last, for the failure message.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for {
		ok, last := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s; last seen: %s", timeout, what, last)
		}
		<-tick.C
	}
}

// waitRIB waits until the router's RIB for f holds exactly want (by
// prefix), each path passing check.
func (r *router) waitRIB(f Family, timeout time.Duration, want []netip.Prefix, check func(ribPath) error) map[netip.Prefix]ribPath {
	r.t.Helper()
	var got map[netip.Prefix]ribPath
	waitFor(r.t, timeout, fmt.Sprintf("router %s RIB = %v", f, want), func() (bool, string) {
		got = r.rib(f)
		if len(got) != len(want) {
			return false, describeRIB(got)
		}
		for _, p := range want {
			rp, ok := got[p]
			if !ok {
				return false, describeRIB(got)
			}
			if check != nil {
				if err := check(rp); err != nil {
					return false, err.Error()
				}
			}
		}
		return true, ""
	})
	return got
}

func describeRIB(m map[netip.Prefix]ribPath) string {
	if len(m) > 10 {
		return fmt.Sprintf("%d paths", len(m))
	}
	l := make([]string, 0, len(m))
	for _, p := range m {
		l = append(l, p.String())
	}
	sort.Strings(l)
	return "[" + strings.Join(l, "; ") + "]"
}

func startSpeaker(t testing.TB, cfg Config) *Speaker {
	t.Helper()
	s, err := New(cfg, testLogger(t).Named("speaker"))
	if err != nil {
		t.Fatalf("new speaker: %v", err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatalf("start speaker: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := s.Stop(ctx); err != nil {
			t.Errorf("stop speaker: %v", err)
		}
	})
	return s
}

func waitPeerUp(t testing.TB, s *Speaker, timeout time.Duration) PeerState {
	t.Helper()
	var last PeerState
	waitFor(t, timeout, "speaker's peer to be established", func() (bool, string) {
		ps, err := s.Peers(context.Background())
		if err != nil {
			t.Fatalf("peers: %v", err)
		}
		last = ps[0]
		return last.Up, fmt.Sprintf("%+v", last)
	})
	return last
}

func blackhole(p string) Route {
	return Route{Prefix: netip.MustParsePrefix(p), Communities: DefaultCommunities()}
}

func expectAttrs(nextHop netip.Addr, communities []uint32) func(ribPath) error {
	return func(p ribPath) error {
		if p.nextHop != nextHop {
			return fmt.Errorf("%s: next hop %s, want %s", p.prefix, p.nextHop, nextHop)
		}
		if !slices.Equal(p.communities, communities) {
			return fmt.Errorf("%s: communities %v, want %v", p.prefix, p.communities, communities)
		}
		return nil
	}
}
