package bgp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/packet/bgp"
	"github.com/osrg/gobgp/v3/pkg/server"
	"go.uber.org/zap"
)

// Errors returned by the lifecycle methods.
var (
	ErrNotStarted = errors.New("bgp speaker not started")
	ErrStopped    = errors.New("bgp speaker stopped")
)

type lifecycle int

const (
	stateNew lifecycle = iota
	stateStarted
	stateReady
	stateStopped
)

// idleHoldAfterReset is how long GoBGP waits before reconnecting after a
// session went down. GoBGP's default (30 s) is long for a blackhole feed;
// it must stay well above the time Stop needs between closing sockets and
// removing the peers, so that no new session opens in between.
const idleHoldAfterReset = 5 * time.Second

// Speaker is an embedded GoBGP speaker announcing blackhole routes.
//
// Announcements belong to an owner (an enforcer ident): each owner's path
// for a prefix is a distinct path in the RIB (distinct BGP path identifier),
// so two owners may announce the same prefix, with the same or different
// attributes, and withdraw it independently. Peers receive the best of them
// (older announcement first when attributes tie); when one owner withdraws,
// peers get the other owner's path, and the prefix is withdrawn from peers
// only when no owner announces it. A Speaker sends the same best path to all
// its peers: to send different attributes to different peer sets (an IXP
// route server and internal routers), run one Speaker per peer set.
type Speaker struct {
	cfg Config
	log *zap.Logger
	srv *server.BgpServer

	table *announcements

	mu          sync.Mutex
	state       lifecycle
	owners      map[string]*owner
	nextOwnerID uint32
	handlers    []func(PeerEvent)
	stopWatch   context.CancelFunc
	reasons     downReasons
	// lastDown is, per peer, when and why its session last went down.
	lastDown map[netip.Addr]PeerEvent
}

// owner serialises one owner's Announce and Withdraw calls, so that its
// record in table and its paths in GoBGP change in the same order.
type owner struct {
	mu sync.Mutex
	id uint32
}

// New validates cfg and returns a Speaker. It opens no socket.
func New(cfg Config, logger *zap.Logger) (*Speaker, error) {
	if logger == nil {
		logger = zap.NewNop()
	}
	c := cfg.withDefaults()
	if err := c.validate(); err != nil {
		return nil, err
	}
	return &Speaker{
		cfg:    c,
		log:    logger,
		owners: make(map[string]*owner),
		table:  newAnnouncements(),
	}, nil
}

// OnPeerEvent registers fn to be called when a peer session comes up
// (reaches Established) or goes down (leaves it). Register before Start to
// see every event. Calls are sequential, from one goroutine; fn must not
// block for long, or later events queue up behind it.
func (s *Speaker) OnPeerEvent(fn func(PeerEvent)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.handlers = append(s.handlers, fn)
}

// Start starts the BGP server and its listener, without peers: the
// embedder announces everything it holds and then calls Ready, so that
// peers learn the complete table, followed by End-of-RIB, in one go.
func (s *Speaker) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch s.state {
	case stateStopped:
		return ErrStopped
	case stateStarted, stateReady:
		return nil
	}
	if err := s.checkMultipathTCP(); err != nil {
		return err
	}
	srv := server.NewBgpServer(server.LoggerOption(reasonLogger{NewGoBGPLogger(s.log.Named("gobgp")), &s.reasons}))
	go srv.Serve()

	global := &api.Global{
		Asn:      s.cfg.ASN,
		RouterId: s.cfg.RouterID.String(),
	}
	if s.cfg.listens() {
		global.ListenPort = int32(s.cfg.ListenPort)
		for _, a := range s.cfg.ListenAddresses {
			global.ListenAddresses = append(global.ListenAddresses, a.String())
		}
	} else {
		global.ListenPort = -1
	}
	if err := srv.StartBgp(ctx, &api.StartBgpRequest{Global: global}); err != nil {
		srv.Stop()
		return fmt.Errorf("start bgp (asn %d, router id %s, listen %v port %d): %w",
			s.cfg.ASN, s.cfg.RouterID, s.cfg.ListenAddresses, s.cfg.ListenPort, err)
	}

	// bhrd originates blackholes and takes nothing from its peers: every
	// route a peer sends is refused before the RIB, so none is passed on
	// to another peer (eBGP would re-advertise it with bhrd's AS and next
	// hop) or selected. GoBGP still keeps what the peer sent in its
	// Adj-RIB-In, which Peers counts.
	if err := rejectPeerRoutes(ctx, srv); err != nil {
		srv.Stop()
		return fmt.Errorf("set the import policy that refuses peers' routes: %w", err)
	}

	watchCtx, cancel := context.WithCancel(context.Background())
	if err := s.watchPeers(watchCtx, srv); err != nil {
		cancel()
		srv.Stop()
		return fmt.Errorf("watch peer events: %w", err)
	}
	s.srv = srv
	s.stopWatch = cancel
	s.state = stateStarted
	return nil
}

