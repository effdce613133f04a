package queue

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// Clock tells the time. Tests inject a fake one so that expiry never
// needs a sleep.
type Clock interface {
	Now() time.Time
}

type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

// SystemClock is the real clock.
var SystemClock Clock = systemClock{}

// QueueLimit is BHR's maximum number of items per queue call.
const QueueLimit = 200

// Service is the block lifecycle and the per-ident queues: the only way
// blocks change. It validates requests against the Policy, keeps the
// whitelist and source blacklist in memory indexes consistent with the
// store, and wakes waiters on every change that may give an ident work.
type Service struct {
	store Store
	clock Clock
	// rules is swapped whole by SetPolicy, so a request sees one policy
	// and its matching protected set, never half of each.
	rules atomic.Pointer[rules]

	whitelist atomic.Pointer[prefixIndex[WhitelistEntry]]
	blacklist atomic.Pointer[map[string]SourceBlacklistEntry]

	reloadMu sync.Mutex // serialises index reloads

	mu      sync.Mutex
	onAuth  []func()      // called when another process changed a user or token
	changed chan struct{} // closed at any change that may give work
	queued  *QueueWake    // woken when new blocks enter the block queues

	events Events
	// reserved are the idents of this process's internal enforcers: only
	// EnforcerActor(ident) may report for them.
	reserved map[string]bool
	// maxIdents caps the idents a store holds (0: no cap); idleAfter is
	// how long an ident may go without asking before new blocks stop
	// being queued for it (0: never).
	maxIdents int
	idleAfter time.Duration
	instance  string
	stats     statsCache
}

// WithMaxIdents caps how many idents the store may hold: a new ident
// beyond it is refused (ErrTooManyIdents). 0 means no cap.
func WithMaxIdents(n int) Option { return func(s *Service) { s.maxIdents = n } }

// WithIdentIdleAfter makes an ident that has not asked for its block
// queue for d inactive: new blocks cost it nothing until it asks again
// and catches up. 0 keeps every ident active.
func WithIdentIdleAfter(d time.Duration) Option { return func(s *Service) { s.idleAfter = d } }

// Option configures a Service.
type Option func(*Service)

// WithInstance names this process among those sharing the store (the
// owner of an ident is shown by this name).
func WithInstance(name string) Option { return func(s *Service) { s.instance = name } }

// WithEvents sends every committed change and every refusal to e.
func WithEvents(e Events) Option {
	return func(s *Service) {
		if e != nil {
			s.events = e
		}
	}
}

// WithExactStats makes every Stats call count, however long counting
// takes, instead of sharing a slow count's result for a while (see
// statsSlow): for tests that check the counts right after each change
// on a loaded machine, where even a small count can take 10 ms.
func WithExactStats() Option { return func(s *Service) { s.stats.exact = true } }

// WithReservedIdents reserves the idents of the internal enforcers: only
// EnforcerActor(ident) may report blocks installed or removed for them,
// or read their unblock queue. Anyone else gets ErrReservedIdent.
func WithReservedIdents(idents ...string) Option {
	return func(s *Service) {
		for _, id := range idents {
			s.reserved[id] = true
		}
	}
}

// Outcome says what a block request did.
type Outcome int

const (
	Created   Outcome = iota // a new block was stored
	Extended                 // an expected block with this cidr got a later end
	Duplicate                // an expected block with this cidr already covered the request
)

func (o Outcome) String() string {
	switch o {
	case Created:
		return "created"
	case Extended:
		return "extended"
	case Duplicate:
		return "duplicate"
	}
	return fmt.Sprintf("outcome(%d)", int(o))
}

// BlockRequest is one block request as a client sends it. Strings are
// parsed here so that every client (HTTP form, JSON, CLI) gets the same
// rules and messages.
type BlockRequest struct {
	CIDR      string
	Who       string // the authenticated user; set by the caller, not the client
	Source    string
	Why       string
	Duration  string // required; see ParseDuration
	UnblockAt string // optional ISO time; exclusive with a non-zero duration

	SkipWhitelist bool
	Autoscale     bool
	Extend        bool // BHR's API default is true; callers must set it
	// MaySkipWhitelist is the caller's permission to use SkipWhitelist.
	MaySkipWhitelist bool
	// DecodeErrors are the field errors a front end found while decoding
	// (a boolean that is no boolean): they are reported, and audited, with
	// the Service's own, and the fields they name are not judged again.
	DecodeErrors []*FieldError
}

// rules is a policy with its protected set and the reserved ranges
// indexed.
type rules struct {
	policy    Policy
	protected *prefixIndex[ProtectedPrefix]
}

// reserved indexes Reserved once.
var reserved = indexProtected(Reserved)

func indexProtected(ps []ProtectedPrefix) *prefixIndex[ProtectedPrefix] {
	prot := make([]indexed[ProtectedPrefix], 0, len(ps))
	for _, pp := range ps {
		prot = append(prot, indexed[ProtectedPrefix]{pp.Prefix, pp})
	}
	return newPrefixIndex(prot)
}

