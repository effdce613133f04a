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
	"unicode/utf8"
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
	changed chan struct{}
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
}

// rules is a policy with its protected set indexed.
type rules struct {
	policy    Policy
	protected *prefixIndex[ProtectedPrefix]
}

func newRules(p Policy) *rules {
	prot := make([]indexed[ProtectedPrefix], 0, len(p.Protected))
	for _, pp := range p.Protected {
		prot = append(prot, indexed[ProtectedPrefix]{pp.Prefix, pp})
	}
	return &rules{policy: p, protected: newPrefixIndex(prot)}
}

// BlockResult is the block a request ended up with.
type BlockResult struct {
	Block   Block
	Outcome Outcome
}

// NewService returns a Service over store. Call Start before use.
func NewService(store Store, policy Policy, clock Clock) (*Service, error) {
	if err := policy.Validate(); err != nil {
		return nil, err
	}
	if clock == nil {
		clock = SystemClock
	}
	s := &Service{
		store:   store,
		clock:   clock,
		changed: make(chan struct{}),
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
	if l, ok := s.store.(ChangeListener); ok {
		go func() {
			_ = l.ListenChanges(ctx, func(kind ChangeKind) {
				switch kind {
				case ChangeWhitelist:
					// A failed reload keeps the previous index; the next
					// change (or restart) retries.
					_ = s.ReloadLists(ctx)
				default:
					s.notify()
				}
			})
		}()
	}
	return nil
}

// Store returns the underlying store.
func (s *Service) Store() Store { return s.store }

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

func (s *Service) notify() {
	s.mu.Lock()
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
}

// NextUnblockAt is when the next open entry expires, so an enforcer can
// sleep until then instead of scanning.
func (s *Service) NextUnblockAt(ctx context.Context) (time.Time, bool, error) {
	return s.store.NextUnblockAt(ctx, s.Now())
}

// checked is a request that passed validation.
type checked struct {
	req      BlockRequest
	cidr     netip.Prefix
	duration time.Duration // 0 with end zero = indefinite
	end      time.Time     // explicit unblock_at, zero if none
}

// validate applies the field rules and the policy to one request.
func (s *Service) validate(r BlockRequest, now time.Time) (checked, error) {
	c := checked{req: r}
	rl := s.rules.Load()
	var err error
	if c.cidr, err = ParseCIDR(r.CIDR); err != nil {
		return c, err
	}
	if utf8.RuneCountInString(r.Source) > MaxSourceLength {
		return c, fieldErr("source", ErrFieldTooLong, "Ensure this field has no more than %d characters.", MaxSourceLength)
	}
	if r.Source == "" {
		return c, fieldErr("source", ErrFieldRequired, "This field is required.")
	}
	if r.Why == "" {
		return c, fieldErr("why", ErrFieldRequired, "This field is required.")
	}
	if c.duration, err = ParseDuration(r.Duration); err != nil {
		return c, err
	}
	if r.UnblockAt != "" {
		if c.duration != 0 {
			return c, fieldErr("unblock_at", ErrConflictingEnd, "unblock_at can not be combined with a non-zero duration")
		}
		if c.end, err = ParseTime("unblock_at", r.UnblockAt); err != nil {
			return c, err
		}
		if !c.end.After(now) {
			return c, fieldErr("unblock_at", ErrPastEnd, "unblock_at %s is not in the future", c.end.Format(time.RFC3339))
		}
	}
	// The protected set is checked before anything can skip it.
	if pp, ok := rl.protected.overlap(c.cidr); ok {
		return c, policyErr(ErrProtectedAddresses, "protected: %s overlaps %s (%s)", c.cidr, pp.Prefix, pp.Reason)
	}
	if r.SkipWhitelist {
		if !r.MaySkipWhitelist {
			return c, policyErr(ErrSkipNotPermitted, "You do not have permission to use skip_whitelist.")
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
	if pp, ok := s.rules.Load().protected.overlap(cidr); ok {
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
	for i, r := range reqs {
		items[i], errs[i] = s.validate(r, now)
		bad = bad || errs[i] != nil
	}
	if bad {
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
	changed := len(inserted) > 0
	for i := range results {
		if results[i].Block.ID == 0 {
			results[i].Block.ID = idOf[results[i].Block.CIDR]
		}
		if results[i].Outcome == Extended {
			changed = true
		}
	}
	if changed {
		s.notify()
	}
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
// entries enter the unblock queues at once.
func (s *Service) UnblockNow(ctx context.Context, cidr, who, why string) (Block, error) {
	p, err := ParseCIDR(cidr)
	if err != nil {
		return Block{}, err
	}
	b, err := s.store.UnblockNow(ctx, p, s.Now(), who, why)
	if errors.Is(err, ErrNotBlocked) {
		return Block{}, fieldErr("cidr", ErrNotBlocked, "%s is not currently blocked", p)
	}
	if err != nil {
		return Block{}, fmt.Errorf("unblock %s: %w", p, err)
	}
	s.notify()
	return b, nil
}

// BlockQueue returns at most limit (capped at QueueLimit) expected blocks
// that ident has not yet blocked, oldest first.
func (s *Service) BlockQueue(ctx context.Context, ident string, since time.Time, limit int) ([]QueueItem, error) {
	if err := checkIdent(ident); err != nil {
		return nil, err
	}
	if limit <= 0 || limit > QueueLimit {
		limit = QueueLimit
	}
	return s.store.BlockQueue(ctx, ident, s.Now(), since, limit)
}

// SetBlocked records that ident has installed the given blocks.
func (s *Service) SetBlocked(ctx context.Context, ident string, blockIDs []int64) error {
	if err := checkIdent(ident); err != nil {
		return err
	}
	if len(blockIDs) == 0 {
		return nil
	}
	if err := s.store.SetBlocked(ctx, ident, dedupe(blockIDs), s.Now()); err != nil {
		return err
	}
	return nil
}

// UnblockQueue returns at most limit (capped at QueueLimit) open entries
// of ident whose end has passed, by unblock_at.
func (s *Service) UnblockQueue(ctx context.Context, ident string, limit int) ([]UnblockItem, error) {
	if err := checkIdent(ident); err != nil {
		return nil, err
	}
	if limit <= 0 || limit > QueueLimit {
		limit = QueueLimit
	}
	return s.store.UnblockQueue(ctx, ident, s.Now(), limit)
}

// SetUnblocked records that the given entries were removed.
func (s *Service) SetUnblocked(ctx context.Context, entryIDs []int64) error {
	if len(entryIDs) == 0 {
		return nil
	}
	return s.store.SetUnblocked(ctx, dedupe(entryIDs), s.Now())
}

// GetBlock returns one block.
func (s *Service) GetBlock(ctx context.Context, id int64) (Block, error) {
	return s.store.GetBlock(ctx, id)
}

// BlockCIDRs returns the cidr of each given block that exists.
func (s *Service) BlockCIDRs(ctx context.Context, ids []int64) (map[int64]netip.Prefix, error) {
	return s.store.BlockCIDRs(ctx, ids)
}

// ListBlocks streams blocks; opts.Now defaults to the service clock.
func (s *Service) ListBlocks(ctx context.Context, opts ListOptions, fn func(Block) error) error {
	if opts.Now.IsZero() {
		opts.Now = s.Now()
	}
	return s.store.ListBlocks(ctx, opts, fn)
}

// ListEntries streams entries.
func (s *Service) ListEntries(ctx context.Context, opts EntryListOptions, fn func(Entry) error) error {
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

// Stats counts blocks by state.
func (s *Service) Stats(ctx context.Context) (Stats, error) {
	return s.store.Stats(ctx, s.Now())
}

// AddWhitelist stores a whitelist entry and updates the index.
func (s *Service) AddWhitelist(ctx context.Context, cidr, who, why string) (WhitelistEntry, error) {
	p, err := ParseCIDR(cidr)
	if err != nil {
		return WhitelistEntry{}, err
	}
	e, err := s.store.AddWhitelist(ctx, WhitelistEntry{CIDR: p, Who: who, Why: why, Added: s.Now()})
	if err != nil {
		return WhitelistEntry{}, fmt.Errorf("add whitelist %s: %w", p, err)
	}
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
	if err := s.store.DeleteWhitelist(ctx, id); err != nil {
		return err
	}
	return s.ReloadLists(ctx)
}

// AddSourceBlacklist refuses all future blocks from source.
func (s *Service) AddSourceBlacklist(ctx context.Context, source, who, why string) (SourceBlacklistEntry, error) {
	if source == "" {
		return SourceBlacklistEntry{}, fieldErr("source", ErrFieldRequired, "This field is required.")
	}
	if utf8.RuneCountInString(source) > MaxSourceLength {
		return SourceBlacklistEntry{}, fieldErr("source", ErrFieldTooLong, "Ensure this field has no more than %d characters.", MaxSourceLength)
	}
	e, err := s.store.AddSourceBlacklist(ctx, SourceBlacklistEntry{Source: source, Who: who, Why: why, Added: s.Now()})
	if err != nil {
		return SourceBlacklistEntry{}, err
	}
	return e, s.ReloadLists(ctx)
}

// ListSourceBlacklist returns the blacklisted sources.
func (s *Service) ListSourceBlacklist(ctx context.Context) ([]SourceBlacklistEntry, error) {
	return s.store.ListSourceBlacklist(ctx)
}

// DeleteSourceBlacklist removes a blacklisted source.
func (s *Service) DeleteSourceBlacklist(ctx context.Context, id int64) error {
	if err := s.store.DeleteSourceBlacklist(ctx, id); err != nil {
		return err
	}
	return s.ReloadLists(ctx)
}

// Prune deletes closed history that ended more than olderThan ago.
func (s *Service) Prune(ctx context.Context, olderThan time.Duration) (PruneResult, error) {
	if olderThan <= 0 {
		return PruneResult{}, fmt.Errorf("prune: age must be positive, got %s", olderThan)
	}
	now := s.Now()
	return s.store.Prune(ctx, now.Add(-olderThan), now)
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
	return nil
}

func dedupe(ids []int64) []int64 {
	out := slices.Clone(ids)
	slices.Sort(out)
	return slices.Compact(out)
}
