package pgstore

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/bhrd/bhrd/pkg/queue"
)

// TestIdentOwnership: two stores on one database are two processes. An
// ident locked by one is waited for by the other, which learns the
// holder's name; while held, reports for it from anyone but its own
// enforcer are refused by both stores; the holder's end (release, or its
// session killed) hands it over.
func TestIdentOwnership(t *testing.T) {
	ctx := context.Background()
	url := pgtestDB(t)
	a, b := openStoreAt(t, url), openStoreAt(t, url)
	blk := insert(t, a, at(0), newBlock("192.0.2.1/32", at(0), at(3600)))[0]

	la, err := a.LockIdent(ctx, "bgp1", "alpha", func(string) { t.Error("alpha had to wait for a free ident") })
	if err != nil {
		t.Fatal(err)
	}

	// beta waits, naming alpha.
	type res struct {
		l   queue.IdentLease
		err error
	}
	held := make(chan string, 1)
	got := make(chan res, 1)
	go func() {
		l, err := b.LockIdent(ctx, "bgp1", "beta", func(h string) { held <- h })
		got <- res{l, err}
	}()
	select {
	case h := <-held:
		if h != "alpha" {
			t.Errorf("holder = %q, want alpha", h)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("beta was not told the ident is held")
	}
	select {
	case r := <-got:
		t.Fatalf("beta got the held ident: %v", r.err)
	case <-time.After(300 * time.Millisecond):
	}

	// Reports for the held ident by anyone but its enforcer: refused by
	// either store. Its own enforcer's go through; another ident's too.
	user := queue.WithActor(ctx, queue.Actor{Name: "remote"})
	own := queue.WithActor(ctx, queue.EnforcerActor("bgp1"))
	var re *queue.ReservedIdentError
	for name, s := range map[string]*Store{"holder's store": a, "other store": b} {
		if _, err := s.SetBlocked(user, "bgp1", []int64{blk.ID}, at(1)); !errors.As(err, &re) || re.Ident != "bgp1" {
			t.Errorf("%s: set_blocked for an owned ident by a user = %v, want ReservedIdentError", name, err)
		}
		if err := s.ForgetIdent(user, "bgp1"); !errors.As(err, &re) {
			t.Errorf("%s: forgetting an owned ident = %v, want ReservedIdentError", name, err)
		}
	}
	if _, err := b.SetBlocked(own, "bgp1", []int64{blk.ID}, at(1)); err != nil {
		t.Fatalf("the ident's own enforcer: %v", err)
	}
	if _, err := b.SetBlocked(user, "remote1", []int64{blk.ID}, at(1)); err != nil {
		t.Fatalf("another ident: %v", err)
	}
	// Entries: set_unblocked of bgp1's entry by a user is refused, by its
	// enforcer accepted.
	if _, err := a.UnblockNow(ctx, blk.CIDR, at(2), "admin", "x"); err != nil {
		t.Fatal(err)
	}
	uq, err := a.UnblockQueue(ctx, "bgp1", at(3), 10)
	if err != nil || len(uq) != 1 {
		t.Fatalf("unblock queue = %v, %v", uq, err)
	}
	if _, err := b.SetUnblocked(user, []int64{uq[0].ID}, at(3), nil); !errors.As(err, &re) || re.Ident != "bgp1" {
		t.Errorf("set_unblocked of an owned ident's entry by a user = %v, want ReservedIdentError", err)
	}

	// alpha's session is killed (as when its host dies): beta gets the
	// ident, and alpha's lease says it is lost.
	if _, err := a.pool.Exec(ctx, `SELECT pg_terminate_backend($1)`, int64(la.(*lease).pid)); err != nil {
		t.Fatal(err)
	}
	var lb queue.IdentLease
	select {
	case r := <-got:
		if r.err != nil {
			t.Fatal(r.err)
		}
		lb = r.l
	case <-time.After(10 * time.Second):
		t.Fatal("beta did not take over the ident of a killed owner")
	}
	select {
	case <-la.Lost():
	case <-time.After(3 * ownerPing):
		t.Fatal("alpha's lease did not report the lost session")
	}
	la.Release()
	// The ident's enforcer (now beta's) closes the entry.
	if _, err := a.SetUnblocked(queue.WithActor(ctx, queue.EnforcerActor("bgp1")), []int64{uq[0].ID}, at(4), nil); err != nil {
		t.Fatalf("the owner's enforcer closing its entry: %v", err)
	}
	lb.Release()
	// Free again: a user's report goes through.
	if _, err := a.SetBlocked(user, "bgp1", []int64{blk.ID}, at(5)); err != nil {
		t.Fatalf("set_blocked once nobody owns the ident: %v", err)
	}
	if err := a.RegisterIdent(ctx, "bgp1", at(5), 0); err != nil {
		t.Fatal(err)
	}
	if err := a.ForgetIdent(user, "bgp1"); err != nil {
		t.Fatalf("forget once nobody owns the ident: %v", err)
	}
}

// A released ident is free the moment Release returns (the server frees
// a closed session's locks only once its backend has exited): a user's
// report right after it is never refused as reserved.
func TestReleasedIdentFreeAtOnce(t *testing.T) {
	ctx := context.Background()
	url := pgtestDB(t)
	a, b := openStoreAt(t, url), openStoreAt(t, url)
	blk := insert(t, a, at(0), newBlock("192.0.2.1/32", at(0), at(3600)))[0]
	user := queue.WithActor(ctx, queue.Actor{Name: "remote"})
	for i := range 20 {
		l, err := a.LockIdent(ctx, "bgp1", "alpha", nil)
		if err != nil {
			t.Fatal(err)
		}
		l.Release()
		if _, err := b.SetBlocked(user, "bgp1", []int64{blk.ID}, at(1)); err != nil {
			t.Fatalf("round %d: set_blocked right after the release: %v", i, err)
		}
	}
}
