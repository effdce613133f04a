package bgpplane

import (
	"fmt"
	"net/netip"
	"slices"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/bhrd/bhrd/pkg/bgp"
	"github.com/bhrd/bhrd/pkg/config"
	"github.com/bhrd/bhrd/pkg/queue"
)

// Config is the top-level bgp section: the embedded speaker's identity
// and its peers, shared by every bgp enforcer.
type Config struct {
	ASN             uint32          `yaml:"asn"`
	RouterID        netip.Addr      `yaml:"router_id"`
	ListenAddresses []netip.Addr    `yaml:"listen_addresses"`
	ListenPort      int32           `yaml:"listen_port"`
	GracefulRestart GracefulRestart `yaml:"graceful_restart"`
	Peers           []Peer          `yaml:"peers"`
}

// GracefulRestart configures the restarting-speaker role.
type GracefulRestart struct {
	Enabled     bool          `yaml:"enabled"`
	RestartTime time.Duration `yaml:"restart_time"`
}

// Peer is one BGP neighbour.
type Peer struct {
	Name    string     `yaml:"name"`
	Address netip.Addr `yaml:"address"`
	ASN     uint32     `yaml:"asn"`
	// Port is the peer's port (0: 179).
	Port     uint16 `yaml:"port"`
	Passive  bool   `yaml:"passive"`
	Password string `yaml:"password"`
	// PasswordFile holds the password; it is read at decoding.
	PasswordFile string        `yaml:"password_file"`
	HoldTime     time.Duration `yaml:"hold_time"`
	Families     []bgp.Family  `yaml:"families"` // ipv4-unicast, ipv6-unicast
	MultihopTTL  uint8         `yaml:"multihop_ttl"`
	// LocalAddress is the session's source address (zero: the kernel's
	// choice).
	LocalAddress netip.Addr `yaml:"local_address"`
	// ConnectRetry is the wait between connection attempts (0: 10s).
	ConnectRetry time.Duration `yaml:"connect_retry"`
	// TTLSecurity enables GTSM (RFC 5082) for a directly connected peer.
	TTLSecurity bool `yaml:"ttl_security"`
}

// Settings is one bgp enforcer's sub-section: the attributes of its
// announcements and the peers it feeds.
type Settings struct {
	// NextHopV4 and NextHopV6: the zero value means 192.0.2.1 and 100::1.
	NextHopV4 netip.Addr `yaml:"next_hop_v4"`
	NextHopV6 netip.Addr `yaml:"next_hop_v6"`
	// Communities: nil means BLACKHOLE and NO_EXPORT; empty means none.
	Communities      []bgp.Community      `yaml:"communities"`
	LargeCommunities []bgp.LargeCommunity `yaml:"large_communities"`
	LocalPref        uint32               `yaml:"local_pref"`
	// Peers limits the announcements to these peer names or addresses;
	// empty means every peer.
	Peers []string `yaml:"peers"`
	// Rules add communities to the routes of the blocks they select
	// (per-source or per-length communities), on top of Communities.
	Rules []Rule `yaml:"rules"`
}

// Rule adds communities to the routes of the blocks it selects.
type Rule struct {
	Select           queue.Selection      `yaml:"select"`
	Communities      []bgp.Community      `yaml:"communities"`
	LargeCommunities []bgp.LargeCommunity `yaml:"large_communities"`
}

func defaultConfig() Config {
	return Config{
		ListenPort:      179,
		GracefulRestart: GracefulRestart{Enabled: true, RestartTime: 120 * time.Second},
	}
}

// withDefaults fills what a zero value leaves to the defaults.
func (s Settings) withDefaults() Settings {
	if !s.NextHopV4.IsValid() {
		s.NextHopV4 = bgp.DefaultNextHopV4
	}
	if !s.NextHopV6.IsValid() {
		s.NextHopV6 = bgp.DefaultNextHopV6
	}
	if s.Communities == nil {
		for _, c := range bgp.DefaultCommunities() {
			s.Communities = append(s.Communities, bgp.Community(c))
		}
	}
	return s
}

