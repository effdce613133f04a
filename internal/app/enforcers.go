package app

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"go.uber.org/zap"

	"github.com/bhrd/bhrd/pkg/bgp"
	"github.com/bhrd/bhrd/pkg/config"
	"github.com/bhrd/bhrd/pkg/enforcer"
	"github.com/bhrd/bhrd/pkg/nullroute"
	"github.com/bhrd/bhrd/pkg/queue"
)

// runningEnforcer is one configured enforcer with what it owns.
type runningEnforcer struct {
	enf     *enforcer.Enforcer
	speaker *bgp.Speaker     // bgp enforcers
	table   *nullroute.Table // nullroute enforcers
	handle  *netlink.Handle
}

// startEnforcers builds every configured enforcer with its backend and
// starts its loop. BGP speakers start without peers; each adds its peers
// (Ready) once its enforcer has re-announced everything from the store,
// so graceful-restart peers get the complete table before End-of-RIB.
func (a *App) startEnforcers(ctx context.Context) error {
	cfg := a.opts.Config
	nBGP := 0
	for _, ec := range cfg.Enforcers {
		if ec.Type == "bgp" {
			nBGP++
		}
	}
	for _, ec := range cfg.Enforcers {
		re := &runningEnforcer{}
		var backend enforcer.Backend
		var after func(context.Context) error
		switch ec.Type {
		case "bgp":
			sp, b, err := a.newBGPBackend(ctx, ec, nBGP)
			if err != nil {
				a.stopEnforcers(context.Background())
				return err
			}
			re.speaker, backend = sp, b
			after = sp.Ready
		case "nullroute":
			h, t, err := a.newNullrouteTable(ec)
			if err != nil {
				a.stopEnforcers(context.Background())
				return err
			}
			re.handle, re.table = h, t
			backend = enforcer.NullrouteBackend{Table: t}
		default:
			a.stopEnforcers(context.Background())
			return fmt.Errorf("enforcer %s: unknown type %q", ec.Ident, ec.Type)
		}
		enf, err := enforcer.New(enforcer.Config{
			Ident:          ec.Ident,
			MaxPrefixes:    ec.MaxPrefixes,
			AfterReconcile: after,
		}, a.svc, backend, a.log.Named("enforcer"), a.observer())
		if err != nil {
			a.stopEnforcers(context.Background())
			return err
		}
		re.enf = enf
		a.enfMu.Lock()
		a.enforcers = append(a.enforcers, re)
		a.enfMu.Unlock()
	}
	encCtx, cancel := context.WithCancel(ctx)
	a.enfCancel = cancel
	for _, re := range a.runningEnforcers() {
		a.enfWG.Add(1)
		go func(e *enforcer.Enforcer) {
			defer a.enfWG.Done()
			_ = e.Run(encCtx)
		}(re.enf)
	}
	return nil
}

// stopEnforcers stops the loops between batches, then the speakers in
// the way that keeps graceful-restart peers holding the routes, then the
// null-route sockets (the routes stay: the kernel keeps blackholing while
// bhrd is down, and the next start reconciles).
func (a *App) stopEnforcers(ctx context.Context) error {
	if a.enfCancel != nil {
		a.enfCancel()
	}
	a.enfWG.Wait()
	var errs []error
	var wg sync.WaitGroup
	var mu sync.Mutex
	for _, re := range a.runningEnforcers() {
		if re.speaker != nil {
			wg.Add(1)
			go func(sp *bgp.Speaker) {
				defer wg.Done()
				if err := sp.Stop(ctx); err != nil {
					mu.Lock()
					errs = append(errs, fmt.Errorf("stop bgp speaker: %w", err))
					mu.Unlock()
				}
			}(re.speaker)
		}
		if re.table != nil {
			if err := re.table.Close(); err != nil {
				errs = append(errs, err)
			}
		}
		if re.handle != nil {
			re.handle.Close()
		}
	}
	wg.Wait()
	a.enfMu.Lock()
	a.enforcers = nil
	a.enfMu.Unlock()
	return errors.Join(errs...)
}

// runningEnforcers is a snapshot of the enforcers.
func (a *App) runningEnforcers() []*runningEnforcer {
	a.enfMu.RLock()
	defer a.enfMu.RUnlock()
	return slices.Clone(a.enforcers)
}

// observer feeds the enforcers' work to the metrics (their audit lines
// come from the Service, as for any other report).
func (a *App) observer() enforcer.Observer {
	return enforcer.Observer{
		Blocked: func(ident string, items []queue.QueueItem, d time.Duration) {
			a.mets.applySeconds.WithLabelValues(ident, "block").Observe(d.Seconds())
			a.mets.applied.WithLabelValues(ident, "block").Add(float64(len(items)))
		},
		Unblocked: func(ident string, items []queue.UnblockItem, d time.Duration) {
			a.mets.applySeconds.WithLabelValues(ident, "unblock").Observe(d.Seconds())
			a.mets.applied.WithLabelValues(ident, "unblock").Add(float64(len(items)))
		},
		Failed: func(ident, op string, _ error) {
			a.mets.applyErrors.WithLabelValues(ident, op).Inc()
		},
	}
}

