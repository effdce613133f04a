package app_test

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bhrd/bhrd/internal/app"
	"github.com/bhrd/bhrd/internal/bgptest"
	"github.com/bhrd/bhrd/internal/pgtest"
	"github.com/bhrd/bhrd/pkg/config"
)

// Benchmarks of enforcement, end to end: HTTP or store → enforcer → GoBGP
// speaker → the peering router's RIB. Times are taken when the router's
// best-path watch delivers the change, so they include BGP on loopback and
// GoBGP's own processing on the router side. Run them without -race:
//
//	go test -run '^$' -bench 'BlockToRIB|Enforce100k' -benchtime 1x ./internal/app/
//	BHRD_BENCH_1M=1 go test -run '^$' -bench RSS1M -benchtime 1x -timeout 30m ./internal/app/

// latencySamples is the number of blocks per BenchmarkBlockToRIB round.
const latencySamples = 1000

// BenchmarkBlockToRIB measures POST /bhr/api/block returning → the prefix
// in the router's RIB, one block at a time, latencySamples per round.
// p50_ms/p99_ms/max_ms count from the moment the POST returned (0 when the
// route was in the RIB first: the enforcer is woken by the store commit,
// before the HTTP answer is written); post_p50_ms/post_p99_ms count from
// the moment the POST was sent.
func BenchmarkBlockToRIB(b *testing.B) {
	e := newBGPEnv(b)
	var mu sync.Mutex
	waiting := map[netip.Prefix]chan time.Time{}
	e.router.WatchBest(func(ev bgptest.BestEvent) {
		if ev.Withdrawn {
			return
		}
		mu.Lock()
		ch := waiting[ev.Prefix]
		delete(waiting, ev.Prefix)
		mu.Unlock()
		if ch != nil {
			ch <- ev.At
		}
	})
	next := netip.MustParseAddr("198.18.0.0")
	var fromReturn, fromSend []time.Duration
	early := 0
	for b.Loop() {
		for range latencySamples {
			p := netip.PrefixFrom(next, 32)
			next = next.Next()
			ch := make(chan time.Time, 1)
			mu.Lock()
			waiting[p] = ch
			mu.Unlock()
			sent := time.Now()
			st, body := e.api.do("POST", "/bhr/api/block", url.Values{
				"cidr": {p.Addr().String()}, "source": {"bench"}, "why": {"latency"}, "duration": {"1h"},
			})
			returned := time.Now()
			if st != http.StatusCreated {
				b.Fatalf("POST block %s: %d %s", p, st, body)
			}
			var at time.Time
			select {
			case at = <-ch:
			case <-time.After(10 * time.Second):
				b.Fatalf("%s not in the router's RIB 10 s after the POST", p)
			}
			d := at.Sub(returned)
			if d < 0 {
				early++
				d = 0
			}
			fromReturn = append(fromReturn, d)
			fromSend = append(fromSend, at.Sub(sent))
		}
	}
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	b.ReportMetric(ms(percentile(fromReturn, 50)), "p50_ms")
	b.ReportMetric(ms(percentile(fromReturn, 99)), "p99_ms")
	b.ReportMetric(ms(percentile(fromReturn, 100)), "max_ms")
	b.ReportMetric(ms(percentile(fromSend, 50)), "post_p50_ms")
	b.ReportMetric(ms(percentile(fromSend, 99)), "post_p99_ms")
	b.ReportMetric(float64(len(fromReturn)), "samples")
	b.Logf("%d samples; %d reached the router before the POST returned", len(fromReturn), early)
}

// percentile returns the q-th percentile (nearest rank) of ds.
func percentile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(float64(len(s))*q/100+0.5) - 1
	return s[min(max(i, 0), len(s)-1)]
}

// offsetClock is the system clock shifted by an offset that a benchmark
// can move, so that blocks stored with a distant unblock_at expire on
// demand while time keeps flowing (the enforcer's expiry timer runs on
// real time).
type offsetClock struct{ off atomic.Int64 }

func (c *offsetClock) Now() time.Time { return time.Now().Add(time.Duration(c.off.Load())) }

// setNow makes the clock read t now, and returns the real instant at which
// it will read at.
func (c *offsetClock) setNow(t, at time.Time) time.Time {
	off := time.Until(t)
	c.off.Store(int64(off))
	return at.Add(-off)
}

// enforce100k is the number of blocks of BenchmarkEnforce100k.
const enforce100k = 100_000

