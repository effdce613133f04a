package queue

import (
	"context"
	"net/netip"
	"time"
)

// Store is the persistence the Service needs. Two implementations exist
// (PostgreSQL and embedded SQLite); both pass the conformance suite in
// pkg/queue/queuetest. A Store holds no policy: every rule about what a
// block request means lives in this package, and the Store only executes
// the plan it is handed, atomically.
//
// Every method takes the current time from its caller (never from the
// database clock) so that tests can drive expiry with an injected clock.
// Times are UTC with microsecond precision.
type Store interface {
	// ApplyBlocks runs one transaction: it locks the given cidrs (per cidr,
	// never a global lock, in a deadlock-free order), loads the state of
	// each, calls plan with it, and writes the plan it returns:
	//   - for each Plan.Inserts block: first close (removed = now) every
	//     open entry of older blocks with exactly that cidr, then insert the
	//     block and queue it for every known ident;
	//   - for each Plan.Extends item: set the block's unblock_at and the
	//     unblock_at copy of all its entries.
	// It returns the inserted blocks, with their ids, in Plan.Inserts order.
	// If plan returns an error, nothing is written and that error is
	// returned unchanged. A store may also call plan first with a guess of
	// the states (pgstore guesses that no cidr was ever blocked, and
	// checks that under the locks as it writes); only the plan of a call
	// with the states read under the locks is written, so plan must
	// depend on nothing but its states and be safe to call more than once.
	// An error from a guess's plan is not returned.
	ApplyBlocks(ctx context.Context, cidrs []netip.Prefix, now time.Time, plan PlanFunc) ([]Block, error)

	// UnblockNow force-unblocks the expected block with exactly cidr:
	// forced_unblock = true, unblock_at = now, unblock_who/why set, and the
	// unblock_at copy of its open entries set to now so they enter the
	// unblock queue at once; it is removed from every block queue. Returns
	// the updated block, or ErrNotBlocked when no expected block has
	// exactly that cidr.
	UnblockNow(ctx context.Context, cidr netip.Prefix, now time.Time, who, why string) (Block, error)
	// UnblockNowMulti does UnblockNow for every cidr (distinct) in one
	// transaction, all or nothing: when any has no expected block it
	// changes nothing and returns a *NotBlockedError naming them.
	UnblockNowMulti(ctx context.Context, cidrs []netip.Prefix, now time.Time, who, why string) ([]Block, error)

	// BlockQueue lists, oldest (lowest id) first, at most limit expected
	// blocks that have no entry for ident; if since is non-zero, only
	// blocks added after since. An ident the store does not know is
	// ErrUnknownIdent (the Service then registers it). A call marks the
	// ident seen (at most every IdentTouchEvery); an inactive ident
	// becomes active again, and the blocks it may have missed while
	// inactive, or since its registration, are queued for it a bounded
	// chunk at a time (at most IdentBackfillChunk blocks read per chunk,
	// chunks until one queues something or the backfill is done), and
	// only while fewer than QueueLimit blocks are queued for it.
	BlockQueue(ctx context.Context, ident string, now, since time.Time, limit int) ([]QueueItem, error)

	// RegisterIdent adds ident, active, seen at now, with every existing
	// block to catch up on (a bounded chunk per BlockQueue call), unless
	// the store already holds max idents (0: no limit), which is
	// ErrTooManyIdents. An ident already known is no error.
	RegisterIdent(ctx context.Context, ident string, now time.Time, max int) error

	// SweepIdents marks inactive every active ident last seen before
	// cutoff, except those in keep; from then on new blocks are not queued
	// for them. It returns how many it marked.
	SweepIdents(ctx context.Context, cutoff time.Time, keep []string) (int, error)

	// ListIdents describes every ident, by name.
	ListIdents(ctx context.Context, now time.Time) ([]IdentInfo, error)

	// ForgetIdent removes ident and its queue (its entries stay: they are
	// history). Unknown: an error wrapping ErrNotFound. If it asks again
	// it is a new ident.
	ForgetIdent(ctx context.Context, ident string) error

	// SetBlocked creates an entry (ident, block) for each block id, with
	// added = now and a copy of the block's unblock_at, atomically. A block
	// that already has an entry for ident is left as it is (idempotent).
	// Unknown ids fail the whole call with an error wrapping ErrNotFound.
	// It returns the blocks whose entry it created (id, cidr, added of
	// the block), in id order: what the audit log records. blockIDs hold
	// no repeats.
	SetBlocked(ctx context.Context, ident string, blockIDs []int64, now time.Time) ([]QueueItem, error)

	// SkipBlocks takes the given blocks out of ident's block queue
	// without creating an entry: the ident's selection does not take
	// them. Ids not queued for ident are ignored.
	SkipBlocks(ctx context.Context, ident string, blockIDs []int64) error

	// UnblockQueue lists, by unblock_at, at most limit open entries of
	// ident whose unblock_at is set and not after now.
	UnblockQueue(ctx context.Context, ident string, now time.Time, limit int) ([]UnblockItem, error)

	// SetUnblocked sets removed = now on each open entry, atomically.
	// Already removed entries are left as they are (idempotent). Unknown
	// ids fail the whole call with an error wrapping ErrNotFound; an entry
	// whose ident is in refuse fails it with a *ReservedIdentError. It returns the entries it
	// closed, in id order. entryIDs hold no repeats.
	SetUnblocked(ctx context.Context, entryIDs []int64, now time.Time, refuse []string) ([]UnblockItem, error)

	// GetBlock returns one block or an error wrapping ErrNotFound.
	GetBlock(ctx context.Context, id int64) (Block, error)

	// ListBlocks streams the blocks selected by opts to fn, in id order
	// (ascending unless opts.Descending), without holding the whole result
	// in memory. An error from fn stops the listing and is returned.
	ListBlocks(ctx context.Context, opts ListOptions, fn func(Block) error) error

	// ListEntries streams entries selected by opts to fn in id order.
	ListEntries(ctx context.Context, opts EntryListOptions, fn func(Entry) error) error

	// Stats counts blocks by state at now.
	Stats(ctx context.Context, now time.Time) (Stats, error)

	// AddedPerDay counts the blocks added since since, by UTC day and
	// source, in any state.
	AddedPerDay(ctx context.Context, since time.Time) ([]DayCount, error)

	// NextUnblockAt returns the earliest unblock_at after now among open
	// entries (the next moment some unblock queue grows), and false when
	// there is none.
	NextUnblockAt(ctx context.Context, now time.Time) (time.Time, bool, error)

	// Whitelist. AddWhitelist returns the stored entry with its id;
	// DeleteWhitelist returns an error wrapping ErrNotFound for an unknown id.
	AddWhitelist(ctx context.Context, e WhitelistEntry) (WhitelistEntry, error)
	ListWhitelist(ctx context.Context) ([]WhitelistEntry, error)
	GetWhitelist(ctx context.Context, id int64) (WhitelistEntry, error)
	DeleteWhitelist(ctx context.Context, id int64) error

	// Source blacklist, with the same conventions. AddSourceBlacklist
	// returns an error wrapping ErrDuplicate when the source is present.
	AddSourceBlacklist(ctx context.Context, e SourceBlacklistEntry) (SourceBlacklistEntry, error)
	ListSourceBlacklist(ctx context.Context) ([]SourceBlacklistEntry, error)
	DeleteSourceBlacklist(ctx context.Context, id int64) error

	// Prune deletes closed history: blocks that are not expected at now,
	// have no open entry, and ended (unblock_at, or their last entry's
	// removed) before cutoff, together with their entries. It also drops
	// block-queue bookkeeping for blocks that are no longer expected.
	Prune(ctx context.Context, cutoff, now time.Time) (PruneResult, error)

	// Close releases the store's resources.
	Close() error
}

