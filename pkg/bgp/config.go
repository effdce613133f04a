package bgp

import (
	"errors"
	"fmt"
	"net/netip"
	"time"
)

// Family is a BGP address family bhrd can announce.
type Family string

const (
	IPv4Unicast Family = "ipv4-unicast"
	IPv6Unicast Family = "ipv6-unicast"
)

// Defaults applied by New when a field is left zero.
const (
	DefaultListenPort   = 179
	DefaultPeerPort     = 179
	DefaultHoldTime     = 90 * time.Second
	DefaultConnectRetry = 10 * time.Second
	DefaultRestartTime  = 120 * time.Second
	DefaultDeferralTime = 30 * time.Second
	// maxRestartTime is the largest value the 12-bit Restart Time field of
	// the graceful restart capability can carry (RFC 4724).
	maxRestartTime = 4095 * time.Second
)

// ErrInvalidConfig is wrapped by every error New returns for a bad Config.
var ErrInvalidConfig = errors.New("invalid bgp config")

// Config is the speaker's configuration. The zero value of an optional field
// selects the default documented on it.
type Config struct {
	// ASN is the local autonomous system number (required, 1..4294967295).
	ASN uint32
	// RouterID is the BGP identifier; must be an IPv4 address (required).
	RouterID netip.Addr
	// ListenAddresses are the addresses to accept BGP sessions on. Empty
	// means do not listen at all: every peer is then reached by an outgoing
	// connection, which is what tests and "make run" use.
	ListenAddresses []netip.Addr
	// ListenPort is the TCP port to listen on: 0 means 179, a negative
	// value means do not listen (like an empty ListenAddresses).
	ListenPort int
	// Peers are the BGP neighbors that receive the announcements.
	Peers []PeerConfig
	// GracefulRestart configures the restarting-speaker role (RFC 4724).
	GracefulRestart GracefulRestartConfig
}

// PeerConfig is one BGP neighbor.
type PeerConfig struct {
	// Address is the neighbor's address (required, unique among peers).
	Address netip.Addr
	// ASN is the neighbor's AS; equal to Config.ASN makes an iBGP session.
	ASN uint32
	// Port is the neighbor's TCP port for outgoing connections; 0 means 179.
	Port uint16
	// LocalAddress is the source address for the session; zero lets the
	// kernel choose. Must be of the same family as Address.
	LocalAddress netip.Addr
	// Passive makes the speaker wait for the neighbor to connect.
	Passive bool
	// Password enables TCP-MD5 signatures (RFC 2385) on the session.
	Password string
	// HoldTime is the proposed hold time; 0 means 90 s. Must be 0 (the
	// default) or between 3 s and 65535 s, in whole seconds.
	HoldTime time.Duration
	// ConnectRetry is the interval between connection attempts; 0 means
	// 10 s. Whole seconds.
	ConnectRetry time.Duration
	// Families are the address families negotiated with the neighbor; empty
	// means both IPv4 and IPv6 unicast, so IPv6 blackholes reach a neighbor
	// over an IPv4 session (MP-BGP) when the neighbor accepts that family.
	Families []Family
	// EBGPMultihopTTL, when non-zero, allows an eBGP neighbor that is not
	// directly connected and sets the TTL of outgoing packets to it.
	EBGPMultihopTTL uint8
	// TTLSecurity enables GTSM (RFC 5082) for a directly connected
	// neighbor: packets go out with TTL 255 and the kernel drops those
	// arriving with less, so only a host one hop away can reach the
	// session. Not with EBGPMultihopTTL.
	TTLSecurity bool
	// Description is free text shown in logs and peer state.
	Description string
}

// GracefulRestartConfig configures graceful restart (RFC 4724) in the
// restarting-speaker role, for every peer.
type GracefulRestartConfig struct {
	// Enabled advertises the graceful restart capability with every family
	// of the peer, so a GR-capable neighbor keeps bhrd's routes (as stale)
	// when bhrd restarts or crashes, and Stop closes sessions without a
	// NOTIFICATION so that neighbors do keep them.
	Enabled bool
	// RestartTime is how long a neighbor should wait for bhrd to come back
	// before dropping its routes; 0 means 120 s, at most 4095 s.
	RestartTime time.Duration
	// Restarting sets the Restart State (R) bit and the Forwarding State (F)
	// bits in the OPEN messages of this run, telling neighbors that bhrd has
	// restarted and that they must keep its stale routes until it sends
	// End-of-RIB. A process cannot tell a restart from a first start, and
	// the bits are harmless on a first start, so bhrd should always set it
	// when Enabled. Without it, a neighbor that honours the F bit (BIRD,
	// Junos, IOS) flushes bhrd's routes as soon as the new session opens.
	Restarting bool
	// DeferralTime bounds how long the speaker waits for a neighbor's
	// End-of-RIB before sending its own routes after Ready, when
	// Restarting; 0 means 30 s.
	DeferralTime time.Duration
}

