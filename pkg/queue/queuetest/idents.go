package queuetest

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/bhrd/bhrd/pkg/queue"
)

// runIdents checks what an ident costs and how one that went idle
// catches up.
func runIdents(t *testing.T, newStore func(t *testing.T) queue.Store) {
	env := func(t *testing.T) *Env { return NewEnv(t, newStore, nil) }
	t.Run("IdleIdentCatchesUp", func(t *testing.T) {
		e := NewEnvWith(t, newStore, nil, queue.WithIdentIdleAfter(time.Hour), queue.WithReservedIdents("bgp1"))
		a := e.MustBlock(Req("192.0.2.1", "1000h")).Block
		eq(t, "fw1 first queue", len(e.queue("fw1")), 1)
		eq(t, "bgp1 first queue", len(e.queue("bgp1")), 1)
		if err := e.Svc.SetBlocked(e.Ctx, "fw1", []int64{a.ID}); err != nil {
			t.Fatal(err)
		}
		e.Clock.Advance(30 * time.Minute)
		n, err := e.Svc.SweepIdents(e.Ctx)
		if err != nil || n != 0 {
			t.Fatalf("sweep after 30m: %d %v", n, err)
		}
		e.Clock.Advance(31 * time.Minute)
		if n, err = e.Svc.SweepIdents(e.Ctx); err != nil || n != 1 {
			t.Fatalf("sweep after 61m: %d %v, want fw1 only (bgp1 is internal)", n, err)
		}
		b := e.MustBlock(Req("192.0.2.2", "1000h")).Block
		c := e.MustBlock(Req("192.0.2.3", "1000h")).Block
		info := identInfo(t, e)
		eq(t, "fw1 active while idle", info["fw1"].Active, false)
		eq(t, "fw1 queued while idle", info["fw1"].Queued, int64(0))
		eq(t, "bgp1 active", info["bgp1"].Active, true)
		eq(t, "bgp1 queued", info["bgp1"].Queued, int64(3))
		eq(t, "bgp1 oldest", info["bgp1"].OldestQueued.Equal(a.Added), true)
		// Back: it gets what it missed, and is active again.
		eqStrings(t, "fw1 back", queueCIDRs(e.queue("fw1")), []string{b.CIDR.String(), c.CIDR.String()})
		info = identInfo(t, e)
		eq(t, "fw1 active again", info["fw1"].Active, true)
		eq(t, "fw1 seen", info["fw1"].LastSeen.Equal(e.Svc.Now()), true)
		d := e.MustBlock(Req("192.0.2.4", "1000h")).Block
		eqStrings(t, "fw1 then", queueCIDRs(e.queue("fw1")), []string{b.CIDR.String(), c.CIDR.String(), d.CIDR.String()})
	})

	t.Run("NewIdentCatchesUpInChunks", func(t *testing.T) {
		e := env(t)
		total := queue.IdentBackfillChunk*2 + 500
		var ids []int64
		for i := 0; i < total; i += 1000 {
			var reqs []queue.BlockRequest
			for j := i; j < min(i+1000, total); j++ {
				reqs = append(reqs, Req(fmt.Sprintf("10.%d.%d.0/24", j/256, j%256), "1000h"))
			}
			res, err := e.Svc.MBlock(e.Ctx, reqs)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range res {
				ids = append(ids, r.Block.ID)
			}
		}
		// Blocks an ident reported before it ever asked are not queued.
		if err := e.Svc.SetBlocked(e.Ctx, "late", ids[:queue.IdentBackfillChunk+100]); err != nil {
			t.Fatal(err)
		}
		for _, ident := range []string{"fresh", "late"} {
			first := e.queue(ident)
			info := identInfo(t, e)[ident]
			eq(t, ident+" backfilling after its first call", info.Backfilling, true)
			if info.Queued > queue.IdentBackfillChunk {
				t.Fatalf("%s: %d queued by the first call, want at most one chunk (%d)", ident, info.Queued, queue.IdentBackfillChunk)
			}
			var got []int64
			for q := first; len(q) > 0; q = e.queue(ident) {
				for _, it := range q {
					got = append(got, it.ID)
				}
				if err := e.Svc.SetBlocked(e.Ctx, ident, queueIDs(q)); err != nil {
					t.Fatal(err)
				}
			}
			want := ids
			if ident == "late" {
				want = ids[queue.IdentBackfillChunk+100:]
			}
			if !slices.Equal(got, want) {
				t.Fatalf("%s drained %d blocks (first %v), want %d in id order", ident, len(got), got[:min(3, len(got))], len(want))
			}
			eq(t, ident+" done", identInfo(t, e)[ident].Backfilling, false)
		}
	})

	t.Run("MaxIdentsAndForget", func(t *testing.T) {
		rec := &Recorder{}
		e := NewEnvWith(t, newStore, nil, queue.WithMaxIdents(2), queue.WithEvents(rec), queue.WithReservedIdents("bgp1"))
		e.MustBlock(Req("192.0.2.1", "1h"))
		e.queue("a")
		e.queue("b")
		_, err := e.Svc.BlockQueue(e.Ctx, "c", time.Time{}, 0)
		wantErr(t, err, queue.ErrTooManyIdents, "store.max_idents")
		e.queue("a") // known idents still work at the cap
		wantErr(t, e.Svc.ForgetIdent(e.Ctx, "nobody"), queue.ErrNotFound, "")
		wantErr(t, e.Svc.ForgetIdent(e.Ctx, "bgp1"), queue.ErrReservedIdent, "")
		if err := e.Svc.ForgetIdent(e.Ctx, "a"); err != nil {
			t.Fatal(err)
		}
		eq(t, "c after a is forgotten", len(e.queue("c")), 1)
		eq(t, "a anew", func() error { _, err := e.Svc.BlockQueue(e.Ctx, "a", time.Time{}, 0); return err }() != nil, true)
		var names []string
		for _, in := range identList(t, e) {
			names = append(names, in.Name)
		}
		eqStrings(t, "idents", names, []string{"b", "c"})
		got := rec.Take()
		eqStrings(t, "events", got[1:], []string{"admin refused block_queue", "admin refused ident_forget", "admin ident_forgotten a", "admin refused block_queue"})
	})

	// Idents going idle and coming back while blocks are written: every
	// block reaches the ident exactly once.
	t.Run("IdleIdentsNeverMissABlock", func(t *testing.T) {
		e := NewEnvWith(t, newStore, nil, queue.WithIdentIdleAfter(time.Hour))
		const n = 300
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range n {
				if _, err := e.Svc.Block(e.Ctx, Req(fmt.Sprintf("198.18.%d.%d", i/256, i%256), "100000h")); err != nil {
					t.Error(err)
					return
				}
			}
		}()
		seen := map[int64]int{}
		drain := func() {
			for q := e.queue("fw1"); len(q) > 0; q = e.queue("fw1") {
				for _, it := range q {
					seen[it.ID]++
				}
				if err := e.Svc.SetBlocked(e.Ctx, "fw1", queueIDs(q)); err != nil {
					t.Fatal(err)
				}
			}
		}
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		for running := true; running; {
			select {
			case <-done:
				running = false
			default:
			}
			drain()
			e.Clock.Advance(2 * time.Hour)
			if _, err := e.Svc.SweepIdents(e.Ctx); err != nil {
				t.Fatal(err)
			}
		}
		drain()
		eq(t, "blocks seen", len(seen), n)
		for id, k := range seen {
			if k != 1 {
				t.Fatalf("block %d queued %d times", id, k)
			}
		}
	})
}

func identInfo(t *testing.T, e *Env) map[string]queue.IdentInfo {
	t.Helper()
	out := map[string]queue.IdentInfo{}
	for _, in := range identList(t, e) {
		out[in.Name] = in
	}
	return out
}

func identList(t *testing.T, e *Env) []queue.IdentInfo {
	t.Helper()
	l, err := e.Svc.ListIdents(e.Ctx)
	if err != nil {
		t.Fatal(err)
	}
	return l
}
