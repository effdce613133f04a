package enforcer

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap/zaptest"

	"github.com/bhrd/bhrd/pkg/queue"
	"github.com/bhrd/bhrd/pkg/queue/queuetest"
	"github.com/bhrd/bhrd/pkg/queue/sqlitestore"
)

// recordingBackend is the enforcer's own edge: it keeps the enforced set
// in memory and can be told to fail. The real backends (BGP, null routes)
// are tested end to end in internal/app.
type recordingBackend struct {
	mu      sync.Mutex
	set     map[netip.Prefix]bool
	failing int // fail this many more calls
	changed chan struct{}
	// onRemove, when set, runs after each Remove (a test's fake clock
	// advancing while a batch is applied).
	onRemove func()
}

func newRecordingBackend(initial ...string) *recordingBackend {
	b := &recordingBackend{set: map[netip.Prefix]bool{}, changed: make(chan struct{}, 1000)}
	for _, s := range initial {
		b.set[netip.MustParsePrefix(s)] = true
	}
	return b
}

var errBackend = errors.New("backend down")

func (b *recordingBackend) apply(ps []netip.Prefix, on bool) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.failing > 0 {
		b.failing--
		return errBackend
	}
	for _, p := range ps {
		if on {
			b.set[p] = true
		} else {
			delete(b.set, p)
		}
	}
	b.changed <- struct{}{}
	return nil
}

func (b *recordingBackend) Install(_ context.Context, ts []Target) error {
	return b.apply(Prefixes(ts), true)
}
func (b *recordingBackend) Remove(_ context.Context, ps []netip.Prefix) error {
	err := b.apply(ps, false)
	if b.onRemove != nil {
		b.onRemove()
	}
	return err
}
func (b *recordingBackend) Reconcile(_ context.Context, ts []Target) (int, int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	w := map[netip.Prefix]bool{}
	added, removed := 0, 0
	for _, p := range Prefixes(ts) {
		w[p] = true
		if !b.set[p] {
			added++
		}
	}
	for p := range b.set {
		if !w[p] {
			removed++
		}
	}
	b.set = w
	b.changed <- struct{}{}
	return added, removed, nil
}

func (b *recordingBackend) snapshot() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	for p := range b.set {
		out = append(out, p.String())
	}
	sort.Strings(out)
	return out
}