// BenchmarkEnforce100k seeds 100,000 blocks into the store (Service.MBlock,
// before bhrd starts), starts bhrd and measures App.Start → the router has
// all of them (install_s). All blocks share one unblock_at T; once they
// are in, the clock is moved to 1 s before T and one block is unblocked
// with unblock_now, which wakes the enforcer; it withdraws that one and
// sets its expiry timer for T. first_s is App.Start → the first prefix in
// the router's RIB (mostly BGP session set-up: GoBGP's first connection
// attempt comes 1-2 s after the peer is added). withdraw_s is T (on the real clock) → the
// router has none left: the mass expiry of 99,999 blocks, through the same
// timer path a real expiry takes.
func BenchmarkEnforce100k(b *testing.B) {
	for b.Loop() {
		benchEnforce100k(b)
	}
}

func benchEnforce100k(b *testing.B) {
	r := bgptest.NewRouter(b, routerASN)
	r.AddPeer(speakerASN, bgptest.PeerOptions{})
	best := r.TrackBest()
	cfg := bgpConfig(b, b.TempDir(), r.Port)
	clock := &offsetClock{}

	unblockAt := time.Now().Add(24 * time.Hour).UTC().Truncate(time.Second)
	ps := hostPrefixes("10.0.0.0", enforce100k)
	seedStart := time.Now()
	svc, st := seedService(b, cfg, clock)
	mblock(b, svc, blockRequests(ps, "0", unblockAt.Format(time.RFC3339)))
	st.Close()
	b.Logf("seeded %d blocks through Service.MBlock in %s", len(ps), time.Since(seedStart).Round(time.Millisecond))

	ctx := context.Background()
	a, err := app.New(ctx, app.Options{Config: cfg, Clock: clock, Logger: bgptest.Logger(b)})
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	if err := a.Start(ctx); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { stopApp(b, a) })
	inAt := best.WaitLen(b, enforce100k, 120*time.Second)
	install := inAt.Sub(start)
	if n := r.Count(bgptest.FamilyOf(ps[0])); n != enforce100k {
		b.Fatalf("router RIB holds %d prefixes, want %d", n, enforce100k)
	}
	// Until SetBlocked commits, the blocks are not current and expiry
	// would not find their entries.
	bgptest.WaitFor(b, 60*time.Second, "bhrd to mark every block set_blocked", func() (bool, string) {
		s, err := a.Service().Stats(ctx)
		if err != nil {
			b.Fatal(err)
		}
		return s.Current == enforce100k, fmt.Sprintf("%+v", s)
	})

	expireAt := clock.setNow(unblockAt.Add(-time.Second), unblockAt)
	if _, err := a.Service().UnblockNow(ctx, ps[0].String(), "wake the enforcer"); err != nil {
		b.Fatal(err)
	}
	outAt := best.WaitLen(b, 0, 120*time.Second)
	withdraw := outAt.Sub(expireAt)
	if n := r.Count(bgptest.FamilyOf(ps[0])); n != 0 {
		b.Fatalf("router RIB holds %d prefixes after the expiry, want 0", n)
	}
	b.ReportMetric(install.Seconds(), "install_s")
	b.ReportMetric(best.First().Sub(start).Seconds(), "first_s")
	b.ReportMetric(withdraw.Seconds(), "withdraw_s")
	b.Logf("100,000 blocks: in the router's RIB %s after App.Start; all withdrawn %s after their unblock_at (goal: 10 s each)",
		install.Round(time.Millisecond), withdraw.Round(time.Millisecond))
	if install > 10*time.Second || withdraw > 10*time.Second {
		// A benchmark reports rather than fails: a loaded machine is slow.
		b.Logf("GOAL MISSED: over 10 s (machine load average matters: run it alone)")
	}
}

// BenchmarkRSS1M runs the bhrd binary with 1,000,000 blocks announced to
// one peer and reads its memory from /proc: rss_MB (VmRSS) once the router
// has every prefix, and hwm_MB (VmHWM, the peak). Opt-in: BHRD_BENCH_1M=1.
func BenchmarkRSS1M(b *testing.B) {
	if os.Getenv("BHRD_BENCH_1M") != "1" {
		b.Skip("set BHRD_BENCH_1M=1 to run (several minutes, a few GB of memory)")
	}
	for b.Loop() {
		benchRSS1M(b)
	}
}

