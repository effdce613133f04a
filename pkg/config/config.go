// Package config owns bhrd's YAML configuration: the typed structure, its
// defaults, strict decoding (unknown keys are errors) and validation that
// names the key path of every problem.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Config is the whole file.
type Config struct {
	Log       Log               `yaml:"log"`
	Store     Store             `yaml:"store"`
	API       API               `yaml:"api"`
	Policy    Policy            `yaml:"policy"`
	BGP       BGP               `yaml:"bgp"`
	Enforcers []Enforcer        `yaml:"enforcers"`
	Nullroute NullrouteDefaults `yaml:"nullroute"`
}

// Log configures the operational and audit loggers.
type Log struct {
	Level string `yaml:"level"` // debug, info, warn, error
	// Audit is where the audit log goes: "stderr" or a file path.
	Audit string `yaml:"audit"`
}

// Store selects and configures the store.
type Store struct {
	// Driver is "sqlite" (embedded, the default) or "postgres".
	Driver string `yaml:"driver"`
	// Path is the SQLite database file.
	Path string `yaml:"path"`
	// URL is the PostgreSQL connection URL. Prefer URLFile or the
	// BHRD_DATABASE_URL environment variable to keep passwords out of the
	// config file.
	URL     string `yaml:"url"`
	URLFile string `yaml:"url_file"`
	// PruneAfter deletes closed history older than this (0 = keep forever).
	PruneAfter time.Duration `yaml:"prune_after"`
	// MaxIdents caps the idents (enforcer names) the store may hold: a
	// block-queue call for a new ident beyond it is refused (409).
	// 0 = no cap.
	MaxIdents int `yaml:"max_idents"`
	// IdentIdleAfter: an ident that has not asked for its block queue for
	// this long stops getting new blocks queued (it catches up when it asks
	// again). 0 = idents never go idle.
	IdentIdleAfter time.Duration `yaml:"ident_idle_after"`
}

// API configures the HTTP server.
type API struct {
	Listen  string `yaml:"listen"`
	TLSCert string `yaml:"tls_cert"`
	TLSKey  string `yaml:"tls_key"`
	// BaseURL, when set, is used for the absolute "url" fields of block
	// objects (e.g. behind a reverse proxy); otherwise the request's host.
	BaseURL        string        `yaml:"base_url"`
	MaxBodyBytes   int64         `yaml:"max_body_bytes"`
	MaxMBlockItems int           `yaml:"max_mblock_items"`
	LongPollMax    time.Duration `yaml:"long_poll_max"`
	// BodyTimeout bounds how long a request body may take to arrive after
	// its headers (408 and the connection closed past it).
	BodyTimeout time.Duration `yaml:"body_timeout"`
	// UnauthenticatedLimitedQuery keeps BHR's setting name.
	UnauthenticatedLimitedQuery bool          `yaml:"unauthenticated_limited_query"`
	ShutdownTimeout             time.Duration `yaml:"shutdown_timeout"`
}

// Policy holds BHR's block rules under BHR's names.
type Policy struct {
	MinimumPrefixLen       int      `yaml:"minimum_prefixlen"`
	MinimumPrefixLenV6     int      `yaml:"minimum_prefixlen_v6"`
	TimeWindowFactor       float64  `yaml:"time_window_factor"`
	MinimumTimeWindow      float64  `yaml:"minimum_time_window"`
	PenaltyTimeMultiplier  float64  `yaml:"penalty_time_multiplier"`
	ReturnToBaseMultiplier float64  `yaml:"return_to_base_multiplier"`
	ReturnToBaseFactor     float64  `yaml:"return_to_base_factor"`
	LocalNetworks          []string `yaml:"local_networks"`
}

// BGP configures the embedded speaker (used by enforcers of type bgp).
type BGP struct {
	ASN             uint32          `yaml:"asn"`
	RouterID        string          `yaml:"router_id"`
	ListenAddresses []string        `yaml:"listen_addresses"`
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
	Name         string        `yaml:"name"`
	Address      string        `yaml:"address"`
	ASN          uint32        `yaml:"asn"`
	Port         uint32        `yaml:"port"`
	Passive      bool          `yaml:"passive"`
	Password     string        `yaml:"password"`
	PasswordFile string        `yaml:"password_file"`
	HoldTime     time.Duration `yaml:"hold_time"`
	Families     []string      `yaml:"families"` // ipv4-unicast, ipv6-unicast
	MultihopTTL  uint8         `yaml:"multihop_ttl"`
}

// NullrouteDefaults apply to every nullroute enforcer unless overridden.
type NullrouteDefaults struct {
	Table    int `yaml:"table"`
	Protocol int `yaml:"protocol"`
}