// rejectPeerRoutes makes the global import policy refuse every route
// learned from a neighbour (any address) and accept the speaker's own:
// GoBGP runs locally added paths through the import policy too, without a
// neighbour address, so a plain reject-all default would refuse bhrd's
// announcements as well.
func rejectPeerRoutes(ctx context.Context, srv *server.BgpServer) error {
	const set, policy = "bhrd-any-neighbour", "bhrd-import-nothing"
	if err := srv.AddDefinedSet(ctx, &api.AddDefinedSetRequest{DefinedSet: &api.DefinedSet{
		DefinedType: api.DefinedType_NEIGHBOR, Name: set, List: []string{"0.0.0.0/0", "::/0"},
	}}); err != nil {
		return err
	}
	if err := srv.AddPolicy(ctx, &api.AddPolicyRequest{Policy: &api.Policy{Name: policy, Statements: []*api.Statement{{
		Name:       policy + "-from-neighbours",
		Conditions: &api.Conditions{NeighborSet: &api.MatchSet{Type: api.MatchSet_ANY, Name: set}},
		Actions:    &api.Actions{RouteAction: api.RouteAction_REJECT},
	}}}}); err != nil {
		return err
	}
	return srv.SetPolicyAssignment(ctx, &api.SetPolicyAssignmentRequest{Assignment: &api.PolicyAssignment{
		Name: "global", Direction: api.PolicyDirection_IMPORT,
		Policies: []*api.Policy{{Name: policy}}, DefaultAction: api.RouteAction_ACCEPT,
	}})
}

// checkMultipathTCP refuses TCP-MD5 on sockets Go would open as Multipath
// TCP (the default for listeners since Go 1.24): the kernel rejects
// TCP_MD5SIG there, and GoBGP would only log it and then accept unsigned
// sessions from the peer's address.
func (s *Speaker) checkMultipathTCP() error {
	listenMPTCP := s.cfg.listens() && (&net.ListenConfig{}).MultipathTCP()
	dialMPTCP := (&net.Dialer{}).MultipathTCP()
	for _, p := range s.cfg.Peers {
		if p.Password == "" {
			continue
		}
		if listenMPTCP || (dialMPTCP && !p.Passive) {
			return fmt.Errorf("peer %s: TCP-MD5 cannot be set on Multipath TCP sockets; "+
				"build the program with //go:debug multipathtcp=0 or run it with GODEBUG=multipathtcp=0", p.Address)
		}
	}
	return nil
}

// Ready adds the configured peers. Call it once everything that should be
// announced after a (re)start has been passed to Announce: a peer then
// receives the whole table followed by End-of-RIB, and a graceful-restart
// helper drops the stale routes that were not announced again. With
// GracefulRestart.Restarting the speaker first waits for each peer's own
// End-of-RIB (at most DeferralTime), as RFC 4724 asks. Calling Ready again
// does nothing.
func (s *Speaker) Ready(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch s.state {
	case stateNew:
		return ErrNotStarted
	case stateStopped:
		return ErrStopped
	case stateReady:
		return nil
	}
	for _, p := range s.cfg.Peers {
		if err := s.srv.AddPeer(ctx, &api.AddPeerRequest{Peer: s.apiPeer(p)}); err != nil {
			return fmt.Errorf("add peer %s (asn %d): %w", p.Address, p.ASN, err)
		}
	}
	s.state = stateReady
	return nil
}

