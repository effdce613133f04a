package queuetest

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bhrd/bhrd/pkg/queue"
)

// Start is the fixed time every suite test starts at.
var Start = time.Date(2026, 11, 21, 12, 0, 0, 0, time.UTC)

// Env is one test's service over a fresh store.
type Env struct {
	T     *testing.T
	Svc   *queue.Service
	Store queue.Store
	Clock *Clock
	Ctx   context.Context
}

// NewEnv builds a Service over a fresh store with BHR's default policy,
// modified by mod when non-nil.
func NewEnv(t *testing.T, newStore func(t *testing.T) queue.Store, mod func(*queue.Policy)) *Env {
	t.Helper()
	return NewEnvWith(t, newStore, mod)
}

// NewEnvWith is NewEnv with Service options.
func NewEnvWith(t *testing.T, newStore func(t *testing.T) queue.Store, mod func(*queue.Policy), opts ...queue.Option) *Env {
	t.Helper()
	st := newStore(t)
	pol := queue.DefaultPolicy()
	if mod != nil {
		mod(&pol)
	}
	clk := NewClock(Start)
	// The suite checks the counts right after each change: on a loaded
	// machine even a small count can take long enough to be held.
	opts = append([]queue.Option{queue.WithExactStats()}, opts...)
	svc, err := queue.NewService(st, pol, clk, opts...)
	if err != nil {
		t.Fatalf("NewService: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	if err := svc.Start(ctx); err != nil {
		t.Fatalf("Start: %v", err)
	}
	// Changes are made by "admin" unless a test says otherwise.
	ctx = queue.WithActor(ctx, queue.Actor{Name: "admin"})
	return &Env{T: t, Svc: svc, Store: st, Clock: clk, Ctx: ctx}
}

// Req returns a valid request for cidr that tests then adjust.
func Req(cidr, duration string) queue.BlockRequest {
	return queue.BlockRequest{CIDR: cidr, Who: "tester", Source: "test", Why: "conformance", Duration: duration, Extend: true}
}

// MustBlock blocks or fails the test.
func (e *Env) MustBlock(r queue.BlockRequest) queue.BlockResult {
	e.T.Helper()
	res, err := e.Svc.Block(e.Ctx, r)
	if err != nil {
		e.T.Fatalf("Block(%s): %v", r.CIDR, err)
	}
	return res
}

func (e *Env) queue(ident string) []queue.QueueItem {
	e.T.Helper()
	q, err := e.Svc.BlockQueue(e.Ctx, ident, time.Time{}, 0)
	if err != nil {
		e.T.Fatalf("BlockQueue(%s): %v", ident, err)
	}
	return q
}

func (e *Env) unblockQueue(ident string) []queue.UnblockItem {
	e.T.Helper()
	q, err := e.Svc.UnblockQueue(e.Ctx, ident, 0)
	if err != nil {
		e.T.Fatalf("UnblockQueue(%s): %v", ident, err)
	}
	return q
}

func (e *Env) stats() queue.Stats {
	e.T.Helper()
	s, err := e.Svc.Stats(e.Ctx)
	if err != nil {
		e.T.Fatalf("Stats: %v", err)
	}
	return s
}

func (e *Env) list(f queue.BlockFilter) []string {
	e.T.Helper()
	var out []string
	err := e.Svc.ListBlocks(e.Ctx, queue.ListOptions{Filter: f}, func(b queue.Block) error {
		out = append(out, b.CIDR.String())
		return nil
	})
	if err != nil {
		e.T.Fatalf("ListBlocks: %v", err)
	}
	sort.Strings(out)
	return out
}

func queueCIDRs(q []queue.QueueItem) []string {
	out := make([]string, len(q))
	for i, it := range q {
		out[i] = it.CIDR.String()
	}
	return out
}

func queueIDs(q []queue.QueueItem) []int64 {
	out := make([]int64, len(q))
	for i, it := range q {
		out[i] = it.ID
	}
	return out
}

func entryIDs(q []queue.UnblockItem) []int64 {
	out := make([]int64, len(q))
	for i, it := range q {
		out[i] = it.ID
	}
	return out
}

func eq[T comparable](t *testing.T, what string, got, want T) {
	t.Helper()
	if got != want {
		t.Fatalf("%s: got %v, want %v", what, got, want)
	}
}

func eqStrings(t *testing.T, what string, got, want []string) {
	t.Helper()
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("%s: got %v, want %v", what, got, want)
	}
}