// EnforcerStatus reports every enforcer, for health checks and metrics.
func (a *App) EnforcerStatus() []enforcer.Status {
	res := a.runningEnforcers()
	out := make([]enforcer.Status, 0, len(res))
	for _, re := range res {
		out = append(out, re.enf.Status())
	}
	return out
}

// BGPPeers reports the peers of every BGP enforcer by ident.
func (a *App) BGPPeers(ctx context.Context) (map[string][]bgp.PeerState, error) {
	out := map[string][]bgp.PeerState{}
	for _, re := range a.runningEnforcers() {
		if re.speaker == nil {
			continue
		}
		ps, err := re.speaker.Peers(ctx)
		if err != nil {
			return nil, fmt.Errorf("peers of %s: %w", re.enf.Ident(), err)
		}
		out[re.enf.Ident()] = ps
	}
	return out, nil
}

// newBGPBackend starts a speaker for one bgp enforcer, with the peers the
// enforcer names (all peers when it names none). One speaker per enforcer
// lets each peer set get its own attributes (an IXP route server wants
// BLACKHOLE without NO_EXPORT, internal routers a site community).
func (a *App) newBGPBackend(ctx context.Context, ec config.Enforcer, nBGP int) (*bgp.Speaker, enforcer.BGPBackend, error) {
	bc := a.opts.Config.BGP
	eb := config.EnforcerBGP{}
	if ec.BGP != nil {
		eb = *ec.BGP
	}
	sc, err := speakerConfig(bc, eb, nBGP)
	if err != nil {
		return nil, enforcer.BGPBackend{}, fmt.Errorf("enforcer %s: %w", ec.Ident, err)
	}
	sp, err := bgp.New(sc, a.log.Named("bgp").With(zap.String("ident", ec.Ident)))
	if err != nil {
		return nil, enforcer.BGPBackend{}, fmt.Errorf("enforcer %s: %w", ec.Ident, err)
	}
	ident := ec.Ident
	sp.OnPeerEvent(func(ev bgp.PeerEvent) {
		a.log.Info("bgp peer "+map[bool]string{true: "up", false: "down"}[ev.Up],
			zap.String("ident", ident), zap.String("peer", ev.Address.String()),
			zap.Uint32("peer_asn", ev.ASN), zap.String("state", ev.State))
		a.audit.BGPPeer(ident, ev.Address, ev.ASN, ev.Up, ev.State)
	})
	if err := sp.Start(ctx); err != nil {
		return nil, enforcer.BGPBackend{}, fmt.Errorf("enforcer %s: start bgp: %w", ec.Ident, err)
	}
	b, err := bgpBackend(sp, ec.Ident, eb)
	if err != nil {
		_ = sp.Stop(context.Background())
		return nil, enforcer.BGPBackend{}, fmt.Errorf("enforcer %s: %w", ec.Ident, err)
	}
	return sp, b, nil
}

func bgpBackend(sp *bgp.Speaker, ident string, eb config.EnforcerBGP) (enforcer.BGPBackend, error) {
	b := enforcer.BGPBackend{Speaker: sp, Owner: ident, LocalPref: eb.LocalPref,
		NextHopV4: bgp.DefaultNextHopV4, NextHopV6: bgp.DefaultNextHopV6}
	var err error
	if eb.NextHopV4 != "" {
		if b.NextHopV4, err = netip.ParseAddr(eb.NextHopV4); err != nil {
			return b, fmt.Errorf("next_hop_v4: %w", err)
		}
	}
	if eb.NextHopV6 != "" {
		if b.NextHopV6, err = netip.ParseAddr(eb.NextHopV6); err != nil {
			return b, fmt.Errorf("next_hop_v6: %w", err)
		}
	}
	if eb.Communities == nil {
		b.Communities = bgp.DefaultCommunities()
	}
	for _, s := range eb.Communities {
		c, err := config.ParseCommunity(s)
		if err != nil {
			return b, err
		}
		b.Communities = append(b.Communities, c)
	}
	for _, s := range eb.LargeCommunities {
		lc, err := config.ParseLargeCommunity(s)
		if err != nil {
			return b, err
		}
		b.LargeCommunities = append(b.LargeCommunities, bgp.LargeCommunity{GlobalAdmin: lc[0], LocalData1: lc[1], LocalData2: lc[2]})
	}
	return b, nil
}

