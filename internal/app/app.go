package app

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netns"
	"go.uber.org/zap"

	_ "github.com/bhrd/bhrd/internal/planes" // every built-in plane
	"github.com/bhrd/bhrd/pkg/audit"
	"github.com/bhrd/bhrd/pkg/config"
	"github.com/bhrd/bhrd/pkg/plane"
	"github.com/bhrd/bhrd/pkg/queue"
)

// Options configure an App.
type Options struct {
	Config config.Config
	Logger *zap.Logger
	// Clock defaults to the system clock.
	Clock queue.Clock
	// Netns is the network namespace of null-route enforcers; the zero
	// value means the process's own. Tests use a fresh namespace.
	Netns netns.NsHandle
	// Audit receives the audit events; nil records nothing.
	Audit *audit.Logger
	// LogLevel, when set, is the operational logger's level, changed by
	// Reload.
	LogLevel *zap.AtomicLevel
}

// App is one running bhrd.
type App struct {
	opts  Options
	log   *zap.Logger
	store Store
	svc   *queue.Service
	audit *audit.Logger
	mets  *metrics

	// reloadMu serialises reloads; cfg is the configuration in force.
	reloadMu sync.Mutex
	cfg      config.Config

	listener net.Listener

	// life is what has started, stopped in reverse by Stop.
	life lifecycle

	enfMu sync.RWMutex // guards enforcers against scrapes and health checks
	// readySent is set once READY=1 went to systemd.
	readySent atomic.Bool

	enforcers []*runningEnforcer
}

// ErrStore marks a New or Start that failed because the store could not
// be opened, migrated or read: bhrd serve waits and tries again.
var ErrStore = errors.New("store not available")

// New opens and migrates the store and builds the service. Nothing
// listens until Start.
func New(ctx context.Context, opts Options) (*App, error) {
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	st, applied, err := openMigrated(ctx, opts.Config.Store, opts.Logger)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrStore, err)
	}
	if len(applied) > 0 {
		opts.Logger.Info("schema migrated", zap.Strings("applied", applied))
	}
	m := newMetrics()
	svc, err := NewService(countStoreErrors(st, m.storeErrors), opts.Config, opts.Clock, opts.Audit)
	if err != nil {
		st.Close()
		return nil, err
	}
	a := &App{opts: opts, log: opts.Logger, store: st, svc: svc, audit: opts.Audit, mets: m, cfg: opts.Config}
	a.life.onStop("store", func(context.Context) error { return st.Close() })
	m.reg.MustRegister(scrapeCollector{a: a, held: &heldReads{}})
	return a, nil
}

// NewService builds the queue Service the config describes over st: its
// policy, reserved idents (the internal enforcers'), ident limits and
// audit events. The daemon and the commands use it alike.
func NewService(st queue.Store, c config.Config, clock queue.Clock, aud *audit.Logger) (*queue.Service, error) {
	var internal []string
	for _, e := range c.Enforcers {
		internal = append(internal, e.Ident)
	}
	return queue.NewService(st, PolicyFromConfig(c), clock,
		queue.WithEvents(aud.Events()), queue.WithReservedIdents(internal...),
		queue.WithMaxIdents(c.Store.MaxIdents), queue.WithIdentIdleAfter(c.Store.IdentIdleAfter),
		queue.WithInstance(c.Instance))
}

// PolicyFromConfig maps the policy section to the queue's Policy, with
// bhrd's own addresses and those every plane protects.
func PolicyFromConfig(c config.Config) queue.Policy {
	p := c.Policy.Rules()
	p.Protected = hostProtected(c)
	for _, t := range plane.All() {
		p.Protected = append(p.Protected, t.Protected(c)...)
	}
	return p
}

// Service returns the queue service.
func (a *App) Service() *queue.Service { return a.svc }

// Store returns the store.
func (a *App) Store() Store { return a.store }

// Start loads the lists, starts background work, the enforcers and the
// API server. Every part that starts is on the lifecycle stack at once:
// a failed Start has already stopped what it started (the store stays
// open for Stop).
func (a *App) Start(ctx context.Context) (err error) {
	mark := a.life.depth()
	defer func() {
		if err != nil {
			_ = a.life.stopTo(context.Background(), mark)
		}
	}()
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	a.life.onStop("background work", func(context.Context) error {
		cancel()
		wg.Wait()
		return nil
	})
	if err := a.svc.Start(runCtx); err != nil {
		return fmt.Errorf("%w: start queue service: %w", ErrStore, err)
	}
	if d := a.opts.Config.Store.PruneAfter; d > 0 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			a.pruneLoop(runCtx, d)
		}()
	}
	if err := a.startEnforcers(runCtx); err != nil {
		return err
	}
	return a.startAPI(runCtx)
}

// OnStop puts a part an embedder started on the lifecycle stack: Stop
// runs it before the parts started earlier.
func (a *App) OnStop(name string, fn func(context.Context) error) { a.life.onStop(name, fn) }

// pruneLoop deletes closed history hourly.
func (a *App) pruneLoop(ctx context.Context, age time.Duration) {
	ctx = queue.WithActor(ctx, queue.Actor{Name: audit.System})
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		res, err := a.svc.Prune(ctx, age)
		if err != nil && ctx.Err() == nil {
			a.log.Error("prune history", zap.Error(err))
		} else if res.Blocks > 0 {
			a.log.Info("pruned history", zap.Int64("blocks", res.Blocks), zap.Int64("entries", res.Entries))
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Stop stops every part in the reverse order of its start: the API
// (in-flight requests finish within ctx), the enforcer loops, the
// planes' instances, background work, the store. Errors are joined.
func (a *App) Stop(ctx context.Context) error {
	return a.life.stop(ctx)
}