// SectionOf returns the bgp section of c (its defaults when c has none).
func SectionOf(c config.Config) Config {
	if s, ok := c.Section(Name).(Config); ok {
		return s
	}
	return defaultConfig()
}

// WithSection returns c with its bgp section replaced.
func WithSection(c config.Config, s Config) config.Config { return c.WithSection(Name, s) }

// SettingsOf returns a bgp enforcer's settings with the defaults filled.
func SettingsOf(e config.Enforcer) Settings {
	s, _ := e.Settings.(Settings)
	return s.withDefaults()
}

func (Plane) DecodeSection(node *yaml.Node, key string, ps *config.Problems) any {
	c := defaultConfig()
	config.Decode(node, &c, key, ps)
	for i := range c.Peers {
		p := &c.Peers[i]
		if p.PasswordFile == "" {
			continue
		}
		k := fmt.Sprintf("%s.peers[%d].password_file", key, i)
		if p.Password != "" {
			ps.Add(k, "set only one of password and password_file")
		}
		s, err := config.ReadSecret(p.PasswordFile)
		if err != nil {
			ps.Add(k, "%v", err)
		}
		p.Password = s
	}
	return c
}

func (Plane) DecodeSettings(_ any, node *yaml.Node, key string, ps *config.Problems) any {
	var s Settings
	config.Decode(node, &s, key, ps)
	return s
}

