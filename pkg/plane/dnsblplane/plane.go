// Package dnsblplane is the dnsbl enforcement plane: an enforcer of type
// dnsbl drains its ident's queues into an in-memory prefix table that a
// DNS server (pkg/dnsbl) answers from, as an RFC 5782 DNSBL zone with
// Http:BL answers. A block is listed once the enforcer installed it and
// unlisted when it ends; at start the table is rebuilt from the store.
package dnsblplane

import (
	"context"
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"time"

	"go.uber.org/zap"
	"gopkg.in/yaml.v3"

	"github.com/bhrd/bhrd/pkg/config"
	"github.com/bhrd/bhrd/pkg/dnsbl"
	"github.com/bhrd/bhrd/pkg/enforcer"
	"github.com/bhrd/bhrd/pkg/plane"
	"github.com/bhrd/bhrd/pkg/queue"
)

// Name is the plane's enforcer type and config key.
const Name = "dnsbl"

func init() { plane.Register(Plane{}) }

// Plane is the dnsbl plane's plane.Type.
type Plane struct{}

// Name returns "dnsbl".
func (Plane) Name() string { return Name }

// Settings is one dnsbl enforcer's sub-section.
type Settings struct {
	// Listen are the addresses served over UDP and TCP ("127.0.0.1:5353";
	// port 53 needs CAP_NET_BIND_SERVICE, which the unit grants).
	Listen []string `yaml:"listen"`
	// Zones answered; names outside them get REFUSED.
	Zones []string `yaml:"zones"`
	// NS and Mbox name the zones' name servers and SOA mailbox (defaults
	// ns.<zone> and hostmaster.<zone>).
	NS   []string `yaml:"ns"`
	Mbox string   `yaml:"mbox"`
	// TTL of listed answers and NegativeTTL of NXDOMAIN (60s, 30s).
	TTL         time.Duration `yaml:"ttl"`
	NegativeTTL time.Duration `yaml:"negative_ttl"`
	// TXT adds the block's source and end to listed names.
	TXT bool `yaml:"txt"`
	// DefaultType (1: suspicious) and Types per source: the Http:BL type
	// bit set of the answer, 1–255, never 0.
	DefaultType uint8            `yaml:"default_type"`
	Types       map[string]uint8 `yaml:"types"`
	// DefaultThreatBase (25) and ThreatBase per source: the base of the
	// threat score (dnsbl.Threat).
	DefaultThreatBase *int           `yaml:"default_threat_base"`
	ThreatBase        map[string]int `yaml:"threat_base"`
	// Keys, when given, are the only access keys answered (Http:BL's first
	// label); bhrd dnsbl-key makes one and prints its entry.
	Keys []Key `yaml:"keys"`
}

// Key is one access key: who holds it and the SHA-256 of the key (hex).
type Key struct {
	Name   string `yaml:"name"`
	SHA256 string `yaml:"sha256"`
}

// DefaultThreatBase is the threat score of a one-day block.
const DefaultThreatBase = 25

func (Plane) DecodeSection(node *yaml.Node, key string, ps *config.Problems) any {
	var s struct{}
	if node != nil {
		config.Decode(node, &s, key, ps)
		ps.Add(key, "a dnsbl enforcer's settings go in its own dnsbl sub-section, not at the top level")
	}
	return nil
}

func (Plane) DecodeSettings(_ any, node *yaml.Node, key string, ps *config.Problems) any {
	var s Settings
	config.Decode(node, &s, key, ps)
	return s
}

// SettingsOf returns a dnsbl enforcer's settings.
func SettingsOf(e config.Enforcer) Settings {
	s, _ := e.Settings.(Settings)
	return s
}

func (Plane) Validate(_ any, enfs []config.PlaneEnforcer, ps *config.Problems) {
	listen := map[string]string{}
	for _, e := range enfs {
		s := SettingsOf(e.Enforcer)
		key := e.Key + "." + Name
		if len(s.Listen) == 0 {
			ps.Add(key+".listen", "required: the addresses to serve DNS on, e.g. [\"127.0.0.1:5353\"]")
		}
		for i, a := range s.Listen {
			k := fmt.Sprintf("%s.listen[%d]", key, i)
			host, port, err := net.SplitHostPort(a)
			if err != nil {
				ps.Add(k, "want host:port; got %q", a)
				continue
			}
			if _, err := netip.ParseAddr(host); err != nil {
				ps.Add(k, "want an IP address as host; got %q", host)
			}
			if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
				ps.Add(k, "port must be 1..65535 (0: any free one); got %q", port)
			}
			if other, dup := listen[a]; dup {
				ps.Add(k, "%s is already served by enforcer %s", a, other)
			}
			listen[a] = e.Ident
		}
		if len(s.Zones) == 0 {
			ps.Add(key+".zones", "required: the zone names to answer, e.g. [bl.example.net]")
		}
		for i, z := range s.Zones {
			if !dnsbl.ValidName(z) {
				ps.Add(fmt.Sprintf("%s.zones[%d]", key, i), "not a domain name: %q", z)
			}
		}
		for i, n := range s.NS {
			if !dnsbl.ValidName(n) {
				ps.Add(fmt.Sprintf("%s.ns[%d]", key, i), "not a domain name: %q", n)
			}
		}
		if s.Mbox != "" {
			if !dnsbl.ValidName(s.Mbox) {
				ps.Add(key+".mbox", "not a domain name: %q", s.Mbox)
			}
		}
		for k, d := range map[string]time.Duration{"ttl": s.TTL, "negative_ttl": s.NegativeTTL} {
			if d < 0 || d > 24*time.Hour || d%time.Second != 0 {
				ps.Add(key+"."+k, "must be whole seconds up to 24h (0: the default)")
			}
		}
		for src, t := range s.Types {
			if t == 0 {
				ps.Add(key+".types."+src, "type 0 means search engine to every Http:BL client, which would not deny it: use 1 (suspicious), 2 (harvester), 4 (comment spammer) or a sum")
			}
		}
		for src, b := range s.ThreatBase {
			if b < 0 || b > 255 {
				ps.Add(key+".threat_base."+src, "must be 0..255")
			}
		}
		if s.DefaultThreatBase != nil && (*s.DefaultThreatBase < 0 || *s.DefaultThreatBase > 255) {
			ps.Add(key+".default_threat_base", "must be 0..255")
		}
		names := map[string]bool{}
		for i, k := range s.Keys {
			kk := fmt.Sprintf("%s.keys[%d]", key, i)
			if k.Name == "" {
				ps.Add(kk+".name", "required: who holds the key (it labels the metrics)")
			} else if names[k.Name] {
				ps.Add(kk+".name", "duplicate key name %q", k.Name)
			}
			names[k.Name] = true
			if b, err := hex.DecodeString(k.SHA256); err != nil || len(b) != 32 {
				ps.Add(kk+".sha256", "want the 64 hex digits bhrd dnsbl-key printed")
			}
		}
	}
}

