package bgptest

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/apiutil"
	gobgp "github.com/osrg/gobgp/v3/pkg/packet/bgp"
	"github.com/osrg/gobgp/v3/pkg/server"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"

	"github.com/bhrd/bhrd/pkg/bgp"
)

// Loopback is where the test peers listen and bhrd connects from.
var Loopback = netip.MustParseAddr("127.0.0.1")

// Router is a second, independent GoBGP server playing the peering router.
// It listens on a free port of 127.0.0.1 and accepts sessions from the
// peers added with AddPeer (passive: bhrd connects).
type Router struct {
	t    testing.TB
	srv  *server.BgpServer
	ASN  uint32
	Port int
}

// NewRouter starts a router as AS asn. It stops with the test.
func NewRouter(t testing.TB, asn uint32) *Router {
	t.Helper()
	return NewRouterAt(t, asn, Loopback)
}

// NewRouterAt starts a router as AS asn listening on addr (another
// loopback address: a second router beside the first).
func NewRouterAt(t testing.TB, asn uint32, addr netip.Addr) *Router {
	t.Helper()
	r := &Router{t: t, ASN: asn, Port: FreePort(t)}
	id := "10.255.0.1"
	if addr != Loopback {
		id = "10.255.1." + strconv.Itoa(int(addr.As4()[3]))
	}
	log := zaptest.NewLogger(t, zaptest.Level(zapcore.WarnLevel)).Named("router")
	r.srv = server.NewBgpServer(server.LoggerOption(bgp.NewGoBGPLogger(log)))
	go r.srv.Serve()
	err := r.srv.StartBgp(context.Background(), &api.StartBgpRequest{Global: &api.Global{
		Asn:             asn,
		RouterId:        id,
		ListenPort:      int32(r.Port),
		ListenAddresses: []string{addr.String()},
	}})
	if err != nil {
		t.Fatalf("start router: %v", err)
	}
	t.Cleanup(func() { r.srv.Stop() })
	return r
}

// Server is the underlying GoBGP server, for what this helper lacks.
func (r *Router) Server() *server.BgpServer { return r.srv }

// PeerOptions configure the router's side of a session with bhrd.
type PeerOptions struct {
	// Address is bhrd's address; zero means 127.0.0.1.
	Address netip.Addr
	// Password enables TCP-MD5.
	Password string
	// GracefulRestart makes the router a graceful-restart helper
	// (receiving speaker) that keeps bhrd's routes, marked stale, for
	// RestartTime (0 means 120 s) after the session drops.
	GracefulRestart bool
	RestartTime     uint32
}

// AddPeer configures bhrd (ASN speakerASN) as a passive neighbor with both
// unicast families.
func (r *Router) AddPeer(speakerASN uint32, o PeerOptions) {
	r.t.Helper()
	addr := o.Address
	if !addr.IsValid() {
		addr = Loopback
	}
	p := &api.Peer{
		Conf:      &api.PeerConf{NeighborAddress: addr.String(), PeerAsn: speakerASN, AuthPassword: o.Password},
		Transport: &api.Transport{PassiveMode: true},
		Timers: &api.Timers{Config: &api.TimersConfig{
			HoldTime: 9, KeepaliveInterval: 3, ConnectRetry: 1,
			// GoBGP refuses incoming connections while idle after a reset;
			// its default (30 s) would stall every restart test.
			IdleHoldTimeAfterReset: 1,
		}},
	}
	for _, f := range []bgp.Family{bgp.IPv4Unicast, bgp.IPv6Unicast} {
		af := &api.AfiSafi{Config: &api.AfiSafiConfig{Family: APIFamily(f), Enabled: true}}
		if o.GracefulRestart {
			af.MpGracefulRestart = &api.MpGracefulRestart{Config: &api.MpGracefulRestartConfig{Enabled: true}}
		}
		p.AfiSafis = append(p.AfiSafis, af)
	}
	if o.GracefulRestart {
		rt := o.RestartTime
		if rt == 0 {
			rt = 120
		}
		p.GracefulRestart = &api.GracefulRestart{Enabled: true, RestartTime: rt, HelperOnly: true}
	}
	if err := r.srv.AddPeer(context.Background(), &api.AddPeerRequest{Peer: p}); err != nil {
		r.t.Fatalf("router: add peer: %v", err)
	}
}

