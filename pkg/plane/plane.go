// Package plane is the registry of enforcement planes: the kinds of thing
// an internal enforcer can drive (BGP announcements, kernel null routes,
// ...). A plane is one folder under pkg/plane that holds its whole self:
// its config sections (decoded and validated there), its constructor, the
// Backend its enforcers drive, the addresses it must never block, its
// reload and its teardown. It registers itself from init, and
// internal/planes lists the folders that are built in, so adding a plane
// is that folder and one import line. The daemon holds no switch on plane
// types.
package plane

import (
	"context"
	"fmt"
	"sync"

	"github.com/vishvananda/netns"
	"go.uber.org/zap"

	"github.com/bhrd/bhrd/pkg/audit"
	"github.com/bhrd/bhrd/pkg/config"
	"github.com/bhrd/bhrd/pkg/enforcer"
	"github.com/bhrd/bhrd/pkg/queue"
)

// Type is one enforcement plane.
type Type interface {
	// The config side: the plane's name (the enforcer type) and its
	// sections.
	config.Plane
	// Protected returns the addresses blocks must never cover while the
	// plane runs with this config, because enforcing such a block would
	// cut bhrd off from what it enforces through (a BGP peer, a next hop).
	Protected(c config.Config) []queue.ProtectedPrefix
	// Open builds and starts the instance of one enforcer of this type in
	// c. A failed Open leaves nothing of it running.
	Open(ctx context.Context, env Env, c config.Config, e config.Enforcer) (Instance, error)
}

// Env is what the daemon gives a plane's instances.
type Env struct {
	// Log is named for the plane and carries the enforcer's ident.
	Log *zap.Logger
	// Audit receives the plane's own audit events (BGP sessions); nil
	// records nothing.
	Audit *audit.Logger
	// Netns is the network namespace for planes that talk to the kernel;
	// the zero value means the process's own.
	Netns netns.NsHandle
}

// Instance is one running enforcer's part of a plane: the backend its
// enforcer loop drives, and its teardown.
type Instance interface {
	enforcer.Backend
	// Stop releases what Open started, within ctx. What the plane
	// enforces stays enforced where it can (kernel routes stay, BGP
	// peers that support graceful restart keep the routes).
	Stop(ctx context.Context) error
}

// AfterReconciler is an Instance with work to do once its enforcer has
// rebuilt it from the store (a BGP speaker adds its peers then, so that
// they get the whole table before End-of-RIB).
type AfterReconciler interface {
	AfterReconcile(ctx context.Context) error
}

// Running is one running enforcer of a plane.
type Running struct {
	Enforcer config.Enforcer
	Instance Instance
}

// Reloader is a Type some of whose settings can change in a running
// bhrd (SIGHUP).
type Reloader interface {
	// Reload applies next to the plane's running enforcers, cur being the
	// config they were started with. It returns the keys it applied;
	// ok false means next changes something only a restart applies, and
	// nothing was changed.
	Reload(ctx context.Context, cur, next config.Config, running []Running) (applied []string, ok bool, err error)
}

var (
	mu    sync.RWMutex
	types = map[string]Type{}
)

// Register makes a plane known to the config and to the daemon. Planes
// call it from init.
func Register(t Type) {
	config.RegisterPlane(t)
	mu.Lock()
	defer mu.Unlock()
	types[t.Name()] = t
}

// Lookup returns the plane of an enforcer type.
func Lookup(name string) (Type, error) {
	mu.RLock()
	defer mu.RUnlock()
	t, ok := types[name]
	if !ok {
		return nil, fmt.Errorf("no enforcement plane %q is built in", name)
	}
	return t, nil
}

// All returns every registered plane, sorted by name.
func All() []Type {
	var out []Type
	for _, p := range config.Planes() {
		if t, err := Lookup(p.Name()); err == nil {
			out = append(out, t)
		}
	}
	return out
}