func newRules(p Policy) *rules {
	return &rules{policy: p, protected: indexProtected(p.Protected)}
}

// protection returns the protected prefix cidr overlaps: the config's
// own first, whose reason is the more telling (a BGP peer on loopback is
// refused as the peer), then the reserved ranges.
func (rl *rules) protection(cidr netip.Prefix) (ProtectedPrefix, bool) {
	if pp, ok := rl.protected.overlap(cidr); ok {
		return pp, true
	}
	return reserved.overlap(cidr)
}

// BlockResult is the block a request ended up with.
type BlockResult struct {
	Block   Block
	Outcome Outcome
}

// NewService returns a Service over store. Call Start before use.
func NewService(store Store, policy Policy, clock Clock, opts ...Option) (*Service, error) {
	if err := policy.Validate(); err != nil {
		return nil, err
	}
	if clock == nil {
		clock = SystemClock
	}
	s := &Service{
		store:    store,
		clock:    clock,
		changed:  make(chan struct{}),
		queued:   newQueueWake(),
		events:   noEvents{},
		stats:    statsCache{now: time.Now},
		reserved: map[string]bool{},
	}
	for _, o := range opts {
		o(s)
	}
	s.rules.Store(newRules(policy))
	return s, nil
}

// Start loads the whitelist and source blacklist and, when the store is
// shared between processes, follows other processes' changes until ctx
// ends. It returns once the indexes are loaded.
func (s *Service) Start(ctx context.Context) error {
	if err := s.ReloadLists(ctx); err != nil {
		return err
	}
	if s.idleAfter > 0 {
		go s.sweepLoop(ctx)
	}
	if l, ok := s.store.(ChangeListener); ok {
		go func() {
			_ = l.ListenChanges(ctx, func(kind ChangeKind) {
				switch kind {
				case ChangeWhitelist:
					// A failed reload keeps the previous index; the next
					// change (or restart) retries.
					_ = s.ReloadLists(ctx)
				case ChangeAuth:
					s.mu.Lock()
					subs := slices.Clone(s.onAuth)
					s.mu.Unlock()
					for _, fn := range subs {
						fn()
					}
				default:
					// Another process's change: what it was is not
					// said, so block-queue waiters look too.
					s.notifyQueued(time.Time{})
				}
			})
		}()
	}
	return nil
}

// Store returns the underlying store.
func (s *Service) Store() Store { return s.store }

// OnAuthChange calls fn whenever another process sharing the store has
// changed a user or token (a revoked token, a disabled user), or the
// change notifications were interrupted: cached authentications must be
// forgotten.
func (s *Service) OnAuthChange(fn func()) {
	s.mu.Lock()
	s.onAuth = append(s.onAuth, fn)
	s.mu.Unlock()
}

// Policy returns the rules in force.
func (s *Service) Policy() Policy { return s.rules.Load().policy }

// SetPolicy replaces the rules for requests from now on (a config
// reload); requests in flight finish under the old ones. Stored blocks
// are not re-judged: a block accepted under the old rules stays.
func (s *Service) SetPolicy(p Policy) error {
	if err := p.Validate(); err != nil {
		return err
	}
	s.rules.Store(newRules(p))
	return nil
}

// Now is the service clock's time, at the stores' precision.
func (s *Service) Now() time.Time {
	return s.clock.Now().UTC().Truncate(time.Microsecond)
}

// ReloadLists rebuilds the whitelist and source blacklist indexes from
// the store.
func (s *Service) ReloadLists(ctx context.Context) error {
	s.reloadMu.Lock()
	defer s.reloadMu.Unlock()
	wl, err := s.store.ListWhitelist(ctx)
	if err != nil {
		return fmt.Errorf("load whitelist: %w", err)
	}
	bl, err := s.store.ListSourceBlacklist(ctx)
	if err != nil {
		return fmt.Errorf("load source blacklist: %w", err)
	}
	items := make([]indexed[WhitelistEntry], 0, len(wl))
	for _, e := range wl {
		items = append(items, indexed[WhitelistEntry]{e.CIDR, e})
	}
	m := make(map[string]SourceBlacklistEntry, len(bl))
	for _, e := range bl {
		m[e.Source] = e
	}
	s.whitelist.Store(newPrefixIndex(items))
	s.blacklist.Store(&m)
	return nil
}

// Changed returns a channel closed at the next change that may give some
// ident work (a new block, an extend, an unblock_now). To
// avoid missing a wake-up, take the channel before reading the queue.
func (s *Service) Changed() <-chan struct{} {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.changed
}

// QueueWake is one wake-up of block-queue waiters: Done is closed when
// new blocks enter the block queues. Once Done is closed, Added and Next
// may be read: they say what woke it and where to wait next.
type QueueWake struct {
	done  chan struct{}
	added time.Time  // set before done is closed
	next  *QueueWake // set before done is closed
}

