package pgstore

import (
	"testing"

	"github.com/bhrd/bhrd/pkg/queue"
	"github.com/bhrd/bhrd/pkg/queue/queuetest"
)

func TestConformance(t *testing.T) {
	queuetest.Run(t, func(t *testing.T) queue.Store { return openStore(t) })
}

// Service-level figures (validation, policy and the store transaction, as
// one API call costs below HTTP), comparable with sqlitestore's.

func BenchmarkPGServiceBlock(b *testing.B) {
	svc := queuetest.BenchService(b, openStore(b))
	queuetest.BenchBlockSequential(b, svc, 0x0a000000)
}

func BenchmarkPGServiceMBlock1000(b *testing.B) {
	svc := queuetest.BenchService(b, openStore(b))
	queuetest.BenchMBlock(b, svc, 0x0a000000, 1000)
}
