package config

import (
	"fmt"
	"slices"
	"sort"
	"strings"
	"sync"

	"gopkg.in/yaml.v3"
)

// Plane is the configuration side of an enforcement plane (bgp,
// nullroute, ...): the plane's folder implements it and registers it, so
// that this package holds no section or rule of any plane. A plane owns
// the top-level section named after it and, in every enforcer of its
// type, the sub-section of the same name.
type Plane interface {
	// Name is the enforcer type and the key of the plane's sections.
	Name() string
	// DecodeSection decodes the top-level section (node is nil when the
	// file has none) over the plane's defaults and returns it typed.
	// Problems are reported at key paths under key.
	DecodeSection(node *yaml.Node, key string, ps *Problems) any
	// DecodeSettings decodes one enforcer's sub-section (node nil when
	// absent) and returns it typed; section is the decoded top-level
	// section, whose values may serve as the enforcer's defaults.
	DecodeSettings(section any, node *yaml.Node, key string, ps *Problems) any
	// Validate checks the typed section and the plane's enforcers
	// together: ranges, references between them, limits. Values set by
	// code rather than decoded (tests) are checked here too.
	Validate(section any, enforcers []PlaneEnforcer, ps *Problems)
}

// PlaneEnforcer is one enforcer of a plane with its key path
// ("enforcers[2]") for problems.
type PlaneEnforcer struct {
	Key string
	Enforcer
}

var (
	planesMu sync.RWMutex
	planes   = map[string]Plane{}
)

// RegisterPlane makes a plane's sections known to Parse and Default. It
// panics on a second plane of one name (a programming error, found at
// init).
func RegisterPlane(p Plane) {
	planesMu.Lock()
	defer planesMu.Unlock()
	if _, dup := planes[p.Name()]; dup {
		panic(fmt.Sprintf("config: plane %q registered twice", p.Name()))
	}
	planes[p.Name()] = p
}

// Planes returns the registered planes sorted by name.
func Planes() []Plane {
	planesMu.RLock()
	defer planesMu.RUnlock()
	out := make([]Plane, 0, len(planes))
	for _, p := range planes {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name() < out[j].Name() })
	return out
}

// LookupPlane returns the plane of an enforcer type.
func LookupPlane(name string) (Plane, bool) {
	planesMu.RLock()
	defer planesMu.RUnlock()
	p, ok := planes[name]
	return p, ok
}

func planeNames() string {
	var names []string
	for _, p := range Planes() {
		names = append(names, p.Name())
	}
	switch len(names) {
	case 0:
		return "(no enforcement plane is built in)"
	case 1:
		return names[0]
	}
	return strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
}

// Section returns the typed top-level section of a plane (its defaults
// when the file had none), for the plane's own code.
func (c Config) Section(name string) any { return c.Planes[name] }

// WithSection returns c with a plane's section replaced; c itself and
// copies of it keep theirs.
func (c Config) WithSection(name string, section any) Config {
	m := make(map[string]any, len(c.Planes)+1)
	for k, v := range c.Planes {
		m[k] = v
	}
	m[name] = section
	c.Planes = m
	return c
}

// EnforcersOf returns the enforcers of one type with their key paths.
func (c Config) EnforcersOf(typ string) []PlaneEnforcer {
	var out []PlaneEnforcer
	for i, e := range c.Enforcers {
		if e.Type == typ {
			out = append(out, PlaneEnforcer{Key: fmt.Sprintf("enforcers[%d]", i), Enforcer: e})
		}
	}
	return out
}

// sectionKeys are the top-level keys of the core; every other one must be
// a plane's.
var sectionKeys = []string{"instance", "log", "store", "api", "policy", "enforcers"}

func isCoreKey(k string) bool { return slices.Contains(sectionKeys, k) }
