// Package enforcer runs one goroutine per internal ident that drains the
// ident's block and unblock queues into a Backend (BGP announcements, null
// routes) and marks what the backend accepted as set_blocked or
// set_unblocked, through pkg/queue directly. It is woken by the queue's
// change notification and by a timer at the next unblock_at: there is no
// periodic scan.
package enforcer

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"go.uber.org/zap"

	"github.com/bhrd/bhrd/pkg/queue"
)

// Backend enforces prefixes. Implementations must be idempotent: adding
// an installed prefix or removing a missing one is not an error.
type Backend interface {
	// Install enforces every target's prefix, or returns an error; a nil
	// error means all of them were accepted.
	Install(ctx context.Context, targets []Target) error
	// Remove stops enforcing every prefix.
	Remove(ctx context.Context, prefixes []netip.Prefix) error
	// Reconcile makes the backend enforce exactly want (after a restart)
	// and reports what it had to change.
	Reconcile(ctx context.Context, want []Target) (added, removed int, err error)
}

// Target is one prefix to enforce with the block that asks for it (the
// newest open one when several name the prefix), for backends whose
// enforcement depends on the block (per-source BGP communities, DNSBL
// answers). Install is called again for an enforced prefix when a newer
// block names it.
type Target struct {
	Prefix  netip.Prefix
	BlockID int64
	Source  string
	Added   time.Time // the block's
	// UnblockAt is the block's end as it was queued or at the last start
	// (an extension of the block does not call Install again).
	UnblockAt time.Time
}

// newestTargets collects one Target per prefix, the one of the newest
// (highest id) block, in first-seen order.
type newestTargets struct {
	list []Target
	at   map[netip.Prefix]int
}

func (n *newestTargets) add(t Target) {
	if n.at == nil {
		n.at = map[netip.Prefix]int{}
	}
	if i, ok := n.at[t.Prefix]; !ok {
		n.at[t.Prefix] = len(n.list)
		n.list = append(n.list, t)
	} else if t.BlockID > n.list[i].BlockID {
		n.list[i] = t
	}
}

// Prefixes returns the targets' prefixes.
func Prefixes(ts []Target) []netip.Prefix {
	out := make([]netip.Prefix, len(ts))
	for i, t := range ts {
		out[i] = t.Prefix
	}
	return out
}

// Service is what an enforcer needs of the queue.
type Service interface {
	BlockQueue(ctx context.Context, ident string, since time.Time, limit int) ([]queue.QueueItem, error)
	SetBlocked(ctx context.Context, ident string, blockIDs []int64) error
	SkipBlocks(ctx context.Context, ident string, blockIDs []int64) error
	UnblockQueue(ctx context.Context, ident string, limit int) ([]queue.UnblockItem, error)
	SetUnblocked(ctx context.Context, entryIDs []int64) error
	ListEntries(ctx context.Context, opts queue.EntryListOptions, fn func(queue.Entry) error) error
	GetBlock(ctx context.Context, id int64) (queue.Block, error)
	Changed() <-chan struct{}
	NextUnblockAfter(ctx context.Context, t time.Time) (time.Time, bool, error)
	Now() time.Time
	OwnIdent(ctx context.Context, ident string, held func(holder string)) (queue.IdentLease, error)
}

// Config configures one enforcer.
type Config struct {
	Ident string
	// MaxPrefixes caps how many prefixes the enforcer installs; 0 = none.
	// Past it the rest stays queued and Status reports Capped.
	MaxPrefixes int
	// Select limits the blocks this enforcer takes; the others are
	// skipped (never enforced, never marked). The zero value takes all.
	// At start, open entries it no longer takes are removed and marked
	// unblocked.
	Select queue.Selection
	// Backoff bounds for retrying a failing backend or store.
	MinBackoff, MaxBackoff time.Duration
	// AfterReconcile, when set, runs once the start-up reconcile has
	// succeeded, before any queue work (the BGP backend signals
	// End-of-RIB to its peers here). An error is retried like a failed
	// reconcile.
	AfterReconcile func(ctx context.Context) error
}

