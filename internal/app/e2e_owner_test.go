package app_test

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/bhrd/bhrd/internal/app"
	"github.com/bhrd/bhrd/internal/bgptest"
	"github.com/bhrd/bhrd/internal/pgtest"
	"github.com/bhrd/bhrd/pkg/auth"
	"github.com/bhrd/bhrd/pkg/bgp"
	"github.com/bhrd/bhrd/pkg/config"
	"github.com/bhrd/bhrd/pkg/enforcer"
	"github.com/bhrd/bhrd/pkg/plane/bgpplane"
	"github.com/bhrd/bhrd/pkg/queue"
)

// TestOneOwnerPerIdent: two bhrd on one PostgreSQL configured with the
// same bgp ident, one router. The second stands by (ready, says who owns
// the ident, no BGP session) while the first announces everything posted
// to either; a third instance without that enforcer refuses reports for
// the ident; when the owner stops, the standby takes over and the router
// holds exactly what is blocked; when the new owner's database session
// is cut, it owns the ident again and the router keeps every route.
func TestOneOwnerPerIdent(t *testing.T) {
	r := bgptest.NewRouter(t, routerASN)
	r.AddPeer(speakerASN, bgptest.PeerOptions{})
	url := pgtest.NewDatabase(t)
	cfg := func(instance string, enforcers bool) config.Config {
		c := bgpConfig(t, t.TempDir(), r.Port)
		c.Instance = instance
		c.Store = pgStore(url)
		if !enforcers {
			c.Enforcers = nil
		}
		return c
	}
	alpha := startApp(t, app.Options{Config: cfg("alpha", true)})
	token := newToken(t, alpha.Store())
	ca := newClient(t, alpha.APIAddr(), token)
	var want []netip.Prefix
	for _, p := range hostPrefixes("198.51.100.10", 5) {
		ca.block(p.Addr().String(), "3600")
		want = append(want, p)
	}
	r.WaitRIB(bgp.IPv4Unicast, 10*time.Second, want, blackholeCheck(nextHopV4))

	// beta speaks from an address of its own, as a second host would
	// (two speakers from one address collide at the router).
	betaAddr := netip.MustParseAddr("127.0.0.3")
	r.AddPeer(speakerASN, bgptest.PeerOptions{Address: betaAddr})
	beta := startApp(t, app.Options{Config: fromAddress(cfg("beta", true), betaAddr)})
	status := func(a *app.App) enforcer.Status { return a.EnforcerStatus()[0] }
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		t.Logf("beta: %+v", status(beta))
		_ = beta.Service().ListEntries(context.Background(), queue.EntryListOptions{Ident: bgpIdent}, func(e queue.Entry) error {
			t.Logf("entry %+v", e)
			return nil
		})
		q, err := beta.Service().BlockQueue(context.Background(), bgpIdent, time.Time{}, 100)
		t.Logf("bgp1 block queue: %+v %v", q, err)
	})
	bgptest.WaitFor(t, 10*time.Second, "beta to stand by for alpha", func() (bool, string) {
		st := status(beta)
		return st.Standby && st.Owner == "alpha", fmt.Sprintf("%+v", st)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	if err := beta.WaitReconciled(wctx); err != nil {
		t.Fatalf("a standby never settles: %v", err)
	}
	if err := beta.Ready(ctx); err != nil {
		t.Errorf("a standby is not ready: %v", err)
	}
	if st := status(beta); st.Reconciled || st.Installed != 0 {
		t.Errorf("standby enforced something: %+v", st)
	}
	peers, err := beta.BGPPeers(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range peers[bgpIdent] {
		if p.Up {
			t.Errorf("the standby has a BGP session: %+v", p)
		}
	}

	// Blocks and unblocks posted to the standby are announced by the owner.
	cb := newClient(t, beta.APIAddr(), token)
	for _, p := range hostPrefixes("198.51.100.20", 3) {
		cb.block(p.Addr().String(), "3600")
		want = append(want, p)
	}
	cb.unblockNow(want[0].Addr().String())
	want = want[1:]
	r.WaitRIB(bgp.IPv4Unicast, 10*time.Second, want, blackholeCheck(nextHopV4))

	// An instance without the enforcer refuses reports for the owned
	// ident (before, only the owner's own process refused them).
	gamma := startApp(t, app.Options{Config: cfg("gamma", false)})
	cg := newClient(t, gamma.APIAddr(), token)
	b := cg.block("198.51.100.30", "3600")
	if st, body := cg.do("POST", "/bhr/api/set_blocked_multi/"+bgpIdent, map[string]any{"ids": []int64{b.ID}}); st != http.StatusConflict {
		t.Errorf("set_blocked_multi for an ident alpha owns, on gamma: %d %s", st, body)
	}
	want = append(want, netip.MustParsePrefix("198.51.100.30/32"))
	r.WaitRIB(bgp.IPv4Unicast, 10*time.Second, want, blackholeCheck(nextHopV4))

	// The owner stops: beta takes over and announces exactly what is
	// blocked, including what changes while it takes over.
	stopApp(t, alpha)
	cb.unblockNow(want[0].Addr().String())
	want = want[1:]
	bgptest.WaitFor(t, 20*time.Second, "beta to own the ident", func() (bool, string) {
		st := status(beta)
		return !st.Standby && st.Reconciled, fmt.Sprintf("%+v", st)
	})
	r.WaitRIB(bgp.IPv4Unicast, 20*time.Second, want, blackholeCheck(nextHopV4))
	cb.block("198.51.100.40", "3600")
	want = append(want, netip.MustParsePrefix("198.51.100.40/32"))
	r.WaitRIB(bgp.IPv4Unicast, 10*time.Second, want, blackholeCheck(nextHopV4))

	// beta's lock session is cut (as by a database failover): its
	// enforcer notices, owns the ident again (nobody else wants it) and
	// reconciles; the router keeps every route meanwhile.
	errsBefore := status(beta).Errors
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var cut int
	if err := conn.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = 'bhrd owner beta'`).Scan(&cut); err != nil || cut != 1 {
		t.Fatalf("cut beta's lock session: %d sessions, %v", cut, err)
	}
	bgptest.WaitFor(t, 20*time.Second, "beta to notice the lost session", func() (bool, string) {
		st := status(beta)
		return st.Errors > errsBefore, fmt.Sprintf("%+v", st)
	})
	bgptest.WaitFor(t, 20*time.Second, "beta to own the ident again", func() (bool, string) {
		st := status(beta)
		return !st.Standby && st.Reconciled && st.LastError == "", fmt.Sprintf("%+v", st)
	})
	r.WaitRIB(bgp.IPv4Unicast, 10*time.Second, want, blackholeCheck(nextHopV4))
	cb.unblockNow(want[0].Addr().String())
	want = want[1:]
	r.WaitRIB(bgp.IPv4Unicast, 10*time.Second, want, blackholeCheck(nextHopV4))

	// alpha comes back (from 127.0.0.2) and stands by. beta's session is
	// cut again: alpha, waiting in the database, takes the ident at once;
	// beta, finding it owned, withdraws what it announced and stands by.
	// The router keeps every route, from alpha.
	second := netip.MustParseAddr("127.0.0.2")
	r.AddPeer(speakerASN, bgptest.PeerOptions{Address: second})
	alpha = startApp(t, app.Options{Config: fromAddress(cfg("alpha", true), second)})
	bgptest.WaitFor(t, 10*time.Second, "alpha to stand by for beta", func() (bool, string) {
		st := status(alpha)
		return st.Standby && st.Owner == "beta", fmt.Sprintf("%+v", st)
	})
	if err := conn.QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = 'bhrd owner beta'`).Scan(&cut); err != nil || cut != 1 {
		t.Fatalf("cut beta's lock session: %d sessions, %v", cut, err)
	}
	bgptest.WaitFor(t, 20*time.Second, "alpha to own the ident and beta to stand by", func() (bool, string) {
		a, b := status(alpha), status(beta)
		return a.Reconciled && !a.Standby && b.Standby && b.Owner == "alpha" && b.Installed == 0, fmt.Sprintf("alpha %+v, beta %+v", a, b)
	})
	bgptest.WaitFor(t, 20*time.Second, "beta to have withdrawn its announcements", func() (bool, string) {
		ps, err := beta.BGPPeers(ctx)
		if err != nil {
			return false, err.Error()
		}
		for _, p := range ps[bgpIdent] {
			if p.PrefixesSent != 0 {
				return false, fmt.Sprintf("%+v", p)
			}
		}
		return true, ""
	})
	r.WaitRIB(bgp.IPv4Unicast, 10*time.Second, want, blackholeCheck(nextHopV4))
	cb.block("198.51.100.41", "3600")
	want = append(want, netip.MustParsePrefix("198.51.100.41/32"))
	r.WaitRIB(bgp.IPv4Unicast, 10*time.Second, want, blackholeCheck(nextHopV4))
}

// fromAddress makes c's BGP sessions start from addr (a host of its own).
func fromAddress(c config.Config, addr netip.Addr) config.Config {
	sec := bgpplane.SectionOf(c)
	for i := range sec.Peers {
		sec.Peers[i].LocalAddress = addr
	}
	return bgpplane.WithSection(c, sec)
}

// TestSurvivorShowsLaggingIdents: with the owner of bgp1 down, another
// instance on the same PostgreSQL (no enforcer of its own) shows bgp1's
// waiting work and its age in /metrics and api/idents.
func TestSurvivorShowsLaggingIdents(t *testing.T) {
	r := bgptest.NewRouter(t, routerASN)
	r.AddPeer(speakerASN, bgptest.PeerOptions{})
	url := pgtest.NewDatabase(t)
	cfg := func(instance string) config.Config {
		c := bgpConfig(t, t.TempDir(), r.Port)
		c.Instance = instance
		c.Store = pgStore(url)
		return c
	}
	alpha := startApp(t, app.Options{Config: cfg("alpha")})
	gc := cfg("gamma")
	gc.Enforcers = nil
	gamma := startApp(t, app.Options{Config: gc})
	token := newToken(t, gamma.Store())
	cg := newClient(t, gamma.APIAddr(), token)
	cg.block("198.51.100.50", "3600")
	r.WaitRIB(bgp.IPv4Unicast, 10*time.Second, []netip.Prefix{netip.MustParsePrefix("198.51.100.50/32")}, blackholeCheck(nextHopV4))
	stopApp(t, alpha)

	cg.unblockNow("198.51.100.50")
	cg.block("198.51.100.51", "3600")
	metric := func(body, series string) (float64, bool) {
		for line := range strings.Lines(body) {
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), series+" "); ok {
				f, err := strconv.ParseFloat(v, 64)
				return f, err == nil
			}
		}
		return 0, false
	}
	bgptest.WaitFor(t, 10*time.Second, "gamma's metrics to show bgp1 behind", func() (bool, string) {
		st, body := cg.do("GET", "/metrics", nil)
		if st != http.StatusOK {
			return false, fmt.Sprint(st)
		}
		ud, ok1 := metric(string(body), `bhrd_ident_queue_depth{ident="bgp1",queue="unblock"}`)
		ul, ok2 := metric(string(body), `bhrd_ident_lag_seconds{ident="bgp1",queue="unblock"}`)
		bd, ok3 := metric(string(body), `bhrd_ident_queue_depth{ident="bgp1",queue="block"}`)
		bl, ok4 := metric(string(body), `bhrd_ident_lag_seconds{ident="bgp1",queue="block"}`)
		return ok1 && ok2 && ok3 && ok4 && ud == 1 && ul >= 1 && bd == 1 && bl >= 1,
			fmt.Sprintf("unblock depth %v lag %v, block depth %v lag %v", ud, ul, bd, bl)
	})
	st, body := cg.do("GET", "/bhr/api/idents/", nil)
	if st != http.StatusOK || !strings.Contains(string(body), `"unblock_due":1`) {
		t.Errorf("api/idents on gamma: %d %s", st, body)
	}
}