// waitFor polls cond (cheaply, on backend changes or every 10 ms) until
// it holds or the deadline passes.
func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func newService(t *testing.T, clock queue.Clock) *queue.Service {
	t.Helper()
	ctx := context.Background()
	st, err := sqlitestore.Open(ctx, filepath.Join(t.TempDir(), "bhrd.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if _, err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	svc, err := queue.NewService(st, queue.DefaultPolicy(), clock)
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.Start(ctx); err != nil {
		t.Fatal(err)
	}
	return svc
}

func start(t *testing.T, svc *queue.Service, b Backend, cfg Config) *Enforcer {
	t.Helper()
	if cfg.Ident == "" {
		cfg.Ident = "null1"
	}
	cfg.MinBackoff, cfg.MaxBackoff = 5*time.Millisecond, 20*time.Millisecond
	e, err := New(cfg, svc, b, zaptest.NewLogger(t), Observer{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("Run returned %v", err)
		}
	})
	return e
}

func block(t *testing.T, svc *queue.Service, cidr, dur string) queue.Block {
	t.Helper()
	r, err := svc.Block(context.Background(), queuetest.Req(cidr, dur))
	if err != nil {
		t.Fatal(err)
	}
	return r.Block
}

func entriesOf(t *testing.T, svc *queue.Service, ident string, open bool) int {
	t.Helper()
	n := 0
	err := svc.ListEntries(context.Background(), queue.EntryListOptions{Ident: ident, OpenOnly: open}, func(queue.Entry) error { n++; return nil })
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestBlockUnblockAndExpiry(t *testing.T) {
	svc := newService(t, nil)
	b := newRecordingBackend()
	start(t, svc, b, Config{})
	block(t, svc, "198.51.100.1", "1h")
	block(t, svc, "2001:db8::1", "1h")
	waitFor(t, "both installed and marked", 5*time.Second, func() bool {
		return len(b.snapshot()) == 2 && entriesOf(t, svc, "null1", true) == 2
	})
	if _, err := svc.UnblockNow(context.Background(), "198.51.100.1", "test"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "unblock_now removed", 5*time.Second, func() bool {
		s := b.snapshot()
		return len(s) == 1 && s[0] == "2001:db8::1/128" && entriesOf(t, svc, "null1", true) == 1
	})
	// Expiry is driven by the timer at the next unblock_at, not a scan.
	blk := block(t, svc, "198.51.100.2", "1")
	waitFor(t, "short block installed", 5*time.Second, func() bool { return len(b.snapshot()) == 2 })
	waitFor(t, "short block expired", 5*time.Second, func() bool {
		return len(b.snapshot()) == 1 && entriesOf(t, svc, "null1", true) == 1
	})
	if late := time.Since(blk.UnblockAt); late > time.Second {
		t.Errorf("expiry reached the backend %v after unblock_at", late)
	}
}

func TestReconcileAtStart(t *testing.T) {
	svc := newService(t, nil)
	ctx := context.Background()
	kept := block(t, svc, "198.51.100.1", "1h")
	if err := svc.SetBlocked(ctx, "null1", []int64{kept.ID}); err != nil {
		t.Fatal(err)
	}
	// The backend lost 198.51.100.1 (e.g. a reboot) and holds a stale prefix.
	b := newRecordingBackend("203.0.113.9/32")
	e := start(t, svc, b, Config{})
	waitFor(t, "reconciled", 5*time.Second, func() bool { return e.Status().Reconciled })
	got := b.snapshot()
	if len(got) != 1 || got[0] != "198.51.100.1/32" {
		t.Fatalf("after reconcile backend has %v", got)
	}
}

func TestBackendErrorsAreRetriedAndNothingMarked(t *testing.T) {
	svc := newService(t, nil)
	b := newRecordingBackend()
	b.failing = 1000000 // down until told otherwise
	// Reconcile does not fail in this backend, Install does.
	e := start(t, svc, b, Config{})
	block(t, svc, "198.51.100.1", "1h")
	waitFor(t, "failures recorded", 5*time.Second, func() bool { return e.Status().Errors >= 3 })
	if n := entriesOf(t, svc, "null1", false); n != 0 {
		t.Fatalf("%d entries marked while the backend failed", n)
	}
	if e.Status().LastError == "" {
		t.Fatal("status does not show the error")
	}
	b.mu.Lock()
	b.failing = 0
	b.mu.Unlock()
	waitFor(t, "installed after recovery", 5*time.Second, func() bool {
		return len(b.snapshot()) == 1 && entriesOf(t, svc, "null1", true) == 1
	})
}

func TestMaxPrefixes(t *testing.T) {
	svc := newService(t, nil)
	b := newRecordingBackend()
	e := start(t, svc, b, Config{MaxPrefixes: 3})
	for _, c := range []string{"198.51.100.1", "198.51.100.2", "198.51.100.3", "198.51.100.4", "198.51.100.5"} {
		block(t, svc, c, "1h")
	}
	waitFor(t, "capped at 3", 5*time.Second, func() bool {
		return len(b.snapshot()) == 3 && e.Status().Capped
	})
	q, err := svc.BlockQueue(context.Background(), "null1", time.Time{}, 0)
	if err != nil || len(q) != 2 {
		t.Fatalf("queue while capped: %d items, %v", len(q), err)
	}
	if _, err := svc.UnblockNow(context.Background(), "198.51.100.1", "room"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "room used again", 5*time.Second, func() bool {
		s := b.snapshot()
		return len(s) == 3 && entriesOf(t, svc, "null1", true) == 3
	})
	if _, err := svc.UnblockNow(context.Background(), "198.51.100.2", "room"); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "uncapped", 5*time.Second, func() bool {
		return len(b.snapshot()) == 3 && !e.Status().Capped && entriesOf(t, svc, "null1", true) == 3
	})
}

// An entry that falls due while a batch of unblocks is applied is
// withdrawn right after it, not left until some other change: the next
// expiry is looked for after the time the unblock queue was read, not
// after the end of the work.
func TestExpiryDuringABatchIsNotMissed(t *testing.T) {
	clk := queuetest.NewClock(queuetest.Start)
	svc := newService(t, clk)
	b := newRecordingBackend()
	b.onRemove = func() { clk.Advance(10 * time.Millisecond) }
	start(t, svc, b, Config{})
	block(t, svc, "198.51.100.1", "1")
	clk.Advance(5 * time.Millisecond)
	block(t, svc, "198.51.100.2", "1") // due 5 ms after the first
	waitFor(t, "both installed", 5*time.Second, func() bool { return len(b.snapshot()) == 2 })
	clk.Advance(995 * time.Millisecond) // the first is due, the second is not
	waitFor(t, "both withdrawn", 5*time.Second, func() bool {
		return len(b.snapshot()) == 0 && entriesOf(t, svc, "null1", true) == 0
	})
}

// Many near-simultaneous expiries on the real clock: every one is
// withdrawn within a second of its end.
func TestManyNearSimultaneousExpiries(t *testing.T) {
	svc := newService(t, nil)
	b := newRecordingBackend()
	start(t, svc, b, Config{})
	ctx := context.Background()
	var reqs []queue.BlockRequest
	end := time.Now().Add(3 * time.Second) // room to install all 300 first, even on a loaded machine
	for i := range 300 {
		r := queuetest.Req(fmt.Sprintf("198.18.%d.%d", i/256, i%256), "0")
		r.UnblockAt = end.Add(time.Duration(i) * time.Millisecond).UTC().Format(time.RFC3339Nano)
		reqs = append(reqs, r)
	}
	if _, err := svc.MBlock(ctx, reqs); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "all installed", 10*time.Second, func() bool { return len(b.snapshot()) == 300 })
	// Withdrawn from the backend and marked: the entries close right after
	// each batch is removed.
	waitFor(t, "all withdrawn and marked within a second of the last end", time.Until(end.Add(300*time.Millisecond+time.Second)), func() bool {
		return len(b.snapshot()) == 0 && entriesOf(t, svc, "null1", true) == 0
	})
}

