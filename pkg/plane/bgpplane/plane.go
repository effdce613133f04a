// Package bgpplane is the bgp enforcement plane: an enforcer of type bgp
// runs an embedded BGP speaker (pkg/bgp) of its own and announces its
// blocks as blackhole routes to the peers it feeds. The top-level bgp
// section names the speaker and its peers; an enforcer's bgp sub-section
// sets its announcements' attributes and picks its peers.
package bgpplane

import (
	"context"
	"fmt"
	"net/netip"
	"reflect"

	"go.uber.org/zap"

	"github.com/bhrd/bhrd/pkg/bgp"
	"github.com/bhrd/bhrd/pkg/config"
	"github.com/bhrd/bhrd/pkg/plane"
	"github.com/bhrd/bhrd/pkg/queue"
)

// Name is the plane's enforcer type and config key.
const Name = "bgp"

func init() { plane.Register(Plane{}) }

// Plane is the bgp plane's plane.Type.
type Plane struct{}

// Name returns "bgp".
func (Plane) Name() string { return Name }

// Protected returns the BGP peers, the router id, the listen addresses
// and every bgp enforcer's next hops: blackholing any of them would cut
// bhrd off from its routers.
func (Plane) Protected(c config.Config) []queue.ProtectedPrefix {
	s := SectionOf(c)
	enfs := c.EnforcersOf(Name)
	var out []queue.ProtectedPrefix
	add := func(a netip.Addr, reason string) {
		if !a.IsValid() || a.IsUnspecified() {
			return
		}
		a = a.Unmap()
		out = append(out, queue.ProtectedPrefix{Prefix: netip.PrefixFrom(a, a.BitLen()), Reason: reason})
	}
	for _, e := range enfs {
		st := SettingsOf(e.Enforcer)
		add(st.NextHopV4, "next hop of enforcer "+e.Ident)
		add(st.NextHopV6, "next hop of enforcer "+e.Ident)
	}
	if len(enfs) > 0 || len(s.Peers) > 0 {
		for _, p := range s.Peers {
			add(p.Address, "BGP peer "+p.Address.String())
		}
		add(s.RouterID, "BGP router id")
		for _, l := range s.ListenAddresses {
			add(l, "BGP listen address")
		}
	}
	return out
}

// instance is one bgp enforcer's speaker and backend.
type instance struct {
	Backend
	sp  *bgp.Speaker
	log *zap.Logger
}

// Open starts a speaker for one bgp enforcer, with the peers it feeds.
// The peers are added by AfterReconcile, once the enforcer has announced
// everything from the store, so that graceful-restart peers get the whole
// table before End-of-RIB. One speaker per enforcer lets each peer set
// get its own attributes (an IXP route server wants BLACKHOLE without
// NO_EXPORT, internal routers a site community).
func (Plane) Open(ctx context.Context, env plane.Env, c config.Config, e config.Enforcer) (plane.Instance, error) {
	st := SettingsOf(e)
	sp, err := bgp.New(speakerConfig(c, st), env.Log)
	if err != nil {
		return nil, err
	}
	ident := e.Ident
	sp.OnPeerEvent(func(ev bgp.PeerEvent) {
		fields := []zap.Field{zap.String("peer", ev.Address.String()), zap.Uint32("peer_asn", ev.ASN), zap.String("state", ev.State)}
		if ev.Up {
			env.Log.Info("bgp peer up", fields...)
		} else {
			// The router no longer has this enforcer's blackholes.
			reason := ev.Reason
			if reason == "" {
				reason = "no NOTIFICATION (connection closed or hold timer expired)"
			}
			env.Log.Warn("bgp peer down", append(fields, zap.String("reason", reason))...)
		}
		env.Audit.BGPPeer(ident, ev.Address, ev.ASN, ev.Up, ev.State)
	})
	if err := sp.Start(ctx); err != nil {
		return nil, fmt.Errorf("start bgp: %w", err)
	}
	return &instance{Backend: newBackend(sp, ident, st), sp: sp, log: env.Log}, nil
}

// AfterReconcile adds the peers (see Open).
func (i *instance) AfterReconcile(ctx context.Context) error { return i.sp.Ready(ctx) }

// Stop closes the sessions the way that keeps graceful-restart peers
// holding the routes.
func (i *instance) Stop(ctx context.Context) error {
	if err := i.sp.Stop(ctx); err != nil {
		return fmt.Errorf("stop bgp speaker: %w", err)
	}
	return nil
}

// Peers reports the speaker's peers (api/bgp/peers, metrics, health).
func (i *instance) Peers(ctx context.Context) ([]bgp.PeerState, error) { return i.sp.Peers(ctx) }

// Reload applies a change of bgp.peers alone (peers added, removed or
// changed; everything else in bgp and the enforcers as they are):
// sessions of untouched peers stay up. Any other change needs a restart.
func (Plane) Reload(ctx context.Context, cur, next config.Config, running []plane.Running) ([]string, bool, error) {
	cs, ns := SectionOf(cur), SectionOf(next)
	if reflect.DeepEqual(cs, ns) {
		return nil, true, nil
	}
	cp, np := cs, ns
	cp.Peers, np.Peers = nil, nil
	if !reflect.DeepEqual(cp, np) || !reflect.DeepEqual(cur.Enforcers, next.Enforcers) {
		return nil, false, nil
	}
	for _, r := range running {
		in, ok := r.Instance.(*instance)
		if !ok {
			continue
		}
		sc := speakerConfig(next, SettingsOf(r.Enforcer))
		added, removed, err := in.sp.SetPeers(ctx, sc.Peers)
		if err != nil {
			return nil, false, fmt.Errorf("enforcer %s: %w", r.Enforcer.Ident, err)
		}
		in.log.Info("bgp peers reloaded", zap.Stringers("added", added), zap.Stringers("removed", removed))
	}
	return []string{"bgp.peers"}, true, nil
}

// speakerConfig maps the bgp section and one enforcer's peer selection to
// a speaker. With several bgp enforcers only connecting out is possible:
// one listening socket can not hand sessions to several speakers.
func speakerConfig(c config.Config, st Settings) bgp.Config {
	s := SectionOf(c)
	sc := bgp.Config{
		ASN:             s.ASN,
		RouterID:        s.RouterID,
		ListenPort:      int(s.ListenPort),
		ListenAddresses: s.ListenAddresses,
		GracefulRestart: bgp.GracefulRestartConfig{
			Enabled:     s.GracefulRestart.Enabled,
			RestartTime: s.GracefulRestart.RestartTime,
			// A process can not tell a restart from a first start, so
			// always claim the restarting role: peers that kept our
			// routes flush the stale ones after our End-of-RIB.
			Restarting: s.GracefulRestart.Enabled,
		},
	}
	if len(c.EnforcersOf(Name)) > 1 {
		sc.ListenPort = -1
	}
	for _, p := range peersOf(s, st) {
		sc.Peers = append(sc.Peers, bgp.PeerConfig{
			Address: p.Address, ASN: p.ASN, Port: p.Port, Passive: p.Passive,
			Password: p.Password, HoldTime: p.HoldTime, EBGPMultihopTTL: p.MultihopTTL,
			Description: p.Name, Families: p.Families, LocalAddress: p.LocalAddress,
			ConnectRetry: p.ConnectRetry, TTLSecurity: p.TTLSecurity,
		})
	}
	return sc
}