// ServerConfig turns the settings into the server's config.
func (s Settings) ServerConfig() dnsbl.Config {
	c := dnsbl.Config{
		Zones: s.Zones, NS: s.NS, Mbox: s.Mbox, TTL: s.TTL, NegativeTTL: s.NegativeTTL, TXT: s.TXT,
		Types: s.Types, DefaultType: s.DefaultType, ThreatBase: s.ThreatBase, DefaultThreatBase: DefaultThreatBase,
	}
	if s.DefaultThreatBase != nil {
		c.DefaultThreatBase = *s.DefaultThreatBase
	}
	if len(s.Keys) > 0 {
		c.Keys = map[[32]byte]string{}
		for _, k := range s.Keys {
			var h [32]byte
			b, _ := hex.DecodeString(k.SHA256)
			copy(h[:], b)
			c.Keys[h] = k.Name
		}
	}
	return c
}

// Protected: answering DNS cuts nothing bhrd needs.
func (Plane) Protected(config.Config) []queue.ProtectedPrefix { return nil }

// Instance is one dnsbl enforcer's table and server.
type Instance struct {
	Backend
	Server *dnsbl.Server
	env    plane.Env
	ident  string
}

// Open starts the DNS server on the enforcer's addresses, answering from
// an empty table until the enforcer reconciles it.
func (Plane) Open(_ context.Context, env plane.Env, _ config.Config, e config.Enforcer) (plane.Instance, error) {
	st := SettingsOf(e)
	t := dnsbl.NewTable()
	sc := st.ServerConfig()
	sc.NotReady = true // until the enforcer has rebuilt the table
	srv, err := dnsbl.New(sc, t)
	if err != nil {
		return nil, err
	}
	if err := srv.Listen(st.Listen); err != nil {
		return nil, err
	}
	i := &Instance{Backend: Backend{Table: t}, Server: srv, env: env, ident: e.Ident}
	addrs := i.addrs()
	env.Audit.DNSBLListener(e.Ident, addrs, srv.Zones(), true)
	if env.Log != nil {
		env.Log.Info("dnsbl listening", zap.Strings("addresses", addrs), zap.Strings("zones", srv.Zones()))
	}
	return i, nil
}

// AfterReconcile: the table holds every open block, so the zone answers.
func (i *Instance) AfterReconcile(context.Context) error {
	i.Server.SetReady(true)
	return nil
}

func (i *Instance) addrs() []string {
	var out []string
	for _, a := range i.Server.Addrs() {
		out = append(out, a.String())
	}
	return out
}

// Stop closes the server. The table goes with it: the next start
// rebuilds it from the store.
func (i *Instance) Stop(ctx context.Context) error {
	addrs := i.addrs()
	err := i.Server.Shutdown(ctx)
	i.env.Audit.DNSBLListener(i.ident, addrs, i.Server.Zones(), false)
	return err
}

// QueryCounts and Listed are for the metrics.
func (i *Instance) QueryCounts() map[dnsbl.CountKey]uint64 { return i.Server.Counts() }

// Listed is the number of prefixes in the zone.
func (i *Instance) Listed() int { return i.Table.Len() }

// Backend enforces blocks as entries of a DNSBL table.
type Backend struct {
	Table *dnsbl.Table
}

func entryOf(t enforcer.Target) dnsbl.Entry {
	return dnsbl.Entry{Source: t.Source, Added: t.Added, UnblockAt: t.UnblockAt}
}

// Install lists the targets (a newer block of a listed prefix replaces
// its entry).
func (b Backend) Install(_ context.Context, ts []enforcer.Target) error {
	for _, t := range ts {
		b.Table.Set(t.Prefix, entryOf(t))
	}
	return nil
}

// Remove unlists the prefixes.
func (b Backend) Remove(_ context.Context, ps []netip.Prefix) error {
	for _, p := range ps {
		b.Table.Delete(p)
	}
	return nil
}

// Reconcile makes the table hold exactly want.
func (b Backend) Reconcile(_ context.Context, want []enforcer.Target) (int, int, error) {
	w := make(map[netip.Prefix]bool, len(want))
	added := 0
	for _, t := range want {
		w[t.Prefix.Masked()] = true
		if !b.Table.Has(t.Prefix) {
			added++
		}
		b.Table.Set(t.Prefix, entryOf(t))
	}
	removed := 0
	for _, p := range b.Table.Prefixes() {
		if !w[p] {
			b.Table.Delete(p)
			removed++
		}
	}
	return added, removed, nil
}