// IdentTouchEvery is how stale an ident's last_seen may get before a
// block-queue call writes it again: the precision of "last seen", kept
// coarse so that a poll is a read.
const IdentTouchEvery = 10 * time.Second

// IdentBackfillChunk bounds the blocks one backfill step reads, so that
// the first call of a new ident over a large table costs a bounded
// amount of work (and of locked time).
const IdentBackfillChunk = 2000

// ChangeListener is implemented by stores shared between processes
// (PostgreSQL): fn is called whenever another process (or this one) has
// committed a change of the given kind. It blocks until ctx ends.
type ChangeListener interface {
	ListenChanges(ctx context.Context, fn func(kind ChangeKind)) error
}

// IdentLocker is implemented by stores shared between processes
// (PostgreSQL): an internal enforcer's ident has one owner among all the
// processes sharing the store. While an owner holds an ident, the store
// refuses reports for it (SetBlocked, SetUnblocked of its entries,
// ForgetIdent) with a *ReservedIdentError unless the actor of the
// context is that ident's enforcer (EnforcerActor), in every process.
type IdentLocker interface {
	// LockIdent makes this process, named instance, the owner of ident.
	// While another holds it, held is called once with the holder's
	// instance name ("" if unknown) and LockIdent waits until the
	// holder's hold ends. It returns an error when the store cannot be
	// reached or ctx ends.
	LockIdent(ctx context.Context, ident, instance string, held func(holder string)) (IdentLease, error)
}

// IdentLease is a held ident.
type IdentLease interface {
	// Lost is closed when the store can no longer vouch for the hold (its
	// session ended): another process may own the ident from then on.
	Lost() <-chan struct{}
	// Release gives the ident up.
	Release()
}

// ChangeKind says what changed, so that listeners reload only what they must.
type ChangeKind string

