package bgp

import (
	"context"
	"fmt"
	"net/netip"
	"reflect"

	api "github.com/osrg/gobgp/v3/api"
)

// SetPeers replaces the peer list of a running speaker (a config reload):
// sessions of peers that are gone are closed (with a Cease, so those
// routers drop bhrd's routes), new peers are added, peers whose settings
// changed are re-added, and every other session is left alone. Before
// Ready it only changes the list that Ready will add. Routes announced so
// far go to new peers as soon as their sessions come up.
func (s *Speaker) SetPeers(ctx context.Context, peers []PeerConfig) (added, removed []netip.Addr, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	next := s.cfg
	next.Peers = peers
	next = next.withDefaults()
	if err := next.validate(); err != nil {
		return nil, nil, err
	}
	prev := s.cfg
	s.cfg.Peers = next.Peers
	if err := s.checkMultipathTCP(); err != nil {
		s.cfg.Peers = prev.Peers
		return nil, nil, err
	}
	switch s.state {
	case stateStopped:
		s.cfg.Peers = prev.Peers
		return nil, nil, ErrStopped
	case stateNew, stateStarted:
		return nil, nil, nil // Ready adds them
	}
	old := make(map[netip.Addr]PeerConfig, len(prev.Peers))
	for _, p := range prev.Peers {
		old[p.Address] = p
	}
	want := make(map[netip.Addr]PeerConfig, len(next.Peers))
	for _, p := range next.Peers {
		want[p.Address] = p
	}
	del := func(a netip.Addr) error {
		if err := s.srv.DeletePeer(ctx, &api.DeletePeerRequest{Address: a.String()}); err != nil {
			return fmt.Errorf("delete peer %s: %w", a, err)
		}
		removed = append(removed, a)
		return nil
	}
	add := func(p PeerConfig) error {
		ap := s.apiPeer(p)
		// A peer added at run time is not a restart: do not make it wait
		// for its End-of-RIB before sending the table.
		if ap.GracefulRestart != nil {
			ap.GracefulRestart.LocalRestarting = false
		}
		if err := s.srv.AddPeer(ctx, &api.AddPeerRequest{Peer: ap}); err != nil {
			return fmt.Errorf("add peer %s (asn %d): %w", p.Address, p.ASN, err)
		}
		added = append(added, p.Address)
		return nil
	}
	for _, p := range prev.Peers {
		if np, ok := want[p.Address]; !ok || !reflect.DeepEqual(np, p) {
			if err := del(p.Address); err != nil {
				return added, removed, err
			}
		}
	}
	for _, p := range next.Peers {
		if op, ok := old[p.Address]; !ok || !reflect.DeepEqual(op, p) {
			if err := add(p); err != nil {
				return added, removed, err
			}
		}
	}
	return added, removed, nil
}