// APIFamily is GoBGP's name of a family.
func APIFamily(f bgp.Family) *api.Family {
	if f == bgp.IPv6Unicast {
		return &api.Family{Afi: api.Family_AFI_IP6, Safi: api.Family_SAFI_UNICAST}
	}
	return &api.Family{Afi: api.Family_AFI_IP, Safi: api.Family_SAFI_UNICAST}
}

// FamilyOf is the family of a prefix.
func FamilyOf(p netip.Prefix) bgp.Family {
	if p.Addr().Is4() {
		return bgp.IPv4Unicast
	}
	return bgp.IPv6Unicast
}

// Path is what the router holds for one prefix, decoded.
type Path struct {
	Prefix       netip.Prefix
	NextHop      netip.Addr
	Communities  []uint32
	Large        []bgp.LargeCommunity
	LocalPref    uint32
	HasLocalPref bool
	ASPath       []uint32
	Stale        bool
}

func (p Path) String() string {
	cs := make([]string, len(p.Communities))
	for i, c := range p.Communities {
		cs[i] = bgp.FormatCommunity(c)
	}
	return fmt.Sprintf("%s via %s comm [%s] large %v lp %d(%v) aspath %v stale %v",
		p.Prefix, p.NextHop, strings.Join(cs, " "), p.Large, p.LocalPref, p.HasLocalPref, p.ASPath, p.Stale)
}

// RIB returns the router's best paths of one family, by prefix. It decodes
// every path: use Count for large tables.
func (r *Router) RIB(f bgp.Family) map[netip.Prefix]Path {
	r.t.Helper()
	out := make(map[netip.Prefix]Path)
	var decodeErr error
	err := r.srv.ListPath(context.Background(), &api.ListPathRequest{
		TableType: api.TableType_GLOBAL,
		Family:    APIFamily(f),
	}, func(d *api.Destination) {
		for _, p := range d.Paths {
			if !p.Best {
				continue
			}
			rp, err := decodePath(d.Prefix, p)
			if err != nil && decodeErr == nil {
				decodeErr = err
			}
			out[rp.Prefix] = rp
		}
	})
	if err != nil {
		r.t.Fatalf("router: list paths: %v", err)
	}
	if decodeErr != nil {
		r.t.Fatalf("router: %v", decodeErr)
	}
	// GoBGP's ListPath converts the RIB's path objects after leaving its
	// event loop, and the loop later mutates some of them in place (marking
	// them stale, recording a peer's new OPEN in their source). Another
	// call through the loop orders our reads before any such write, which
	// the race detector otherwise reports against GoBGP.
	r.Count(f)
	return out
}

func decodePath(prefix string, p *api.Path) (Path, error) {
	pfx, err := netip.ParsePrefix(prefix)
	if err != nil {
		return Path{}, fmt.Errorf("prefix %q: %w", prefix, err)
	}
	rp := Path{Prefix: pfx, Stale: p.Stale}
	attrs, err := apiutil.GetNativePathAttributes(p)
	if err != nil {
		return rp, fmt.Errorf("decode attributes of %s: %w", prefix, err)
	}
	for _, a := range attrs {
		switch a := a.(type) {
		case *gobgp.PathAttributeNextHop:
			rp.NextHop, _ = netip.AddrFromSlice(a.Value.To4())
		case *gobgp.PathAttributeMpReachNLRI:
			rp.NextHop, _ = netip.AddrFromSlice(a.Nexthop)
			rp.NextHop = rp.NextHop.Unmap()
		case *gobgp.PathAttributeCommunities:
			rp.Communities = slices.Clone(a.Value)
		case *gobgp.PathAttributeLargeCommunities:
			for _, c := range a.Values {
				rp.Large = append(rp.Large, bgp.LargeCommunity{GlobalAdmin: c.ASN, LocalData1: c.LocalData1, LocalData2: c.LocalData2})
			}
		case *gobgp.PathAttributeLocalPref:
			rp.LocalPref, rp.HasLocalPref = a.Value, true
		case *gobgp.PathAttributeAsPath:
			for _, seg := range a.Value {
				rp.ASPath = append(rp.ASPath, seg.GetAS()...)
			}
		}
	}
	return rp, nil
}

