package app

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/bhrd/bhrd/pkg/bgp"
	"github.com/bhrd/bhrd/pkg/enforcer"
	"github.com/bhrd/bhrd/pkg/plane"
	"github.com/bhrd/bhrd/pkg/queue"
)

// runningEnforcer is one configured enforcer with its plane's instance.
type runningEnforcer struct {
	enf  *enforcer.Enforcer
	typ  string
	inst plane.Instance
	run  plane.Running
}

// startEnforcers opens every configured enforcer's plane instance and
// starts its loop. Each instance's stop is on the lifecycle stack from the
// moment it opened; the loops are stopped (between batches) before any
// instance.
func (a *App) startEnforcers(ctx context.Context) error {
	cfg := a.opts.Config
	var res []*runningEnforcer
	for _, ec := range cfg.Enforcers {
		t, err := plane.Lookup(ec.Type)
		if err != nil {
			return fmt.Errorf("enforcer %s: %w", ec.Ident, err)
		}
		log := a.log.Named(ec.Type).With(zap.String("ident", ec.Ident))
		inst, err := t.Open(ctx, plane.Env{Log: log, Audit: a.audit, Netns: a.opts.Netns}, cfg, ec)
		if err != nil {
			return fmt.Errorf("enforcer %s: %w", ec.Ident, err)
		}
		a.life.onStop("enforcer "+ec.Ident+" ("+ec.Type+")", inst.Stop)
		var after func(context.Context) error
		if ar, ok := inst.(plane.AfterReconciler); ok {
			after = ar.AfterReconcile
		}
		enf, err := enforcer.New(enforcer.Config{
			Ident:          ec.Ident,
			MaxPrefixes:    ec.MaxPrefixes,
			Select:         ec.Select,
			AfterReconcile: after,
		}, a.svc, inst, a.log.Named("enforcer"), a.observer())
		if err != nil {
			return err
		}
		res = append(res, &runningEnforcer{enf: enf, typ: ec.Type, inst: inst, run: plane.Running{Enforcer: ec, Instance: inst}})
	}
	loopCtx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for _, re := range res {
		wg.Add(1)
		go func(e *enforcer.Enforcer) {
			defer wg.Done()
			_ = e.Run(loopCtx)
		}(re.enf)
	}
	a.enfMu.Lock()
	a.enforcers = res
	a.enfMu.Unlock()
	a.life.onStop("enforcer loops", func(context.Context) error {
		cancel()
		wg.Wait()
		a.enfMu.Lock()
		a.enforcers = nil
		a.enfMu.Unlock()
		return nil
	})
	return nil
}

// runningEnforcers is a snapshot of the enforcers.
func (a *App) runningEnforcers() []*runningEnforcer {
	a.enfMu.RLock()
	defer a.enfMu.RUnlock()
	return slices.Clone(a.enforcers)
}

// observer feeds the enforcers' work to the metrics (their audit lines
// come from the Service, as for any other report).
func (a *App) observer() enforcer.Observer {
	return enforcer.Observer{
		Blocked: func(ident string, items []queue.QueueItem, d time.Duration) {
			a.mets.applySeconds.WithLabelValues(ident, "block").Observe(d.Seconds())
			a.mets.applied.WithLabelValues(ident, "block").Add(float64(len(items)))
		},
		Unblocked: func(ident string, items []queue.UnblockItem, d time.Duration) {
			a.mets.applySeconds.WithLabelValues(ident, "unblock").Observe(d.Seconds())
			a.mets.applied.WithLabelValues(ident, "unblock").Add(float64(len(items)))
		},
		Failed: func(ident, op string, _ error) {
			a.mets.applyErrors.WithLabelValues(ident, op).Inc()
		},
	}
}

// EnforcerStatus reports every enforcer, for health checks and metrics.
func (a *App) EnforcerStatus() []enforcer.Status {
	res := a.runningEnforcers()
	out := make([]enforcer.Status, 0, len(res))
	for _, re := range res {
		out = append(out, re.enf.Status())
	}
	return out
}

// peerLister is an instance with BGP peers (api/bgp/peers, metrics,
// health).
type peerLister interface {
	Peers(ctx context.Context) ([]bgp.PeerState, error)
}

// BGPPeers reports the peers of every enforcer that has some, by ident.
func (a *App) BGPPeers(ctx context.Context) (map[string][]bgp.PeerState, error) {
	out := map[string][]bgp.PeerState{}
	for _, re := range a.runningEnforcers() {
		pl, ok := re.inst.(peerLister)
		if !ok {
			continue
		}
		ps, err := pl.Peers(ctx)
		if err != nil {
			return nil, fmt.Errorf("peers of %s: %w", re.enf.Ident(), err)
		}
		out[re.enf.Ident()] = ps
	}
	return out, nil
}