func newQueueWake() *QueueWake { return &QueueWake{done: make(chan struct{})} }

// Done is closed at the wake-up.
func (w *QueueWake) Done() <-chan struct{} { return w.done }

// Added is, after Done, the added time shared by the blocks that caused
// the wake-up; false when it is not known (another process's change).
// A waiter asking only for blocks added after a time at or past it has
// no new work and may wait on Next without reading the store.
func (w *QueueWake) Added() (time.Time, bool) { return w.added, !w.added.IsZero() }

// Next is, after Done, the wake-up that follows this one. Waiting on it
// (rather than taking BlockQueueChanged again) misses no change made
// since this one.
func (w *QueueWake) Next() *QueueWake { return w.next }

// BlockQueueChanged returns the next wake-up of block-queue waiters (the
// long poll): new blocks entering the block queues, or another process
// sharing the store changing something. An unblock_now or an extend,
// which give no block-queue work, do not cause it. Take it before
// reading the queue, as with Changed.
func (s *Service) BlockQueueChanged() *QueueWake {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.queued
}

// notify wakes the waiters of Changed: entries or ends changed.
func (s *Service) notify() {
	s.mu.Lock()
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
}

// notifyQueued wakes the waiters of Changed and BlockQueueChanged: new
// blocks added at added (zero: not known) are queued.
func (s *Service) notifyQueued(added time.Time) {
	s.mu.Lock()
	close(s.changed)
	s.changed = make(chan struct{})
	w := s.queued
	s.queued = newQueueWake()
	w.added, w.next = added, s.queued
	close(w.done)
	s.mu.Unlock()
}

// OwnIdent makes this process the owner of ident among the processes
// sharing the store, waiting while another owns it (held is called once
// with its name when it must). An internal enforcer runs only while it
// owns its ident, and stops when Lost is closed. A store used by one
// process alone always grants it at once.
func (s *Service) OwnIdent(ctx context.Context, ident string, held func(holder string)) (IdentLease, error) {
	if l, ok := s.store.(IdentLocker); ok {
		return l.LockIdent(ctx, ident, s.instance, held)
	}
	return soleLease{}, nil
}

// soleLease is the lease of a store no other process shares.
type soleLease struct{}

func (soleLease) Lost() <-chan struct{} { return nil }
func (soleLease) Release()              {}

// NextUnblockAt is when the next open entry expires, so an enforcer can
// sleep until then instead of scanning.
func (s *Service) NextUnblockAt(ctx context.Context) (time.Time, bool, error) {
	return s.store.NextUnblockAt(ctx, s.Now())
}

// NextUnblockAfter is the earliest end after t among open entries. An
// enforcer passes the time it read its unblock queue at (or before): an
// entry that fell due while it worked is then returned (in the past), not
// skipped as NextUnblockAt at the end of the work would.
func (s *Service) NextUnblockAfter(ctx context.Context, t time.Time) (time.Time, bool, error) {
	return s.store.NextUnblockAt(ctx, t.UTC().Truncate(time.Microsecond))
}

// checked is a request that passed validation.
type checked struct {
	req      BlockRequest
	cidr     netip.Prefix
	duration time.Duration // 0 with end zero = indefinite
	end      time.Time     // explicit unblock_at, zero if none
}

// validate applies the field rules and the policy to one request. Every
// field error is reported at once (a FieldErrors), as BHR's serializer
// does; the policy is judged only for a request whose fields are valid.
func (s *Service) validate(r BlockRequest, now time.Time) (checked, error) {
	c := checked{req: r}
	rl := s.rules.Load()
	fes := FieldErrors(slices.Clone(r.DecodeErrors))
	if fes.Has("non_field_errors") {
		return c, fes.err() // no request object at all
	}
	bad := func(field string) bool { return fes.Has(field) }
	add := func(err error) {
		var fe *FieldError
		if errors.As(err, &fe) {
			fes = append(fes, fe)
		}
	}
	var err error
	if !bad("cidr") {
		if c.cidr, err = ParseCIDR(r.CIDR); err != nil {
			add(err)
		}
	}
	if !bad("source") {
		add(checkSource(r.Source))
	}
	if !bad("why") {
		add(checkWhy(r.Why))
	}
	if !bad("duration") {
		if c.duration, err = ParseDuration(r.Duration); err != nil {
			add(err)
		}
	}
	if r.UnblockAt != "" && !bad("unblock_at") {
		if c.duration != 0 {
			add(fieldErr("unblock_at", ErrConflictingEnd, "unblock_at can not be combined with a non-zero duration"))
		} else if c.end, err = ParseTime("unblock_at", r.UnblockAt); err != nil {
			add(err)
		} else if !c.end.After(now) {
			add(fieldErr("unblock_at", ErrPastEnd, "unblock_at %s is not in the future", c.end.Format(time.RFC3339)))
		}
	}
	if len(fes) > 0 {
		if len(fes) == 1 {
			return c, fes[0]
		}
		return c, fes
	}
	// The protected set is checked before anything can skip it.
	if pp, ok := rl.protection(c.cidr); ok {
		return c, policyErr(ErrProtectedAddresses, "protected: %s overlaps %s (%s)", c.cidr, pp.Prefix, pp.Reason)
	}
	if r.SkipWhitelist {
		if !r.MaySkipWhitelist {
			return c, policyErr(ErrSkipNotPermitted, "You do not have permission to use skip_whitelist.")
		}
		// Without skip_whitelist the minimum below, never lower than
		// this floor, refuses with BHR's own message.
		if min := rl.policy.absMinPrefixLen(c.cidr); c.cidr.Bits() < min {
			return c, policyErr(ErrPrefixTooShort, "Prefix length in %s is too small: /%d is the absolute minimum, which skip_whitelist does not lower", c.cidr, min)
		}
		return c, nil
	}
	if bl := s.blacklist.Load(); bl != nil {
		if _, ok := (*bl)[r.Source]; ok {
			return c, policyErr(ErrSourceBlacklisted, "Source %s is blacklisted", r.Source)
		}
	}
	if c.cidr.Bits() < rl.policy.minPrefixLen(c.cidr) {
		return c, policyErr(ErrPrefixTooShort, "Prefix length in %s is too small", c.cidr)
	}
	if e, ok := s.whitelist.Load().overlap(c.cidr); ok {
		msg := fmt.Sprintf("whitelisted: %s", e.CIDR)
		if e.Why != "" {
			msg += ": " + e.Why
		}
		return c, policyErr(ErrWhitelisted, "%s", msg)
	}
	return c, nil
}

