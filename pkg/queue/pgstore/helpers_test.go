package pgstore

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/bhrd/bhrd/internal/pgtest"
	"github.com/bhrd/bhrd/pkg/queue"
)

func TestMain(m *testing.M) { os.Exit(pgtest.Main(m)) }

// t0 is the tests' clock origin; every time is t0 plus a whole number of
// seconds, so it round-trips exactly through timestamptz.
var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func at(sec int) time.Time { return t0.Add(time.Duration(sec) * time.Second) }

func pgtestDB(t testing.TB) string { return pgtest.NewDatabase(t) }

// openStore opens and migrates a store on a fresh database.
func openStore(t testing.TB) *Store {
	t.Helper()
	return openStoreAt(t, pgtest.NewDatabase(t))
}

func openStoreAt(t testing.TB, url string) *Store {
	t.Helper()
	ctx := context.Background()
	s, err := Open(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	if _, err := s.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	return s
}

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }

func pfxs(ss ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		out[i] = pfx(s)
	}
	return out
}

// newBlock is a block request as the Service would plan it.
func newBlock(cidr string, added, end time.Time) queue.Block {
	return queue.Block{CIDR: pfx(cidr), Who: "tester", Source: "test", Why: "because", Added: added, UnblockAt: end}
}

// insert stores blocks through ApplyBlocks with a plan that inserts them
// unconditionally.
func insert(t testing.TB, s *Store, now time.Time, blocks ...queue.Block) []queue.Block {
	t.Helper()
	cidrs := make([]netip.Prefix, len(blocks))
	for i, b := range blocks {
		cidrs[i] = b.CIDR
	}
	got, err := s.ApplyBlocks(context.Background(), cidrs, now, func(map[netip.Prefix]queue.CIDRState) (queue.Plan, error) {
		return queue.Plan{Inserts: blocks}, nil
	})
	if err != nil {
		t.Fatalf("insert: %v", err)
	}
	if len(got) != len(blocks) {
		t.Fatalf("insert returned %d blocks, want %d", len(got), len(blocks))
	}
	return got
}

func ids[T any](items []T, id func(T) int64) []int64 {
	out := make([]int64, len(items))
	for i, it := range items {
		out[i] = id(it)
	}
	return out
}

func queueIDs(items []queue.QueueItem) []int64 {
	return ids(items, func(q queue.QueueItem) int64 { return q.ID })
}

func blockIDs(bs []queue.Block) []int64 {
	return ids(bs, func(b queue.Block) int64 { return b.ID })
}

func listIDs(t testing.TB, s *Store, opts queue.ListOptions) []int64 {
	t.Helper()
	var out []int64
	err := s.ListBlocks(context.Background(), opts, func(b queue.Block) error {
		out = append(out, b.ID)
		return nil
	})
	if err != nil {
		t.Fatalf("list blocks %+v: %v", opts, err)
	}
	return out
}

func entriesOf(t testing.TB, s *Store, opts queue.EntryListOptions) []queue.Entry {
	t.Helper()
	var out []queue.Entry
	if err := s.ListEntries(context.Background(), opts, func(e queue.Entry) error {
		out = append(out, e)
		return nil
	}); err != nil {
		t.Fatalf("list entries: %v", err)
	}
	return out
}

func blockQueue(t testing.TB, s *Store, ident string, now time.Time) []int64 {
	t.Helper()
	items, err := s.queueOf(context.Background(), ident, now, time.Time{}, 1000)
	if err != nil {
		t.Fatalf("block queue %s: %v", ident, err)
	}
	return queueIDs(items)
}

func setBlocked(t testing.TB, s *Store, ident string, now time.Time, ids ...int64) {
	t.Helper()
	if _, err := s.SetBlocked(context.Background(), ident, ids, now); err != nil {
		t.Fatalf("set blocked %s %v: %v", ident, ids, err)
	}
}

func countRows(t testing.TB, s *Store, sql string, args ...any) int64 {
	t.Helper()
	var n int64
	if err := s.pool.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return n
}

func equalIDs(a, b []int64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
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