func benchRSS1M(b *testing.B) {
	const n = 1_000_000
	began := time.Now()
	dir := b.TempDir()
	bin := buildBhrd(b, dir)
	r := bgptest.NewRouter(b, routerASN)
	r.AddPeer(speakerASN, bgptest.PeerOptions{GracefulRestart: true})
	best := r.TrackBest()
	apiPort := bgptest.FreePort(b)
	cfgPath, cfg := daemonConfig(b, dir, apiPort, r.Port)

	seedStart := time.Now()
	svc, st := seedService(b, cfg, nil)
	mblock(b, svc, blockRequests(hostPrefixes("10.0.0.0", n), "1d", ""))
	st.Close()
	b.Logf("seeded %d blocks in %s", n, time.Since(seedStart).Round(time.Millisecond))

	start := time.Now()
	d := startDaemon(b, bin, cfgPath, fmt.Sprintf("127.0.0.1:%d", apiPort))
	inAt := best.WaitLen(b, n, 20*time.Minute)
	rss, hwm := procMemory(b, d.cmd.Process.Pid)
	b.ReportMetric(inAt.Sub(start).Seconds(), "install_s")
	b.ReportMetric(float64(rss)/1024, "rss_MB")
	b.ReportMetric(float64(hwm)/1024, "hwm_MB")
	b.Logf("1,000,000 prefixes announced: bhrd VmRSS %d MB, VmHWM %d MB; router had all %s after the start; whole run %s",
		rss/1024, hwm/1024, inAt.Sub(start).Round(time.Millisecond), time.Since(began).Round(time.Second))
	if hwm > 2<<20 {
		b.Logf("GOAL MISSED: bhrd's peak RSS is over 2 GB")
	}
}

// procMemory reads VmRSS and VmHWM (kB) of a process.
func procMemory(tb testing.TB, pid int) (rss, hwm int64) {
	tb.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		tb.Fatalf("read memory of bhrd: %v", err)
	}
	for _, l := range strings.Split(string(raw), "\n") {
		f := strings.Fields(l)
		if len(f) < 2 {
			continue
		}
		v, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "VmRSS:":
			rss = v
		case "VmHWM:":
			hwm = v
		}
	}
	if rss == 0 || hwm == 0 {
		tb.Fatalf("no VmRSS/VmHWM in /proc/%d/status", pid)
	}
	return rss, hwm
}

// BenchmarkBulkUnblock10k: 10,000 blackholes in a peer's RIB, withdrawn
// through api/unblock_now with lists of 1,000 cidrs (sequential
// requests); the figure is from the first request to the router's RIB
// being empty. Target: under 2 s.
func BenchmarkBulkUnblock10k(b *testing.B) {
	for b.Loop() {
		benchBulkUnblock10k(b)
	}
}

func benchBulkUnblock10k(b *testing.B) {
	const n, per = 10_000, 1_000
	r := bgptest.NewRouter(b, routerASN)
	r.AddPeer(speakerASN, bgptest.PeerOptions{})
	best := r.TrackBest()
	cfg := bgpConfig(b, b.TempDir(), r.Port)
	a := startApp(b, app.Options{Config: cfg, Logger: bgptest.Logger(b)})
	api := newClient(b, a.APIAddr(), newToken(b, a.Store()))
	ps := hostPrefixes("10.0.0.0", n)
	for i := 0; i < n; i += per {
		items := make([]map[string]any, 0, per)
		for _, p := range ps[i : i+per] {
			items = append(items, map[string]any{"cidr": p.Addr().String(), "source": "bench", "why": "bulk", "duration": 3600})
		}
		if st, body := api.do("POST", "/bhr/api/mblock", items); st != http.StatusCreated {
			b.Fatalf("mblock: %d %.300s", st, body)
		}
	}
	best.WaitLen(b, n, 60*time.Second)
	start := time.Now()
	var answered time.Time
	for i := 0; i < n; i += per {
		cidrs := make([]string, 0, per)
		for _, p := range ps[i : i+per] {
			cidrs = append(cidrs, p.Addr().String())
		}
		if st, body := api.do("POST", "/bhr/api/unblock_now", map[string]any{"cidr": cidrs, "why": "incident over"}); st != http.StatusOK {
			b.Fatalf("bulk unblock_now: %d %.300s", st, body)
		}
		answered = time.Now()
	}
	out := best.WaitLen(b, 0, 60*time.Second)
	total := out.Sub(start)
	b.ReportMetric(total.Seconds(), "s_to_empty_rib")
	b.ReportMetric(answered.Sub(start).Seconds(), "s_to_last_answer")
	b.ReportMetric(float64(n)/total.Seconds(), "withdrawn/s")
	b.Logf("%d withdrawn from the router's RIB %s after the first bulk unblock_now (last answer after %s)",
		n, total.Round(time.Millisecond), answered.Sub(start).Round(time.Millisecond))
}