// WhitelistCheck tells whether cidr would be refused by the whitelist or
// the protected set (for the API's dry runs and for benchmarks).
func (s *Service) WhitelistCheck(cidr netip.Prefix) (string, bool) {
	if pp, ok := s.rules.Load().protection(cidr); ok {
		return pp.Prefix.String(), true
	}
	if e, ok := s.whitelist.Load().overlap(cidr); ok {
		return e.CIDR.String(), true
	}
	return "", false
}

// Block stores one block request (see BHR-COMPAT.md "Block request rules").
func (s *Service) Block(ctx context.Context, r BlockRequest) (BlockResult, error) {
	res, err := s.MBlock(ctx, []BlockRequest{r})
	if err != nil {
		var be *BatchError
		if errors.As(err, &be) && len(be.Items) == 1 {
			return BlockResult{}, be.Items[0]
		}
		return BlockResult{}, err
	}
	return res[0], nil
}

// MBlock stores a batch all-or-nothing: if any item is invalid nothing is
// stored and the error is a *BatchError with one error per item.
func (s *Service) MBlock(ctx context.Context, reqs []BlockRequest) ([]BlockResult, error) {
	now := s.Now()
	items := make([]checked, len(reqs))
	errs := make([]error, len(reqs))
	bad := false
	who := ActorFrom(ctx).Name
	for i, r := range reqs {
		if r.Who == "" {
			r.Who = who
		}
		items[i], errs[i] = s.validate(r, now)
		bad = bad || errs[i] != nil
	}
	if bad {
		s.events.BlocksRejected(ctx, reqs, errs)
		return nil, &BatchError{Items: errs}
	}
	if len(items) == 0 {
		return nil, nil
	}
	cidrs := make([]netip.Prefix, 0, len(items))
	seen := make(map[netip.Prefix]bool, len(items))
	for _, it := range items {
		if !seen[it.cidr] {
			seen[it.cidr] = true
			cidrs = append(cidrs, it.cidr)
		}
	}
	pol := s.rules.Load().policy
	results := make([]BlockResult, len(items))
	// insertAt maps a Plan.Inserts index to the results index it fills.
	var insertAt []int
	plan := func(states map[netip.Prefix]CIDRState) (Plan, error) {
		p := Plan{Inserts: make([]Block, 0, len(items))}
		insertAt = insertAt[:0]
		// Blocks decided earlier in this batch (the index in results of
		// the cidr's latest request), so a cidr repeated within one
		// mblock behaves as if the requests came one after another.
		cur := make(map[netip.Prefix]int, len(cidrs))
		extendIdx := make(map[int64]int) // block id -> index in p.Extends
		for i, it := range items {
			st := states[it.cidr]
			var existing *Block
			if j, ok := cur[it.cidr]; ok {
				b := results[j].Block
				existing = &b
			} else if st.Expected != nil {
				b := *st.Expected
				existing = &b
			}
			if existing != nil {
				end, indefinite := s.endOf(it, it.duration, now)
				results[i] = BlockResult{Block: *existing, Outcome: Duplicate}
				later := indefinite || end.After(existing.UnblockAt)
				if it.req.Extend && !existing.Indefinite() && later {
					existing.UnblockAt = end // zero when indefinite
					results[i] = BlockResult{Block: *existing, Outcome: Extended}
					if existing.ID != 0 {
						if j, ok := extendIdx[existing.ID]; ok {
							p.Extends[j].UnblockAt = end
						} else {
							extendIdx[existing.ID] = len(p.Extends)
							p.Extends = append(p.Extends, Extend{BlockID: existing.ID, UnblockAt: end})
						}
					} else {
						// Extending a block created earlier in this batch:
						// change the pending insert instead.
						for k := range insertAt {
							if p.Inserts[k].CIDR == it.cidr {
								p.Inserts[k].UnblockAt = end
							}
						}
					}
				}
				cur[it.cidr] = i
				continue
			}
			d := it.duration
			if it.req.Autoscale && d > 0 && it.end.IsZero() {
				d = pol.Autoscale(d, st.Latest, now)
			}
			end, _ := s.endOf(it, d, now)
			b := Block{
				CIDR:          it.cidr,
				Who:           it.req.Who,
				Source:        it.req.Source,
				Why:           it.req.Why,
				Added:         now,
				UnblockAt:     end,
				SkipWhitelist: it.req.SkipWhitelist,
			}
			insertAt = append(insertAt, i)
			p.Inserts = append(p.Inserts, b)
			results[i] = BlockResult{Block: b, Outcome: Created}
			cur[it.cidr] = i
		}
		return p, nil
	}
	inserted, err := s.store.ApplyBlocks(ctx, cidrs, now, plan)
	if err != nil {
		return nil, fmt.Errorf("store blocks: %w", err)
	}
	if len(inserted) != len(insertAt) {
		return nil, fmt.Errorf("store blocks: store returned %d blocks for %d inserts", len(inserted), len(insertAt))
	}
	// Fill in ids: the inserted block, and any later duplicate/extend in
	// the same batch that referred to it before it had an id.
	idOf := make(map[netip.Prefix]int64, len(inserted))
	for k, ri := range insertAt {
		results[ri].Block = inserted[k]
		idOf[inserted[k].CIDR] = inserted[k].ID
	}
	extended := false
	for i := range results {
		if results[i].Block.ID == 0 {
			results[i].Block.ID = idOf[results[i].Block.CIDR]
		}
		if results[i].Outcome == Extended {
			extended = true
		}
	}
	switch {
	case len(inserted) > 0:
		var added time.Time
		for _, b := range inserted {
			if b.Added.After(added) {
				added = b.Added
			}
		}
		s.notifyQueued(added)
	case extended:
		// New ends for enforcers' expiry timers; no block-queue work.
		s.notify()
	}
	s.events.BlocksStored(ctx, results)
	return results, nil
}

