// Package config owns bhrd's YAML configuration: the typed structure, its
// defaults, strict decoding (unknown keys are errors) and validation that
// names the key path of every problem.
package config

import (
	"fmt"
	"net/netip"
	"os"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/bhrd/bhrd/pkg/queue"
)

// Config is the whole file.
type Config struct {
	// Instance names this bhrd among those sharing a store: on every log
	// and audit line, and as the owner of its enforcers' idents. The
	// default is the host name.
	Instance  string     `yaml:"instance"`
	Log       Log        `yaml:"log"`
	Store     Store      `yaml:"store"`
	API       API        `yaml:"api"`
	Policy    Policy     `yaml:"policy"`
	Enforcers []Enforcer `yaml:"enforcers"`
	// Planes holds each registered plane's top-level section (bgp,
	// nullroute, ...) by the plane's name, typed by the plane: see Plane.
	// Change one with WithSection, which leaves copies of c alone.
	Planes map[string]any `yaml:"-"`
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
	// WebPages serves BHR's pages under /bhr/ (pkg/web).
	WebPages bool `yaml:"web_pages"`
	// SessionMaxAge bounds a login to the pages.
	SessionMaxAge time.Duration `yaml:"session_max_age"`
	// SecureCookie marks the session cookie Secure without TLS here (a
	// TLS proxy in front); under tls_cert it is Secure anyway.
	SecureCookie bool `yaml:"secure_cookie"`
}

// Policy holds BHR's block rules under BHR's names.
type Policy struct {
	MinimumPrefixLen   int `yaml:"minimum_prefixlen"`
	MinimumPrefixLenV6 int `yaml:"minimum_prefixlen_v6"`
	// AbsoluteMinimumPrefixLen(V6): no block is shorter, skip_whitelist
	// included.
	AbsoluteMinimumPrefixLen   int     `yaml:"absolute_minimum_prefixlen"`
	AbsoluteMinimumPrefixLenV6 int     `yaml:"absolute_minimum_prefixlen_v6"`
	TimeWindowFactor           float64 `yaml:"time_window_factor"`
	MinimumTimeWindow          float64 `yaml:"minimum_time_window"`
	PenaltyTimeMultiplier      float64 `yaml:"penalty_time_multiplier"`
	ReturnToBaseMultiplier     float64 `yaml:"return_to_base_multiplier"`
	ReturnToBaseFactor         float64 `yaml:"return_to_base_factor"`
	// LocalNetworks are the site's own networks (?local=true queries).
	LocalNetworks []netip.Prefix `yaml:"local_networks"`
}

// Rules returns the block rules as the queue keeps them (without the
// protected addresses, which come from the planes).
func (p Policy) Rules() queue.Policy {
	return queue.Policy{
		MinimumPrefixLen:           p.MinimumPrefixLen,
		MinimumPrefixLenV6:         p.MinimumPrefixLenV6,
		AbsoluteMinimumPrefixLen:   p.AbsoluteMinimumPrefixLen,
		AbsoluteMinimumPrefixLenV6: p.AbsoluteMinimumPrefixLenV6,
		TimeWindowFactor:           p.TimeWindowFactor,
		MinimumTimeWindow:          p.MinimumTimeWindow,
		PenaltyTimeMultiplier:      p.PenaltyTimeMultiplier,
		ReturnToBaseMultiplier:     p.ReturnToBaseMultiplier,
		ReturnToBaseFactor:         p.ReturnToBaseFactor,
	}
}

// Enforcer is one internal enforcer goroutine.
type Enforcer struct {
	Ident string `yaml:"ident"`
	// Type names the plane that enforces: bgp, nullroute, ...
	Type        string `yaml:"type"`
	MaxPrefixes int    `yaml:"max_prefixes"`
	// Select limits the blocks the enforcer takes (by source and prefix
	// length); the zero value takes every block.
	Select queue.Selection `yaml:"select"`
	// Settings is the enforcer's sub-section named after its type, typed
	// by the plane; nil means the plane's defaults.
	Settings any `yaml:"-"`
}

// Default returns a config with every default filled in.
func Default() Config {
	c := Config{
		Instance: defaultInstance(),
		Log:      Log{Level: "info", Audit: "stderr"},
		Store:    Store{Driver: "sqlite", Path: "state/bhrd.db", MaxIdents: 1000, IdentIdleAfter: time.Hour},
		API: API{
			Listen:          "127.0.0.1:8080",
			MaxBodyBytes:    1 << 20,
			MaxMBlockItems:  1000,
			LongPollMax:     60 * time.Second,
			BodyTimeout:     10 * time.Second,
			ShutdownTimeout: 10 * time.Second,
			WebPages:        true,
			SessionMaxAge:   12 * time.Hour,
		},
		Policy: policyDefaults(queue.DefaultPolicy()),
	}
	var ps Problems
	for _, p := range Planes() {
		c = c.WithSection(p.Name(), p.DecodeSection(nil, p.Name(), &ps))
	}
	return c
}

