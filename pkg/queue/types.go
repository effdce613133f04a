package queue

import (
	"net/netip"
	"time"
)

// Block is a request to blackhole one CIDR. Blocks are never deleted by the
// normal lifecycle: they are history (only Prune removes closed history).
type Block struct {
	ID     int64
	CIDR   netip.Prefix // always masked (no host bits)
	Who    string
	Source string
	Why    string
	Added  time.Time
	// UnblockAt is when the block ends; the zero time means indefinite.
	UnblockAt     time.Time
	SkipWhitelist bool
	ForcedUnblock bool
	UnblockWho    string
	UnblockWhy    string
}

// Indefinite reports whether the block never expires on its own.
func (b Block) Indefinite() bool { return b.UnblockAt.IsZero() }

// ExpectedAt reports whether the block should be enforced at now: not
// forced unblocked and its unblock_at is indefinite or in the future.
func (b Block) ExpectedAt(now time.Time) bool {
	return !b.ForcedUnblock && (b.UnblockAt.IsZero() || b.UnblockAt.After(now))
}

// Entry records one ident enforcing one block. Unique per (block, ident).
type Entry struct {
	ID      int64
	BlockID int64
	CIDR    netip.Prefix // the block's cidr, for convenience
	Ident   string
	Added   time.Time
	// Removed is when the ident reported the block removed; zero while installed.
	Removed time.Time
	// UnblockAt is a copy of the block's unblock_at (zero = indefinite).
	UnblockAt time.Time
	// Source and BlockAdded are the block's, for convenience (an
	// enforcer's selection and rules, DNSBL answers).
	Source     string
	BlockAdded time.Time
}

// QueueItem is one block waiting in an ident's block queue.
type QueueItem struct {
	ID     int64 // block id
	CIDR   netip.Prefix
	Added  time.Time
	Source string // the block's source
	// UnblockAt is the block's end when it was queued (zero: indefinite).
	UnblockAt time.Time
}

// UnblockItem is one open entry waiting in an ident's unblock queue.
type UnblockItem struct {
	ID        int64 // entry id
	BlockID   int64
	CIDR      netip.Prefix
	Ident     string
	Added     time.Time // when the entry was added
	UnblockAt time.Time
}

// WhitelistEntry keeps a network off the routers.
type WhitelistEntry struct {
	ID    int64
	CIDR  netip.Prefix
	Who   string
	Why   string
	Added time.Time
}

// SourceBlacklistEntry rejects every block request from one source.
type SourceBlacklistEntry struct {
	ID     int64
	Source string
	Who    string
	Why    string
	Added  time.Time
}

// Stats is BHR's api/stats.
type Stats struct {
	BlockPending   int64            // expected blocks with no open entry (not current)
	UnblockPending int64            // blocks with an open entry whose unblock_at has passed
	Current        int64            // blocks with at least one open entry
	Expected       int64            // expected blocks
	Sources        map[string]int64 // expected blocks by source
}

// DayCount is how many blocks of one source were added on one UTC day.
type DayCount struct {
	Day    time.Time // midnight UTC
	Source string
	Count  int64
}

// PruneResult says how much closed history Prune removed.
type PruneResult struct {
	Blocks  int64
	Entries int64
}

// IdentInfo is what the store knows of one ident (api/idents, bhrd ident
// list).
type IdentInfo struct {
	Name     string
	Added    time.Time // first use
	LastSeen time.Time // last block-queue call, within IdentTouchEvery
	// Active: new blocks are queued for it. An ident that has not asked
	// for ident_idle_after is inactive and costs block writes nothing; it
	// catches up (Backfilling) when it asks again.
	Active      bool
	Backfilling bool
	// Queued is how many expected blocks wait in its block queue, and
	// OldestQueued when the oldest of them was added (zero if none).
	// While it backfills or is inactive, blocks not yet queued for it
	// are not counted.
	Queued       int64
	OldestQueued time.Time
	// UnblockDue is how many of its open entries are past their end
	// (its unblock queue), and OldestDue the earliest of those ends.
	UnblockDue int64
	OldestDue  time.Time
}