// BenchmarkExpiry10k: 10,000 /32s whose unblock_at are spread evenly over
// one second (100 µs apart), posted well before with mblock and all in
// the router's RIB before the first ends. Reported per store: how long
// after its own end each prefix was withdrawn from the router's RIB (as
// the router's best-path watch received it): p50, p99, max, and late, the
// number withdrawn more than 1 s after its end.
// Target (issue #20 item 1): late 0, every one within 1 s of its end.
func BenchmarkExpiry10k(b *testing.B) {
	for _, driver := range []string{"sqlite", "postgres"} {
		b.Run(driver, func(b *testing.B) {
			for b.Loop() {
				benchExpiry10k(b, driver)
			}
		})
	}
}

func benchExpiry10k(b *testing.B, driver string) {
	const n, per = 10_000, 1_000
	const spacing = 100 * time.Microsecond
	r := bgptest.NewRouter(b, routerASN)
	r.AddPeer(speakerASN, bgptest.PeerOptions{})
	ps := hostPrefixes("10.2.0.0", n)
	index := make(map[netip.Prefix]int, n)
	for i, p := range ps {
		index[p] = i
	}
	var mu sync.Mutex
	announced := 0
	withdrawn := make([]time.Time, n)
	r.WatchBest(func(ev bgptest.BestEvent) {
		i, ok := index[ev.Prefix]
		if !ok {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if !ev.Withdrawn {
			announced++
		} else if withdrawn[i].IsZero() {
			withdrawn[i] = ev.At
		}
	})
	cfg := bgpConfig(b, b.TempDir(), r.Port)
	if driver == "postgres" {
		cfg.Store = pgStore(pgtest.NewDatabase(b))
	}
	a := startApp(b, app.Options{Config: cfg, Logger: bgptest.Logger(b)})
	api := newClient(b, a.APIAddr(), newToken(b, a.Store()))
	// Ends far enough ahead for the 10,000 to be posted and announced.
	first := time.Now().Add(20 * time.Second).Truncate(time.Second)
	end := func(i int) time.Time { return first.Add(time.Duration(i) * spacing) }
	for i := 0; i < n; i += per {
		items := make([]map[string]any, 0, per)
		for k, p := range ps[i : i+per] {
			items = append(items, map[string]any{"cidr": p.Addr().String(), "source": "bench", "why": "expiry", "duration": 0,
				"unblock_at": end(i + k).UTC().Format("2006-01-02T15:04:05.000000Z")})
		}
		if st, body := api.do("POST", "/bhr/api/mblock", items); st != http.StatusCreated {
			b.Fatalf("mblock: %d %.300s", st, body)
		}
	}
	bgptest.WaitFor(b, time.Until(first), "all 10,000 announced before the first end", func() (bool, string) {
		mu.Lock()
		defer mu.Unlock()
		return announced >= n, fmt.Sprintf("%d announced", announced)
	})
	bgptest.WaitFor(b, time.Until(end(n-1))+30*time.Second, "all 10,000 withdrawn", func() (bool, string) {
		mu.Lock()
		defer mu.Unlock()
		k := 0
		for _, w := range withdrawn {
			if !w.IsZero() {
				k++
			}
		}
		return k == n, fmt.Sprintf("%d withdrawn", k)
	})
	mu.Lock()
	lags := make([]time.Duration, n)
	late := 0
	for i, w := range withdrawn {
		lags[i] = w.Sub(end(i))
		if lags[i] > time.Second {
			late++
		}
	}
	mu.Unlock()
	slices.Sort(lags)
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	b.ReportMetric(ms(lags[n/2]), "p50_ms")
	b.ReportMetric(ms(lags[n*99/100]), "p99_ms")
	b.ReportMetric(ms(lags[n-1]), "max_ms")
	b.ReportMetric(float64(late), "late")
	b.Logf("%s: %d ends over %v: withdrawn p50 %v, p99 %v, max %v after their ends; %d more than 1 s late",
		driver, n, end(n-1).Sub(first), lags[n/2], lags[n*99/100], lags[n-1], late)
	if late > 0 {
		b.Errorf("%d of %d withdrawn more than 1 s after their end", late, n)
	}
}

// BenchmarkRestartToEstablished: bhrd started against a GoBGP router
// (a graceful-restart helper, as in the restart tests), stopped, and
// started again twice: the time from app.Start to the router's session
// being established, first start and restarts. Issue 16 item 5 asks
// which side waits after a restart: see docs/BENCHMARKS.md.
func BenchmarkRestartToEstablished(b *testing.B) {
	for b.Loop() {
		r := bgptest.NewRouter(b, routerASN)
		r.AddPeer(speakerASN, bgptest.PeerOptions{GracefulRestart: true})
		cfg := bgpConfig(b, b.TempDir(), r.Port)
		var first, restart time.Duration
		for i := range 3 {
			t0 := time.Now()
			a := startApp(b, app.Options{Config: cfg, Logger: bgptest.Logger(b)})
			r.WaitEstablished(60 * time.Second)
			d := time.Since(t0)
			if i == 0 {
				first = d
			} else {
				restart = max(restart, d)
			}
			stopApp(b, a)
			r.WaitDown(30 * time.Second)
		}
		b.ReportMetric(first.Seconds(), "first-s")
		b.ReportMetric(restart.Seconds(), "restart-max-s")
	}
}

// BenchmarkStartup100k: the time from the daemon starting (app.New, which
// opens and migrates the store, then Start) until a peer's RIB holds
// 100,000 blackholes, on both stores, in the two cases of issue 16: a new
// ident over 100,000 stored blocks (its queue is filled and drained), and
// a restart with the ident's 100,000 entries in the store (the enforcer
// reconciles from them). The restart peers with a fresh router: a GoBGP
// router that saw the session drop idles 5 s first (see
// BenchmarkRestartToEstablished). first_s is the BGP session's share:
// the first route's arrival.
func BenchmarkStartup100k(b *testing.B) {
	for _, driver := range []string{"sqlite", "postgres"} {
		b.Run(driver, func(b *testing.B) {
			for b.Loop() {
				benchStartup(b, driver, enforce100k)
			}
		})
	}
}

// BenchmarkStartup1M is BenchmarkStartup100k with 1,000,000 blocks
// (issue 16's goal: 60 s). Opt-in: BHRD_BENCH_1M=1.
func BenchmarkStartup1M(b *testing.B) {
	if os.Getenv("BHRD_BENCH_1M") != "1" {
		b.Skip("set BHRD_BENCH_1M=1 to run (several minutes, a few GB of memory)")
	}
	for _, driver := range []string{"sqlite", "postgres"} {
		b.Run(driver, func(b *testing.B) {
			for b.Loop() {
				benchStartup(b, driver, 1_000_000)
			}
		})
	}
}

func benchStartup(b *testing.B, driver string, n int) {
	dir := b.TempDir()
	ctx := context.Background()
	var store config.Store
	if driver == "postgres" {
		store = pgStore(pgtest.NewDatabase(b))
	}
	configFor := func(r *bgptest.Router) config.Config {
		c := bgpConfig(b, dir, r.Port)
		if driver == "postgres" {
			c.Store = store
		}
		return c
	}
	r1 := bgptest.NewRouter(b, routerASN)
	r1.AddPeer(speakerASN, bgptest.PeerOptions{})
	ps := hostPrefixes("10.0.0.0", n)
	svc, st := seedService(b, configFor(r1), nil)
	mblock(b, svc, blockRequests(ps, "1d", ""))
	st.Close()

	run := func(r *bgptest.Router) (*app.App, time.Duration, time.Duration) {
		best := r.TrackBest()
		start := time.Now()
		a := startApp(b, app.Options{Config: configFor(r), Logger: bgptest.Logger(b)})
		in := best.WaitLen(b, n, 20*time.Minute).Sub(start)
		return a, in, best.First().Sub(start)
	}
	a, fresh, freshFirst := run(r1)
	bgptest.WaitFor(b, 20*time.Minute, "every block set_blocked", func() (bool, string) {
		s, err := a.Service().Stats(ctx)
		if err != nil {
			b.Fatal(err)
		}
		return s.Current == int64(n), fmt.Sprintf("%+v", s)
	})
	stopApp(b, a)

	r2 := bgptest.NewRouter(b, routerASN)
	r2.AddPeer(speakerASN, bgptest.PeerOptions{})
	a, restart, restartFirst := run(r2)
	stopApp(b, a)
	b.ReportMetric(fresh.Seconds(), "new-ident_s")
	b.ReportMetric(freshFirst.Seconds(), "new-ident-first_s")
	b.ReportMetric(restart.Seconds(), "restart_s")
	b.ReportMetric(restartFirst.Seconds(), "restart-first_s")
	b.Logf("%s: %d in the peer's RIB %s after start with a new ident (first route %s), %s after a restart (first %s)",
		driver, n, fresh.Round(time.Millisecond), freshFirst.Round(time.Millisecond), restart.Round(time.Millisecond), restartFirst.Round(time.Millisecond))
}