func (s *Speaker) apiPeer(p PeerConfig) *api.Peer {
	gr := s.cfg.GracefulRestart
	peer := &api.Peer{
		Conf: &api.PeerConf{
			NeighborAddress: p.Address.String(),
			PeerAsn:         p.ASN,
			AuthPassword:    p.Password,
			Description:     p.Description,
		},
		Timers: &api.Timers{Config: &api.TimersConfig{
			HoldTime:               uint64(p.HoldTime / time.Second),
			KeepaliveInterval:      uint64(p.HoldTime / time.Second / 3),
			ConnectRetry:           uint64(p.ConnectRetry / time.Second),
			IdleHoldTimeAfterReset: uint64(idleHoldAfterReset / time.Second),
		}},
		Transport: &api.Transport{
			PassiveMode: p.Passive,
			RemotePort:  uint32(p.Port),
		},
	}
	if p.LocalAddress.IsValid() {
		peer.Transport.LocalAddress = p.LocalAddress.String()
	}
	if p.EBGPMultihopTTL != 0 {
		peer.EbgpMultihop = &api.EbgpMultihop{Enabled: true, MultihopTtl: uint32(p.EBGPMultihopTTL)}
	}
	if p.TTLSecurity {
		peer.TtlSecurity = &api.TtlSecurity{Enabled: true, TtlMin: 255}
	}
	if gr.Enabled {
		peer.GracefulRestart = &api.GracefulRestart{
			Enabled:         true,
			RestartTime:     uint32(gr.RestartTime / time.Second),
			DeferralTime:    uint32(gr.DeferralTime / time.Second),
			LocalRestarting: gr.Restarting,
			// RFC 8538: a NOTIFICATION other than Hard Reset, and a hold
			// timer expiry, keep the routes like a restart (with a peer
			// that negotiates it too).
			NotificationEnabled: true,
		}
	}
	for _, f := range p.Families {
		af := &api.AfiSafi{Config: &api.AfiSafiConfig{Family: apiFamily(f), Enabled: true}}
		if gr.Enabled {
			af.MpGracefulRestart = &api.MpGracefulRestart{Config: &api.MpGracefulRestartConfig{Enabled: true}}
		}
		peer.AfiSafis = append(peer.AfiSafis, af)
	}
	return peer
}

func apiFamily(f Family) *api.Family {
	if f == IPv6Unicast {
		return &api.Family{Afi: api.Family_AFI_IP6, Safi: api.Family_SAFI_UNICAST}
	}
	return &api.Family{Afi: api.Family_AFI_IP, Safi: api.Family_SAFI_UNICAST}
}

// Stop closes all sessions and stops the server. With graceful restart
// enabled, sessions are closed at the TCP level without a NOTIFICATION, as
// a crash would close them, so that GR-capable peers keep bhrd's routes
// (marked stale) until the next start sends End-of-RIB or their restart
// timer expires. Without graceful restart, peers get a Cease and drop the
// routes at once. A stopped Speaker cannot be started again; create a new
// one.
//
// GoBGP v3 keeps one goroutine (and its RIB) per server after it stops, so
// a process should create few Speakers.
func (s *Speaker) Stop(ctx context.Context) error {
	s.mu.Lock()
	prev := s.state
	s.state = stateStopped
	srv := s.srv
	stopWatch := s.stopWatch
	s.mu.Unlock()
	if prev == stateNew || prev == stateStopped {
		return nil
	}

	var errs []error
	if s.cfg.GracefulRestart.Enabled {
		if err := s.closeSessionsSilently(ctx, srv); err != nil {
			// A Cease is still better than leaving sessions open: peers
			// then at least drop the routes consistently.
			s.log.Warn("could not close BGP sessions without a NOTIFICATION; peers will drop bhrd's routes", zap.Error(err))
		}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.StopBgp(context.Background(), &api.StopBgpRequest{})
	}()
	select {
	case <-done:
	case <-ctx.Done():
		errs = append(errs, fmt.Errorf("stop bgp server: %w", ctx.Err()))
	}
	stopWatch()
	return errors.Join(errs...)
}

