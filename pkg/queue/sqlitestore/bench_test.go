package sqlitestore

import (
	"net/netip"
	"testing"
	"time"

	"github.com/bhrd/bhrd/pkg/queue"
)

// benchCIDR returns the n-th distinct /32.
func benchCIDR(n int) netip.Prefix {
	v := uint32(0x01000000) + uint32(n)
	return netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), 32)
}

// benchStore is a migrated store with two registered idents, so that every
// insert also queues the block twice, as in a site with two enforcers.
func benchStore(b *testing.B) *Store {
	b.Helper()
	s := newStore(b)
	for _, ident := range []string{"bgp", "nullroute"} {
		if _, err := s.queueOf(ctx, ident, t0, time.Time{}, 1); err != nil {
			b.Fatal(err)
		}
	}
	return s
}

func applyNew(b *testing.B, s *Store, first, n int, now time.Time) []queue.Block {
	reqs := make(map[netip.Prefix]time.Time, n)
	for i := range n {
		reqs[benchCIDR(first+i)] = now.Add(time.Hour)
	}
	out, err := request(ctx, s, now, reqs)
	if err != nil {
		b.Fatal(err)
	}
	if len(out) != n {
		b.Fatalf("inserted %d blocks, want %d", len(out), n)
	}
	return out
}

// Sequential single-block requests, each a new cidr (the plan looks at the
// state, then inserts).
func BenchmarkSQLiteApplyBlocksSingle(b *testing.B) {
	s := benchStore(b)
	n := 0
	for b.Loop() {
		applyNew(b, s, n, 1, t0)
		n++
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "blocks/s")
}

// Batches of 1000 new cidrs in one ApplyBlocks (mblock).
func BenchmarkSQLiteApplyBlocksBatch1000(b *testing.B) {
	s := benchStore(b)
	n := 0
	for b.Loop() {
		applyNew(b, s, n, 1000, t0)
		n += 1000
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "blocks/s")
}

// The block queue of an ident that has already set blocked 100,000 blocks
// (all still expected) and has 100 waiting.
func BenchmarkSQLiteBlockQueue(b *testing.B) {
	s := benchStore(b)
	const history, waiting = 100_000, 100
	for first := 0; first < history; first += 1000 {
		bs := applyNew(b, s, first, 1000, t0)
		if _, err := s.SetBlocked(ctx, "bgp", ids(bs...), t0); err != nil {
			b.Fatal(err)
		}
	}
	applyNew(b, s, history, waiting, t0)
	now := t0.Add(time.Minute)
	for b.Loop() {
		q, err := s.queueOf(ctx, "bgp", now, time.Time{}, 200)
		if err != nil {
			b.Fatal(err)
		}
		if len(q) != waiting {
			b.Fatalf("queue has %d items, want %d", len(q), waiting)
		}
	}
}

// SetBlocked of 200 queued blocks at a time (an enforcer's report after a
// queue read), blocks/s. The blocks are inserted between the timed calls,
// 10,000 at a time.
func BenchmarkSQLiteSetBlocked200(b *testing.B) {
	s := benchStore(b)
	var queued []queue.Block
	next := 0
	n := 0
	for b.Loop() {
		if len(queued) < 200 {
			b.StopTimer()
			queued = applyNew(b, s, next, 10_000, t0)
			next += 10_000
			b.StartTimer()
		}
		if _, err := s.SetBlocked(ctx, "bgp", ids(queued[:200]...), t0); err != nil {
			b.Fatal(err)
		}
		queued = queued[200:]
		n += 200
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "blocks/s")
}