// endOf computes a request's end for duration d; indefinite reports a
// block that never expires (end is then zero).
func (s *Service) endOf(it checked, d time.Duration, now time.Time) (end time.Time, indefinite bool) {
	if !it.end.IsZero() {
		return it.end, false
	}
	if d == 0 {
		return time.Time{}, true
	}
	return now.Add(d), false
}

// UnblockNow force-unblocks the expected block with exactly cidr. Its
// entries enter the unblock queues at once. who is the actor's name.
func (s *Service) UnblockNow(ctx context.Context, cidr, why string) (Block, error) {
	var fes FieldErrors
	p, err := ParseCIDR(cidr)
	fes = fes.add(err)
	fes = fes.add(checkWhy(why))
	if err := fes.err(); err != nil {
		s.events.Refused(ctx, "unblock_now", err)
		return Block{}, err
	}
	b, err := s.store.UnblockNow(ctx, p, s.Now(), ActorFrom(ctx).Name, why)
	if errors.Is(err, ErrNotBlocked) {
		err = fieldErr("cidr", ErrNotBlocked, "%s is not currently blocked", p)
		s.events.Refused(ctx, "unblock_now", err)
		return Block{}, err
	}
	if err != nil {
		return Block{}, fmt.Errorf("unblock %s: %w", p, err)
	}
	s.notify()
	s.events.UnblockedNow(ctx, b)
	return b, nil
}

// UnblockNowMulti force-unblocks every cidr at once, all or nothing:
// every cidr must be valid and currently blocked, else nothing changes
// and the error names each one that is not. Repeated cidrs count once.
// Each block is reported as by UnblockNow.
func (s *Service) UnblockNowMulti(ctx context.Context, cidrs []string, why string) ([]Block, error) {
	var fes FieldErrors
	if len(cidrs) == 0 {
		fes = fes.add(fieldErr("cidr", ErrFieldRequired, "This field is required."))
	}
	seen := make(map[netip.Prefix]bool, len(cidrs))
	ps := make([]netip.Prefix, 0, len(cidrs))
	for _, c := range cidrs {
		p, err := ParseCIDR(c)
		if err != nil {
			fes = fes.add(err)
			continue
		}
		if !seen[p] {
			seen[p] = true
			ps = append(ps, p)
		}
	}
	fes = fes.add(checkWhy(why))
	if err := fes.err(); err != nil {
		s.events.Refused(ctx, "unblock_now", err)
		return nil, err
	}
	bs, err := s.store.UnblockNowMulti(ctx, ps, s.Now(), ActorFrom(ctx).Name, why)
	var nb *NotBlockedError
	if errors.As(err, &nb) {
		err = fieldErr("cidr", ErrNotBlocked, "%s", nb.Error())
		s.events.Refused(ctx, "unblock_now", err)
		return nil, err
	}
	if err != nil {
		return nil, fmt.Errorf("unblock %d cidrs: %w", len(ps), err)
	}
	s.notify()
	for _, b := range bs {
		s.events.UnblockedNow(ctx, b)
	}
	return bs, nil
}