// closeSessionsSilently shuts down the TCP connection of every established
// session and waits until GoBGP has noticed, so that the StopBgp that
// follows has no open connection to send its Cease NOTIFICATION on.
func (s *Speaker) closeSessionsSilently(ctx context.Context, srv *server.BgpServer) error {
	// GoBGP's API reports a session's local and neighbor addresses but not
	// its ports, so a socket is ours when it joins those addresses and
	// either goes to the peer's configured port (we connected) or comes
	// from our listening port (the peer connected).
	type session struct{ local, remote netip.Addr }
	var sessions []session
	err := srv.ListPeer(ctx, &api.ListPeerRequest{}, func(p *api.Peer) {
		if p.State.GetSessionState() != api.PeerState_ESTABLISHED {
			return
		}
		local, err1 := netip.ParseAddr(p.Transport.GetLocalAddress())
		remote, err2 := netip.ParseAddr(p.State.GetNeighborAddress())
		if err1 != nil || err2 != nil {
			return
		}
		sessions = append(sessions, session{local.Unmap(), remote.Unmap()})
	})
	if err != nil {
		return fmt.Errorf("list peers: %w", err)
	}
	if len(sessions) == 0 {
		return nil
	}
	peerPort := make(map[netip.Addr]uint16, len(s.cfg.Peers))
	for _, p := range s.cfg.Peers {
		peerPort[p.Address] = p.Port
	}
	listenPort := -1
	if s.cfg.listens() {
		listenPort = s.cfg.ListenPort
	}
	n, err := shutdownTCP(func(local, remote netip.AddrPort) bool {
		for _, se := range sessions {
			if local.Addr() == se.local && remote.Addr() == se.remote &&
				(remote.Port() == peerPort[se.remote] || int(local.Port()) == listenPort) {
				return true
			}
		}
		return false
	})
	if err != nil {
		return fmt.Errorf("shut down the sockets of %d sessions: %w", len(sessions), err)
	}
	if n < len(sessions) {
		s.log.Warn("some BGP session sockets were not found; those peers get a Cease",
			zap.Int("found", n), zap.Int("sessions", len(sessions)))
	}
	return s.waitNoneEstablished(ctx, srv)
}

func (s *Speaker) waitNoneEstablished(ctx context.Context, srv *server.BgpServer) error {
	// GoBGP sees the shut-down socket on its next read, which returns at
	// once; this bounds the wait when the context has no deadline.
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		up := 0
		err := srv.ListPeer(ctx, &api.ListPeerRequest{}, func(p *api.Peer) {
			if p.State.GetSessionState() == api.PeerState_ESTABLISHED {
				up++
			}
		})
		if err != nil {
			return fmt.Errorf("list peers: %w", err)
		}
		if up == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%d sessions still established after closing their sockets: %w", up, ctx.Err())
		case <-tick.C:
		}
	}
}

// Announce installs routes for owner and sends them to the peers. Routes
// already announced by owner with the same attributes are left alone (no
// UPDATE is sent); with other attributes they are replaced. All routes are
// validated before anything is sent, and an invalid one fails the whole
// call with ErrInvalidRoute. On another error, the routes before the failing
// one stay announced (Announced tells which); calling Announce again is
// safe.
func (s *Speaker) Announce(ctx context.Context, ownerName string, routes []Route) error {
	norm := make([]Route, len(routes))
	for i, r := range routes {
		n, err := r.normalize()
		if err != nil {
			return fmt.Errorf("announce for %q: route %d: %w", ownerName, i, err)
		}
		norm[i] = n
	}
	srv, err := s.server()
	if err != nil {
		return fmt.Errorf("announce for %q: %w", ownerName, err)
	}
	o := s.owner(ownerName)
	o.mu.Lock()
	defer o.mu.Unlock()

	var last *attrSet // routes of one batch nearly always share attributes
	for i, r := range norm {
		if i%256 == 0 {
			if err := ctx.Err(); err != nil {
				return fmt.Errorf("announce for %q: %d of %d routes sent: %w", ownerName, i, len(norm), err)
			}
		}
		as, err := s.table.acquire(r, last)
		if err != nil {
			return fmt.Errorf("announce %s for %q: %w", r.Prefix, ownerName, err)
		}
		last = as
		if s.table.lookup(r.Prefix, o.id) == as {
			s.table.release(as)
			continue
		}
		if _, err := srv.AddPath(ctx, &api.AddPathRequest{
			TableType: api.TableType_GLOBAL,
			Path:      apiPath(r.Prefix, as, o.id),
		}); err != nil {
			s.table.release(as)
			return fmt.Errorf("announce %s for %q (%d of %d routes sent): %w", r.Prefix, ownerName, i, len(norm), s.stoppedOr(err))
		}
		s.table.set(r.Prefix, o.id, as)
	}
	return nil
}

