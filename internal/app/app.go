package app

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netns"
	"go.uber.org/zap"

	"github.com/bhrd/bhrd/pkg/audit"
	"github.com/bhrd/bhrd/pkg/config"
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

	httpSrv  *http.Server
	listener net.Listener

	enfMu sync.RWMutex // guards enforcers against scrapes and health checks
	// readySent is set once READY=1 went to systemd.
	readySent atomic.Bool

	enforcers []*runningEnforcer
	enfCancel context.CancelFunc
	enfWG     sync.WaitGroup

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New opens and migrates the store and builds the service. Nothing
// listens until Start.
func New(ctx context.Context, opts Options) (*App, error) {
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	st, applied, err := openMigrated(ctx, opts.Config.Store, opts.Logger)
	if err != nil {
		return nil, err
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
	m.reg.MustRegister(scrapeCollector{a})
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
		queue.WithMaxIdents(c.Store.MaxIdents), queue.WithIdentIdleAfter(c.Store.IdentIdleAfter))
}

// PolicyFromConfig maps the policy section to the queue's Policy.
func PolicyFromConfig(c config.Config) queue.Policy {
	p := c.Policy
	return queue.Policy{
		Protected:              protectedPrefixes(c),
		MinimumPrefixLen:       p.MinimumPrefixLen,
		MinimumPrefixLenV6:     p.MinimumPrefixLenV6,
		TimeWindowFactor:       p.TimeWindowFactor,
		MinimumTimeWindow:      p.MinimumTimeWindow,
		PenaltyTimeMultiplier:  p.PenaltyTimeMultiplier,
		ReturnToBaseMultiplier: p.ReturnToBaseMultiplier,
		ReturnToBaseFactor:     p.ReturnToBaseFactor,
	}
}

// Service returns the queue service.
func (a *App) Service() *queue.Service { return a.svc }

// Store returns the store.
func (a *App) Store() Store { return a.store }

// Start loads the lists, starts background work and the API server.
func (a *App) Start(ctx context.Context) error {
	runCtx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	a.cancel = cancel
	if err := a.svc.Start(runCtx); err != nil {
		cancel()
		return fmt.Errorf("start queue service: %w", err)
	}
	if d := a.opts.Config.Store.PruneAfter; d > 0 {
		a.wg.Add(1)
		go func() {
			defer a.wg.Done()
			a.pruneLoop(runCtx, d)
		}()
	}
	if err := a.startEnforcers(runCtx); err != nil {
		cancel()
		return err
	}
	if err := a.startAPI(runCtx); err != nil {
		_ = a.stopEnforcers(context.Background())
		cancel()
		return err
	}
	return nil
}

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

// Stop shuts down the API (finishing in-flight requests within ctx),
// background work and the store.
func (a *App) Stop(ctx context.Context) error {
	var errs []error
	if a.httpSrv != nil {
		if err := a.httpSrv.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("stop api: %w", err))
		}
	}
	if err := a.stopEnforcers(ctx); err != nil {
		errs = append(errs, err)
	}
	if a.cancel != nil {
		a.cancel()
	}
	a.wg.Wait()
	if err := a.store.Close(); err != nil {
		errs = append(errs, fmt.Errorf("close store: %w", err))
	}
	return errors.Join(errs...)
}