func policyDefaults(q queue.Policy) Policy {
	return Policy{
		MinimumPrefixLen:           q.MinimumPrefixLen,
		MinimumPrefixLenV6:         q.MinimumPrefixLenV6,
		AbsoluteMinimumPrefixLen:   q.AbsoluteMinimumPrefixLen,
		AbsoluteMinimumPrefixLenV6: q.AbsoluteMinimumPrefixLenV6,
		TimeWindowFactor:           q.TimeWindowFactor,
		MinimumTimeWindow:          q.MinimumTimeWindow,
		PenaltyTimeMultiplier:      q.PenaltyTimeMultiplier,
		ReturnToBaseMultiplier:     q.ReturnToBaseMultiplier,
		ReturnToBaseFactor:         q.ReturnToBaseFactor,
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
// validates. Every problem of the file comes back at once, as Problems
// naming key paths; only YAML that is not YAML at all is a plain error.
func Parse(b []byte) (Config, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return Config{}, fmt.Errorf("decode: %w", err)
	}
	c := Default()
	var ps Problems
	c.decode(&doc, &ps)
	c.resolveSecrets(&ps)
	// A value that did not decode has said so; the rules, which see it
	// unset, would only repeat it.
	bad := map[string]bool{}
	for _, p := range ps {
		bad[p.Key] = true
	}
	var rules Problems
	c.validate(&rules)
	for _, p := range rules {
		if !bad[p.Key] {
			ps = append(ps, p)
		}
	}
	if err := ps.err(); err != nil {
		return Config{}, err
	}
	return c, nil
}

// decode fills c from a document: the core sections, then every plane's
// section, then the enforcers with their plane's sub-section.
func (c *Config) decode(doc *yaml.Node, ps *Problems) {
	root := doc
	if root.Kind == yaml.DocumentNode {
		if len(root.Content) == 0 {
			return
		}
		root = root.Content[0]
	}
	if root.Kind == yaml.ScalarNode && root.ShortTag() == "!!null" {
		return
	}
	if root.Kind != yaml.MappingNode {
		ps.Add("", "line %d: the file must be a mapping of sections", root.Line)
		return
	}
	core := struct {
		Instance *string `yaml:"instance"`
		Log      *Log    `yaml:"log"`
		Store    *Store  `yaml:"store"`
		API      *API    `yaml:"api"`
		Policy   *Policy `yaml:"policy"`
	}{&c.Instance, &c.Log, &c.Store, &c.API, &c.Policy}
	coreNode := &yaml.Node{Kind: yaml.MappingNode}
	sections := map[string]*yaml.Node{}
	var enforcers *yaml.Node
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		switch _, isPlane := LookupPlane(k.Value); {
		case k.Value == "enforcers":
			enforcers = v
		case isCoreKey(k.Value) || !isPlane:
			coreNode.Content = append(coreNode.Content, k, v)
		default:
			sections[k.Value] = v
		}
	}
	Decode(coreNode, &core, "", ps)
	for _, p := range Planes() {
		*c = c.WithSection(p.Name(), p.DecodeSection(sections[p.Name()], p.Name(), ps))
	}
	if enforcers != nil {
		c.Enforcers = c.decodeEnforcers(enforcers, ps)
	}
}

func (c *Config) decodeEnforcers(n *yaml.Node, ps *Problems) []Enforcer {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" {
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		ps.Add("enforcers", "line %d: want a list of enforcers", n.Line)
		return nil
	}
	out := make([]Enforcer, 0, len(n.Content))
	for i, item := range n.Content {
		key := fmt.Sprintf("enforcers[%d]", i)
		for item.Kind == yaml.AliasNode && item.Alias != nil {
			item = item.Alias
		}
		if item.Kind != yaml.MappingNode {
			ps.Add(key, "line %d: want a mapping with ident and type", item.Line)
			continue
		}
		var e Enforcer
		core := &yaml.Node{Kind: yaml.MappingNode}
		subs := map[string]*yaml.Node{}
		for j := 0; j+1 < len(item.Content); j += 2 {
			k, v := item.Content[j], item.Content[j+1]
			if _, ok := LookupPlane(k.Value); ok {
				subs[k.Value] = v
				continue
			}
			core.Content = append(core.Content, k, v)
		}
		Decode(core, &e, key, ps)
		p, known := LookupPlane(e.Type)
		for name := range subs {
			if name != e.Type {
				ps.Add(key+"."+name, "only for type %s", name)
			}
		}
		if known {
			e.Settings = p.DecodeSettings(c.Planes[p.Name()], subs[p.Name()], key+"."+p.Name(), ps)
		}
		out = append(out, e)
	}
	return out
}

func (c *Config) resolveSecrets(ps *Problems) {
	if v := os.Getenv("BHRD_DATABASE_URL"); v != "" {
		c.Store.URL = v
	} else if c.Store.URLFile != "" {
		if c.Store.URL != "" {
			ps.Add("store.url_file", "set only one of url and url_file")
		}
		s, err := ReadSecret(c.Store.URLFile)
		if err != nil {
			ps.Add("store.url_file", "%v", err)
		}
		c.Store.URL = s
	}
}

