package audit

import (
	"context"
	"errors"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/bhrd/bhrd/pkg/queue"
)

// More event names, as documented in docs/AUDIT.md.
const (
	EventHistoryPruned  = "history_pruned"
	EventIdentForgotten = "ident_forgotten"
	EventRequestRefused = "request_refused"
)

// Events is the queue.Events that writes l's lines: every change the
// Service commits and every request it refuses, whichever front end
// asked, with the actor the context carries. Lines of one call are
// written with one write.
func (l *Logger) Events() queue.Events { return serviceEvents{l} }

type serviceEvents struct{ l *Logger }

var _ queue.Events = serviceEvents{}

func (e serviceEvents) BlocksStored(ctx context.Context, res []queue.BlockResult) {
	a, b := queue.ActorFrom(ctx), e.l.Batch()
	for _, r := range res {
		b.Block(a, r)
	}
	b.Flush()
}

func (e serviceEvents) BlocksRejected(ctx context.Context, reqs []queue.BlockRequest, errs []error) {
	a, b := queue.ActorFrom(ctx), e.l.Batch()
	for i, err := range errs {
		if err != nil {
			b.BlockRejected(a, reqs[i].CIDR, reqs[i].Source, reqs[i].Why, Reason(err))
		}
	}
	b.Flush()
}

func (e serviceEvents) UnblockedNow(ctx context.Context, blk queue.Block) {
	e.l.UnblockNow(queue.ActorFrom(ctx), blk)
}

func (e serviceEvents) SetBlocked(ctx context.Context, ident string, items []queue.QueueItem) {
	a, b := queue.ActorFrom(ctx), e.l.Batch()
	for _, it := range items {
		b.SetBlocked(a, ident, it.ID, it.CIDR)
	}
	b.Flush()
}

func (e serviceEvents) SetUnblocked(ctx context.Context, entries []queue.UnblockItem) {
	a, b := queue.ActorFrom(ctx), e.l.Batch()
	for _, it := range entries {
		b.SetUnblocked(a, it.Ident, it.ID, it.BlockID, it.CIDR)
	}
	b.Flush()
}

func (e serviceEvents) WhitelistAdded(ctx context.Context, w queue.WhitelistEntry) {
	e.l.WhitelistAdded(queue.ActorFrom(ctx), w)
}

func (e serviceEvents) WhitelistDeleted(ctx context.Context, w queue.WhitelistEntry) {
	e.l.WhitelistDeleted(queue.ActorFrom(ctx), w)
}

func (e serviceEvents) SourceBlacklistAdded(ctx context.Context, s queue.SourceBlacklistEntry) {
	e.l.SourceBlacklistAdded(queue.ActorFrom(ctx), s)
}

func (e serviceEvents) SourceBlacklistDeleted(ctx context.Context, s queue.SourceBlacklistEntry) {
	e.l.SourceBlacklistDeleted(queue.ActorFrom(ctx), s)
}

func (e serviceEvents) Pruned(ctx context.Context, cutoff time.Time, res queue.PruneResult) {
	e.l.emit(EventHistoryPruned, queue.ActorFrom(ctx), zap.String("ended_before", ts(cutoff)),
		zap.Int64("blocks", res.Blocks), zap.Int64("entries", res.Entries))
}

func (e serviceEvents) IdentForgotten(ctx context.Context, ident string) {
	e.l.emit(EventIdentForgotten, queue.ActorFrom(ctx), zap.String("ident", ident))
}

func (e serviceEvents) Refused(ctx context.Context, op string, err error) {
	e.l.emit(EventRequestRefused, queue.ActorFrom(ctx), zap.String("op", op), zap.String("reason", Reason(err)))
}

// Reason is the message a refused request got, without the prefixes
// error wrapping adds.
func Reason(err error) string {
	var fes queue.FieldErrors
	var fe *queue.FieldError
	var pe *queue.PolicyError
	switch {
	case errors.As(err, &fes):
		parts := make([]string, len(fes))
		for i, f := range fes {
			parts[i] = f.Field + ": " + f.Message
		}
		return strings.Join(parts, "; ")
	case errors.As(err, &pe):
		return pe.Message
	case errors.As(err, &fe):
		return fe.Field + ": " + fe.Message
	}
	return err.Error()
}