func blockFrom(t *testing.T, svc *queue.Service, cidr, source string) queue.Block {
	t.Helper()
	r := queuetest.Req(cidr, "1h")
	r.Source = source
	res, err := svc.Block(context.Background(), r)
	if err != nil {
		t.Fatal(err)
	}
	return res.Block
}

// An enforcer with a select takes only the blocks it names: the others
// leave its queue unmarked (current_blocks does not list it for them),
// and at a start with a narrower select its open entries the select no
// longer takes are withdrawn and marked unblocked.
func TestSelectSkipsAndNarrows(t *testing.T) {
	svc := newService(t, nil)
	ctx := context.Background()
	sel := queue.Selection{Sources: []string{"ids", "scanner"}, PrefixLenV4: queue.LenRange{Min: 32}, PrefixLenV6: queue.LenRange{Min: 128}}
	b := newRecordingBackend()
	run := func(cfg Config) (*Enforcer, func()) {
		cfg.MinBackoff, cfg.MaxBackoff = 5*time.Millisecond, 20*time.Millisecond
		e, err := New(cfg, svc, b, zaptest.NewLogger(t), Observer{})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(ctx)
		done := make(chan error, 1)
		go func() { done <- e.Run(ctx) }()
		return e, func() { cancel(); <-done }
	}
	e, stop := run(Config{Ident: "ixp", Select: sel})
	blockFrom(t, svc, "198.51.100.1", "ids")
	blockFrom(t, svc, "198.51.100.2", "scanner")
	blockFrom(t, svc, "2001:db8::1", "ids")
	blockFrom(t, svc, "198.51.100.3", "manual") // source not selected
	blockFrom(t, svc, "198.51.100.0/28", "ids") // too short for v4
	blockFrom(t, svc, "2001:db8:1::/64", "ids") // too short for v6
	waitFor(t, "selected installed, rest skipped", 5*time.Second, func() bool {
		q, err := svc.BlockQueue(ctx, "ixp", time.Time{}, 0)
		return err == nil && len(q) == 0 && len(b.snapshot()) == 3
	})
	if got, want := strings.Join(b.snapshot(), " "), "198.51.100.1/32 198.51.100.2/32 2001:db8::1/128"; got != want {
		t.Fatalf("installed %s, want %s", got, want)
	}
	if n := entriesOf(t, svc, "ixp", false); n != 3 {
		t.Fatalf("%d entries for ixp, want 3 (skipped blocks are never marked)", n)
	}
	if e.Status().Installed != 3 {
		t.Errorf("status installed %d, want 3", e.Status().Installed)
	}

	stop()
	// Restart with only ids selected: scanner's open entry is withdrawn
	// and closed; the others stay.
	e2, stop2 := run(Config{Ident: "ixp", Select: queue.Selection{Sources: []string{"ids"}}})
	defer stop2()
	waitFor(t, "narrowed select reconciled", 5*time.Second, func() bool { return e2.Status().Reconciled })
	if got, want := strings.Join(b.snapshot(), " "), "198.51.100.1/32 2001:db8::1/128"; got != want {
		t.Fatalf("after narrowing installed %s, want %s", got, want)
	}
	if n := entriesOf(t, svc, "ixp", true); n != 2 {
		t.Fatalf("%d open entries for ixp after narrowing, want 2", n)
	}
}

