package queuetest

import (
	"context"
	"net/netip"
	"testing"
	"time"

	"github.com/bhrd/bhrd/pkg/queue"
)

// Service-level benchmarks shared by both stores: they measure what an
// API call costs below HTTP (validation, policy, store transaction).

// addrN returns the n-th /32 in 10.0.0.0/8 (skipping nothing: the
// benchmarks use the default policy, which has no whitelist).
func addrN(base uint32, n int) string {
	v := base + uint32(n)
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}).String()
}

// BenchService builds a Service on the real clock over st.
func BenchService(b *testing.B, st queue.Store) *queue.Service {
	b.Helper()
	svc, err := queue.NewService(st, queue.DefaultPolicy(), nil)
	if err != nil {
		b.Fatal(err)
	}
	if err := svc.Start(context.Background()); err != nil {
		b.Fatal(err)
	}
	return svc
}

// BenchBlockSequential measures sequential single Block calls.
func BenchBlockSequential(b *testing.B, svc *queue.Service, base uint32) {
	ctx := context.Background()
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		if _, err := svc.Block(ctx, Req(addrN(base, i), "1h")); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "blocks/s")
}

// BenchMBlock measures MBlock in batches of size.
func BenchMBlock(b *testing.B, svc *queue.Service, base uint32, size int) {
	ctx := context.Background()
	reqs := make([]queue.BlockRequest, size)
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		for k := range reqs {
			reqs[k] = Req(addrN(base, i*size+k), "1h")
		}
		if _, err := svc.MBlock(ctx, reqs); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N*size)/time.Since(start).Seconds(), "blocks/s")
}

// Seed adds n blocks through MBlock in batches of 1000 (for stores
// without a faster bulk path).
func Seed(b testing.TB, svc *queue.Service, base uint32, n int, duration string) {
	ctx := context.Background()
	for i := 0; i < n; i += 1000 {
		k := min(1000, n-i)
		reqs := make([]queue.BlockRequest, k)
		for j := range reqs {
			reqs[j] = Req(addrN(base, i+j), duration)
		}
		if _, err := svc.MBlock(ctx, reqs); err != nil {
			b.Fatalf("seed: %v", err)
		}
	}
}

// BenchQuery measures Query of one /32 among the stored blocks.
func BenchQuery(b *testing.B, svc *queue.Service, base uint32, n int) {
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		found := 0
		err := svc.Query(ctx, addrN(base, (i*7919)%n), func(queue.Block) error { found++; return nil })
		if err != nil {
			b.Fatal(err)
		}
		if found == 0 {
			b.Fatalf("query %s found nothing", addrN(base, (i*7919)%n))
		}
	}
}