// Status is a snapshot of one enforcer, for health checks and metrics.
type Status struct {
	Ident       string
	Reconciled  bool   // the start-up reconcile finished
	Installed   int    // prefixes this enforcer has installed
	Capped      bool   // max_prefixes reached: work is waiting
	LastError   string // the last backend or store error, "" after a success
	LastErrorAt time.Time
	Applied     uint64 // prefixes installed or removed since start
	Errors      uint64 // failed attempts since start
	// BusySince is when the current pass over the queues started; zero
	// while the enforcer waits for work. A pass that never ends means a
	// hung backend or store (the watchdog looks at it).
	BusySince time.Time
	// Standby: another instance sharing the store owns the ident (Owner
	// names it when known); this one enforces nothing and waits to take
	// over.
	Standby bool
	Owner   string
}

// Observer receives the enforcer's events (audit log, metrics). Any field
// may be nil.
type Observer struct {
	Blocked   func(ident string, items []queue.QueueItem, d time.Duration)
	Unblocked func(ident string, items []queue.UnblockItem, d time.Duration)
	Failed    func(ident, op string, err error)
}

// Enforcer is one ident's loop.
type Enforcer struct {
	cfg     Config
	svc     Service
	backend Backend
	log     *zap.Logger
	obs     Observer

	mu     sync.Mutex
	status Status
	// installed counts enforced prefixes per cidr (a cidr is enforced once
	// however many open entries name it).
	installed map[netip.Prefix]int
	// reconciled is closed once the start-up reconcile has succeeded;
	// settled once it has or the enforcer stands by for another owner.
	reconciled, settled         chan struct{}
	reconciledOnce, settledOnce sync.Once
}

// New returns an enforcer; Run starts it.
func New(cfg Config, svc Service, backend Backend, log *zap.Logger, obs Observer) (*Enforcer, error) {
	if cfg.Ident == "" {
		return nil, errors.New("enforcer: ident is required")
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = 200 * time.Millisecond
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 30 * time.Second
	}
	if log == nil {
		log = zap.NewNop()
	}
	return &Enforcer{
		cfg: cfg, svc: svc, backend: backend, obs: obs,
		log:        log.With(zap.String("ident", cfg.Ident)),
		status:     Status{Ident: cfg.Ident},
		installed:  map[netip.Prefix]int{},
		reconciled: make(chan struct{}),
		settled:    make(chan struct{}),
	}, nil
}

// Status returns a snapshot.
func (e *Enforcer) Status() Status {
	e.mu.Lock()
	defer e.mu.Unlock()
	s := e.status
	s.Installed = len(e.installed)
	return s
}

// Reconciled is closed once the backend has been rebuilt from the store.
func (e *Enforcer) Reconciled() <-chan struct{} { return e.reconciled }

// Settled is closed once the enforcer has reconciled or found another
// instance owning its ident (and stands by): it is doing its job either
// way.
func (e *Enforcer) Settled() <-chan struct{} { return e.settled }

// Ident is the enforcer's ident.
func (e *Enforcer) Ident() string { return e.cfg.Ident }

// Run reconciles the backend with the store, then drains the queues until
// ctx ends. Backend and store errors are retried with backoff; Run
// returns only when ctx ends.
func (e *Enforcer) Run(ctx context.Context) error {
	// Every report is this enforcer's own: the Service lets only it
	// report for its (reserved) ident, and audits it as enforcer:<ident>.
	ctx = queue.WithActor(ctx, queue.EnforcerActor(e.cfg.Ident))
	backoff := e.cfg.MinBackoff
	for {
		// Only the owner of the ident among the instances sharing the
		// store enforces it. A standby withdraws what it enforced, if it
		// owned the ident before, and waits.
		lease, err := e.svc.OwnIdent(ctx, e.cfg.Ident, e.standBy)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			// The store is unreachable: what is enforced stays (as in
			// any store outage) until ownership can be asked again.
			e.fail("own ident", err)
			if !e.backOff(ctx, &backoff) {
				return ctx.Err()
			}
			continue
		}
		backoff = e.cfg.MinBackoff
		e.mu.Lock()
		was := e.status.Standby
		e.status.Standby, e.status.Owner = false, ""
		e.mu.Unlock()
		if was {
			e.log.Warn("enforcer took over its ident: the owner is gone")
		}
		runCtx, cancel := context.WithCancel(ctx)
		go func() {
			select {
			case <-lease.Lost():
				cancel()
			case <-runCtx.Done():
			}
		}()
		_ = e.run(runCtx) // ends only when runCtx does
		cancel()
		lease.Release()
		if ctx.Err() != nil {
			return ctx.Err()
		}
		e.fail("own ident", errors.New("ownership of the ident lost: the store session that held it ended"))
	}
}