func wantErr(t *testing.T, err, sentinel error, msgPart string) {
	t.Helper()
	if !errors.Is(err, sentinel) {
		t.Fatalf("error %v: want %v", err, sentinel)
	}
	if msgPart != "" && !strings.Contains(err.Error(), msgPart) {
		t.Fatalf("error %q does not mention %q", err, msgPart)
	}
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// Run runs the whole conformance suite. newStore must return a fresh,
// migrated, empty store and arrange its cleanup.
func Run(t *testing.T, newStore func(t *testing.T) queue.Store) {
	env := func(t *testing.T) *Env { return NewEnv(t, newStore, nil) }
	runIdents(t, newStore)
	runPageReads(t, newStore)

	t.Run("HostAddressNormalised", func(t *testing.T) {
		e := env(t)
		r := e.MustBlock(Req("192.0.2.77", "300"))
		eq(t, "cidr", r.Block.CIDR.String(), "192.0.2.77/32")
		eq(t, "outcome", r.Outcome, queue.Created)
		if r.Block.ID == 0 {
			t.Fatal("block has no id")
		}
		eq(t, "added", r.Block.Added.Equal(Start), true)
		eq(t, "unblock_at", r.Block.UnblockAt.Equal(Start.Add(300*time.Second)), true)
		r6 := e.MustBlock(Req("2001:db8::1", "1h"))
		eq(t, "v6 cidr", r6.Block.CIDR.String(), "2001:db8::1/128")
		got, err := e.Svc.GetBlock(e.Ctx, r.Block.ID)
		if err != nil {
			t.Fatal(err)
		}
		eq(t, "stored cidr", got.CIDR.String(), "192.0.2.77/32")
		eq(t, "stored who", got.Who, "tester")
		eq(t, "stored source", got.Source, "test")
		eq(t, "stored why", got.Why, "conformance")
		eq(t, "stored added", got.Added.Equal(Start), true)
		eq(t, "stored unblock_at", got.UnblockAt.Equal(r.Block.UnblockAt), true)
		_, err = e.Svc.GetBlock(e.Ctx, r6.Block.ID+1000)
		wantErr(t, err, queue.ErrNotFound, "")
	})

	t.Run("ReturnedAsStored", func(t *testing.T) {
		// What Block and MBlock return is what a later read gives, to
		// the store's time precision, even when the clock has
		// nanoseconds (a store may build the answer without reading
		// the rows back).
		e := env(t)
		e.Clock.Set(Start.Add(123456789 * time.Nanosecond))
		var got []queue.Block
		got = append(got, e.MustBlock(Req("192.0.2.1", "1h")).Block)
		indef := Req("192.0.2.2", "0")
		indef.SkipWhitelist, indef.MaySkipWhitelist = true, true
		got = append(got, e.MustBlock(indef).Block)
		e.Clock.Advance(987654321 * time.Nanosecond)
		res, err := e.Svc.MBlock(e.Ctx, []queue.BlockRequest{Req("192.0.2.3", "90s"), Req("2001:db8::/64", "1d")})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range res {
			got = append(got, r.Block)
		}
		for _, b := range got {
			var stored []queue.Block
			if err := e.Svc.Query(e.Ctx, b.CIDR.String(), func(q queue.Block) error {
				stored = append(stored, q)
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			if len(stored) != 1 {
				t.Fatalf("query %s: %d blocks, want 1", b.CIDR, len(stored))
			}
			s := stored[0]
			if b.ID != s.ID || b.CIDR != s.CIDR || b.Who != s.Who || b.Source != s.Source || b.Why != s.Why ||
				!b.Added.Equal(s.Added) || !b.UnblockAt.Equal(s.UnblockAt) || b.SkipWhitelist != s.SkipWhitelist ||
				b.ForcedUnblock != s.ForcedUnblock || b.Added.Location() != time.UTC {
				t.Fatalf("returned %+v\nstored   %+v", b, s)
			}
		}
	})

	t.Run("ReportsWhatChanged", func(t *testing.T) {
		rec := &Recorder{}
		e := NewEnvWith(t, newStore, nil, queue.WithEvents(rec), queue.WithReservedIdents("bgp1"))
		user := queue.WithActor(e.Ctx, queue.Actor{Name: "alice"})
		bgp1 := queue.WithActor(e.Ctx, queue.EnforcerActor("bgp1"))
		a, err := e.Svc.Block(user, Req("192.0.2.1", "1h"))
		if err != nil {
			t.Fatal(err)
		}
		b, err := e.Svc.Block(user, Req("2001:db8::/64", "1h"))
		if err != nil {
			t.Fatal(err)
		}
		eqStrings(t, "blocks", rec.Take(), []string{"alice block_created 192.0.2.1/32", "alice block_created 2001:db8::/64"})

		// Repeats collapse; a block already reported is no change.
		if err := e.Svc.SetBlocked(user, "fw1", []int64{a.Block.ID, a.Block.ID, b.Block.ID}); err != nil {
			t.Fatal(err)
		}
		eqStrings(t, "set_blocked", rec.Take(), []string{"alice set_blocked fw1 192.0.2.1/32", "alice set_blocked fw1 2001:db8::/64"})
		if err := e.Svc.SetBlocked(user, "fw1", []int64{b.Block.ID, a.Block.ID}); err != nil {
			t.Fatal(err)
		}
		eqStrings(t, "set_blocked again", rec.Take(), nil)
		wantErr(t, e.Svc.SetBlocked(user, "fw2", []int64{a.Block.ID, 999999}), queue.ErrNotFound, "")
		eqStrings(t, "set_blocked unknown id", rec.Take(), nil)
		if q := e.queue("fw2"); len(q) != 2 {
			t.Fatalf("fw2 queue after a refused report: %v", q)
		}

		// Reserved idents: only their own enforcer reports for them.
		wantErr(t, e.Svc.SetBlocked(user, "bgp1", []int64{a.Block.ID}), queue.ErrReservedIdent, "")
		_, err = e.Svc.UnblockQueue(user, "bgp1", 0)
		wantErr(t, err, queue.ErrReservedIdent, "")
		eqStrings(t, "reserved", rec.Take(), []string{"alice refused set_blocked", "alice refused unblock_queue"})
		if err := e.Svc.SetBlocked(bgp1, "bgp1", []int64{a.Block.ID}); err != nil {
			t.Fatal(err)
		}
		eqStrings(t, "own report", rec.Take(), []string{"enforcer:bgp1 set_blocked bgp1 192.0.2.1/32"})

		if _, err := e.Svc.UnblockNow(user, "192.0.2.1", "done"); err != nil {
			t.Fatal(err)
		}
		eqStrings(t, "unblock_now", rec.Take(), []string{"alice unblock_now 192.0.2.1/32"})
		fw1 := e.unblockQueue("fw1")
		own, err := e.Svc.UnblockQueue(bgp1, "bgp1", 0)
		if err != nil || len(fw1) != 1 || len(own) != 1 {
			t.Fatalf("unblock queues fw1 %v, bgp1 %v, %v", fw1, own, err)
		}
		// A remote caller can not close bgp1's entry, not even along with
		// one of its own: nothing changes.
		wantErr(t, e.Svc.SetUnblocked(user, []int64{fw1[0].ID, own[0].ID}), queue.ErrReservedIdent, "bgp1")
		eqStrings(t, "refused set_unblocked", rec.Take(), []string{"alice refused set_unblocked"})
		if q := e.unblockQueue("fw1"); len(q) != 1 {
			t.Fatalf("fw1 unblock queue after a refused call: %v", q)
		}
		if err := e.Svc.SetUnblocked(user, []int64{fw1[0].ID, fw1[0].ID}); err != nil {
			t.Fatal(err)
		}
		if err := e.Svc.SetUnblocked(user, []int64{fw1[0].ID}); err != nil {
			t.Fatal(err)
		}
		if err := e.Svc.SetUnblocked(bgp1, []int64{own[0].ID}); err != nil {
			t.Fatal(err)
		}
		eqStrings(t, "set_unblocked", rec.Take(), []string{"alice set_unblocked fw1 192.0.2.1/32", "enforcer:bgp1 set_unblocked bgp1 192.0.2.1/32"})
		wantErr(t, e.Svc.SetUnblocked(user, []int64{999999}), queue.ErrNotFound, "")

		// Limits on the number of ids, after repeats collapse.
		if err := e.Svc.SetBlockedMax(user, "fw3", []int64{b.Block.ID, b.Block.ID, b.Block.ID}, 1); err != nil {
			t.Fatal(err)
		}
		wantErr(t, e.Svc.SetBlockedMax(user, "fw3", []int64{a.Block.ID, b.Block.ID}, 1), queue.ErrTooMany, "limit is 1")
		wantErr(t, e.Svc.SetUnblockedMax(user, []int64{1, 2}, 1), queue.ErrTooMany, "limit is 1")
		rec.Take()

		// Lists and prune.
		w, err := e.Svc.AddWhitelist(user, "198.51.100.0/24", "ours")
		if err != nil {
			t.Fatal(err)
		}
		if err := e.Svc.DeleteWhitelist(user, w.ID); err != nil {
			t.Fatal(err)
		}
		sb, err := e.Svc.AddSourceBlacklist(user, "noisy", "fp")
		if err != nil {
			t.Fatal(err)
		}
		if err := e.Svc.DeleteSourceBlacklist(user, sb.ID); err != nil {
			t.Fatal(err)
		}
		if _, err := e.Svc.Block(user, queue.BlockRequest{CIDR: "10.0.0.0/8", Source: "x", Why: "y", Duration: "1h"}); err == nil {
			t.Fatal("a /8 was accepted")
		}
		eqStrings(t, "lists", rec.Take(), []string{"alice whitelist_added 198.51.100.0/24", "alice whitelist_deleted 198.51.100.0/24",
			"alice source_blacklist_added noisy", "alice source_blacklist_deleted noisy",
			"alice block_rejected 10.0.0.0/8: Prefix length in 10.0.0.0/8 is too small"})
		e.Clock.Advance(48 * time.Hour)
		if _, err := e.Svc.Prune(e.Ctx, time.Hour); err != nil {
			t.Fatal(err)
		}
		eqStrings(t, "prune", rec.Take(), []string{"admin pruned 1 2"})
	})

	t.Run("AllFieldErrorsAtOnce", func(t *testing.T) {
		e := env(t)
		_, err := e.Svc.Block(e.Ctx, queue.BlockRequest{CIDR: "banana", Duration: "soon",
			DecodeErrors: []*queue.FieldError{queue.NewFieldError("skip_whitelist", "Must be a valid boolean.")}})
		var fes queue.FieldErrors
		if !errors.As(err, &fes) {
			t.Fatalf("err = %v, want FieldErrors", err)
		}
		var got []string
		for _, fe := range fes {
			got = append(got, fe.Field)
		}
		sort.Strings(got)
		eqStrings(t, "fields", got, []string{"cidr", "duration", "skip_whitelist", "source", "why"})
		if !errors.Is(err, queue.ErrInvalidCIDR) || !errors.Is(err, queue.ErrFieldRequired) {
			t.Fatalf("errors.Is does not see the fields' errors: %v", err)
		}
		_, err = e.Svc.UnblockNow(e.Ctx, "", "")
		if !errors.As(err, &fes) || len(fes) != 2 {
			t.Fatalf("unblock_now with nothing: %v", err)
		}
	})

	t.Run("FieldErrors", func(t *testing.T) {
		e := env(t)
		cases := []struct {
			name     string
			mod      func(*queue.BlockRequest)
			field    string
			sentinel error
			msg      string
		}{
			{"banana", func(r *queue.BlockRequest) { r.CIDR = "banana" }, "cidr", queue.ErrInvalidCIDR, "banana"},
			{"bits33", func(r *queue.BlockRequest) { r.CIDR = "1.2.3.4/33" }, "cidr", queue.ErrInvalidCIDR, ""},
			{"hostbits", func(r *queue.BlockRequest) { r.CIDR = "198.51.100.7/24" }, "cidr", queue.ErrHostBitsSet, "198.51.100.0/24"},
			{"empty cidr", func(r *queue.BlockRequest) { r.CIDR = "" }, "cidr", queue.ErrFieldRequired, ""},
			{"long cidr", func(r *queue.BlockRequest) { r.CIDR = strings.Repeat("1", 51) }, "cidr", queue.ErrFieldTooLong, "50"},
			{"long source", func(r *queue.BlockRequest) { r.Source = strings.Repeat("s", 31) }, "source", queue.ErrFieldTooLong, "30"},
			{"no why", func(r *queue.BlockRequest) { r.Why = "" }, "why", queue.ErrFieldRequired, ""},
			{"bad duration", func(r *queue.BlockRequest) { r.Duration = "5w" }, "duration", queue.ErrInvalidDuration, "Invalid duration"},
			{"negative duration", func(r *queue.BlockRequest) { r.Duration = "-5" }, "duration", queue.ErrInvalidDuration, ""},
			{"no duration", func(r *queue.BlockRequest) { r.Duration = "" }, "duration", queue.ErrFieldRequired, ""},
			{"end and duration", func(r *queue.BlockRequest) { r.UnblockAt = "2027-01-01T00:00:00Z" }, "unblock_at", queue.ErrConflictingEnd, ""},
			{"bad end", func(r *queue.BlockRequest) { r.Duration = "0"; r.UnblockAt = "tomorrow" }, "unblock_at", queue.ErrInvalidTime, ""},
			{"past end", func(r *queue.BlockRequest) { r.Duration = "0"; r.UnblockAt = "2020-01-01T00:00:00Z" }, "unblock_at", queue.ErrPastEnd, ""},
		}
		for _, c := range cases {
			r := Req("198.51.100.1", "300")
			c.mod(&r)
			_, err := e.Svc.Block(e.Ctx, r)
			var fe *queue.FieldError
			if !errors.As(err, &fe) {
				t.Fatalf("%s: error %v is not a FieldError", c.name, err)
			}
			eq(t, c.name+" field", fe.Field, c.field)
			wantErr(t, err, c.sentinel, c.msg)
		}
		eq(t, "nothing stored", len(e.list(queue.FilterAll)), 0)
	})

	t.Run("ExplicitUnblockAt", func(t *testing.T) {
		e := env(t)
		r := Req("198.51.100.9", "0")
		r.UnblockAt = Start.Add(time.Hour).Format(time.RFC3339)
		res := e.MustBlock(r)
		eq(t, "end", res.Block.UnblockAt.Equal(Start.Add(time.Hour)), true)
	})

	t.Run("WhitelistBothDirections", func(t *testing.T) {
		e := env(t)
		if _, err := e.Svc.AddWhitelist(e.Ctx, "198.51.100.0/24", "our servers"); err != nil {
			t.Fatal(err)
		}
		if _, err := e.Svc.AddWhitelist(e.Ctx, "203.0.113.128/32", "dns"); err != nil {
			t.Fatal(err)
		}
		_, err := e.Svc.Block(e.Ctx, Req("198.51.100.7", "300"))
		wantErr(t, err, queue.ErrWhitelisted, "whitelisted: 198.51.100.0/24")
		var pe *queue.PolicyError
		if !errors.As(err, &pe) || !strings.HasPrefix(pe.Message, "whitelisted: ") {
			t.Fatalf("want PolicyError starting 'whitelisted: ', got %v", err)
		}
		// A request containing a whitelisted address is refused too.
		_, err = e.Svc.Block(e.Ctx, Req("203.0.113.0/24", "300"))
		wantErr(t, err, queue.ErrWhitelisted, "203.0.113.128/32")
		// Neighbours are fine.
		e.MustBlock(Req("198.51.101.7", "300"))
		e.MustBlock(Req("203.0.113.129", "300"))
		// skip_whitelist needs the permission...
		r := Req("198.51.100.7", "300")
		r.SkipWhitelist = true
		_, err = e.Svc.Block(e.Ctx, r)
		wantErr(t, err, queue.ErrSkipNotPermitted, "")
		// ...and with it bypasses the whitelist.
		r.MaySkipWhitelist = true
		res := e.MustBlock(r)
		eq(t, "skip stored", res.Block.SkipWhitelist, true)
		// Deleting the entry lifts the refusal.
		wl, err := e.Svc.ListWhitelist(e.Ctx)
		if err != nil {
			t.Fatal(err)
		}
		eq(t, "whitelist size", len(wl), 2)
		for _, w := range wl {
			if w.CIDR.String() == "203.0.113.128/32" {
				got, err := e.Svc.GetWhitelist(e.Ctx, w.ID)
				if err != nil || got.Why != "dns" || got.Who != "admin" {
					t.Fatalf("GetWhitelist: %+v %v", got, err)
				}
				if err := e.Svc.DeleteWhitelist(e.Ctx, w.ID); err != nil {
					t.Fatal(err)
				}
				wantErr(t, e.Svc.DeleteWhitelist(e.Ctx, w.ID), queue.ErrNotFound, "")
			}
		}
		e.MustBlock(Req("203.0.113.0/24", "300"))
	})

	t.Run("ProtectedCannotBeSkipped", func(t *testing.T) {
		e := NewEnv(t, newStore, func(p *queue.Policy) {
			p.Protected = []queue.ProtectedPrefix{{Prefix: netip.MustParsePrefix("192.0.2.1/32"), Reason: "next hop"}}
		})
		r := Req("192.0.2.0/24", "300")
		r.SkipWhitelist, r.MaySkipWhitelist = true, true
		_, err := e.Svc.Block(e.Ctx, r)
		wantErr(t, err, queue.ErrProtectedAddresses, "next hop")
	})

	t.Run("MinimumPrefixLength", func(t *testing.T) {
		e := env(t)
		_, err := e.Svc.Block(e.Ctx, Req("198.51.0.0/23", "300"))
		wantErr(t, err, queue.ErrPrefixTooShort, "Prefix length in 198.51.0.0/23 is too small")
		e.MustBlock(Req("198.51.0.0/24", "300"))
		_, err = e.Svc.Block(e.Ctx, Req("2001:db8::/63", "300"))
		wantErr(t, err, queue.ErrPrefixTooShort, "2001:db8::/63")
		e.MustBlock(Req("2001:db8::/64", "300"))
		r := Req("198.51.0.0/16", "300")
		r.SkipWhitelist, r.MaySkipWhitelist = true, true
		e.MustBlock(r)
	})

	t.Run("SourceBlacklist", func(t *testing.T) {
		e := env(t)
		bl, err := e.Svc.AddSourceBlacklist(e.Ctx, "noisy-ids", "false positives")
		if err != nil {
			t.Fatal(err)
		}
		_, err = e.Svc.AddSourceBlacklist(e.Ctx, "noisy-ids", "again")
		wantErr(t, err, queue.ErrDuplicate, "")
		r := Req("198.51.100.1", "300")
		r.Source = "noisy-ids"
		_, err = e.Svc.Block(e.Ctx, r)
		wantErr(t, err, queue.ErrSourceBlacklisted, "noisy-ids")
		r.Source = "noisy-ids2" // exact match only
		e.MustBlock(r)
		r.CIDR, r.Source = "198.51.100.2", "noisy-ids"
		r.SkipWhitelist, r.MaySkipWhitelist = true, true
		e.MustBlock(r)
		list, err := e.Svc.ListSourceBlacklist(e.Ctx)
		if err != nil || len(list) != 1 || list[0].Source != "noisy-ids" {
			t.Fatalf("ListSourceBlacklist: %v %v", list, err)
		}
		if err := e.Svc.DeleteSourceBlacklist(e.Ctx, bl.ID); err != nil {
			t.Fatal(err)
		}
		r.SkipWhitelist, r.CIDR = false, "198.51.100.3"
		e.MustBlock(r)
	})

	t.Run("DuplicatesAndExtend", func(t *testing.T) {
		e := env(t)
		first := e.MustBlock(Req("198.51.100.1", "300"))
		// extend=false: unchanged, same block.
		r := Req("198.51.100.1", "3600")
		r.Extend = false
		d := e.MustBlock(r)
		eq(t, "no-extend outcome", d.Outcome, queue.Duplicate)
		eq(t, "no-extend id", d.Block.ID, first.Block.ID)
		eq(t, "no-extend end", d.Block.UnblockAt.Equal(first.Block.UnblockAt), true)
		// A shorter end is not an extension.
		d = e.MustBlock(Req("198.51.100.1", "60"))
		eq(t, "shorter outcome", d.Outcome, queue.Duplicate)
		// A later end moves the block and its entries.
		if err := e.Svc.SetBlocked(e.Ctx, "bgp1", []int64{first.Block.ID}); err != nil {
			t.Fatal(err)
		}
		x := e.MustBlock(Req("198.51.100.1", "3600"))
		eq(t, "extend outcome", x.Outcome, queue.Extended)
		eq(t, "extend id", x.Block.ID, first.Block.ID)
		eq(t, "extend end", x.Block.UnblockAt.Equal(Start.Add(time.Hour)), true)
		eq(t, "extend why kept", x.Block.Why, "conformance")
		var entries []queue.Entry
		if err := e.Svc.ListEntries(e.Ctx, queue.EntryListOptions{BlockID: first.Block.ID}, func(en queue.Entry) error {
			entries = append(entries, en)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		eq(t, "entries", len(entries), 1)
		eq(t, "entry end copy", entries[0].UnblockAt.Equal(Start.Add(time.Hour)), true)
		// After the old end the entry must not be in the unblock queue.
		e.Clock.Advance(10 * time.Minute)
		eq(t, "unblock queue after extend", len(e.unblockQueue("bgp1")), 0)
		// Extend to indefinite.
		x = e.MustBlock(Req("198.51.100.1", "0"))
		eq(t, "to indefinite", x.Outcome, queue.Extended)
		eq(t, "indefinite", x.Block.Indefinite(), true)
		// Nothing extends an indefinite block.
		d = e.MustBlock(Req("198.51.100.1", "1y"))
		eq(t, "indefinite stays", d.Outcome, queue.Duplicate)
		eq(t, "indefinite stays end", d.Block.Indefinite(), true)
		got, _ := e.Svc.GetBlock(e.Ctx, first.Block.ID)
		eq(t, "stored indefinite", got.Indefinite(), true)
		eq(t, "one expected block", len(e.list(queue.FilterExpected)), 1)
	})

	t.Run("NewBlockClosesStaleEntries", func(t *testing.T) {
		e := env(t)
		old := e.MustBlock(Req("198.51.100.1", "60"))
		if err := e.Svc.SetBlocked(e.Ctx, "bgp1", []int64{old.Block.ID}); err != nil {
			t.Fatal(err)
		}
		e.Clock.Advance(2 * time.Minute) // expired, but bgp1 has not unblocked yet
		eq(t, "old in unblock queue", len(e.unblockQueue("bgp1")), 1)
		nb := e.MustBlock(Req("198.51.100.1", "300"))
		eq(t, "new block", nb.Outcome, queue.Created)
		if nb.Block.ID == old.Block.ID {
			t.Fatal("expired block reused")
		}
		// The stale entry is closed: the enforcer will not remove the
		// route that the new block needs.
		eq(t, "stale entry gone from unblock queue", len(e.unblockQueue("bgp1")), 0)
		q := e.queue("bgp1")
		eqStrings(t, "new block queued", queueCIDRs(q), []string{"198.51.100.1/32"})
		eq(t, "queued id", q[0].ID, nb.Block.ID)
	})

	t.Run("UnblockNow", func(t *testing.T) {
		e := env(t)
		b := e.MustBlock(Req("198.51.100.1", "1d"))
		if err := e.Svc.SetBlocked(e.Ctx, "bgp1", []int64{b.Block.ID}); err != nil {
			t.Fatal(err)
		}
		ch, qch := e.Svc.Changed(), e.Svc.BlockQueueChanged()
		u, err := e.Svc.UnblockNow(e.Ctx, "198.51.100.1", "false positive")
		if err != nil {
			t.Fatal(err)
		}
		eq(t, "woken", isClosed(ch), true)
		// No block-queue work: block-queue waiters stay parked.
		eq(t, "block-queue waiters woken", isClosed(qch.Done()), false)
		eq(t, "forced", u.ForcedUnblock, true)
		eq(t, "unblock who", u.UnblockWho, "admin")
		eq(t, "unblock why", u.UnblockWhy, "false positive")
		uq := e.unblockQueue("bgp1")
		eq(t, "in unblock queue at once", len(uq), 1)
		eq(t, "unblock item cidr", uq[0].CIDR.String(), "198.51.100.1/32")
		eq(t, "unblock item block", uq[0].BlockID, b.Block.ID)
		eq(t, "unblock item ident", uq[0].Ident, "bgp1")
		eq(t, "not expected", len(e.list(queue.FilterExpected)), 0)
		eq(t, "not queued for new idents", len(e.queue("other")), 0)
		_, err = e.Svc.UnblockNow(e.Ctx, "198.51.100.1", "again")
		var fe *queue.FieldError
		if !errors.As(err, &fe) || fe.Field != "cidr" || !errors.Is(err, queue.ErrNotBlocked) {
			t.Fatalf("second unblock: %v", err)
		}
		eq(t, "message", fe.Message, "198.51.100.1/32 is not currently blocked")
		_, err = e.Svc.UnblockNow(e.Ctx, "banana", "x")
		wantErr(t, err, queue.ErrInvalidCIDR, "")
	})

	t.Run("UnblockNowMultiAllOrNothing", func(t *testing.T) {
		e := env(t)
		a := e.MustBlock(Req("198.51.100.1", "1d"))
		e.MustBlock(Req("198.51.100.2", "1d"))
		if err := e.Svc.SetBlocked(e.Ctx, "bgp1", []int64{a.Block.ID}); err != nil {
			t.Fatal(err)
		}
		// One of three not blocked: nothing changes, and it is named.
		_, err := e.Svc.UnblockNowMulti(e.Ctx, []string{"198.51.100.1", "198.51.100.3", "198.51.100.2"}, "incident over")
		var fe *queue.FieldError
		if !errors.As(err, &fe) || fe.Field != "cidr" || !errors.Is(err, queue.ErrNotBlocked) {
			t.Fatalf("bulk unblock with one not blocked: %v", err)
		}
		eq(t, "message", fe.Message, "198.51.100.3/32: not currently blocked")
		eq(t, "still expected", len(e.list(queue.FilterExpected)), 2)
		eq(t, "nothing queued for removal", len(e.unblockQueue("bgp1")), 0)
		// All blocked (one repeated): all go at once.
		ch := e.Svc.Changed()
		bs, err := e.Svc.UnblockNowMulti(e.Ctx, []string{"198.51.100.1", "198.51.100.2", "198.51.100.1/32"}, "incident over")
		if err != nil {
			t.Fatal(err)
		}
		eq(t, "woken", isClosed(ch), true)
		eq(t, "unblocked", len(bs), 2)
		for _, b := range bs {
			eq(t, "forced", b.ForcedUnblock, true)
			eq(t, "why", b.UnblockWhy, "incident over")
		}
		eq(t, "not expected", len(e.list(queue.FilterExpected)), 0)
		eq(t, "in bgp1's unblock queue", len(e.unblockQueue("bgp1")), 1)
		_, err = e.Svc.UnblockNowMulti(e.Ctx, []string{"198.51.100.1", "banana"}, "")
		var fes queue.FieldErrors
		if !errors.As(err, &fes) || len(fes) != 2 {
			t.Fatalf("bad cidr and no why: want both field errors, got %v", err)
		}
	})

	t.Run("TwoIdentLifecycle", func(t *testing.T) {
		e := env(t)
		// Register both idents before the block, as running enforcers are.
		e.queue("bgp1")
		e.queue("fw1")
		ch, qch := e.Svc.Changed(), e.Svc.BlockQueueChanged()
		b := e.MustBlock(Req("198.51.100.1", "300"))
		eq(t, "woken by block", isClosed(ch), true)
		eq(t, "block-queue waiters woken by block", isClosed(qch.Done()), true)
		added, known := qch.Added()
		eq(t, "wake-up says when the block was added", added.Equal(b.Block.Added) && known, true)
		eq(t, "next wake-up pending", isClosed(qch.Next().Done()), false)
		st := e.stats()
		eq(t, "expected", st.Expected, int64(1))
		eq(t, "block_pending", st.BlockPending, int64(1))
		eq(t, "current", st.Current, int64(0))
		eqStrings(t, "bgp1 queue", queueCIDRs(e.queue("bgp1")), []string{"198.51.100.1/32"})
		eqStrings(t, "fw1 queue", queueCIDRs(e.queue("fw1")), []string{"198.51.100.1/32"})
		eqStrings(t, "late ident queue", queueCIDRs(e.queue("late")), []string{"198.51.100.1/32"})
		if err := e.Svc.SetBlocked(e.Ctx, "bgp1", []int64{b.Block.ID}); err != nil {
			t.Fatal(err)
		}
		// Idempotent.
		if err := e.Svc.SetBlocked(e.Ctx, "bgp1", []int64{b.Block.ID, b.Block.ID}); err != nil {
			t.Fatal(err)
		}
		eq(t, "bgp1 drained", len(e.queue("bgp1")), 0)
		eq(t, "fw1 still queued", len(e.queue("fw1")), 1)
		st = e.stats()
		eq(t, "current after set_blocked", st.Current, int64(1))
		eq(t, "block_pending after set_blocked", st.BlockPending, int64(0))
		eqStrings(t, "current list", e.list(queue.FilterCurrent), []string{"198.51.100.1/32"})
		eq(t, "pending list", len(e.list(queue.FilterPending)), 0)
		// Expiry, driven by the clock.
		next, ok, err := e.Svc.NextUnblockAt(e.Ctx)
		if err != nil || !ok || !next.Equal(Start.Add(300*time.Second)) {
			t.Fatalf("NextUnblockAt = %v %v %v", next, ok, err)
		}
		eq(t, "not yet in unblock queue", len(e.unblockQueue("bgp1")), 0)
		e.Clock.Advance(300 * time.Second)
		_, ok, _ = e.Svc.NextUnblockAt(e.Ctx)
		eq(t, "no later expiry", ok, false)
		uq := e.unblockQueue("bgp1")
		eq(t, "bgp1 unblock queue", len(uq), 1)
		eq(t, "fw1 unblock queue", len(e.unblockQueue("fw1")), 0)
		eq(t, "fw1 block queue after expiry", len(e.queue("fw1")), 0)
		st = e.stats()
		eq(t, "expected after expiry", st.Expected, int64(0))
		eq(t, "unblock_pending", st.UnblockPending, int64(1))
		eqStrings(t, "pending removal", e.list(queue.FilterPendingRemoval), []string{"198.51.100.1/32"})
		if err := e.Svc.SetUnblocked(e.Ctx, entryIDs(uq)); err != nil {
			t.Fatal(err)
		}
		if err := e.Svc.SetUnblocked(e.Ctx, entryIDs(uq)); err != nil {
			t.Fatalf("set_unblocked twice: %v", err)
		}
		eq(t, "unblock queue drained", len(e.unblockQueue("bgp1")), 0)
		st = e.stats()
		eq(t, "final current", st.Current, int64(0))
		eq(t, "final unblock_pending", st.UnblockPending, int64(0))
		eq(t, "final block_pending", st.BlockPending, int64(0))
		// Unknown ids are refused, and nothing is half-applied.
		err = e.Svc.SetBlocked(e.Ctx, "fw1", []int64{b.Block.ID, 999999})
		wantErr(t, err, queue.ErrNotFound, "")
		var n int
		_ = e.Svc.ListEntries(e.Ctx, queue.EntryListOptions{Ident: "fw1"}, func(queue.Entry) error { n++; return nil })
		eq(t, "atomic set_blocked", n, 0)
		wantErr(t, e.Svc.SetUnblocked(e.Ctx, []int64{999999}), queue.ErrNotFound, "")
	})

	t.Run("QueueOrderSinceAndLimit", func(t *testing.T) {
		e := env(t)
		var ids []int64
		for i := 1; i <= 5; i++ {
			ids = append(ids, e.MustBlock(Req(fmt.Sprintf("198.51.100.%d", i), "1h")).Block.ID)
			e.Clock.Advance(time.Second)
		}
		q := e.queue("bgp1")
		eq(t, "len", len(q), 5)
		for i := range q {
			eq(t, "order", q[i].ID, ids[i])
		}
		since := Start.Add(2 * time.Second) // blocks 1 and 2 were added before or at it
		q2, err := e.Svc.BlockQueue(e.Ctx, "bgp1", since, 0)
		if err != nil {
			t.Fatal(err)
		}
		eqStrings(t, "added_since", queueCIDRs(q2), []string{"198.51.100.4/32", "198.51.100.5/32"})
		q3, err := e.Svc.BlockQueue(e.Ctx, "bgp1", time.Time{}, 2)
		if err != nil {
			t.Fatal(err)
		}
		eq(t, "limit", len(q3), 2)
		if err := e.Svc.SetBlocked(e.Ctx, "bgp1", queueIDs(q3)); err != nil {
			t.Fatal(err)
		}
		eq(t, "rest", len(e.queue("bgp1")), 3)
	})

	t.Run("SkipBlocksAndSource", func(t *testing.T) {
		e := env(t)
		r := Req("198.51.100.1", "1h")
		r.Source = "ids"
		a := e.MustBlock(r).Block
		b := e.MustBlock(Req("198.51.100.2", "1h")).Block
		q := e.queue("bgp1")
		eq(t, "len", len(q), 2)
		eq(t, "source", q[0].Source, "ids")
		// Skipped: out of bgp1's queue, no entry; rtbh still has it.
		if err := e.Svc.SkipBlocks(e.Ctx, "bgp1", []int64{b.ID, 999999}); err != nil {
			t.Fatal(err)
		}
		eqStrings(t, "bgp1 queue", queueCIDRs(e.queue("bgp1")), []string{"198.51.100.1/32"})
		eqStrings(t, "rtbh queue", queueCIDRs(e.queue("rtbh")), []string{"198.51.100.1/32", "198.51.100.2/32"})
		if err := e.Svc.SetBlocked(e.Ctx, "bgp1", []int64{a.ID}); err != nil {
			t.Fatal(err)
		}
		eq(t, "bgp1 queue after", len(e.queue("bgp1")), 0)
		var ents []queue.Entry
		if err := e.Svc.ListEntries(e.Ctx, queue.EntryListOptions{Ident: "bgp1"}, func(en queue.Entry) error {
			ents = append(ents, en)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		eq(t, "entries", len(ents), 1)
		eq(t, "entry source", ents[0].Source, "ids")
		eq(t, "entry block added", ents[0].BlockAdded.Equal(a.Added), true)
	})

	t.Run("QueueCapAt200", func(t *testing.T) {
		e := env(t)
		var reqs []queue.BlockRequest
		for i := 0; i < 250; i++ {
			reqs = append(reqs, Req(fmt.Sprintf("10.9.%d.%d", i/200, i%200), "1h"))
		}
		if _, err := e.Svc.MBlock(e.Ctx, reqs); err != nil {
			t.Fatal(err)
		}
		eq(t, "capped", len(e.queue("bgp1")), 200)
	})

	t.Run("UnblockQueueOrderedByEnd", func(t *testing.T) {
		e := env(t)
		a := e.MustBlock(Req("198.51.100.1", "300"))
		b := e.MustBlock(Req("198.51.100.2", "100"))
		c := e.MustBlock(Req("198.51.100.3", "0"))
		if err := e.Svc.SetBlocked(e.Ctx, "bgp1", []int64{a.Block.ID, b.Block.ID, c.Block.ID}); err != nil {
			t.Fatal(err)
		}
		e.Clock.Advance(time.Hour)
		uq := e.unblockQueue("bgp1")
		eq(t, "indefinite never queued", len(uq), 2)
		eq(t, "first ends first", uq[0].CIDR.String(), "198.51.100.2/32")
		eq(t, "second", uq[1].CIDR.String(), "198.51.100.1/32")
	})

	t.Run("MBlockAllOrNothing", func(t *testing.T) {
		e := env(t)
		_, err := e.Svc.MBlock(e.Ctx, []queue.BlockRequest{Req("198.51.100.1", "300"), Req("banana", "300"), Req("198.51.100.3", "x")})
		var be *queue.BatchError
		if !errors.As(err, &be) {
			t.Fatalf("want BatchError, got %v", err)
		}
		eq(t, "items", len(be.Items), 3)
		eq(t, "item 0 ok", be.Items[0] == nil, true)
		wantErr(t, be.Items[1], queue.ErrInvalidCIDR, "")
		wantErr(t, be.Items[2], queue.ErrInvalidDuration, "")
		eq(t, "nothing stored", len(e.list(queue.FilterAll)), 0)
		res, err := e.Svc.MBlock(e.Ctx, []queue.BlockRequest{Req("198.51.100.1", "300"), Req("198.51.100.2", "300"), Req("198.51.100.1", "600")})
		if err != nil {
			t.Fatal(err)
		}
		eq(t, "first created", res[0].Outcome, queue.Created)
		eq(t, "repeat in batch extends", res[2].Outcome, queue.Extended)
		eq(t, "repeat same id", res[2].Block.ID, res[0].Block.ID)
		got, _ := e.Svc.GetBlock(e.Ctx, res[0].Block.ID)
		eq(t, "stored end is the later one", got.UnblockAt.Equal(Start.Add(600*time.Second)), true)
		eq(t, "two expected", len(e.list(queue.FilterExpected)), 2)
	})

	t.Run("Autoscale", func(t *testing.T) {
		// Worked example 1: last 300 s, ended 3300 s ago, request 300 -> 600.
		e := env(t)
		e.MustBlock(Req("198.51.100.1", "300"))
		e.Clock.Advance(300*time.Second + 3300*time.Second)
		r := Req("198.51.100.1", "300")
		r.Autoscale = true
		res := e.MustBlock(r)
		eq(t, "example 1", res.Block.UnblockAt.Sub(res.Block.Added), 600*time.Second)

		// Worked example 2: last 86400 s, ended 259200 s ago, request 3600 -> 86400.
		e.MustBlock(Req("198.51.100.2", "86400"))
		e.Clock.Advance(86400*time.Second + 259200*time.Second)
		r = Req("198.51.100.2", "3600")
		r.Autoscale = true
		res = e.MustBlock(r)
		eq(t, "example 2", res.Block.UnblockAt.Sub(res.Block.Added), 86400*time.Second)

		// Without autoscale the request is taken as it is.
		e.MustBlock(Req("198.51.100.3", "300"))
		e.Clock.Advance(400 * time.Second)
		res = e.MustBlock(Req("198.51.100.3", "300"))
		eq(t, "no autoscale", res.Block.UnblockAt.Sub(res.Block.Added), 300*time.Second)
	})

	t.Run("ListingsQueryAndStats", func(t *testing.T) {
		e := env(t)
		cur := e.MustBlock(Req("198.51.100.1", "1h"))
		e.MustBlock(Req("198.51.100.2", "1h"))         // pending
		gone := e.MustBlock(Req("198.51.100.3", "60")) // will expire
		r := Req("2001:db8::5", "1h")
		r.Source = "ids"
		e.MustBlock(r)
		if err := e.Svc.SetBlocked(e.Ctx, "bgp1", []int64{cur.Block.ID, gone.Block.ID}); err != nil {
			t.Fatal(err)
		}
		e.Clock.Advance(2 * time.Minute)
		eqStrings(t, "expected", e.list(queue.FilterExpected), []string{"198.51.100.1/32", "198.51.100.2/32", "2001:db8::5/128"})
		eqStrings(t, "current", e.list(queue.FilterCurrent), []string{"198.51.100.1/32", "198.51.100.3/32"})
		eqStrings(t, "pending", e.list(queue.FilterPending), []string{"198.51.100.2/32", "2001:db8::5/128"})
		eqStrings(t, "pending removal", e.list(queue.FilterPendingRemoval), []string{"198.51.100.3/32"})
		st := e.stats()
		eq(t, "stats expected", st.Expected, int64(3))
		eq(t, "stats current", st.Current, int64(2))
		eq(t, "stats block_pending", st.BlockPending, int64(2))
		eq(t, "stats unblock_pending", st.UnblockPending, int64(1))
		eq(t, "sources test", st.Sources["test"], int64(2))
		eq(t, "sources ids", st.Sources["ids"], int64(1))
		// Source filter on expected.
		var n int
		_ = e.Svc.ListBlocks(e.Ctx, queue.ListOptions{Filter: queue.FilterExpected, Source: "ids"}, func(queue.Block) error { n++; return nil })
		eq(t, "source filter", n, 1)
		// Query: history within a prefix, any state.
		var got []string
		if err := e.Svc.Query(e.Ctx, "198.51.100.0/30", func(b queue.Block) error {
			got = append(got, b.CIDR.String())
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		sort.Strings(got)
		eqStrings(t, "query", got, []string{"198.51.100.1/32", "198.51.100.2/32", "198.51.100.3/32"})
		got = nil
		_ = e.Svc.Query(e.Ctx, "198.51.100.3", func(b queue.Block) error { got = append(got, b.CIDR.String()); return nil })
		eqStrings(t, "query /32", got, []string{"198.51.100.3/32"})
		got = nil
		_ = e.Svc.Query(e.Ctx, "2001:db8::/32", func(b queue.Block) error { got = append(got, b.CIDR.String()); return nil })
		eqStrings(t, "query v6", got, []string{"2001:db8::5/128"})
		// Paging: cursor and offset.
		var page []int64
		_ = e.Svc.ListBlocks(e.Ctx, queue.ListOptions{Limit: 2}, func(b queue.Block) error { page = append(page, b.ID); return nil })
		eq(t, "page size", len(page), 2)
		var next []int64
		_ = e.Svc.ListBlocks(e.Ctx, queue.ListOptions{AfterID: page[1], Limit: 10}, func(b queue.Block) error { next = append(next, b.ID); return nil })
		eq(t, "after cursor", len(next), 2)
		if next[0] <= page[1] {
			t.Fatalf("cursor not honoured: %v after %v", next, page)
		}
		var off []int64
		_ = e.Svc.ListBlocks(e.Ctx, queue.ListOptions{Offset: 3}, func(b queue.Block) error { off = append(off, b.ID); return nil })
		eq(t, "offset", len(off), 1)
		// AddedSince.
		e.MustBlock(Req("198.51.100.9", "1h"))
		var since []string
		_ = e.Svc.ListBlocks(e.Ctx, queue.ListOptions{Filter: queue.FilterExpected, AddedSince: Start.Add(time.Minute)}, func(b queue.Block) error {
			since = append(since, b.CIDR.String())
			return nil
		})
		eqStrings(t, "added since", since, []string{"198.51.100.9/32"})
		// A callback error stops the stream and is returned.
		stop := errors.New("stop")
		err := e.Svc.ListBlocks(e.Ctx, queue.ListOptions{}, func(queue.Block) error { return stop })
		eq(t, "callback error", errors.Is(err, stop), true)
	})

	t.Run("Notification", func(t *testing.T) {
		e := env(t)
		ch := e.Svc.Changed()
		eq(t, "quiet", isClosed(ch), false)
		e.MustBlock(Req("198.51.100.1", "300"))
		eq(t, "block wakes", isClosed(ch), true)
		ch, qch := e.Svc.Changed(), e.Svc.BlockQueueChanged()
		e.MustBlock(Req("198.51.100.1", "60"))
		eq(t, "duplicate does not wake", isClosed(ch), false)
		e.MustBlock(Req("198.51.100.1", "600"))
		eq(t, "extend wakes", isClosed(ch), true)
		// An extend queues nothing new: block-queue waiters stay parked.
		eq(t, "extend wakes block-queue waiters", isClosed(qch.Done()), false)
		e.MustBlock(Req("198.51.100.2", "600"))
		eq(t, "new block wakes block-queue waiters", isClosed(qch.Done()), true)
		_, ok, err := e.Svc.NextUnblockAt(e.Ctx)
		eq(t, "no entries, no expiry", ok, false)
		if err != nil {
			t.Fatal(err)
		}
	})

	t.Run("Prune", func(t *testing.T) {
		e := env(t)
		old := e.MustBlock(Req("198.51.100.1", "60"))
		keep := e.MustBlock(Req("198.51.100.2", "0"))
		open := e.MustBlock(Req("198.51.100.3", "60"))
		if err := e.Svc.SetBlocked(e.Ctx, "bgp1", []int64{old.Block.ID, keep.Block.ID, open.Block.ID}); err != nil {
			t.Fatal(err)
		}
		e.Clock.Advance(2 * time.Minute)
		uq := e.unblockQueue("bgp1")
		var closeIDs []int64
		for _, it := range uq {
			if it.BlockID == old.Block.ID {
				closeIDs = append(closeIDs, it.ID)
			}
		}
		if err := e.Svc.SetUnblocked(e.Ctx, closeIDs); err != nil {
			t.Fatal(err)
		}
		e.Clock.Advance(48 * time.Hour)
		res, err := e.Svc.Prune(e.Ctx, 24*time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		eq(t, "pruned blocks", res.Blocks, int64(1))
		eq(t, "pruned entries", res.Entries, int64(1))
		_, err = e.Svc.GetBlock(e.Ctx, old.Block.ID)
		wantErr(t, err, queue.ErrNotFound, "")
		// The indefinite block and the one still installed stay.
		eqStrings(t, "remaining", e.list(queue.FilterAll), []string{"198.51.100.2/32", "198.51.100.3/32"})
		_, err = e.Svc.Prune(e.Ctx, 0)
		if err == nil {
			t.Fatal("prune with zero age accepted")
		}
	})

	t.Run("ConcurrentWriters", func(t *testing.T) {
		e := env(t)
		const workers, cidrs, rounds = 16, 24, 6
		var wg sync.WaitGroup
		errs := make(chan error, workers)
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				for r := 0; r < rounds; r++ {
					// Overlapping sets: each worker covers 12 of the 24 cidrs,
					// with ever longer durations so that extends race too.
					var batch []queue.BlockRequest
					for k := 0; k < 12; k++ {
						c := (w + k*2) % cidrs
						batch = append(batch, Req(fmt.Sprintf("198.51.100.%d", c), fmt.Sprintf("%d", 60+w*10+r)))
					}
					var err error
					if r%2 == 0 {
						_, err = e.Svc.MBlock(e.Ctx, batch)
					} else {
						for _, b := range batch {
							if _, err = e.Svc.Block(e.Ctx, b); err != nil {
								break
							}
						}
					}
					if err != nil {
						errs <- err
						return
					}
				}
			}(w)
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		ends := map[string]time.Time{}
		count := map[string]int{}
		_ = e.Svc.ListBlocks(e.Ctx, queue.ListOptions{Filter: queue.FilterAll}, func(b queue.Block) error {
			count[b.CIDR.String()]++
			ends[b.CIDR.String()] = b.UnblockAt
			return nil
		})
		eq(t, "cidrs", len(count), cidrs)
		for c, n := range count {
			if n != 1 {
				t.Fatalf("%s has %d blocks, want exactly 1", c, n)
			}
		}
		// The longest duration requested for each cidr must have won.
		for c := 0; c < cidrs; c++ {
			maxD := 0
			for w := 0; w < workers; w++ {
				for k := 0; k < 12; k++ {
					if (w+k*2)%cidrs == c && 60+w*10+rounds-1 > maxD {
						maxD = 60 + w*10 + rounds - 1
					}
				}
			}
			key := fmt.Sprintf("198.51.100.%d/32", c)
			want := Start.Add(time.Duration(maxD) * time.Second)
			if !ends[key].Equal(want) {
				t.Fatalf("%s ends %v, want %v (an extend was lost)", key, ends[key], want)
			}
		}
	})
}
