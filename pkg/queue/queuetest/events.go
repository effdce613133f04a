package queuetest

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/bhrd/bhrd/pkg/queue"
)

// Recorder is a queue.Events that keeps one line per event: the actor's
// name, the event and what it names, for tests to compare.
type Recorder struct {
	mu    sync.Mutex
	lines []string
}

var _ queue.Events = (*Recorder)(nil)

func (r *Recorder) add(ctx context.Context, format string, args ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lines = append(r.lines, queue.ActorFrom(ctx).Name+" "+fmt.Sprintf(format, args...))
}

// Take returns the lines recorded since the last Take.
func (r *Recorder) Take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.lines
	r.lines = nil
	return out
}

func (r *Recorder) BlocksStored(ctx context.Context, res []queue.BlockResult) {
	for _, b := range res {
		r.add(ctx, "block_%s %s", b.Outcome, b.Block.CIDR)
	}
}

func (r *Recorder) BlocksRejected(ctx context.Context, reqs []queue.BlockRequest, errs []error) {
	for i, err := range errs {
		if err != nil {
			r.add(ctx, "block_rejected %s: %v", reqs[i].CIDR, err)
		}
	}
}

func (r *Recorder) UnblockedNow(ctx context.Context, b queue.Block) {
	r.add(ctx, "unblock_now %s", b.CIDR)
}

func (r *Recorder) SetBlocked(ctx context.Context, ident string, items []queue.QueueItem) {
	for _, it := range items {
		r.add(ctx, "set_blocked %s %s", ident, it.CIDR)
	}
}

func (r *Recorder) SetUnblocked(ctx context.Context, entries []queue.UnblockItem) {
	for _, e := range entries {
		r.add(ctx, "set_unblocked %s %s", e.Ident, e.CIDR)
	}
}

func (r *Recorder) WhitelistAdded(ctx context.Context, e queue.WhitelistEntry) {
	r.add(ctx, "whitelist_added %s", e.CIDR)
}

func (r *Recorder) WhitelistDeleted(ctx context.Context, e queue.WhitelistEntry) {
	r.add(ctx, "whitelist_deleted %s", e.CIDR)
}

func (r *Recorder) SourceBlacklistAdded(ctx context.Context, e queue.SourceBlacklistEntry) {
	r.add(ctx, "source_blacklist_added %s", e.Source)
}

func (r *Recorder) SourceBlacklistDeleted(ctx context.Context, e queue.SourceBlacklistEntry) {
	r.add(ctx, "source_blacklist_deleted %s", e.Source)
}

func (r *Recorder) Pruned(ctx context.Context, _ time.Time, res queue.PruneResult) {
	r.add(ctx, "pruned %d %d", res.Blocks, res.Entries)
}

func (r *Recorder) IdentForgotten(ctx context.Context, ident string) {
	r.add(ctx, "ident_forgotten %s", ident)
}

func (r *Recorder) Refused(ctx context.Context, op string, _ error) {
	r.add(ctx, "refused %s", op)
}
