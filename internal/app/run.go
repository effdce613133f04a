package app

import (
	"context"
	"fmt"
	"os"
	"time"

	"go.uber.org/zap"

	"github.com/bhrd/bhrd/pkg/config"
)

// shutdownGrace is how long past api.shutdown_timeout Run waits for a
// stop that ignores its context before giving up on it.
const shutdownGrace = time.Second

// RunOptions configure Run.
type RunOptions struct {
	// ConfigPath is the file re-read on each reload.
	ConfigPath string
	// Reload delivers a value (SIGHUP) for each reload wanted.
	Reload <-chan os.Signal
}

// Run serves a started App until ctx ends: it tells systemd when bhrd is
// ready and pets its watchdog, reloads ConfigPath on each Reload, then
// stops within api.shutdown_timeout. A part stuck in a call that ignores
// its context (a hung backend, a store connection that never comes back)
// must not keep the process alive: past the timeout and a second's grace
// Run returns an error saying so, leaving that part behind.
func (a *App) Run(ctx context.Context, ro RunOptions) error {
	nctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go a.Notify(nctx)
	for done := false; !done; {
		select {
		case <-ctx.Done():
			done = true
		case <-ro.Reload:
			a.NotifyReload(func() { a.ReloadFile(ro.ConfigPath) })
		}
	}
	cancel()
	NotifyStopping()
	timeout := a.opts.Config.API.ShutdownTimeout
	a.log.Info("shutting down", zap.Duration("timeout", timeout))
	sctx, scancel := context.WithTimeout(context.Background(), timeout)
	defer scancel()
	stopped := make(chan error, 1)
	go func() { stopped <- a.Stop(sctx) }()
	grace := time.NewTimer(timeout + shutdownGrace)
	defer grace.Stop()
	select {
	case err := <-stopped:
		if err != nil {
			a.log.Error("shutdown", zap.Error(err))
			return err
		}
	case <-grace.C:
		err := fmt.Errorf("shutdown did not finish within shutdown_timeout (%s); exiting anyway", timeout)
		a.log.Error("shutdown", zap.Error(err))
		return err
	}
	a.log.Info("bhrd stopped")
	return nil
}

// ReloadFile re-reads the config file (SIGHUP). A file that does not load
// changes nothing.
func (a *App) ReloadFile(path string) {
	cfg, err := config.Load(path)
	if err != nil {
		a.log.Error("config reload failed; nothing changed", zap.String("file", path), zap.Error(err))
		return
	}
	if _, err := a.Reload(path, cfg); err != nil {
		a.log.Error("config reload failed", zap.String("file", path), zap.Error(err))
	}
}
