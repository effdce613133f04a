package pgstore

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/bhrd/bhrd/pkg/auth"
	"github.com/bhrd/bhrd/pkg/queue"
)

func TestListenChangesAcrossStores(t *testing.T) {
	ctx := context.Background()
	url := pgtestDB(t)
	listenErrs := make(chan error, 10)
	a, err := Open(ctx, url, WithListenErrors(func(err error) { listenErrs <- err }))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if _, err := a.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	b := openStoreAt(t, url) // another pool: "another process"

	events := make(chan queue.ChangeKind, 100)
	lctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- a.ListenChanges(lctx, func(k queue.ChangeKind) { events <- k })
	}()
	defer func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("ListenChanges returned %v, want context.Canceled", err)
		}
	}()
	next := func(what string) queue.ChangeKind {
		t.Helper()
		select {
		case k := <-events:
			return k
		case <-time.After(20 * time.Second):
			t.Fatalf("no notification for %s", what)
			return ""
		}
	}
	expect := func(what string, want ...queue.ChangeKind) {
		t.Helper()
		for _, w := range want {
			if got := next(what); got != w {
				t.Fatalf("%s: got %q, want %q", what, got, w)
			}
		}
	}
	// Nothing tells when LISTEN is in place but the server: poll for it.
	deadline := time.Now().Add(20 * time.Second)
	for countRows(t, b, `SELECT count(*) FROM pg_stat_activity WHERE application_name = $1
		AND datname = current_database() AND query = 'LISTEN `+Channel+`' AND state = 'idle'`, listenAppName) != 1 {
		if time.Now().After(deadline) {
			t.Fatal("the listener never issued LISTEN")
		}
		time.Sleep(10 * time.Millisecond)
	}

	// The listening store's own writes are not echoed back to it: the next
	// notification is the other store's.
	insert(t, a, at(0), newBlock("192.0.2.200/32", at(0), at(100)))
	own, err := a.AddWhitelist(ctx, queue.WhitelistEntry{CIDR: pfx("10.9.0.0/16"), Added: at(0)})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.DeleteWhitelist(ctx, own.ID); err != nil {
		t.Fatal(err)
	}
	expect("the other store's delete, not our own writes", queue.ChangeWhitelist)

	blk := insert(t, b, at(0), newBlock("192.0.2.1/32", at(0), at(100)))[0]
	expect("ApplyBlocks insert", queue.ChangeBlocks)
	_, err = b.ApplyBlocks(ctx, pfxs("192.0.2.1/32"), at(1), func(map[netip.Prefix]queue.CIDRState) (queue.Plan, error) {
		return queue.Plan{Extends: []queue.Extend{{BlockID: blk.ID, UnblockAt: at(200)}}}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	expect("ApplyBlocks extend", queue.ChangeBlocks)
	setBlocked(t, b, "r1", at(2), blk.ID)
	expect("SetBlocked", queue.ChangeBlocks)
	if _, err := b.UnblockNow(ctx, blk.CIDR, at(3), "x", "y"); err != nil {
		t.Fatal(err)
	}
	expect("UnblockNow", queue.ChangeBlocks)

	// Writes that change nothing, or fail, notify nothing: the next
	// notification (they are delivered in commit order) is the whitelist's.
	_, _ = b.ApplyBlocks(ctx, pfxs("192.0.2.2/32"), at(4), func(map[netip.Prefix]queue.CIDRState) (queue.Plan, error) {
		return queue.Plan{Inserts: []queue.Block{newBlock("192.0.2.2/32", at(4), at(9))}}, errors.New("no")
	})
	_, _ = b.ApplyBlocks(ctx, pfxs("192.0.2.2/32"), at(4), func(map[netip.Prefix]queue.CIDRState) (queue.Plan, error) {
		return queue.Plan{}, nil
	})
	if _, err := b.UnblockNow(ctx, blk.CIDR, at(5), "x", "y"); !errors.Is(err, queue.ErrNotBlocked) {
		t.Fatal(err)
	}
	setBlocked(t, b, "r1", at(6), blk.ID) // already there
	w, err := b.AddWhitelist(ctx, queue.WhitelistEntry{CIDR: pfx("10.0.0.0/8"), Added: at(7)})
	if err != nil {
		t.Fatal(err)
	}
	expect("AddWhitelist after no-ops", queue.ChangeWhitelist)
	if err := b.DeleteWhitelist(ctx, w.ID); err != nil {
		t.Fatal(err)
	}
	expect("DeleteWhitelist", queue.ChangeWhitelist)
	sb, err := b.AddSourceBlacklist(ctx, queue.SourceBlacklistEntry{Source: "s", Added: at(8)})
	if err != nil {
		t.Fatal(err)
	}
	expect("AddSourceBlacklist", queue.ChangeWhitelist)
	if err := b.DeleteSourceBlacklist(ctx, sb.ID); err != nil {
		t.Fatal(err)
	}
	expect("DeleteSourceBlacklist", queue.ChangeWhitelist)
	// A user or token change: other processes must forget cached
	// authentications.
	u, err := b.CreateUser(ctx, auth.User{Username: "listen"})
	if err != nil {
		t.Fatal(err)
	}
	u.Disabled = true
	if err := b.UpdateUser(ctx, u); err != nil {
		t.Fatal(err)
	}
	expect("UpdateUser", queue.ChangeAuth)
	tok, err := b.CreateToken(ctx, auth.Token{UserID: u.ID, Name: "t", Hash: "h-listen", Created: at(8)})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.RevokeToken(ctx, tok.ID, at(9)); err != nil {
		t.Fatal(err)
	}
	expect("RevokeToken", queue.ChangeAuth)
	if err := b.RevokeToken(ctx, tok.ID+100, at(9)); !errors.Is(err, auth.ErrNotFound) {
		t.Fatalf("revoke of an unknown token: %v", err)
	}

	// Kill the listening session: the listener reconnects, announces that
	// anything may have changed, and keeps delivering.
	if n := countRows(t, b, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE application_name = $1 AND datname = current_database()`, listenAppName); n != 1 {
		t.Fatalf("terminated %d listening sessions, want 1", n)
	}
	expect("reconnect", queue.ChangeBlocks, queue.ChangeWhitelist, queue.ChangeAuth)
	select {
	case err := <-listenErrs:
		if err == nil {
			t.Fatal("nil listen error reported")
		}
	default:
		t.Fatal("the dropped connection was not reported to WithListenErrors")
	}
	insert(t, b, at(10), newBlock("192.0.2.3/32", at(10), at(100)))
	expect("ApplyBlocks after reconnect", queue.ChangeBlocks)
}
