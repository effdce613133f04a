package sqlitestore

import (
	"context"
	"errors"
	"net/netip"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/bhrd/bhrd/pkg/queue"
)

// t0 has nanoseconds on purpose: the store keeps microseconds.
var t0 = time.Date(2026, 3, 4, 5, 6, 7, 123456789, time.UTC)

func newStore(t testing.TB) *Store {
	t.Helper()
	return openAt(t, filepath.Join(t.TempDir(), "data", "bhrd.db"))
}

func openAt(t testing.TB, path string) *Store {
	t.Helper()
	s, err := Open(context.Background(), path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	if _, err := s.Migrate(context.Background()); err != nil {
		t.Fatalf("Migrate: %v", err)
	}
	return s
}

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }

// blk is a block request for tests: cidr and end (zero = indefinite).
func blk(cidr string, added, end time.Time) queue.Block {
	return queue.Block{CIDR: pfx(cidr), Who: "tester", Source: "test", Why: "because", Added: added, UnblockAt: end}
}

// insert stores the blocks unconditionally, as a plan that only inserts.
func insert(t testing.TB, s *Store, now time.Time, bs ...queue.Block) []queue.Block {
	t.Helper()
	cidrs := make([]netip.Prefix, len(bs))
	for i, b := range bs {
		cidrs[i] = b.CIDR
	}
	out, err := s.ApplyBlocks(context.Background(), cidrs, now, func(map[netip.Prefix]queue.CIDRState) (queue.Plan, error) {
		return queue.Plan{Inserts: bs}, nil
	})
	if err != nil {
		t.Fatalf("ApplyBlocks: %v", err)
	}
	if len(out) != len(bs) {
		t.Fatalf("ApplyBlocks returned %d blocks, want %d", len(out), len(bs))
	}
	return out
}

// request applies block requests the way the Service does for extend=true:
// a cidr with an expected block is extended when the new end is later,
// otherwise a block is inserted.
func request(ctx context.Context, s *Store, now time.Time, reqs map[netip.Prefix]time.Time) ([]queue.Block, error) {
	cidrs := make([]netip.Prefix, 0, len(reqs))
	for p := range reqs {
		cidrs = append(cidrs, p)
	}
	return s.ApplyBlocks(ctx, cidrs, now, func(states map[netip.Prefix]queue.CIDRState) (queue.Plan, error) {
		var pl queue.Plan
		for p, end := range reqs {
			st, ok := states[p]
			if !ok {
				return pl, errors.New("state missing for " + p.String())
			}
			if e := st.Expected; e != nil {
				if !e.Indefinite() && (end.IsZero() || end.After(e.UnblockAt)) {
					pl.Extends = append(pl.Extends, queue.Extend{BlockID: e.ID, UnblockAt: end})
				}
				continue
			}
			pl.Inserts = append(pl.Inserts, queue.Block{CIDR: p, Who: "w", Source: "s", Why: "y", Added: now, UnblockAt: end})
		}
		return pl, nil
	})
}

func listIDs(t testing.TB, s *Store, opts queue.ListOptions) []int64 {
	t.Helper()
	var ids []int64
	if err := s.ListBlocks(context.Background(), opts, func(b queue.Block) error {
		ids = append(ids, b.ID)
		return nil
	}); err != nil {
		t.Fatalf("ListBlocks(%+v): %v", opts, err)
	}
	return ids
}

func entries(t testing.TB, s *Store, opts queue.EntryListOptions) []queue.Entry {
	t.Helper()
	var out []queue.Entry
	if err := s.ListEntries(context.Background(), opts, func(e queue.Entry) error {
		out = append(out, e)
		return nil
	}); err != nil {
		t.Fatalf("ListEntries(%+v): %v", opts, err)
	}
	return out
}

func queueIDs(t testing.TB, s *Store, ident string, now, since time.Time, limit int) []int64 {
	t.Helper()
	q, err := s.queueOf(context.Background(), ident, now, since, limit)
	if err != nil {
		t.Fatalf("BlockQueue(%s): %v", ident, err)
	}
	ids := make([]int64, len(q))
	for i, it := range q {
		ids[i] = it.ID
	}
	return ids
}

func unblockIDs(t testing.TB, s *Store, ident string, now time.Time, limit int) []int64 {
	t.Helper()
	q, err := s.UnblockQueue(context.Background(), ident, now, limit)
	if err != nil {
		t.Fatalf("UnblockQueue(%s): %v", ident, err)
	}
	ids := make([]int64, len(q))
	for i, it := range q {
		ids[i] = it.ID
	}
	return ids
}

func ids(bs ...queue.Block) []int64 {
	out := make([]int64, len(bs))
	for i, b := range bs {
		out[i] = b.ID
	}
	return out
}

func eqIDs(t testing.TB, what string, got, want []int64) {
	t.Helper()
	if len(got) == 0 && len(want) == 0 {
		return
	}
	if !slices.Equal(got, want) {
		t.Errorf("%s: got ids %v, want %v", what, got, want)
	}
}

func mustGet(t testing.TB, s *Store, id int64) queue.Block {
	t.Helper()
	b, err := s.GetBlock(context.Background(), id)
	if err != nil {
		t.Fatalf("GetBlock(%d): %v", id, err)
	}
	return b
}

func entryOf(t testing.TB, s *Store, blockID int64, ident string) queue.Entry {
	t.Helper()
	es := entries(t, s, queue.EntryListOptions{BlockID: blockID, Ident: ident})
	if len(es) != 1 {
		t.Fatalf("entries of block %d for %s: %d, want 1", blockID, ident, len(es))
	}
	return es[0]
}

// queueOf is BlockQueue registering an unknown ident first, as the
// Service does.
func (s *Store) queueOf(ctx context.Context, ident string, now, since time.Time, limit int) ([]queue.QueueItem, error) {
	q, err := s.BlockQueue(ctx, ident, now, since, limit)
	if errors.Is(err, queue.ErrUnknownIdent) {
		if err := s.RegisterIdent(ctx, ident, now, 0); err != nil {
			return nil, err
		}
		return s.BlockQueue(ctx, ident, now, since, limit)
	}
	return q, err
}