// Withdraw withdraws owner's announcements of prefixes, with exactly the
// path that was announced. Prefixes owner does not announce are skipped, so
// a retried Withdraw is harmless.
func (s *Speaker) Withdraw(ctx context.Context, ownerName string, prefixes []netip.Prefix) error {
	srv, err := s.server()
	if err != nil {
		return fmt.Errorf("withdraw for %q: %w", ownerName, err)
	}
	o := s.owner(ownerName)
	o.mu.Lock()
	defer o.mu.Unlock()
	for i, p := range prefixes {
		if i%256 == 0 {
			if err := ctx.Err(); err != nil {
				return fmt.Errorf("withdraw for %q: %d of %d prefixes done: %w", ownerName, i, len(prefixes), err)
			}
		}
		as := s.table.lookup(p, o.id)
		if as == nil {
			continue
		}
		wd := apiPath(p, as, o.id)
		wd.IsWithdraw = true
		if err := srv.DeletePath(ctx, &api.DeletePathRequest{TableType: api.TableType_GLOBAL, Path: wd}); err != nil {
			return fmt.Errorf("withdraw %s for %q (%d of %d prefixes done): %w", p, ownerName, i, len(prefixes), s.stoppedOr(err))
		}
		s.table.remove(p, o.id)
	}
	return nil
}

// Announced returns what owner currently announces, sorted by prefix. It
// walks every announcement, so it suits reconciliation and debugging, not a
// hot path.
func (s *Speaker) Announced(ownerName string) []Route {
	s.mu.Lock()
	o := s.owners[ownerName]
	s.mu.Unlock()
	if o == nil {
		return nil
	}
	return s.table.byOwner(o.id)
}

func (s *Speaker) server() (*server.BgpServer, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch s.state {
	case stateNew:
		return nil, ErrNotStarted
	case stateStopped:
		return nil, ErrStopped
	}
	return s.srv, nil
}

// stoppedOr explains a GoBGP error by a concurrent Stop when there was one.
func (s *Speaker) stoppedOr(err error) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.state == stateStopped {
		return fmt.Errorf("%w (%v)", ErrStopped, err)
	}
	return err
}

func (s *Speaker) owner(name string) *owner {
	s.mu.Lock()
	defer s.mu.Unlock()
	o := s.owners[name]
	if o == nil {
		// Path identifier 0 is what GoBGP gives paths without one; owners
		// start at 1 so no owner shares it.
		s.nextOwnerID++
		o = &owner{id: s.nextOwnerID}
		s.owners[name] = o
	}
	return o
}

// apiPath builds the GoBGP path in wire format, which GoBGP decodes more
// cheaply than the protobuf attribute messages.
func apiPath(p netip.Prefix, as *attrSet, id uint32) *api.Path {
	nlri := encodePrefix(p)
	attrs := as.wire
	fam := &api.Family{Afi: api.Family_AFI_IP, Safi: api.Family_SAFI_UNICAST}
	if !p.Addr().Is4() {
		fam.Afi = api.Family_AFI_IP6
		mp, _ := bgp.NewPathAttributeMpReachNLRI(as.nextHop.String(), []bgp.AddrPrefixInterface{nlriFor(p)}).Serialize()
		attrs = append(slices.Clip(attrs), mp)
	}
	return &api.Path{
		Family:       fam,
		NlriBinary:   nlri,
		PattrsBinary: attrs,
		Identifier:   id,
	}
}

// encodePrefix writes an NLRI prefix: length in bits, then the significant
// bytes of the address.
func encodePrefix(p netip.Prefix) []byte {
	a := p.Addr().AsSlice()
	n := (p.Bits() + 7) / 8
	out := make([]byte, 1+n)
	out[0] = byte(p.Bits())
	copy(out[1:], a[:n])
	return out
}

