package app

import (
	"context"
	"fmt"
	"time"

	"go.uber.org/zap"

	"github.com/bhrd/bhrd/pkg/bgp"
)

// hungAfter is how long one pass over an enforcer's queues may take
// before the enforcer counts as hung (a pass is one batch of at most 200
// prefixes; even a slow backend finishes it in seconds).
const hungAfter = 2 * time.Minute

// WaitReconciled blocks until every enforcer has rebuilt its backend from
// the store (BGP peers have then been sent the full table) or stands by
// for another instance owning its ident, or ctx ends.
func (a *App) WaitReconciled(ctx context.Context) error {
	for _, re := range a.runningEnforcers() {
		select {
		case <-re.enf.Settled():
		case <-ctx.Done():
			return fmt.Errorf("enforcer %s not reconciled: %w", re.enf.Ident(), ctx.Err())
		}
	}
	return nil
}

// Ready reports whether bhrd can do its job: the store answers, every
// enforcer has reconciled and none is stuck in one pass.
func (a *App) Ready(ctx context.Context) error {
	_, err := a.readiness(ctx)
	return err
}

// readiness is Ready, returning the BGP peers it read on the way.
func (a *App) readiness(ctx context.Context) (map[string][]bgp.PeerState, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, _, err := a.svc.NextUnblockAt(ctx); err != nil {
		return nil, fmt.Errorf("store: %w", err)
	}
	for _, st := range a.EnforcerStatus() {
		if !st.Reconciled && !st.Standby {
			return nil, fmt.Errorf("enforcer %s: not reconciled yet", st.Ident)
		}
		if !st.BusySince.IsZero() && time.Since(st.BusySince) > hungAfter {
			return nil, fmt.Errorf("enforcer %s: one pass has taken %s", st.Ident, time.Since(st.BusySince).Round(time.Second))
		}
	}
	// The BGP speakers answer (they were started with their enforcers).
	peers, err := a.BGPPeers(ctx)
	if err != nil {
		return nil, fmt.Errorf("peers: %w", err)
	}
	return peers, nil
}

// Alive reports whether bhrd's loops turn: no enforcer pass has been
// running for longer than hungAfter. It does not ask the store (Ready
// does): during a database outage the enforcers fail fast and retry, the
// routers keep every route, and a restart would only drop the BGP
// sessions; a stuck pass is what a restart cures.
func (a *App) Alive() error {
	for _, st := range a.EnforcerStatus() {
		if !st.BusySince.IsZero() && time.Since(st.BusySince) > hungAfter {
			return fmt.Errorf("enforcer %s: one pass has taken %s", st.Ident, time.Since(st.BusySince).Round(time.Second))
		}
	}
	return nil
}

// Notify tells systemd (Type=notify) that bhrd is ready once every
// enforcer has reconciled, then pets the watchdog for as long as Alive
// holds: a hung enforcer stops the pats and systemd restarts bhrd; a
// store outage does not (see Alive), it is shown in STATUS. Returns when
// ctx ends.
func (a *App) Notify(ctx context.Context) {
	if err := a.WaitReconciled(ctx); err != nil {
		return
	}
	if err := sdNotify("READY=1"); err != nil {
		a.log.Warn("sd_notify READY", zap.Error(err))
	}
	a.readySent.Store(true)
	interval := watchdogInterval()
	if interval <= 0 {
		return
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if err := a.Alive(); err != nil {
			a.log.Error("not alive: withholding the systemd watchdog ping", zap.Error(err))
			continue
		}
		status := "STATUS=ready"
		if err := a.Ready(ctx); err != nil {
			status = "STATUS=not ready: " + err.Error()
		}
		if err := sdNotify("WATCHDOG=1\n" + status); err != nil {
			a.log.Warn("sd_notify WATCHDOG", zap.Error(err))
		}
	}
}

// NotifyWaiting tells systemd that bhrd is still starting, waiting for
// the store (STATUS), and that it may take until after the next try
// (EXTEND_TIMEOUT_USEC: Type=notify's start timeout would kill it).
func NotifyWaiting(status string, next time.Duration) {
	_ = sdNotify(fmt.Sprintf("STATUS=%s\nEXTEND_TIMEOUT_USEC=%d", status, (next + 30*time.Second).Microseconds()))
}

// NotifyStopping tells systemd that shutdown has begun.
func NotifyStopping() { _ = sdNotify("STOPPING=1") }
