package app

import (
	"context"
	"fmt"
	"reflect"

	"go.uber.org/zap"

	"github.com/bhrd/bhrd/pkg/audit"
	"github.com/bhrd/bhrd/pkg/config"
)

// ReloadResult says what a reload changed.
type ReloadResult struct {
	// Applied names what took effect: "log.level", "policy",
	// "log.audit (reopened)".
	Applied []string
	// NotReloaded names the changed sections that only a restart
	// applies, each with "restart needed".
	NotReloaded []string
}

// Reload applies what can change safely in a running bhrd from next, a
// validated config (SIGHUP): the log level, the block policy (prefix
// lengths, autoscale; the protected set is recomputed) and the audit
// file is reopened for logrotate. Changes to the store, API listener,
// BGP, enforcers and null-route settings are reported, not applied:
// they would cut sessions or move state. file is for the audit line.
func (a *App) Reload(file string, next config.Config) (ReloadResult, error) {
	a.reloadMu.Lock()
	defer a.reloadMu.Unlock()
	cur := a.cfg
	var res ReloadResult

	if next.Log.Level != cur.Log.Level && a.opts.LogLevel != nil {
		if err := a.opts.LogLevel.UnmarshalText([]byte(next.Log.Level)); err != nil {
			return res, err
		}
		cur.Log.Level = next.Log.Level
		res.Applied = append(res.Applied, "log.level")
	}

	// Everything in policy but local_networks, which the API holds.
	np, op := next.Policy, cur.Policy
	np.LocalNetworks, op.LocalNetworks = nil, nil
	if !reflect.DeepEqual(np, op) {
		trial := cur
		trial.Policy = next.Policy
		trial.Policy.LocalNetworks = cur.Policy.LocalNetworks
		// Protected addresses come from the running BGP and enforcer
		// settings, which a reload does not change.
		pol := PolicyFromConfig(trial)
		if err := a.svc.SetPolicy(pol); err != nil {
			return res, err
		}
		cur.Policy = trial.Policy
		res.Applied = append(res.Applied, "policy")
	}

	// BGP peers added, removed or changed, with everything else in bgp
	// and the enforcers as they are: sessions of untouched peers stay up.
	nb, ob := next.BGP, cur.BGP
	nb.Peers, ob.Peers = nil, nil
	if !reflect.DeepEqual(next.BGP.Peers, cur.BGP.Peers) && reflect.DeepEqual(nb, ob) &&
		reflect.DeepEqual(next.Enforcers, cur.Enforcers) {
		if err := a.reloadPeers(next); err != nil {
			return res, err
		}
		cur.BGP.Peers = next.BGP.Peers
		// The peers' addresses are protected from blocking: follow them.
		pol := PolicyFromConfig(cur)
		if err := a.svc.SetPolicy(pol); err != nil {
			return res, err
		}
		res.Applied = append(res.Applied, "bgp.peers")
	}

	if err := a.audit.Reopen(); err != nil {
		a.log.Error("reopen audit log", zap.Error(err))
	} else if a.audit.Path() != "" {
		res.Applied = append(res.Applied, "log.audit (reopened)")
	}

	restart := func(key string, changed bool) {
		if changed {
			res.NotReloaded = append(res.NotReloaded, key+": restart needed")
		}
	}
	restart("log.audit", next.Log.Audit != cur.Log.Audit)
	restart("store", !reflect.DeepEqual(next.Store, cur.Store))
	restart("api", !reflect.DeepEqual(next.API, cur.API))
	restart("policy.local_networks", !reflect.DeepEqual(next.Policy.LocalNetworks, cur.Policy.LocalNetworks))
	restart("bgp", !reflect.DeepEqual(next.BGP, cur.BGP))
	restart("enforcers", !reflect.DeepEqual(next.Enforcers, cur.Enforcers))
	restart("nullroute", !reflect.DeepEqual(next.Nullroute, cur.Nullroute))

	a.cfg = cur
	a.log.Info("config reloaded", zap.String("file", file), zap.Strings("applied", res.Applied),
		zap.Strings("not_reloaded", res.NotReloaded))
	a.audit.ConfigReloaded(audit.Actor{Name: audit.System}, file, res.Applied, res.NotReloaded)
	return res, nil
}

// reloadPeers gives each bgp enforcer's speaker its peers from next.
func (a *App) reloadPeers(next config.Config) error {
	nBGP := 0
	byIdent := map[string]config.Enforcer{}
	for _, e := range next.Enforcers {
		byIdent[e.Ident] = e
		if e.Type == "bgp" {
			nBGP++
		}
	}
	for _, re := range a.runningEnforcers() {
		if re.speaker == nil {
			continue
		}
		ec := byIdent[re.enf.Ident()]
		eb := config.EnforcerBGP{}
		if ec.BGP != nil {
			eb = *ec.BGP
		}
		sc, err := speakerConfig(next.BGP, eb, nBGP)
		if err != nil {
			return err
		}
		added, removed, err := re.speaker.SetPeers(context.Background(), sc.Peers)
		if err != nil {
			return fmt.Errorf("enforcer %s: %w", re.enf.Ident(), err)
		}
		a.log.Info("bgp peers reloaded", zap.String("ident", re.enf.Ident()),
			zap.Stringers("added", added), zap.Stringers("removed", removed))
	}
	return nil
}