// Enforcer is one internal enforcer goroutine.
type Enforcer struct {
	Ident       string             `yaml:"ident"`
	Type        string             `yaml:"type"` // bgp or nullroute
	MaxPrefixes int                `yaml:"max_prefixes"`
	BGP         *EnforcerBGP       `yaml:"bgp"`
	Nullroute   *EnforcerNullroute `yaml:"nullroute"`
}

// EnforcerBGP sets the attributes of one BGP enforcer's announcements.
type EnforcerBGP struct {
	NextHopV4        string   `yaml:"next_hop_v4"`
	NextHopV6        string   `yaml:"next_hop_v6"`
	Communities      []string `yaml:"communities"`
	LargeCommunities []string `yaml:"large_communities"`
	LocalPref        uint32   `yaml:"local_pref"`
	// Peers limits the announcements to these peer names or addresses;
	// empty means every peer.
	Peers []string `yaml:"peers"`
}

// EnforcerNullroute overrides the null-route defaults.
type EnforcerNullroute struct {
	Table    int `yaml:"table"`
	Protocol int `yaml:"protocol"`
}

// Default returns a config with every default filled in.
func Default() Config {
	return Config{
		Log:   Log{Level: "info", Audit: "stderr"},
		Store: Store{Driver: "sqlite", Path: "state/bhrd.db", MaxIdents: 1000, IdentIdleAfter: time.Hour},
		API: API{
			Listen:          "127.0.0.1:8080",
			MaxBodyBytes:    1 << 20,
			MaxMBlockItems:  1000,
			LongPollMax:     60 * time.Second,
			BodyTimeout:     10 * time.Second,
			ShutdownTimeout: 10 * time.Second,
		},
		Policy: Policy{
			MinimumPrefixLen:       24,
			MinimumPrefixLenV6:     64,
			TimeWindowFactor:       2,
			MinimumTimeWindow:      43200,
			PenaltyTimeMultiplier:  2,
			ReturnToBaseMultiplier: 2,
			ReturnToBaseFactor:     2,
		},
		BGP: BGP{
			ListenPort:      179,
			GracefulRestart: GracefulRestart{Enabled: true, RestartTime: 120 * time.Second},
		},
		Nullroute: NullrouteDefaults{Table: 254, Protocol: 66},
	}
}