func (Plane) Validate(section any, enfs []config.PlaneEnforcer, ps *config.Problems) {
	c, _ := section.(Config)
	if len(enfs) == 0 && len(c.Peers) == 0 {
		return
	}
	if c.ASN == 0 {
		ps.Add("bgp.asn", "required when a bgp enforcer is configured")
	}
	if !c.RouterID.Is4() {
		ps.Add("bgp.router_id", "must be an IPv4 address; got %q", addrString(c.RouterID))
	}
	for i, a := range c.ListenAddresses {
		if !a.IsValid() {
			ps.Add(fmt.Sprintf("bgp.listen_addresses[%d]", i), "not an IP address")
		}
	}
	if c.ListenPort < -1 || c.ListenPort > 65535 {
		ps.Add("bgp.listen_port", "must be 1..65535, or -1 to not listen")
	}
	if c.GracefulRestart.Enabled && (c.GracefulRestart.RestartTime <= 0 || c.GracefulRestart.RestartTime > 4095*time.Second) {
		ps.Add("bgp.graceful_restart.restart_time", "must be between 1s and 4095s")
	}
	names := map[string]bool{}
	known := map[string]bool{}
	for i, p := range c.Peers {
		key := fmt.Sprintf("bgp.peers[%d]", i)
		if !p.Address.IsValid() {
			ps.Add(key+".address", "required: the peer's IP address")
		}
		if p.ASN == 0 {
			ps.Add(key+".asn", "required")
		}
		if p.HoldTime != 0 && (p.HoldTime < 3*time.Second || p.HoldTime > 65535*time.Second || p.HoldTime%time.Second != 0) {
			ps.Add(key+".hold_time", "must be 0 (default) or whole seconds between 3s and 65535s")
		}
		if p.ConnectRetry < 0 || p.ConnectRetry%time.Second != 0 || p.ConnectRetry > time.Hour {
			ps.Add(key+".connect_retry", "must be 0 (10s) or whole seconds up to 1h")
		}
		if p.LocalAddress.IsValid() && p.Address.IsValid() && p.LocalAddress.Unmap().Is4() != p.Address.Unmap().Is4() {
			ps.Add(key+".local_address", "must be of the peer address's family")
		}
		if p.TTLSecurity && p.MultihopTTL != 0 {
			ps.Add(key+".ttl_security", "is for directly connected peers: not with multihop_ttl")
		}
		if p.Passive && c.GracefulRestart.Enabled {
			// A restarting bhrd that waits for the router: the router keeps
			// the routes stale waiting for bhrd to connect, nobody connects,
			// and after restart_time it flushes every blackhole.
			ps.Add(key+".passive", "a passive peer loses every blackhole when bhrd restarts with graceful_restart (the router waits for bhrd to connect, then flushes them after its restart time): let bhrd connect (passive: false) or set graceful_restart.enabled: false")
		}
		for j, f := range p.Families {
			if f != bgp.IPv4Unicast && f != bgp.IPv6Unicast {
				ps.Add(fmt.Sprintf("%s.families[%d]", key, j), "must be %s or %s; got %q", bgp.IPv4Unicast, bgp.IPv6Unicast, f)
			}
		}
		if p.Name != "" {
			if names[p.Name] {
				ps.Add(key+".name", "duplicate peer name %q", p.Name)
			}
			names[p.Name] = true
			known[p.Name] = true
		}
		if p.Address.IsValid() {
			known[p.Address.String()] = true
		}
	}
	if len(enfs) > 1 && c.ListenPort != -1 {
		ps.Add("bgp.listen_port", "must be -1 with more than one bgp enforcer: each enforcer runs its own speaker, which connect out to their peers, and one listening socket can not serve several")
	}
	// owner maps a peer to the bgp enforcer feeding it: two speakers can
	// not share a peer (the router would see two sessions from one
	// address).
	owner := map[netip.Addr]string{}
	for _, e := range enfs {
		s, _ := e.Settings.(Settings)
		key := e.Key + ".bgp"
		if s.NextHopV4.IsValid() && !s.NextHopV4.Is4() {
			ps.Add(key+".next_hop_v4", "must be an IPv4 address; got %q", s.NextHopV4)
		}
		if s.NextHopV6.IsValid() && (!s.NextHopV6.Is6() || s.NextHopV6.Is4In6()) {
			ps.Add(key+".next_hop_v6", "must be an IPv6 address; got %q", s.NextHopV6)
		}
		for k, a := range map[string]netip.Addr{"next_hop_v4": s.NextHopV4, "next_hop_v6": s.NextHopV6} {
			if a.IsUnspecified() || a.Zone() != "" {
				// GoBGP would send its own session address instead, drawing
				// the blocked traffic to bhrd.
				ps.Add(key+"."+k, "must be a discard address routers know, not %q", a)
			}
		}
		for j, r := range s.Rules {
			rk := fmt.Sprintf("%s.rules[%d]", key, j)
			if r.Select.All() {
				ps.Add(rk+".select", "required: a rule for every block belongs in the enforcer's communities")
			}
			for _, p := range r.Select.Problems() {
				ps.Add(rk+".select."+p[0], "%s", p[1])
			}
			if len(r.Communities) == 0 && len(r.LargeCommunities) == 0 {
				ps.Add(rk, "adds nothing: give communities or large_communities")
			}
		}
		for j, p := range s.Peers {
			if !known[p] {
				ps.Add(fmt.Sprintf("%s.peers[%d]", key, j), "no peer named or addressed %q in bgp.peers", p)
			}
		}
		for _, p := range peersOf(c, s) {
			if other, ok := owner[p.Address]; ok {
				ps.Add(key+".peers", "peer %s is already fed by enforcer %q; give each bgp enforcer its own peers", p.Address, other)
			}
			owner[p.Address] = e.Ident
		}
	}
}

// peersOf returns the peers an enforcer feeds: those it names, or all.
func peersOf(c Config, s Settings) []Peer {
	if len(s.Peers) == 0 {
		return c.Peers
	}
	var out []Peer
	for _, p := range c.Peers {
		if slices.Contains(s.Peers, p.Name) || (p.Address.IsValid() && slices.Contains(s.Peers, p.Address.String())) {
			out = append(out, p)
		}
	}
	return out
}

func addrString(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}