// speakerConfig maps the bgp section and one enforcer's peer selection to
// a speaker. With several bgp enforcers only connecting out is possible:
// one listening socket can not hand sessions to several speakers.
func speakerConfig(bc config.BGP, eb config.EnforcerBGP, nBGP int) (bgp.Config, error) {
	rid, err := netip.ParseAddr(bc.RouterID)
	if err != nil {
		return bgp.Config{}, fmt.Errorf("bgp.router_id: %w", err)
	}
	sc := bgp.Config{
		ASN:        bc.ASN,
		RouterID:   rid,
		ListenPort: int(bc.ListenPort),
		GracefulRestart: bgp.GracefulRestartConfig{
			Enabled:     bc.GracefulRestart.Enabled,
			RestartTime: bc.GracefulRestart.RestartTime,
			// A process can not tell a restart from a first start, so
			// always claim the restarting role: peers that kept our
			// routes flush the stale ones after our End-of-RIB.
			Restarting: bc.GracefulRestart.Enabled,
		},
	}
	if nBGP > 1 {
		sc.ListenPort = -1
	}
	for _, s := range bc.ListenAddresses {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return bgp.Config{}, fmt.Errorf("bgp.listen_addresses: %w", err)
		}
		sc.ListenAddresses = append(sc.ListenAddresses, a)
	}
	for _, p := range bc.Peers {
		if len(eb.Peers) > 0 && !slices.Contains(eb.Peers, p.Name) && !slices.Contains(eb.Peers, p.Address) {
			continue
		}
		addr, err := netip.ParseAddr(p.Address)
		if err != nil {
			return bgp.Config{}, fmt.Errorf("bgp peer %q: %w", p.Address, err)
		}
		pc := bgp.PeerConfig{
			Address: addr, ASN: p.ASN, Port: uint16(p.Port), Passive: p.Passive,
			Password: p.Password, HoldTime: p.HoldTime, EBGPMultihopTTL: p.MultihopTTL,
			Description: p.Name,
		}
		for _, f := range p.Families {
			pc.Families = append(pc.Families, bgp.Family(f))
		}
		sc.Peers = append(sc.Peers, pc)
	}
	return sc, nil
}

// newNullrouteTable opens the kernel routing table for one nullroute
// enforcer, in the app's network namespace (the current one by default).
func (a *App) newNullrouteTable(ec config.Enforcer) (*netlink.Handle, *nullroute.Table, error) {
	nc := nullroute.Config{Table: a.opts.Config.Nullroute.Table, Protocol: a.opts.Config.Nullroute.Protocol, Netns: a.opts.Netns}
	if ec.Nullroute != nil {
		if ec.Nullroute.Table != 0 {
			nc.Table = ec.Nullroute.Table
		}
		if ec.Nullroute.Protocol != 0 {
			nc.Protocol = ec.Nullroute.Protocol
		}
	}
	var h *netlink.Handle
	var err error
	if a.opts.Netns > 0 && a.opts.Netns.IsOpen() { // 0: the process's own (the zero Options)
		h, err = netlink.NewHandleAt(a.opts.Netns)
	} else {
		h, err = netlink.NewHandle()
	}
	if err != nil {
		return nil, nil, fmt.Errorf("enforcer %s: netlink: %w", ec.Ident, err)
	}
	t, err := nullroute.New(h, nc)
	if err != nil {
		h.Close()
		return nil, nil, fmt.Errorf("enforcer %s: %w", ec.Ident, err)
	}
	return h, t, nil
}

// protectedPrefixes are the addresses bhrd must never blackhole, since
// doing so would cut it off from its routers: BGP peers, the router id,
// the listen addresses and every next hop in use.
func protectedPrefixes(c config.Config) []queue.ProtectedPrefix {
	var out []queue.ProtectedPrefix
	add := func(s, reason string) {
		a, err := netip.ParseAddr(s)
		if err != nil || a.IsUnspecified() {
			return
		}
		a = a.Unmap()
		out = append(out, queue.ProtectedPrefix{Prefix: netip.PrefixFrom(a, a.BitLen()), Reason: reason})
	}
	usesBGP := false
	for _, e := range c.Enforcers {
		if e.Type != "bgp" {
			continue
		}
		usesBGP = true
		nh4, nh6 := bgp.DefaultNextHopV4.String(), bgp.DefaultNextHopV6.String()
		if e.BGP != nil && e.BGP.NextHopV4 != "" {
			nh4 = e.BGP.NextHopV4
		}
		if e.BGP != nil && e.BGP.NextHopV6 != "" {
			nh6 = e.BGP.NextHopV6
		}
		add(nh4, "next hop of enforcer "+e.Ident)
		add(nh6, "next hop of enforcer "+e.Ident)
	}
	if usesBGP || len(c.BGP.Peers) > 0 {
		for _, p := range c.BGP.Peers {
			add(p.Address, "BGP peer "+p.Address)
		}
		add(c.BGP.RouterID, "BGP router id")
		for _, l := range c.BGP.ListenAddresses {
			add(l, "BGP listen address")
		}
	}
	return out
}