func (c *Config) withDefaults() Config {
	out := *c
	if out.ListenPort == 0 {
		out.ListenPort = DefaultListenPort
	}
	out.Peers = make([]PeerConfig, len(c.Peers))
	for i, p := range c.Peers {
		if p.Port == 0 {
			p.Port = DefaultPeerPort
		}
		if p.HoldTime == 0 {
			p.HoldTime = DefaultHoldTime
		}
		if p.ConnectRetry == 0 {
			p.ConnectRetry = DefaultConnectRetry
		}
		if len(p.Families) == 0 {
			p.Families = []Family{IPv4Unicast, IPv6Unicast}
		} else {
			p.Families = append([]Family(nil), p.Families...)
		}
		out.Peers[i] = p
	}
	out.ListenAddresses = append([]netip.Addr(nil), c.ListenAddresses...)
	if out.GracefulRestart.RestartTime == 0 {
		out.GracefulRestart.RestartTime = DefaultRestartTime
	}
	if out.GracefulRestart.DeferralTime == 0 {
		out.GracefulRestart.DeferralTime = DefaultDeferralTime
	}
	return out
}

// listens reports whether the speaker accepts incoming sessions.
func (c *Config) listens() bool {
	return c.ListenPort > 0 && len(c.ListenAddresses) > 0
}

// validate checks a Config that already has its defaults applied.
func (c *Config) validate() error {
	var errs []error
	add := func(format string, a ...any) {
		errs = append(errs, fmt.Errorf(format, a...))
	}
	if c.ASN == 0 {
		add("asn: must be set (1..4294967295)")
	}
	if !c.RouterID.IsValid() {
		add("router_id: must be set to an IPv4 address")
	} else if !c.RouterID.Is4() {
		add("router_id %s: must be an IPv4 address", c.RouterID)
	} else if c.RouterID.IsUnspecified() {
		add("router_id %s: must not be 0.0.0.0", c.RouterID)
	}
	if c.ListenPort > 65535 {
		add("listen_port %d: must be at most 65535 (or negative to not listen)", c.ListenPort)
	}
	for i, a := range c.ListenAddresses {
		if !a.IsValid() {
			add("listen_addresses[%d]: not an IP address", i)
		} else if a.Zone() != "" {
			add("listen_addresses[%d] %s: zones are not supported", i, a)
		}
	}
	seen := make(map[netip.Addr]int, len(c.Peers))
	for i, p := range c.Peers {
		name := fmt.Sprintf("peers[%d]", i)
		if !p.Address.IsValid() {
			add("%s: address must be set", name)
		} else {
			name = fmt.Sprintf("peers[%d] (%s)", i, p.Address)
			if p.Address.Is4In6() {
				add("%s: write an IPv4-mapped address as plain IPv4", name)
			}
			if p.Address.Zone() != "" {
				add("%s: zones are not supported", name)
			}
			if j, dup := seen[p.Address]; dup {
				add("%s: same address as peers[%d]", name, j)
			}
			seen[p.Address] = i
		}
		if p.ASN == 0 {
			add("%s: asn must be set", name)
		}
		if p.LocalAddress.IsValid() && p.Address.IsValid() && p.LocalAddress.Is4() != p.Address.Is4() {
			add("%s: local_address %s is not of the same family as the peer address", name, p.LocalAddress)
		}
		if p.HoldTime < 3*time.Second || p.HoldTime > 65535*time.Second || p.HoldTime%time.Second != 0 {
			add("%s: hold_time %s must be whole seconds between 3s and 65535s", name, p.HoldTime)
		}
		if p.ConnectRetry < time.Second || p.ConnectRetry%time.Second != 0 {
			add("%s: connect_retry %s must be whole seconds, at least 1s", name, p.ConnectRetry)
		}
		fams := make(map[Family]bool, len(p.Families))
		for _, f := range p.Families {
			switch f {
			case IPv4Unicast, IPv6Unicast:
			default:
				add("%s: unknown address family %q (want %q or %q)", name, f, IPv4Unicast, IPv6Unicast)
			}
			if fams[f] {
				add("%s: address family %q listed twice", name, f)
			}
			fams[f] = true
		}
		if p.EBGPMultihopTTL != 0 && p.ASN == c.ASN {
			add("%s: ebgp_multihop_ttl is only for eBGP peers (the peer's asn equals the local asn)", name)
		}
		if p.TTLSecurity && p.EBGPMultihopTTL != 0 {
			add("%s: ttl_security is for directly connected peers; it can not be combined with a multihop TTL", name)
		}
	}
	gr := c.GracefulRestart
	if gr.RestartTime < time.Second || gr.RestartTime > maxRestartTime || gr.RestartTime%time.Second != 0 {
		add("graceful_restart.restart_time %s: must be whole seconds between 1s and %s", gr.RestartTime, maxRestartTime)
	}
	if gr.DeferralTime < time.Second || gr.DeferralTime > 65535*time.Second || gr.DeferralTime%time.Second != 0 {
		add("graceful_restart.deferral_time %s: must be whole seconds between 1s and 65535s", gr.DeferralTime)
	}
	if gr.Restarting && !gr.Enabled {
		add("graceful_restart.restarting needs graceful_restart.enabled")
	}
	if len(errs) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %w", ErrInvalidConfig, errors.Join(errs...))
}