func TestSelectionMatch(t *testing.T) {
	sel := queue.Selection{Sources: []string{"a"}, PrefixLenV4: queue.LenRange{Min: 24, Max: 30}}
	for _, c := range []struct {
		src, p string
		want   bool
	}{
		{"a", "10.0.0.0/24", true}, {"a", "10.0.0.0/30", true}, {"a", "10.0.0.0/23", false},
		{"a", "10.0.0.1/32", false}, {"b", "10.0.0.0/24", false}, {"a", "2001:db8::/32", true},
	} {
		if got := sel.Match(c.src, netip.MustParsePrefix(c.p)); got != c.want {
			t.Errorf("Match(%s, %s) = %v, want %v", c.src, c.p, got, c.want)
		}
	}
	if !(queue.Selection{}).Match("x", netip.MustParsePrefix("0.0.0.0/1")) {
		t.Error("the zero selection must take every block")
	}
	if ps := (queue.Selection{PrefixLenV4: queue.LenRange{Min: 30, Max: 24}, PrefixLenV6: queue.LenRange{Max: 129}}).Problems(); len(ps) != 2 {
		t.Errorf("problems %v, want 2", ps)
	}
}

// Skipped blocks take none of max_prefixes' room: with room for 2 and 3
// blocks it does not take ahead of one it does, the one it takes is
// installed without waiting for another change, and the enforcer is not
// reported capped.
func TestSelectSkipsDoNotFillTheRoom(t *testing.T) {
	svc := newService(t, nil)
	b := newRecordingBackend()
	// The ident exists, so that what follows is queued for it; the
	// enforcer starts after, finding all four at once.
	if _, err := svc.BlockQueue(context.Background(), "ixp", time.Time{}, 1); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 3; i++ {
		blockFrom(t, svc, fmt.Sprintf("198.51.100.%d", i), "manual")
	}
	blockFrom(t, svc, "198.51.100.9", "ids")
	e := start(t, svc, b, Config{Ident: "ixp", MaxPrefixes: 2, Select: queue.Selection{Sources: []string{"ids"}}})
	waitFor(t, "the ids block installed", 3*time.Second, func() bool {
		s := b.snapshot()
		return len(s) == 1 && s[0] == "198.51.100.9/32"
	})
	if e.Status().Capped {
		t.Error("reported capped with 1 of 2 installed")
	}
}
