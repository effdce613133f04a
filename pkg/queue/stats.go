package queue

import (
	"context"
	"errors"
	"maps"
	"sync"
	"time"
)

// Counting the blocks by state costs a scan of the active table: about
// 0.75 s at 1,000,000 active blocks. api/stats needs no login (BHR's
// contract) and /metrics is scraped, so the Service shares that cost:
//   - a count that takes less than statsSlow is done for every call, as
//     before (concurrent calls share the one in flight): small tables
//     see the exact state (and so does every call with WithExactStats,
//     which tests use: on a loaded machine a small count can be slow);
//   - once a count takes statsSlow or longer, its result is served for
//     statsHoldFactor times what it cost (at most statsHoldMax), and an
//     older one is served while one new count runs in the background.
//     Readers then cost nothing, and the store spends at most about a
//     tenth of its time on counting however many ask. A count that fails
//     drops the held result, so the next call reports the failure.
const (
	statsSlow       = 10 * time.Millisecond
	statsHoldFactor = 10
	statsHoldMax    = 10 * time.Second
	statsTimeout    = 2 * time.Minute
)

type statsCache struct {
	mu       sync.Mutex
	have     bool
	val      Stats
	at       time.Time     // when the count that gave val finished (wall clock)
	cost     time.Duration // what that count took
	inflight *statsCall
	now      func() time.Time // wall clock; tests replace it
	exact    bool             // WithExactStats: never serve a held count
}

type statsCall struct {
	done chan struct{}
	val  Stats
	err  error
}

// Stats counts blocks by state (BHR's api/stats); on a large table the
// result may be up to 10 s old (see statsSlow).
func (s *Service) Stats(ctx context.Context) (Stats, error) {
	c := &s.stats
	c.mu.Lock()
	if c.have && c.cost >= statsSlow && !c.exact {
		val := c.val
		if c.now().Sub(c.at) >= min(statsHoldFactor*c.cost, statsHoldMax) && c.inflight == nil {
			// Stale: serve it, and count again in the background.
			call := c.begin()
			go func() {
				// A panicking store fails this count (run records it);
				// the next caller tries again.
				defer func() { _ = recover() }()
				c.run(s, context.WithoutCancel(ctx), call)
			}()
		}
		c.mu.Unlock()
		return copyStats(val), nil
	}
	if call := c.inflight; call != nil {
		c.mu.Unlock()
		select {
		case <-call.done:
			return copyStats(call.val), call.err
		case <-ctx.Done():
			return Stats{}, ctx.Err()
		}
	}
	// This caller counts, in its own goroutine (a panic in the store
	// reaches it as it did before the sharing), for itself and for any
	// that ask meanwhile.
	call := c.begin()
	c.mu.Unlock()
	c.run(s, context.WithoutCancel(ctx), call)
	return copyStats(call.val), call.err
}

// errStatsPanicked is what callers waiting on a count that panicked get.
var errStatsPanicked = errors.New("count blocks: the store panicked")

// begin registers a count in flight; c.mu is held.
func (c *statsCache) begin() *statsCall {
	call := &statsCall{done: make(chan struct{})}
	c.inflight = call
	return call
}

// run does one count and records it, whatever happens (a panic goes on
// up after the waiters are released).
func (c *statsCache) run(s *Service, ctx context.Context, call *statsCall) {
	finished := false
	t0 := c.now()
	defer func() {
		end := c.now()
		if !finished {
			call.val, call.err = Stats{}, errStatsPanicked
		}
		c.mu.Lock()
		if call.err == nil {
			c.have, c.val, c.at, c.cost = true, call.val, end, end.Sub(t0)
		} else if finished {
			// A store that answers with an error drops the held
			// result: the next caller counts itself and sees the error
			// (a dead store must not hide behind an old count). A
			// panicking count keeps it; the next stale read tries again.
			c.have = false
		}
		c.inflight = nil
		c.mu.Unlock()
		close(call.done)
	}()
	// Bounded: no caller's going away cancels a shared count, and a
	// count that never ended would leave every later caller waiting (or
	// a large table's result never refreshed).
	ctx, cancel := context.WithTimeout(ctx, statsTimeout)
	defer cancel()
	call.val, call.err = s.store.Stats(ctx, s.Now())
	finished = true
}

// copyStats gives each caller its own Sources map.
func copyStats(st Stats) Stats {
	st.Sources = maps.Clone(st.Sources)
	return st
}