// standBy is called when another instance owns the ident: what this one
// enforces goes (the owner enforces it now), and Status says so.
func (e *Enforcer) standBy(holder string) {
	e.mu.Lock()
	e.status.Standby, e.status.Owner = true, holder
	n := len(e.installed)
	e.mu.Unlock()
	e.log.Warn("enforcer standing by: another instance owns its ident", zap.String("owner", holder), zap.Int("withdrawing", n))
	if n > 0 {
		// Best effort, bounded: a failure is logged and the prefixes stay
		// until this instance owns the ident again and reconciles.
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if _, removed, err := e.backend.Reconcile(ctx, nil); err != nil {
			e.fail("withdraw (standby)", err)
		} else {
			e.log.Warn("enforcer withdrew what it enforced", zap.Int("removed", removed))
		}
		e.mu.Lock()
		e.installed = map[netip.Prefix]int{}
		e.status.Reconciled = false // the backend no longer follows the store
		e.mu.Unlock()
	}
	e.settledOnce.Do(func() { close(e.settled) })
}

// run reconciles the backend with the store, then drains the queues until
// ctx ends.
func (e *Enforcer) run(ctx context.Context) error {
	backoff := e.cfg.MinBackoff
	for {
		err := e.reconcile(ctx)
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		e.fail("reconcile", err)
		if !e.backOff(ctx, &backoff) {
			return ctx.Err()
		}
	}
	backoff = e.cfg.MinBackoff
	for {
		// Take the wake-up channel before reading the queues so that a
		// change made while we work is never missed.
		changed := e.svc.Changed()
		// Not after the unblock queue is read: see wait.
		read := e.svc.Now()
		e.setBusy(time.Now())
		more, err := e.step(ctx)
		e.setBusy(time.Time{})
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			e.fail("apply", err)
			if !e.backOff(ctx, &backoff) {
				return ctx.Err()
			}
			continue
		}
		backoff = e.cfg.MinBackoff
		if more {
			continue
		}
		if err := e.wait(ctx, changed, read); err != nil {
			return err
		}
	}
}

// wait sleeps until the queue changes or the next entry expires. The next
// expiry is the earliest after read, the time the unblock queue was read
// at: an entry that fell due while the batch was applied is in the past,
// so the timer fires at once (asked for after now, it would be skipped
// and nothing would wake the loop again).
func (e *Enforcer) wait(ctx context.Context, changed <-chan struct{}, read time.Time) error {
	// A change made while the batch was applied: straight to the next
	// one, without asking the store for the next expiry first.
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-changed:
		return nil
	default:
	}
	var timer <-chan time.Time
	next, ok, err := e.svc.NextUnblockAfter(ctx, read)
	switch {
	case err != nil && ctx.Err() != nil:
		return ctx.Err() // shutting down: not a failure
	case err != nil:
		e.fail("next expiry", err)
		// Without the next expiry, fall back to re-checking soon.
		timer = time.After(e.cfg.MaxBackoff)
	case ok:
		d := next.Sub(e.svc.Now())
		if d < 0 {
			d = 0
		}
		t := time.NewTimer(d)
		defer t.Stop()
		timer = t.C
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-changed:
	case <-timer:
	}
	return nil
}

// reconcile rebuilds the backend from the store: every open entry of this
// ident is enforced, and nothing else of ours.
func (e *Enforcer) reconcile(ctx context.Context) error {
	counts := map[netip.Prefix]int{}
	var want newestTargets
	// dropped are open entries the selection no longer takes (the config
	// changed): withdrawn by the reconcile, then marked unblocked.
	var dropped []int64
	// Entries already past their end stay in want: the unblock step right
	// after removes them and marks them, as it would have before a restart.
	err := e.svc.ListEntries(ctx, queue.EntryListOptions{Ident: e.cfg.Ident, OpenOnly: true}, func(en queue.Entry) error {
		if !e.cfg.Select.Match(en.Source, en.CIDR) {
			dropped = append(dropped, en.ID)
			return nil
		}
		want.add(Target{Prefix: en.CIDR, BlockID: en.BlockID, Source: en.Source, Added: en.BlockAdded, UnblockAt: en.UnblockAt})
		counts[en.CIDR]++
		return nil
	})
	if err != nil {
		return fmt.Errorf("list entries: %w", err)
	}
	start := time.Now()
	added, removed, err := e.backend.Reconcile(ctx, want.list)
	if err != nil {
		return fmt.Errorf("reconcile backend: %w", err)
	}
	if len(dropped) > 0 {
		if err := e.svc.SetUnblocked(ctx, dropped); err != nil {
			return fmt.Errorf("set_unblocked (no longer selected): %w", err)
		}
		e.log.Warn("withdrew open blocks the enforcer's select no longer takes", zap.Int("count", len(dropped)))
	}
	if e.cfg.AfterReconcile != nil {
		if err := e.cfg.AfterReconcile(ctx); err != nil {
			return fmt.Errorf("after reconcile: %w", err)
		}
	}
	e.mu.Lock()
	e.installed = counts
	e.status.Reconciled = true
	e.status.LastError = ""
	e.mu.Unlock()
	e.reconciledOnce.Do(func() { close(e.reconciled) })
	e.settledOnce.Do(func() { close(e.settled) })
	e.log.Info("enforcer reconciled", zap.Int("enforced", len(want.list)), zap.Int("added", added),
		zap.Int("removed", removed), zap.Duration("took", time.Since(start)))
	return nil
}

