// Package nullrouteplane is the nullroute enforcement plane: an enforcer
// of type nullroute installs its blocks as blackhole routes in a kernel
// routing table (pkg/nullroute), tagged with a route protocol number of
// its own so that it touches no other routes. The top-level nullroute
// section sets the table and protocol every such enforcer uses unless its
// own nullroute sub-section says otherwise.
package nullrouteplane

import (
	"context"
	"errors"
	"fmt"

	"github.com/vishvananda/netlink"
	"gopkg.in/yaml.v3"

	"github.com/bhrd/bhrd/pkg/config"
	"github.com/bhrd/bhrd/pkg/nullroute"
	"github.com/bhrd/bhrd/pkg/plane"
	"github.com/bhrd/bhrd/pkg/queue"
)

// Name is the plane's enforcer type and config key.
const Name = "nullroute"

func init() { plane.Register(Plane{}) }

// Plane is the nullroute plane's plane.Type.
type Plane struct{}

// Name returns "nullroute".
func (Plane) Name() string { return Name }

// Config is both the top-level nullroute section (the defaults) and an
// enforcer's nullroute sub-section (starting from them).
type Config struct {
	// Table is the routing table id (254 is main).
	Table int `yaml:"table"`
	// Protocol is the route protocol number that marks bhrd's routes
	// (5-255; 66 by default, see pkg/nullroute).
	Protocol int `yaml:"protocol"`
}

func defaultConfig() Config {
	return Config{Table: nullroute.DefaultTable, Protocol: nullroute.DefaultProtocol}
}

// SectionOf returns the nullroute section of c (its defaults when c has
// none).
func SectionOf(c config.Config) Config {
	if s, ok := c.Section(Name).(Config); ok {
		return s
	}
	return defaultConfig()
}

// SettingsOf returns a nullroute enforcer's table and protocol: its own
// sub-section, or the section's.
func SettingsOf(c config.Config, e config.Enforcer) Config {
	if s, ok := e.Settings.(Config); ok {
		return s
	}
	return SectionOf(c)
}

func (Plane) DecodeSection(node *yaml.Node, key string, ps *config.Problems) any {
	c := defaultConfig()
	config.Decode(node, &c, key, ps)
	return c
}

// DecodeSettings decodes an enforcer's sub-section over the section.
func (Plane) DecodeSettings(section any, node *yaml.Node, key string, ps *config.Problems) any {
	c, ok := section.(Config)
	if !ok {
		c = defaultConfig()
	}
	config.Decode(node, &c, key, ps)
	return c
}

// Validate applies pkg/nullroute's own rules, so that check-config refuses
// what the start would (a protocol of the kernel's, table 0).
func (Plane) Validate(section any, enfs []config.PlaneEnforcer, ps *config.Problems) {
	s, _ := section.(Config)
	if err := check(s); err != nil {
		ps.Add(Name, "%v", err)
	}
	for _, e := range enfs {
		if st, ok := e.Settings.(Config); ok && st != s {
			if err := check(st); err != nil {
				ps.Add(e.Key+"."+Name, "%v", err)
			}
		}
	}
}

func check(c Config) error {
	if c.Table == 0 {
		return errors.New("table 0 is not a table (254 is main)")
	}
	if c.Protocol == 0 {
		return errors.New("protocol 0 is not a route protocol (use 5-255; 66 by default)")
	}
	return nullroute.Config{Table: c.Table, Protocol: c.Protocol}.Check()
}

// Protected: kernel null routes cut nothing bhrd needs to reach its
// routers (they only drop forwarded traffic to the blocked prefixes), so
// the plane protects no address of its own.
func (Plane) Protected(config.Config) []queue.ProtectedPrefix { return nil }

// instance is one nullroute enforcer's table and the netlink handle it
// reads through.
type instance struct {
	Backend
	h *netlink.Handle
}

// Open opens the routing table in env's network namespace (the process's
// own by default).
func (Plane) Open(_ context.Context, env plane.Env, c config.Config, e config.Enforcer) (plane.Instance, error) {
	st := SettingsOf(c, e)
	nc := nullroute.Config{Table: st.Table, Protocol: st.Protocol, Netns: env.Netns}
	var h *netlink.Handle
	var err error
	if env.Netns > 0 && env.Netns.IsOpen() { // 0: the process's own (a daemon's fd 0 is never a namespace)
		h, err = netlink.NewHandleAt(env.Netns)
	} else {
		h, err = netlink.NewHandle()
	}
	if err != nil {
		return nil, fmt.Errorf("netlink: %w", err)
	}
	t, err := nullroute.New(h, nc)
	if err != nil {
		h.Close()
		return nil, err
	}
	return &instance{Backend: Backend{Table: t}, h: h}, nil
}

// Stop closes the sockets. The routes stay: the kernel keeps blackholing
// while bhrd is down, and the next start reconciles.
func (i *instance) Stop(context.Context) error {
	err := i.Table.Close()
	i.h.Close()
	return err
}