// PeerState is a snapshot of one configured peer.
type PeerState struct {
	Address     netip.Addr
	ASN         uint32
	Description string
	// State is the BGP FSM state in lower case: "idle", "connect",
	// "active", "opensent", "openconfirm" or "established". Before Ready,
	// every peer is "idle".
	State string
	Up    bool
	// Since is when the session came up; zero when down.
	Since  time.Time
	Uptime time.Duration
	// Families are the address families negotiated with the peer.
	Families []Family
	// GracefulRestart reports whether the peer negotiated graceful restart.
	GracefulRestart bool
	// PrefixesSent counts the prefixes advertised to the peer: every
	// announced prefix of a negotiated family (0 when down).
	PrefixesSent uint64
	// PrefixesReceived counts the routes the peer sent us (held in the
	// Adj-RIB-In); PrefixesAccepted those the import policy let into the
	// RIB (always 0: it refuses every one) and PrefixesRejected the rest.
	PrefixesReceived uint64
	PrefixesAccepted uint64
	PrefixesRejected uint64
	// LastDown is when the session last left Established (zero: never
	// since start), LastDownReason the NOTIFICATION that said why, if any.
	LastDown       time.Time
	LastDownReason string
}

// Peers returns the state of every configured peer, in configuration order.
func (s *Speaker) Peers(ctx context.Context) ([]PeerState, error) {
	s.mu.Lock()
	srv, state := s.srv, s.state
	s.mu.Unlock()

	out := make([]PeerState, len(s.cfg.Peers))
	idx := make(map[netip.Addr]int, len(s.cfg.Peers))
	for i, p := range s.cfg.Peers {
		out[i] = PeerState{Address: p.Address, ASN: p.ASN, Description: p.Description, State: "idle"}
		idx[p.Address] = i
		s.mu.Lock()
		if ev, ok := s.lastDown[p.Address.Unmap()]; ok {
			out[i].LastDown, out[i].LastDownReason = ev.Time, ev.Reason
		}
		s.mu.Unlock()
	}
	if state != stateReady {
		return out, nil
	}
	// GoBGP can count advertised prefixes itself, but only by walking and
	// filtering the whole RIB inside its event loop (0.2 s per 100,000
	// prefixes, during which nothing is announced); nothing filters bhrd's
	// exports, so the speaker's own count is the same number for free.
	v4, v6 := s.table.counts()
	var convErr error
	err := srv.ListPeer(ctx, &api.ListPeerRequest{}, func(p *api.Peer) {
		addr, err := netip.ParseAddr(p.State.GetNeighborAddress())
		if err != nil {
			convErr = fmt.Errorf("peer address %q from gobgp: %w", p.State.GetNeighborAddress(), err)
			return
		}
		i, ok := idx[addr]
		if !ok {
			return
		}
		ps := &out[i]
		ps.State = strings.ToLower(p.State.GetSessionState().String())
		ps.Up = p.State.GetSessionState() == api.PeerState_ESTABLISHED
		if !ps.Up {
			return
		}
		if up := p.Timers.GetState().GetUptime(); up != nil {
			ps.Since = up.AsTime()
			ps.Uptime = time.Since(ps.Since).Truncate(time.Second)
		}
		negotiated := remoteCaps(p)
		ps.GracefulRestart = s.cfg.GracefulRestart.Enabled && negotiated.gr
		for _, af := range p.AfiSafis {
			st := af.GetState()
			fam := familyOf(af.GetConfig().GetFamily())
			if fam == "" || !negotiated.families[fam] {
				continue
			}
			ps.Families = append(ps.Families, fam)
			switch fam {
			case IPv4Unicast:
				ps.PrefixesSent += uint64(v4)
			case IPv6Unicast:
				ps.PrefixesSent += uint64(v6)
			}
			ps.PrefixesReceived += st.GetReceived()
		}
	})
	if err != nil {
		return nil, fmt.Errorf("list peers: %w", err)
	}
	if convErr != nil {
		return nil, convErr
	}
	for i := range out {
		ps := &out[i]
		if ps.PrefixesReceived == 0 {
			continue
		}
		// Routers should send nothing; when one does, run its routes
		// through the import policy to count what it let in.
		for _, fam := range ps.Families {
			n, err := s.importedFrom(ctx, srv, ps.Address, fam)
			if err != nil {
				return nil, err
			}
			ps.PrefixesAccepted += n
		}
		ps.PrefixesRejected = ps.PrefixesReceived - min(ps.PrefixesAccepted, ps.PrefixesReceived)
	}
	return out, nil
}