// Count returns the number of destinations in the router's RIB for f,
// without listing them.
func (r *Router) Count(f bgp.Family) int {
	r.t.Helper()
	n, err := r.count(f)
	if err != nil {
		r.t.Fatalf("router: %v", err)
	}
	return n
}

func (r *Router) count(f bgp.Family) (int, error) {
	res, err := r.srv.GetTable(context.Background(), &api.GetTableRequest{TableType: api.TableType_GLOBAL, Family: APIFamily(f)})
	if err != nil {
		return 0, fmt.Errorf("get table: %w", err)
	}
	return int(res.NumDestination), nil
}

// Established reports whether the router has a session up.
func (r *Router) Established() bool {
	up := false
	_ = r.srv.ListPeer(context.Background(), &api.ListPeerRequest{}, func(p *api.Peer) {
		up = up || p.State.GetSessionState() == api.PeerState_ESTABLISHED
	})
	return up
}

// WaitEstablished waits until the router has a session up.
func (r *Router) WaitEstablished(timeout time.Duration) {
	r.t.Helper()
	WaitFor(r.t, timeout, "the router's session with bhrd", func() (bool, string) {
		return r.Established(), "not established"
	})
}

// WaitDown waits until the router has no session up.
func (r *Router) WaitDown(timeout time.Duration) {
	r.t.Helper()
	WaitFor(r.t, timeout, "the router to see the session down", func() (bool, string) {
		return !r.Established(), "still established"
	})
}

// WaitRIB waits until the router's RIB for f holds exactly want (by
// prefix), each path passing check (nil checks nothing).
func (r *Router) WaitRIB(f bgp.Family, timeout time.Duration, want []netip.Prefix, check func(Path) error) map[netip.Prefix]Path {
	r.t.Helper()
	var got map[netip.Prefix]Path
	WaitFor(r.t, timeout, fmt.Sprintf("router %s RIB = %s", f, describePrefixes(want)), func() (bool, string) {
		got = r.RIB(f)
		return ribMatches(got, want, check)
	})
	return got
}

// ribMatches reports whether got is exactly want, every path passing check.
func ribMatches(got map[netip.Prefix]Path, want []netip.Prefix, check func(Path) error) (bool, string) {
	if len(got) != len(want) {
		return false, fmt.Sprintf("%d paths, want %d: %s", len(got), len(want), DescribeRIB(got))
	}
	for _, p := range want {
		rp, ok := got[p]
		if !ok {
			return false, fmt.Sprintf("%s missing from %s", p, DescribeRIB(got))
		}
		if check != nil {
			if err := check(rp); err != nil {
				return false, err.Error()
			}
		}
	}
	return true, ""
}

// WaitCount waits until the router's RIB for f holds n destinations.
func (r *Router) WaitCount(f bgp.Family, timeout time.Duration, n int) {
	r.t.Helper()
	WaitFor(r.t, timeout, fmt.Sprintf("router %s RIB to hold %d prefixes", f, n), func() (bool, string) {
		got := r.Count(f)
		return got == n, fmt.Sprintf("%d prefixes", got)
	})
}