// mayReport refuses an actor other than ident's internal enforcer for a
// reserved ident.
func (s *Service) mayReport(ctx context.Context, op, ident string) error {
	if !s.reserved[ident] || ActorFrom(ctx).EnforcerIdent() == ident {
		return nil
	}
	err := &ReservedIdentError{Ident: ident}
	s.events.Refused(ctx, op, err)
	return err
}

// refusedIdents are the reserved idents whose entries the actor of ctx
// may not close.
func (s *Service) refusedIdents(ctx context.Context) []string {
	own := ActorFrom(ctx).EnforcerIdent()
	out := make([]string, 0, len(s.reserved))
	for id := range s.reserved {
		if id != own {
			out = append(out, id)
		}
	}
	slices.Sort(out)
	return out
}

// checkIDs collapses repeated ids and refuses more than limit distinct
// ones (0: no limit), so that a body of repeats can neither write nor
// audit more than the entries it names.
func (s *Service) checkIDs(ctx context.Context, op string, ids []int64, limit int) ([]int64, error) {
	ids = dedupe(ids)
	if limit > 0 && len(ids) > limit {
		err := &FieldError{Field: "ids", Err: ErrTooMany,
			Message: fmt.Sprintf("Too many ids: %d in one call; the limit is %d (api.max_mblock_items). Split the list.", len(ids), limit)}
		s.events.Refused(ctx, op, err)
		return nil, err
	}
	return ids, nil
}

// BlockQueue returns at most limit (capped at QueueLimit) expected blocks
// that ident has not yet blocked, oldest first. An ident needs no
// registration (BHR's rule): its first call registers it, unless the
// store holds max_idents already (ErrTooManyIdents).
func (s *Service) BlockQueue(ctx context.Context, ident string, since time.Time, limit int) ([]QueueItem, error) {
	if err := checkIdent(ident); err != nil {
		return nil, err
	}
	if limit <= 0 || limit > QueueLimit {
		limit = QueueLimit
	}
	now := s.Now()
	items, err := s.store.BlockQueue(ctx, ident, now, since, limit)
	if !errors.Is(err, ErrUnknownIdent) {
		return items, err
	}
	if err := s.store.RegisterIdent(ctx, ident, now, s.maxIdents); err != nil {
		if errors.Is(err, ErrTooManyIdents) {
			s.events.Refused(ctx, "block_queue", err)
		}
		return nil, err
	}
	return s.store.BlockQueue(ctx, ident, now, since, limit)
}

// sweepLoop marks idle idents inactive, every quarter of idleAfter (at
// most every minute), until ctx ends.
func (s *Service) sweepLoop(ctx context.Context) {
	every := min(s.idleAfter/4, time.Minute)
	t := time.NewTicker(max(every, time.Second))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		// A failure is retried at the next tick; the idents stay active.
		_, _ = s.SweepIdents(ctx)
	}
}

// SweepIdents marks inactive the idents that have not asked for their
// block queue for ident_idle_after (never this process's internal ones)
// and returns how many. The Service runs it by itself; tests call it.
func (s *Service) SweepIdents(ctx context.Context) (int, error) {
	if s.idleAfter <= 0 {
		return 0, nil
	}
	keep := make([]string, 0, len(s.reserved))
	for id := range s.reserved {
		keep = append(keep, id)
	}
	slices.Sort(keep)
	return s.store.SweepIdents(ctx, s.Now().Add(-s.idleAfter), keep)
}

// ListIdents describes every ident the store holds.
func (s *Service) ListIdents(ctx context.Context) ([]IdentInfo, error) {
	return s.store.ListIdents(ctx, s.Now())
}

// ForgetIdent removes an ident and its block queue (its entries stay, as
// history); an internal enforcer's ident is refused (ErrReservedIdent).
func (s *Service) ForgetIdent(ctx context.Context, ident string) error {
	if err := checkIdent(ident); err != nil {
		return err
	}
	if s.reserved[ident] {
		err := &ReservedIdentError{Ident: ident}
		s.events.Refused(ctx, "ident_forget", err)
		return err
	}
	if err := s.store.ForgetIdent(ctx, ident); err != nil {
		return err
	}
	s.events.IdentForgotten(ctx, ident)
	return nil
}