// importedFrom counts the routes of one family a peer sent that the
// import policy accepts.
func (s *Speaker) importedFrom(ctx context.Context, srv *server.BgpServer, peer netip.Addr, fam Family) (uint64, error) {
	var n uint64
	err := srv.ListPath(ctx, &api.ListPathRequest{
		TableType: api.TableType_ADJ_IN, Name: peer.String(), Family: apiFamily(fam), EnableFiltered: true,
	}, func(d *api.Destination) {
		for _, p := range d.GetPaths() {
			if !p.GetFiltered() {
				n++
			}
		}
	})
	if err != nil {
		return 0, fmt.Errorf("routes from peer %s: %w", peer, err)
	}
	return n, nil
}

type negotiatedCaps struct {
	gr       bool
	families map[Family]bool
}

func remoteCaps(p *api.Peer) negotiatedCaps {
	n := negotiatedCaps{families: make(map[Family]bool)}
	for _, c := range p.State.GetRemoteCap() {
		switch {
		case c.MessageIs(&api.GracefulRestartCapability{}):
			n.gr = true
		case c.MessageIs(&api.MultiProtocolCapability{}):
			var mp api.MultiProtocolCapability
			if err := c.UnmarshalTo(&mp); err == nil {
				if f := familyOf(mp.GetFamily()); f != "" {
					n.families[f] = true
				}
			}
		}
	}
	return n
}

func familyOf(f *api.Family) Family {
	if f.GetSafi() != api.Family_SAFI_UNICAST {
		return ""
	}
	switch f.GetAfi() {
	case api.Family_AFI_IP:
		return IPv4Unicast
	case api.Family_AFI_IP6:
		return IPv6Unicast
	}
	return ""
}

// PeerEvent reports a session coming up or going down.
type PeerEvent struct {
	Address netip.Addr
	ASN     uint32
	// Up is true when the session reached Established, false when it left.
	Up bool
	// State is the new FSM state, as in PeerState.State.
	State string
	Time  time.Time
	// Reason says why a session went down when a NOTIFICATION said so
	// ("received NOTIFICATION 6/1 (Cease: maximum number of prefixes
	// reached)"); empty otherwise (the connection closed, a hold timer).
	Reason string
}

func (s *Speaker) watchPeers(ctx context.Context, srv *server.BgpServer) error {
	established := make(map[netip.Addr]bool)
	err := srv.WatchEvent(ctx, &api.WatchEventRequest{Peer: &api.WatchEventRequest_Peer{}}, func(r *api.WatchEventResponse) {
		pe := r.GetPeer()
		if pe == nil || pe.GetType() != api.WatchEventResponse_PeerEvent_STATE {
			return
		}
		st := pe.GetPeer().GetState()
		addr, err := netip.ParseAddr(st.GetNeighborAddress())
		if err != nil {
			return
		}
		addr = addr.Unmap()
		up := st.GetSessionState() == api.PeerState_ESTABLISHED
		if established[addr] == up {
			return
		}
		established[addr] = up
		reason := s.reasons.take(addr)
		if up {
			reason = ""
		}
		ev := PeerEvent{
			Reason:  reason,
			Address: addr,
			ASN:     st.GetPeerAsn(),
			Up:      up,
			State:   strings.ToLower(st.GetSessionState().String()),
			Time:    time.Now(),
		}
		s.mu.Lock()
		handlers := slices.Clone(s.handlers)
		if !up {
			if s.lastDown == nil {
				s.lastDown = map[netip.Addr]PeerEvent{}
			}
			s.lastDown[addr] = ev
		}
		s.mu.Unlock()
		for _, h := range handlers {
			h(ev)
		}
	})
	return err
}