// step does one batch of unblocks and one batch of blocks. more reports
// that a queue returned a full page, so the caller should go on at once.
func (e *Enforcer) step(ctx context.Context) (more bool, err error) {
	// Unblocks first: they free room under max_prefixes and they are the
	// ones with a deadline.
	uq, err := e.svc.UnblockQueue(ctx, e.cfg.Ident, queue.QueueLimit)
	if err != nil {
		return false, fmt.Errorf("unblock queue: %w", err)
	}
	if len(uq) > 0 {
		if err := e.unblock(ctx, uq); err != nil {
			return false, err
		}
	}
	room := queue.QueueLimit
	if e.cfg.MaxPrefixes > 0 {
		e.mu.Lock()
		room = e.cfg.MaxPrefixes - len(e.installed)
		e.mu.Unlock()
	}
	if room <= 0 {
		// Full: capped only if something is actually waiting.
		waiting, err := e.svc.BlockQueue(ctx, e.cfg.Ident, time.Time{}, 1)
		if err != nil {
			return false, fmt.Errorf("block queue: %w", err)
		}
		e.setCapped(len(waiting) > 0)
		return len(uq) == queue.QueueLimit, nil
	}
	bq, err := e.svc.BlockQueue(ctx, e.cfg.Ident, time.Time{}, min(room, queue.QueueLimit))
	if err != nil {
		return false, fmt.Errorf("block queue: %w", err)
	}
	skipped := 0
	if len(bq) > 0 {
		if skipped, err = e.block(ctx, bq); err != nil {
			return false, err
		}
	}
	if skipped > 0 {
		// Skipped blocks took none of the room and are off the queue now:
		// read it again at once (what stayed may be ours).
		e.setCapped(false)
		return true, nil
	}
	capped := false
	if e.cfg.MaxPrefixes > 0 && len(bq) == room && room < queue.QueueLimit {
		// We took exactly the room left; see whether more is waiting.
		rest, err := e.svc.BlockQueue(ctx, e.cfg.Ident, time.Time{}, 1)
		if err == nil && len(rest) > 0 {
			capped = true
		}
	}
	e.setCapped(capped)
	return len(uq) == queue.QueueLimit || (len(bq) == queue.QueueLimit && !capped), nil
}

func (e *Enforcer) setCapped(capped bool) {
	e.mu.Lock()
	was := e.status.Capped
	e.status.Capped = capped
	n := len(e.installed)
	e.mu.Unlock()
	switch {
	case capped && !was:
		e.log.Error("max_prefixes reached: further blocks stay queued until room returns",
			zap.Int("max_prefixes", e.cfg.MaxPrefixes), zap.Int("installed", n))
	case !capped && was:
		e.log.Warn("below max_prefixes again: installing queued blocks",
			zap.Int("max_prefixes", e.cfg.MaxPrefixes), zap.Int("installed", n))
	}
}