// SetBlocked records that ident has installed the given blocks (repeats
// collapse). Unknown ids fail the whole call (ErrNotFound).
func (s *Service) SetBlocked(ctx context.Context, ident string, blockIDs []int64) error {
	return s.SetBlockedMax(ctx, ident, blockIDs, 0)
}

// SetBlockedMax is SetBlocked refusing more than limit distinct ids
// (ErrTooMany); 0 means no limit.
func (s *Service) SetBlockedMax(ctx context.Context, ident string, blockIDs []int64, limit int) error {
	if err := checkIdent(ident); err != nil {
		return err
	}
	if err := s.mayReport(ctx, "set_blocked", ident); err != nil {
		return err
	}
	ids, err := s.checkIDs(ctx, "set_blocked", blockIDs, limit)
	if err != nil || len(ids) == 0 {
		return err
	}
	added, err := s.store.SetBlocked(ctx, ident, ids, s.Now())
	if err != nil {
		return err
	}
	if len(added) > 0 {
		s.events.SetBlocked(ctx, ident, added)
	}
	return nil
}

// SkipBlocks takes blocks out of ident's block queue without an entry:
// the ident's enforcer does not take them (its Selection). They are not
// audited (nothing was enforced) and never come back to that queue,
// unless the ident is reactivated after being idle.
func (s *Service) SkipBlocks(ctx context.Context, ident string, blockIDs []int64) error {
	if err := checkIdent(ident); err != nil {
		return err
	}
	if err := s.mayReport(ctx, "skip_blocks", ident); err != nil {
		return err
	}
	ids, err := s.checkIDs(ctx, "skip_blocks", blockIDs, 0)
	if err != nil || len(ids) == 0 {
		return err
	}
	return s.store.SkipBlocks(ctx, ident, ids)
}

// UnblockQueue returns at most limit (capped at QueueLimit) open entries
// of ident whose end has passed, by unblock_at.
func (s *Service) UnblockQueue(ctx context.Context, ident string, limit int) ([]UnblockItem, error) {
	if err := checkIdent(ident); err != nil {
		return nil, err
	}
	if err := s.mayReport(ctx, "unblock_queue", ident); err != nil {
		return nil, err
	}
	if limit <= 0 || limit > QueueLimit {
		limit = QueueLimit
	}
	return s.store.UnblockQueue(ctx, ident, s.Now(), limit)
}

// SetUnblocked records that the given entries were removed (repeats
// collapse). Unknown ids fail the whole call (ErrNotFound), and so does an
// entry of a reserved ident the actor is not the enforcer of
// (ErrReservedIdent).
func (s *Service) SetUnblocked(ctx context.Context, entryIDs []int64) error {
	return s.SetUnblockedMax(ctx, entryIDs, 0)
}

// SetUnblockedMax is SetUnblocked refusing more than limit distinct ids
// (ErrTooMany); 0 means no limit.
func (s *Service) SetUnblockedMax(ctx context.Context, entryIDs []int64, limit int) error {
	ids, err := s.checkIDs(ctx, "set_unblocked", entryIDs, limit)
	if err != nil || len(ids) == 0 {
		return err
	}
	closed, err := s.store.SetUnblocked(ctx, ids, s.Now(), s.refusedIdents(ctx))
	if errors.Is(err, ErrReservedIdent) {
		s.events.Refused(ctx, "set_unblocked", err)
		return err
	}
	if err != nil {
		return err
	}
	if len(closed) > 0 {
		s.events.SetUnblocked(ctx, closed)
	}
	return nil
}

// GetBlock returns one block.
func (s *Service) GetBlock(ctx context.Context, id int64) (Block, error) {
	return s.store.GetBlock(ctx, id)
}

// ListBlocks streams blocks; opts.Now defaults to the service clock.
func (s *Service) ListBlocks(ctx context.Context, opts ListOptions, fn func(Block) error) error {
	if err := CheckText("source", opts.Source); err != nil {
		return err
	}
	if err := CheckText("query", opts.WhyContains); err != nil {
		return err
	}
	if opts.Now.IsZero() {
		opts.Now = s.Now()
	}
	return s.store.ListBlocks(ctx, opts, fn)
}

// AddedPerDay counts the blocks added on each of the last days UTC days
// (today included), by source; days with none are left out.
func (s *Service) AddedPerDay(ctx context.Context, days int) ([]DayCount, error) {
	now := s.Now().UTC()
	today := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC)
	return s.store.AddedPerDay(ctx, today.AddDate(0, 0, 1-max(days, 1)))
}

// ListEntries streams entries.
func (s *Service) ListEntries(ctx context.Context, opts EntryListOptions, fn func(Entry) error) error {
	if err := CheckText("ident", opts.Ident); err != nil {
		return err
	}
	return s.store.ListEntries(ctx, opts, fn)
}

