package sqlitestore

import (
	"testing"

	"github.com/bhrd/bhrd/pkg/queue/queuetest"
)

// Service-level figures (validation, policy and the store transaction, as
// one API call costs below HTTP) for docs/BENCHMARKS.md.

func BenchmarkSQLiteServiceBlock(b *testing.B) {
	svc := queuetest.BenchService(b, newStore(b))
	queuetest.BenchBlockSequential(b, svc, 0x0a000000)
}

func BenchmarkSQLiteServiceMBlock1000(b *testing.B) {
	svc := queuetest.BenchService(b, newStore(b))
	queuetest.BenchMBlock(b, svc, 0x0a000000, 1000)
}