// block installs and marks items, and returns how many it skipped (not
// taken by the select).
func (e *Enforcer) block(ctx context.Context, items []queue.QueueItem) (int, error) {
	skipped := 0
	if !e.cfg.Select.All() {
		var skip []int64
		taken := items[:0:0]
		for _, it := range items {
			if e.cfg.Select.Match(it.Source, it.CIDR) {
				taken = append(taken, it)
			} else {
				skip = append(skip, it.ID)
			}
		}
		if len(skip) > 0 {
			if err := e.svc.SkipBlocks(ctx, e.cfg.Ident, skip); err != nil {
				return 0, fmt.Errorf("skip %d blocks: %w", len(skip), err)
			}
			e.log.Debug("skipped blocks its select does not take", zap.Int("count", len(skip)))
			skipped = len(skip)
		}
		if items = taken; len(items) == 0 {
			return skipped, nil
		}
	}
	// Every prefix of the batch, with its newest block: one already
	// enforced is installed again so that the backend learns of the newer
	// block (idempotent for routes; a DNSBL answer's days and source).
	var targets newestTargets
	for _, it := range items {
		targets.add(Target{Prefix: it.CIDR, BlockID: it.ID, Source: it.Source, Added: it.Added, UnblockAt: it.UnblockAt})
	}
	start := time.Now()
	if err := e.backend.Install(ctx, targets.list); err != nil {
		return 0, fmt.Errorf("install %d prefixes: %w", len(targets.list), err)
	}
	ids := make([]int64, len(items))
	for i, it := range items {
		ids[i] = it.ID
	}
	if err := e.svc.SetBlocked(ctx, e.cfg.Ident, ids); err != nil {
		// Installed but not marked: the next pass installs again
		// (idempotent) and marks.
		return 0, fmt.Errorf("set_blocked: %w", err)
	}
	d := time.Since(start)
	e.mu.Lock()
	for _, it := range items {
		e.installed[it.CIDR]++
	}
	e.status.Applied += uint64(len(items))
	e.status.LastError = ""
	e.mu.Unlock()
	e.log.Debug("blocked", zap.Int("count", len(items)), zap.Duration("took", d))
	if e.obs.Blocked != nil {
		e.obs.Blocked(e.cfg.Ident, items, d)
	}
	return skipped, nil
}

func (e *Enforcer) unblock(ctx context.Context, items []queue.UnblockItem) error {
	// A cidr is removed only when its last open entry goes: a newer block
	// for the same cidr keeps the route.
	e.mu.Lock()
	left := map[netip.Prefix]int{}
	for _, it := range items {
		if _, ok := left[it.CIDR]; !ok {
			left[it.CIDR] = e.installed[it.CIDR]
		}
		left[it.CIDR]--
	}
	var gone []netip.Prefix
	for p, n := range left {
		if n <= 0 {
			gone = append(gone, p)
		}
	}
	e.mu.Unlock()
	start := time.Now()
	if len(gone) > 0 {
		if err := e.backend.Remove(ctx, gone); err != nil {
			return fmt.Errorf("remove %d prefixes: %w", len(gone), err)
		}
	}
	ids := make([]int64, len(items))
	for i, it := range items {
		ids[i] = it.ID
	}
	if err := e.svc.SetUnblocked(ctx, ids); err != nil {
		return fmt.Errorf("set_unblocked: %w", err)
	}
	d := time.Since(start)
	e.mu.Lock()
	for p, n := range left {
		if n <= 0 {
			delete(e.installed, p)
		} else {
			e.installed[p] = n
		}
	}
	e.status.Applied += uint64(len(items))
	e.status.LastError = ""
	e.mu.Unlock()
	e.log.Debug("unblocked", zap.Int("count", len(items)), zap.Duration("took", d))
	if e.obs.Unblocked != nil {
		e.obs.Unblocked(e.cfg.Ident, items, d)
	}
	return nil
}

func (e *Enforcer) setBusy(t time.Time) {
	e.mu.Lock()
	e.status.BusySince = t
	e.mu.Unlock()
}

func (e *Enforcer) fail(op string, err error) {
	e.mu.Lock()
	e.status.LastError = err.Error()
	e.status.LastErrorAt = time.Now()
	e.status.Errors++
	e.mu.Unlock()
	e.log.Error("enforcer "+op+" failed; retrying", zap.Error(err))
	if e.obs.Failed != nil {
		e.obs.Failed(e.cfg.Ident, op, err)
	}
}

// backOff sleeps *backoff (false if ctx ends first) and doubles it, up
// to MaxBackoff, for the next failure.
func (e *Enforcer) backOff(ctx context.Context, backoff *time.Duration) bool {
	if !sleepCtx(ctx, *backoff) {
		return false
	}
	*backoff = min(*backoff*2, e.cfg.MaxBackoff)
	return true
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