// Query streams the history of every block, in any state, whose cidr lies
// within cidr (host bits are masked: a query is a lookup, not a block).
func (s *Service) Query(ctx context.Context, cidr string, fn func(Block) error) error {
	p, err := ParseNetwork(cidr)
	if err != nil {
		return err
	}
	return s.ListBlocks(ctx, ListOptions{Filter: FilterAll, Within: p}, fn)
}

// AddWhitelist stores a whitelist entry and updates the index. who is
// the actor's name.
func (s *Service) AddWhitelist(ctx context.Context, cidr, why string) (WhitelistEntry, error) {
	var fes FieldErrors
	p, err := ParseCIDR(cidr)
	fes = fes.add(err)
	fes = fes.add(checkWhy(why))
	if err := fes.err(); err != nil {
		s.events.Refused(ctx, "whitelist_add", err)
		return WhitelistEntry{}, err
	}
	e, err := s.store.AddWhitelist(ctx, WhitelistEntry{CIDR: p, Who: ActorFrom(ctx).Name, Why: why, Added: s.Now()})
	if err != nil {
		return WhitelistEntry{}, fmt.Errorf("add whitelist %s: %w", p, err)
	}
	s.events.WhitelistAdded(ctx, e)
	return e, s.ReloadLists(ctx)
}

// ListWhitelist returns every stored whitelist entry.
func (s *Service) ListWhitelist(ctx context.Context) ([]WhitelistEntry, error) {
	return s.store.ListWhitelist(ctx)
}

// GetWhitelist returns one whitelist entry.
func (s *Service) GetWhitelist(ctx context.Context, id int64) (WhitelistEntry, error) {
	return s.store.GetWhitelist(ctx, id)
}

// DeleteWhitelist removes a stored entry (protected prefixes are not
// stored and so cannot be deleted).
func (s *Service) DeleteWhitelist(ctx context.Context, id int64) error {
	e, err := s.store.GetWhitelist(ctx, id)
	if err != nil {
		return err
	}
	if err := s.store.DeleteWhitelist(ctx, id); err != nil {
		return err
	}
	s.events.WhitelistDeleted(ctx, e)
	return s.ReloadLists(ctx)
}

// AddSourceBlacklist refuses all future blocks from source. who is the
// actor's name.
func (s *Service) AddSourceBlacklist(ctx context.Context, source, why string) (SourceBlacklistEntry, error) {
	var fes FieldErrors
	fes = fes.add(checkSource(source))
	fes = fes.add(checkWhy(why))
	if err := fes.err(); err != nil {
		s.events.Refused(ctx, "source_blacklist_add", err)
		return SourceBlacklistEntry{}, err
	}
	e, err := s.store.AddSourceBlacklist(ctx, SourceBlacklistEntry{Source: source, Who: ActorFrom(ctx).Name, Why: why, Added: s.Now()})
	if err != nil {
		return SourceBlacklistEntry{}, err
	}
	s.events.SourceBlacklistAdded(ctx, e)
	return e, s.ReloadLists(ctx)
}

// ListSourceBlacklist returns the blacklisted sources.
func (s *Service) ListSourceBlacklist(ctx context.Context) ([]SourceBlacklistEntry, error) {
	return s.store.ListSourceBlacklist(ctx)
}

// DeleteSourceBlacklist removes a blacklisted source.
func (s *Service) DeleteSourceBlacklist(ctx context.Context, id int64) error {
	var found *SourceBlacklistEntry
	if bl := s.blacklist.Load(); bl != nil {
		for _, e := range *bl {
			if e.ID == id {
				found = &e
				break
			}
		}
	}
	if err := s.store.DeleteSourceBlacklist(ctx, id); err != nil {
		return err
	}
	e := SourceBlacklistEntry{ID: id}
	if found != nil {
		e = *found
	}
	s.events.SourceBlacklistDeleted(ctx, e)
	return s.ReloadLists(ctx)
}

// Prune deletes closed history that ended more than olderThan ago.
func (s *Service) Prune(ctx context.Context, olderThan time.Duration) (PruneResult, error) {
	if olderThan <= 0 {
		return PruneResult{}, fmt.Errorf("prune: age must be positive, got %s", olderThan)
	}
	now := s.Now()
	cutoff := now.Add(-olderThan)
	res, err := s.store.Prune(ctx, cutoff, now)
	if err != nil {
		return res, err
	}
	if res.Blocks > 0 || res.Entries > 0 {
		s.events.Pruned(ctx, cutoff, res)
	}
	return res, nil
}

// MaxIdentLength bounds idents so they stay sane in logs and URLs.
const MaxIdentLength = 100

func checkIdent(ident string) error {
	if ident == "" {
		return fieldErr("ident", ErrFieldRequired, "ident is required")
	}
	if len(ident) > MaxIdentLength {
		return fieldErr("ident", ErrFieldTooLong, "ident is longer than %d characters", MaxIdentLength)
	}
	return CheckText("ident", ident)
}

func dedupe(ids []int64) []int64 {
	out := slices.Clone(ids)
	slices.Sort(out)
	return slices.Compact(out)
}