// ReadSecret reads a secret from a file (trailing white space dropped).
func ReadSecret(path string) (string, error) {
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

// Add records a problem at a key path.
func (ps *Problems) Add(key, format string, args ...any) {
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
	c.validate(&ps)
	return ps.err()
}

func (c Config) validate(ps *Problems) {
	if !validInstance(c.Instance) {
		ps.Add("instance", "must be 1 to 63 letters, digits, '.', '-', '_' or ':'; got %q", c.Instance)
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		ps.Add("log.level", "must be one of debug, info, warn, error; got %q", c.Log.Level)
	}
	if c.Log.Audit == "" {
		ps.Add("log.audit", "must be \"stderr\" or a file path")
	}
	switch c.Store.Driver {
	case "sqlite":
		if c.Store.Path == "" {
			ps.Add("store.path", "required for the sqlite driver")
		}
	case "postgres":
		if c.Store.URL == "" {
			ps.Add("store.url", "required for the postgres driver (or store.url_file, or BHRD_DATABASE_URL)")
		}
	default:
		ps.Add("store.driver", "must be sqlite or postgres; got %q", c.Store.Driver)
	}
	if c.Store.PruneAfter < 0 {
		ps.Add("store.prune_after", "must not be negative")
	}
	if c.Store.MaxIdents < 0 {
		ps.Add("store.max_idents", "must not be negative (0 = no cap)")
	}
	if c.Store.IdentIdleAfter < 0 {
		ps.Add("store.ident_idle_after", "must not be negative (0 = never idle)")
	} else if c.Store.IdentIdleAfter > 0 && c.Store.IdentIdleAfter < time.Minute {
		ps.Add("store.ident_idle_after", "must be at least 1m (an enforcer's long poll lasts up to api.long_poll_max)")
	}
	if _, err := netip.ParseAddrPort(c.API.Listen); err != nil {
		ps.Add("api.listen", "must be host:port with an IP address, e.g. 127.0.0.1:8080; got %q", c.API.Listen)
	}
	if (c.API.TLSCert == "") != (c.API.TLSKey == "") {
		ps.Add("api.tls_cert", "tls_cert and tls_key must be set together")
	}
	if c.API.MaxBodyBytes <= 0 {
		ps.Add("api.max_body_bytes", "must be positive")
	}
	if c.API.MaxMBlockItems <= 0 {
		ps.Add("api.max_mblock_items", "must be positive")
	}
	if c.API.LongPollMax <= 0 || c.API.LongPollMax > 10*time.Minute {
		ps.Add("api.long_poll_max", "must be between 1s and 10m")
	}
	if c.API.BodyTimeout <= 0 || c.API.BodyTimeout > 10*time.Minute {
		ps.Add("api.body_timeout", "must be between 1ns and 10m (e.g. 10s)")
	}
	if c.API.SessionMaxAge < time.Minute {
		ps.Add("api.session_max_age", "must be at least 1m")
	}
	if c.API.ShutdownTimeout <= 0 {
		ps.Add("api.shutdown_timeout", "must be positive")
	}
	if err := c.Policy.Rules().Validate(); err != nil {
		ps.Add("policy", "%v", err)
	}
	for i, n := range c.Policy.LocalNetworks {
		if !n.IsValid() {
			ps.Add(fmt.Sprintf("policy.local_networks[%d]", i), "not a CIDR")
		}
	}
	c.validateEnforcers(ps)
	for _, p := range Planes() {
		p.Validate(c.Planes[p.Name()], c.EnforcersOf(p.Name()), ps)
	}
}

func (c Config) validateEnforcers(ps *Problems) {
	idents := map[string]bool{}
	for i, e := range c.Enforcers {
		key := fmt.Sprintf("enforcers[%d]", i)
		if e.Ident == "" {
			ps.Add(key+".ident", "required")
		} else if idents[e.Ident] {
			ps.Add(key+".ident", "duplicate ident %q: each enforcer needs its own", e.Ident)
		}
		idents[e.Ident] = true
		if e.MaxPrefixes < 0 {
			ps.Add(key+".max_prefixes", "must not be negative (0 = no limit)")
		}
		for _, p := range e.Select.Problems() {
			ps.Add(key+".select."+p[0], "%s", p[1])
		}
		if _, ok := LookupPlane(e.Type); !ok {
			ps.Add(key+".type", "must be %s; got %q", planeNames(), e.Type)
		}
	}
}

// defaultInstance is the host name, or "bhrd" when it cannot be read or
// is no valid instance name.
func defaultInstance() string {
	h, err := os.Hostname()
	if err != nil || !validInstance(h) {
		return "bhrd"
	}
	return h
}

func validInstance(s string) bool {
	if len(s) == 0 || len(s) > 63 {
		return false
	}
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '-', r == '_', r == ':':
		default:
			return false
		}
	}
	return true
}