// Load reads, decodes and validates a file. Environment and *_file
// secrets are resolved.
func Load(path string) (Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("read config: %w", err)
	}
	c, err := Parse(b)
	if err != nil {
		return Config{}, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// Parse decodes YAML strictly over the defaults, resolves secrets and
// validates.
func Parse(b []byte) (Config, error) {
	c := Default()
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	if err := dec.Decode(&c); err != nil && !errors.Is(err, io.EOF) {
		return Config{}, fmt.Errorf("decode: %w", err)
	}
	if err := c.resolveSecrets(); err != nil {
		return Config{}, err
	}
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}

func (c *Config) resolveSecrets() error {
	var errs Problems
	if v := os.Getenv("BHRD_DATABASE_URL"); v != "" {
		c.Store.URL = v
	} else if c.Store.URLFile != "" {
		if c.Store.URL != "" {
			errs.add("store.url_file", "set only one of url and url_file")
		}
		s, err := readSecret(c.Store.URLFile)
		if err != nil {
			errs.add("store.url_file", "%v", err)
		}
		c.Store.URL = s
	}
	for i := range c.BGP.Peers {
		p := &c.BGP.Peers[i]
		if p.PasswordFile != "" {
			if p.Password != "" {
				errs.add(fmt.Sprintf("bgp.peers[%d].password_file", i), "set only one of password and password_file")
			}
			s, err := readSecret(p.PasswordFile)
			if err != nil {
				errs.add(fmt.Sprintf("bgp.peers[%d].password_file", i), "%v", err)
			}
			p.Password = s
		}
	}
	return errs.err()
}

func readSecret(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("read secret: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// Problem is one validation failure at a key path.
type Problem struct {
	Key     string
	Message string
}

// Problems is every validation failure of a file.
type Problems []Problem

func (ps *Problems) add(key, format string, args ...any) {
	*ps = append(*ps, Problem{Key: key, Message: fmt.Sprintf(format, args...)})
}

func (ps Problems) err() error {
	if len(ps) == 0 {
		return nil
	}
	return ps
}

func (ps Problems) Error() string {
	var b strings.Builder
	for i, p := range ps {
		if i > 0 {
			b.WriteString("\n")
		}
		fmt.Fprintf(&b, "%s: %s", p.Key, p.Message)
	}
	return b.String()
}

// Validate checks every value and returns Problems naming each key path.
func (c Config) Validate() error {
	var ps Problems
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		ps.add("log.level", "must be one of debug, info, warn, error; got %q", c.Log.Level)
	}
	if c.Log.Audit == "" {
		ps.add("log.audit", "must be \"stderr\" or a file path")
	}
	switch c.Store.Driver {
	case "sqlite":
		if c.Store.Path == "" {
			ps.add("store.path", "required for the sqlite driver")
		}
	case "postgres":
		if c.Store.URL == "" {
			ps.add("store.url", "required for the postgres driver (or store.url_file, or BHRD_DATABASE_URL)")
		}
	default:
		ps.add("store.driver", "must be sqlite or postgres; got %q", c.Store.Driver)
	}
	if c.Store.PruneAfter < 0 {
		ps.add("store.prune_after", "must not be negative")
	}
	if c.Store.MaxIdents < 0 {
		ps.add("store.max_idents", "must not be negative (0 = no cap)")
	}
	if c.Store.IdentIdleAfter < 0 {
		ps.add("store.ident_idle_after", "must not be negative (0 = never idle)")
	} else if c.Store.IdentIdleAfter > 0 && c.Store.IdentIdleAfter < time.Minute {
		ps.add("store.ident_idle_after", "must be at least 1m (an enforcer's long poll lasts up to api.long_poll_max)")
	}
	if _, err := netip.ParseAddrPort(c.API.Listen); err != nil {
		ps.add("api.listen", "must be host:port with an IP address, e.g. 127.0.0.1:8080; got %q", c.API.Listen)
	}
	if (c.API.TLSCert == "") != (c.API.TLSKey == "") {
		ps.add("api.tls_cert", "tls_cert and tls_key must be set together")
	}
	if c.API.MaxBodyBytes <= 0 {
		ps.add("api.max_body_bytes", "must be positive")
	}
	if c.API.MaxMBlockItems <= 0 {
		ps.add("api.max_mblock_items", "must be positive")
	}
	if c.API.LongPollMax <= 0 || c.API.LongPollMax > 10*time.Minute {
		ps.add("api.long_poll_max", "must be between 1s and 10m")
	}
	if c.API.BodyTimeout <= 0 || c.API.BodyTimeout > 10*time.Minute {
		ps.add("api.body_timeout", "must be between 1ns and 10m (e.g. 10s)")
	}
	if c.API.ShutdownTimeout <= 0 {
		ps.add("api.shutdown_timeout", "must be positive")
	}
	if err := c.QueuePolicyCheck(); err != nil {
		ps.add("policy", "%v", err)
	}
	for i, n := range c.Policy.LocalNetworks {
		if _, err := netip.ParsePrefix(n); err != nil {
			ps.add(fmt.Sprintf("policy.local_networks[%d]", i), "not a CIDR: %q", n)
		}
	}
	c.validateBGP(&ps)
	c.validateEnforcers(&ps)
	return ps.err()
}

// QueuePolicyCheck validates the numeric policy values.
func (c Config) QueuePolicyCheck() error {
	p := c.Policy
	switch {
	case p.MinimumPrefixLen < 0 || p.MinimumPrefixLen > 32:
		return fmt.Errorf("minimum_prefixlen must be 0..32")
	case p.MinimumPrefixLenV6 < 0 || p.MinimumPrefixLenV6 > 128:
		return fmt.Errorf("minimum_prefixlen_v6 must be 0..128")
	case p.TimeWindowFactor < 0 || p.MinimumTimeWindow < 0 || p.PenaltyTimeMultiplier < 0 || p.ReturnToBaseMultiplier < 0:
		return fmt.Errorf("autoscale factors must not be negative")
	case p.ReturnToBaseFactor <= 0:
		return fmt.Errorf("return_to_base_factor must be greater than 0")
	}
	return nil
}

func (c Config) usesBGP() bool {
	for _, e := range c.Enforcers {
		if e.Type == "bgp" {
			return true
		}
	}
	return false
}

func (c Config) validateBGP(ps *Problems) {
	if !c.usesBGP() && len(c.BGP.Peers) == 0 {
		return
	}
	if c.BGP.ASN == 0 {
		ps.add("bgp.asn", "required when a bgp enforcer is configured")
	}
	if a, err := netip.ParseAddr(c.BGP.RouterID); err != nil || !a.Is4() {
		ps.add("bgp.router_id", "must be an IPv4 address; got %q", c.BGP.RouterID)
	}
	for i, a := range c.BGP.ListenAddresses {
		if _, err := netip.ParseAddr(a); err != nil {
			ps.add(fmt.Sprintf("bgp.listen_addresses[%d]", i), "not an IP address: %q", a)
		}
	}
	if c.BGP.ListenPort < -1 || c.BGP.ListenPort > 65535 {
		ps.add("bgp.listen_port", "must be 1..65535, or -1 to not listen")
	}
	if c.BGP.GracefulRestart.Enabled && (c.BGP.GracefulRestart.RestartTime <= 0 || c.BGP.GracefulRestart.RestartTime > 4095*time.Second) {
		ps.add("bgp.graceful_restart.restart_time", "must be between 1s and 4095s")
	}
	names := map[string]bool{}
	for i, p := range c.BGP.Peers {
		key := fmt.Sprintf("bgp.peers[%d]", i)
		if _, err := netip.ParseAddr(p.Address); err != nil {
			ps.add(key+".address", "not an IP address: %q", p.Address)
		}
		if p.ASN == 0 {
			ps.add(key+".asn", "required")
		}
		if p.HoldTime != 0 && (p.HoldTime < 3*time.Second || p.HoldTime > 65535*time.Second) {
			ps.add(key+".hold_time", "must be 0 (default) or between 3s and 65535s")
		}
		for j, f := range p.Families {
			if f != "ipv4-unicast" && f != "ipv6-unicast" {
				ps.add(fmt.Sprintf("%s.families[%d]", key, j), "must be ipv4-unicast or ipv6-unicast; got %q", f)
			}
		}
		if p.Name != "" {
			if names[p.Name] {
				ps.add(key+".name", "duplicate peer name %q", p.Name)
			}
			names[p.Name] = true
		}
	}
}

func (c Config) validateEnforcers(ps *Problems) {
	idents := map[string]bool{}
	peerKnown := map[string]bool{}
	for _, p := range c.BGP.Peers {
		peerKnown[p.Address] = true
		if p.Name != "" {
			peerKnown[p.Name] = true
		}
	}
	nBGP := 0
	for _, e := range c.Enforcers {
		if e.Type == "bgp" {
			nBGP++
		}
	}
	if nBGP > 1 && c.BGP.ListenPort != -1 {
		ps.add("bgp.listen_port", "must be -1 with more than one bgp enforcer: each enforcer runs its own speaker, which connect out to their peers, and one listening socket can not serve several")
	}
	// peerOwner maps a peer to the bgp enforcer feeding it.
	peerOwner := map[string]string{}
	for i, e := range c.Enforcers {
		key := fmt.Sprintf("enforcers[%d]", i)
		if e.Ident == "" {
			ps.add(key+".ident", "required")
		} else if idents[e.Ident] {
			ps.add(key+".ident", "duplicate ident %q: each enforcer needs its own", e.Ident)
		}
		idents[e.Ident] = true
		if e.MaxPrefixes < 0 {
			ps.add(key+".max_prefixes", "must not be negative (0 = no limit)")
		}
		switch e.Type {
		case "bgp":
			if e.Nullroute != nil {
				ps.add(key+".nullroute", "only for type nullroute")
			}
			if b := e.BGP; b != nil {
				if b.NextHopV4 != "" {
					if a, err := netip.ParseAddr(b.NextHopV4); err != nil || !a.Is4() {
						ps.add(key+".bgp.next_hop_v4", "must be an IPv4 address; got %q", b.NextHopV4)
					}
				}
				if b.NextHopV6 != "" {
					if a, err := netip.ParseAddr(b.NextHopV6); err != nil || !a.Is6() {
						ps.add(key+".bgp.next_hop_v6", "must be an IPv6 address; got %q", b.NextHopV6)
					}
				}
				for j, s := range b.Communities {
					if _, err := ParseCommunity(s); err != nil {
						ps.add(fmt.Sprintf("%s.bgp.communities[%d]", key, j), "%v", err)
					}
				}
				for j, s := range b.LargeCommunities {
					if _, err := ParseLargeCommunity(s); err != nil {
						ps.add(fmt.Sprintf("%s.bgp.large_communities[%d]", key, j), "%v", err)
					}
				}
				for j, p := range b.Peers {
					if !peerKnown[p] {
						ps.add(fmt.Sprintf("%s.bgp.peers[%d]", key, j), "no peer named or addressed %q in bgp.peers", p)
					}
				}
			}
			// Two speakers can not share a peer: the router would see two
			// sessions from one address.
			for _, p := range c.BGP.Peers {
				if e.BGP != nil && len(e.BGP.Peers) > 0 && !slices.Contains(e.BGP.Peers, p.Name) && !slices.Contains(e.BGP.Peers, p.Address) {
					continue
				}
				if other, ok := peerOwner[p.Address]; ok {
					ps.add(key+".bgp.peers", "peer %s is already fed by enforcer %q; give each bgp enforcer its own peers", p.Address, other)
				}
				peerOwner[p.Address] = e.Ident
			}
		case "nullroute":
			if e.BGP != nil {
				ps.add(key+".bgp", "only for type bgp")
			}
			if n := e.Nullroute; n != nil {
				if n.Table < 0 || n.Protocol < 0 || n.Protocol > 255 {
					ps.add(key+".nullroute", "table must be >= 0 and protocol 0..255")
				}
			}
		default:
			ps.add(key+".type", "must be bgp or nullroute; got %q", e.Type)
		}
	}
}
