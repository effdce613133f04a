package app

import (
	"context"
	"reflect"

	"go.uber.org/zap"

	"github.com/bhrd/bhrd/pkg/audit"
	"github.com/bhrd/bhrd/pkg/config"
	"github.com/bhrd/bhrd/pkg/plane"
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
// lengths, autoscale; the protected set is recomputed), what a plane can
// change in place (bgp.peers), and the audit file is reopened for
// logrotate. Changes to the store, API listener, enforcers and the rest
// of the planes' sections are reported, not applied: they would cut
// sessions or move state. file is for the audit line.
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

	// A plane may apply some changes of its own section to its running
	// enforcers (bgp: peers added, removed or changed, with the sessions
	// of untouched peers staying up).
	reloaded := map[string]bool{}
	for _, t := range plane.All() {
		r, ok := t.(plane.Reloader)
		if !ok || reflect.DeepEqual(next.Section(t.Name()), cur.Section(t.Name())) {
			continue
		}
		var running []plane.Running
		for _, re := range a.runningEnforcers() {
			if re.typ == t.Name() {
				running = append(running, re.run)
			}
		}
		applied, ok, err := r.Reload(context.Background(), cur, next, running)
		if err != nil {
			return res, err
		}
		if !ok {
			continue
		}
		cur = cur.WithSection(t.Name(), next.Section(t.Name()))
		reloaded[t.Name()] = true
		// The plane's addresses are protected from blocking: follow them.
		if err := a.svc.SetPolicy(PolicyFromConfig(cur)); err != nil {
			return res, err
		}
		res.Applied = append(res.Applied, applied...)
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
	restart("instance", next.Instance != cur.Instance)
	restart("log.audit", next.Log.Audit != cur.Log.Audit)
	restart("store", !reflect.DeepEqual(next.Store, cur.Store))
	restart("api", !reflect.DeepEqual(next.API, cur.API))
	restart("policy.local_networks", !reflect.DeepEqual(next.Policy.LocalNetworks, cur.Policy.LocalNetworks))
	restart("enforcers", !reflect.DeepEqual(next.Enforcers, cur.Enforcers))
	for _, t := range plane.All() {
		restart(t.Name(), !reloaded[t.Name()] && !reflect.DeepEqual(next.Section(t.Name()), cur.Section(t.Name())))
	}

	a.cfg = cur
	a.log.Info("config reloaded", zap.String("file", file), zap.Strings("applied", res.Applied),
		zap.Strings("not_reloaded", res.NotReloaded))
	a.audit.ConfigReloaded(audit.Actor{Name: audit.System}, file, res.Applied, res.NotReloaded)
	return res, nil
}