// DescribeRIB renders a RIB for failure messages (only its size when big).
func DescribeRIB(m map[netip.Prefix]Path) string {
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

func describePrefixes(ps []netip.Prefix) string {
	if len(ps) > 10 {
		return fmt.Sprintf("%d prefixes", len(ps))
	}
	return fmt.Sprint(ps)
}

// Blackhole returns a check that a path carries nextHop and exactly the
// communities, and is not stale.
func Blackhole(nextHop netip.Addr, communities []uint32) func(Path) error {
	return func(p Path) error {
		if p.NextHop != nextHop {
			return fmt.Errorf("%s: next hop %s, want %s", p.Prefix, p.NextHop, nextHop)
		}
		if !slices.Equal(p.Communities, communities) {
			return fmt.Errorf("%s: communities %v, want %v", p.Prefix, p.Communities, communities)
		}
		if p.Stale {
			return fmt.Errorf("%s: stale", p.Prefix)
		}
		return nil
	}
}

// StaleIs returns a check of a path's stale mark.
func StaleIs(want bool) func(Path) error {
	return func(p Path) error {
		if p.Stale != want {
			return fmt.Errorf("%s: stale %v, want %v", p.Prefix, p.Stale, want)
		}
		return nil
	}
}

// BestEvent is one change of the router's best path for a prefix.
type BestEvent struct {
	Prefix    netip.Prefix
	Withdrawn bool
	At        time.Time // when the watcher received it
}

// WatchBest calls fn for every best-path change in the router's RIB, from
// one goroutine, until the returned stop is called (or the test ends). It
// is for latency measurements: polling the RIB would add its interval to
// every sample.
func (r *Router) WatchBest(fn func(BestEvent)) (stop func()) {
	r.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var once sync.Once
	stop = func() { once.Do(cancel) }
	r.t.Cleanup(stop)
	err := r.srv.WatchEvent(ctx, &api.WatchEventRequest{Table: &api.WatchEventRequest_Table{
		Filters: []*api.WatchEventRequest_Table_Filter{{Type: api.WatchEventRequest_Table_Filter_BEST}},
	}}, func(res *api.WatchEventResponse) {
		now := time.Now()
		for _, p := range res.GetTable().GetPaths() {
			var nlri api.IPAddressPrefix
			if p.GetNlri() == nil || p.GetNlri().UnmarshalTo(&nlri) != nil {
				continue // End-of-RIB markers and other families
			}
			a, err := netip.ParseAddr(nlri.Prefix)
			if err != nil {
				continue
			}
			fn(BestEvent{Prefix: netip.PrefixFrom(a, int(nlri.PrefixLen)), Withdrawn: p.IsWithdraw, At: now})
		}
	})
	if err != nil {
		r.t.Fatalf("router: watch best paths: %v", err)
	}
	return stop
}

// Logger is a zap logger for test peers and bhrd in tests: warnings and
// errors only, through t.Log.
func Logger(t testing.TB) *zap.Logger {
	return zaptest.NewLogger(t, zaptest.Level(zapcore.WarnLevel))
}

// BestSet follows the set of prefixes with a best path in the router's
// RIB through WatchBest, so that a benchmark can wait for 100,000 or
// 1,000,000 prefixes without walking the RIB (which GoBGP does inside its
// event loop, stalling the very updates being measured).
type BestSet struct {
	mu    sync.Mutex
	m     map[netip.Prefix]struct{}
	first time.Time // when the first change was received
	last  time.Time // when the last change was received
}

// TrackBest starts following the router's best paths. Call it before the
// routes are sent.
func (r *Router) TrackBest() *BestSet {
	s := &BestSet{m: make(map[netip.Prefix]struct{})}
	r.WatchBest(func(ev BestEvent) {
		s.mu.Lock()
		if ev.Withdrawn {
			delete(s.m, ev.Prefix)
		} else {
			s.m[ev.Prefix] = struct{}{}
		}
		if s.first.IsZero() {
			s.first = ev.At
		}
		s.last = ev.At
		s.mu.Unlock()
	})
	return s
}

// Len is the number of prefixes with a best path, and when it last
// changed.
func (s *BestSet) Len() (int, time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m), s.last
}

// First is when the first change was received (zero before any).
func (s *BestSet) First() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.first
}

// WaitLen waits until the set holds n prefixes and returns when the change
// that made it so was received.
func (s *BestSet) WaitLen(t testing.TB, n int, timeout time.Duration) time.Time {
	t.Helper()
	var at time.Time
	WaitFor(t, timeout, fmt.Sprintf("the router to hold %d prefixes", n), func() (bool, string) {
		got, last := s.Len()
		at = last
		return got == n, fmt.Sprintf("%d prefixes", got)
	})
	return at
}
