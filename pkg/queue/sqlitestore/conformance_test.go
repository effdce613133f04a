package sqlitestore

import (
	"testing"

	"github.com/bhrd/bhrd/pkg/queue"
	"github.com/bhrd/bhrd/pkg/queue/queuetest"
)

func TestConformance(t *testing.T) {
	queuetest.Run(t, func(t *testing.T) queue.Store { return newStore(t) })
}