// TestRevocationAcrossInstances: a token revoked through one instance
// stops working on another at once (its change notification flushes the
// other's cache), not after the 10 s the cached authentication lasts.
func TestRevocationAcrossInstances(t *testing.T) {
	url := pgtest.NewDatabase(t)
	cfg := func(instance string) config.Config {
		c := config.Default()
		c.Instance = instance
		c.Log.Level = "warn"
		c.API.Listen = "127.0.0.1:0"
		c.Store = pgStore(url)
		return c
	}
	alpha := startApp(t, app.Options{Config: cfg("alpha")})
	gamma := startApp(t, app.Options{Config: cfg("gamma")})
	token := newToken(t, alpha.Store())
	cg := newClient(t, gamma.APIAddr(), token)
	// A request that needs the token, so that gamma caches it.
	if st, body := cg.do("GET", "/bhr/api/idents/", nil); st != http.StatusOK {
		t.Fatalf("with the token: %d %s", st, body)
	}
	ctx := context.Background()
	authn := auth.NewAuthenticator(alpha.Store(), auth.AuthenticatorOptions{})
	toks, err := alpha.Store().ListTokens(ctx)
	if err != nil || len(toks) != 1 {
		t.Fatalf("tokens: %v %v", toks, err)
	}
	revoked := time.Now()
	if err := authn.RevokeToken(ctx, toks[0].ID); err != nil {
		t.Fatal(err)
	}
	var took time.Duration
	bgptest.WaitFor(t, 5*time.Second, "gamma to refuse the revoked token", func() (bool, string) {
		st, _ := cg.do("GET", "/bhr/api/idents/", nil)
		took = time.Since(revoked)
		return st == http.StatusUnauthorized || st == http.StatusForbidden, fmt.Sprint(st)
	})
	t.Logf("revoked token refused by the other instance %v after the revocation", took.Round(time.Millisecond))
	if took > 2*time.Second {
		t.Errorf("the other instance accepted a revoked token for %v", took)
	}
}
