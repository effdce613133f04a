package queue

import (
	"context"
	"time"
)

// Actor is who asks the Service for a change, and through what: an API
// user (with the token it used), an internal enforcer, a local command.
// It travels in the context (WithActor) so that every front end hands it
// over the same way and the Service reports it with every event.
type Actor struct {
	// Name is the user name, "enforcer:<ident>", "cli:<os user>" or
	// "system"; "anonymous" when nobody authenticated.
	Name       string
	TokenID    int64 // 0 when no token was used
	RemoteAddr string
	RequestID  string

	// enforcer is the ident of the internal enforcer acting, set only by
	// EnforcerActor: no front end can claim an internal ident by name.
	enforcer string
}

// EnforcerActor is the actor of the internal enforcer of ident: the only
// actor allowed to report for a reserved ident.
func EnforcerActor(ident string) Actor {
	return Actor{Name: "enforcer:" + ident, enforcer: ident}
}

// EnforcerIdent is the ident of the internal enforcer acting, "" for any
// other actor.
func (a Actor) EnforcerIdent() string { return a.enforcer }

type actorKey struct{}

// WithActor returns ctx carrying a.
func WithActor(ctx context.Context, a Actor) context.Context {
	return context.WithValue(ctx, actorKey{}, a)
}

// ActorFrom is the actor ctx carries; "anonymous" when none.
func ActorFrom(ctx context.Context) Actor {
	if a, ok := ctx.Value(actorKey{}).(Actor); ok {
		return a
	}
	return Actor{Name: "anonymous"}
}

// Events receives every change the Service has committed, and every
// request it refused, with the actor in ctx (ActorFrom). pkg/audit
// implements it. Calls happen after the commit and before the Service
// returns, so a caller that answers after the call answers after the
// line is written. Implementations must not call back into the Service.
type Events interface {
	// BlocksStored reports the accepted requests of one block or mblock
	// call, in request order: created, extended or duplicate.
	BlocksStored(ctx context.Context, results []BlockResult)
	// BlocksRejected reports the refused requests of one call: errs is as
	// long as reqs, nil for an item that was valid (refused only with its
	// batch, and not reported).
	BlocksRejected(ctx context.Context, reqs []BlockRequest, errs []error)
	// UnblockedNow reports a forced unblock.
	UnblockedNow(ctx context.Context, b Block)
	// SetBlocked reports the entries ident's report created (blocks it
	// had already reported are left out).
	SetBlocked(ctx context.Context, ident string, blocks []QueueItem)
	// SetUnblocked reports the entries a report closed (entries already
	// closed are left out).
	SetUnblocked(ctx context.Context, entries []UnblockItem)
	WhitelistAdded(ctx context.Context, e WhitelistEntry)
	WhitelistDeleted(ctx context.Context, e WhitelistEntry)
	SourceBlacklistAdded(ctx context.Context, e SourceBlacklistEntry)
	SourceBlacklistDeleted(ctx context.Context, e SourceBlacklistEntry)
	// Pruned reports closed history deleted, ended before cutoff.
	Pruned(ctx context.Context, cutoff time.Time, res PruneResult)
	// IdentForgotten reports an ident taken off the store's list.
	IdentForgotten(ctx context.Context, ident string)
	// Refused reports a request other than a block that the Service
	// refused: op names it (unblock_now, set_blocked, set_unblocked,
	// block_queue, unblock_queue, ...), err says why.
	Refused(ctx context.Context, op string, err error)
}

// noEvents discards events.
type noEvents struct{}

func (noEvents) BlocksStored(context.Context, []BlockResult)                {}
func (noEvents) BlocksRejected(context.Context, []BlockRequest, []error)    {}
func (noEvents) UnblockedNow(context.Context, Block)                        {}
func (noEvents) SetBlocked(context.Context, string, []QueueItem)            {}
func (noEvents) SetUnblocked(context.Context, []UnblockItem)                {}
func (noEvents) WhitelistAdded(context.Context, WhitelistEntry)             {}
func (noEvents) WhitelistDeleted(context.Context, WhitelistEntry)           {}
func (noEvents) SourceBlacklistAdded(context.Context, SourceBlacklistEntry) {}
func (noEvents) SourceBlacklistDeleted(context.Context, SourceBlacklistEntry) {
}
func (noEvents) Pruned(context.Context, time.Time, PruneResult) {}
func (noEvents) IdentForgotten(context.Context, string)         {}
func (noEvents) Refused(context.Context, string, error)         {}