const (
	ChangeBlocks    ChangeKind = "blocks"    // a block or entry changed: queues may have work
	ChangeWhitelist ChangeKind = "whitelist" // whitelist or source blacklist changed
	ChangeAuth      ChangeKind = "auth"      // a user or token changed: cached authentications are stale
)

// BlockFilter selects blocks by state at ListOptions.Now.
type BlockFilter int

const (
	FilterAll            BlockFilter = iota // every block, any state
	FilterExpected                          // not forced, unblock_at null or after now
	FilterCurrent                           // at least one open entry
	FilterPending                           // expected and no open entry
	FilterPendingRemoval                    // an open entry whose unblock_at is not after now
)

// ListOptions selects and pages blocks.
type ListOptions struct {
	Filter BlockFilter
	Now    time.Time
	// Source, when set, keeps only blocks with exactly this source.
	Source string
	// Within, when valid, keeps only blocks whose cidr lies within it
	// (equal or more specific, same family).
	Within netip.Prefix
	// AddedSince, when non-zero, keeps only blocks with added >= AddedSince.
	AddedSince time.Time
	// ExcludeSources keeps only blocks whose source is none of these.
	ExcludeSources []string
	// WhyContains, when set, keeps only blocks whose why contains it,
	// ignoring case. It is a scan: bound it with MinID.
	WhyContains string
	// MinID, when non-zero, keeps only ids greater than it (a window for
	// scans such as WhyContains).
	MinID int64
	// AfterID is a cursor: keep only ids greater than it (less than it
	// when Descending). Zero means from the start.
	AfterID    int64
	Descending bool
	Offset     int
	Limit      int // 0 = no limit
}

// PageProbe is the size under which a store reads a candidate set of a
// page read whole (its range, its expected blocks, its source) rather than
// walk blocks newest first; the stores count each set up to it.
const PageProbe = 5000

// PageWindow is how many of the newest ids a page read over a large
// prefix walks before it reads the rest of the prefix by its index: a
// walk is cheap while matches are dense among recent blocks, and the
// index read costs the prefix's size, not all of history (a prefix whose
// blocks are all old would otherwise be walked past every newer block).
const PageWindow = 20_000

// IsPage tells a page read (newest first, a small limit, as the web pages
// ask) from a listing: the stores choose how to drive a page read by the
// sizes of its candidate sets, and keep one plan for listings.
func (o ListOptions) IsPage() bool {
	return o.Descending && o.Limit > 0 && o.Limit <= 1000 && o.Offset <= 0 && o.MinID == 0 &&
		(o.Filter == FilterAll || o.Filter == FilterExpected || o.Filter == FilterPending)
}

// SmallestProbe returns the driver whose candidate set is the smallest
// of those counted under PageProbe (counts[i] is drivers[i]'s set, each
// count stopped at PageProbe), or walk when none is: every set is then
// large, so matches are dense among recent blocks.
func SmallestProbe[D any](drivers []D, counts []int64, walk D) D {
	best, least := walk, int64(PageProbe)
	for i, n := range counts {
		if n < least {
			best, least = drivers[i], n
		}
	}
	return best
}

// Window splits a page read newest first at window ids below its start
// (the cursor, or newest+1 without one): recent keeps the ids above the
// split, older the ids at or below it. A store walks recent and reads
// older by an index, with the limit less what recent found. ok is false
// when the window reaches the oldest id the read asks for: walk it all.
func (o ListOptions) Window(newest, window int64) (recent, older ListOptions, ok bool) {
	top := newest + 1
	if o.AfterID != 0 {
		top = o.AfterID
	}
	floor := top - window - 1
	if !o.Descending || floor <= o.MinID || floor <= 0 {
		return o, o, false
	}
	recent, older = o, o
	recent.MinID = floor
	older.AfterID = floor + 1
	return recent, older, true
}

// EntryListOptions selects and pages entries.
type EntryListOptions struct {
	BlockID  int64  // 0 = all blocks
	Ident    string // "" = all idents
	OpenOnly bool
	AfterID  int64
	Offset   int
	Limit    int // 0 = no limit
}

// CIDRState is what the store knows about one cidr when a batch of block
// requests is planned, read under that cidr's lock.
type CIDRState struct {
	// Expected is the expected block with exactly this cidr, if any.
	Expected *Block
	// Latest is the most recently added block with exactly this cidr, in
	// any state, if any (autoscale looks at it).
	Latest *Block
}

// Plan is what ApplyBlocks writes.
type Plan struct {
	Inserts []Block // ID ignored
	Extends []Extend
}

// Extend moves an expected block's end.
type Extend struct {
	BlockID   int64
	UnblockAt time.Time // zero = indefinite
}

// PlanFunc decides, from the locked state of every cidr in a batch, what to
// write. It must not retain the map.
type PlanFunc func(states map[netip.Prefix]CIDRState) (Plan, error)
