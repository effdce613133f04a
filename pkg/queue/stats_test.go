package queue

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// countingStats is a Store whose Stats takes delay and counts its calls;
// nothing else of it is used.
type countingStats struct {
	Store
	delay time.Duration
	calls atomic.Int64
	fail  atomic.Bool
	panic atomic.Bool
}

func (c *countingStats) Stats(ctx context.Context, now time.Time) (Stats, error) {
	n := c.calls.Add(1)
	time.Sleep(c.delay)
	if c.panic.Load() {
		panic("injected")
	}
	if c.fail.Load() {
		return Stats{}, errors.New("injected")
	}
	return Stats{Expected: n, Sources: map[string]int64{"s": n}}, nil
}

func newStatsService(t *testing.T, delay time.Duration) (*Service, *countingStats) {
	t.Helper()
	st := &countingStats{delay: delay}
	svc, err := NewService(st, DefaultPolicy(), nil)
	if err != nil {
		t.Fatal(err)
	}
	return svc, st
}

// A cheap count is done for every call: the state is always exact.
func TestStatsCheapAlwaysCounted(t *testing.T) {
	svc, st := newStatsService(t, 0)
	ctx := context.Background()
	for i := 1; i <= 5; i++ {
		got, err := svc.Stats(ctx)
		if err != nil || got.Expected != int64(i) {
			t.Fatalf("call %d: %+v %v, want a fresh count", i, got, err)
		}
	}
	// An error is returned, and not kept.
	st.fail.Store(true)
	if _, err := svc.Stats(ctx); err == nil {
		t.Fatal("no error from a failing count")
	}
	st.fail.Store(false)
	if got, err := svc.Stats(ctx); err != nil || got.Expected != 7 {
		t.Fatalf("after an error: %+v %v", got, err)
	}
}

// A slow count is served for ten times its cost; then the old result is
// served at once while one new count runs; concurrent callers never
// start a second one.
func TestStatsSlowServedAndRefreshed(t *testing.T) {
	svc, st := newStatsService(t, 20*time.Millisecond)
	var skew atomic.Int64 // added to the cache's wall clock
	svc.stats.now = func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
	ctx := context.Background()
	first, err := svc.Stats(ctx)
	if err != nil || first.Expected != 1 {
		t.Fatalf("first count: %+v %v", first, err)
	}

	// Within the hold (10 × ~20 ms): many readers, no count.
	var wg sync.WaitGroup
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, err := svc.Stats(ctx)
			if err != nil || got.Expected != 1 {
				t.Errorf("held result: %+v %v", got, err)
			}
			got.Sources["s"] = 99 // a caller's own copy
		}()
	}
	wg.Wait()
	if n := st.calls.Load(); n != 1 {
		t.Fatalf("%d counts for 50 readers within the hold, want 1", n)
	}

	// Past the hold: served at once (stale), one background count.
	skew.Add(int64(2 * time.Second))
	for range 20 {
		t0 := time.Now()
		got, err := svc.Stats(ctx)
		if err != nil || got.Expected != 1 || got.Sources["s"] != 1 {
			t.Fatalf("stale result: %+v %v", got, err)
		}
		if d := time.Since(t0); d > 10*time.Millisecond {
			t.Fatalf("a reader waited %v for a slow count", d)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		svc.stats.mu.Lock()
		val, busy := svc.stats.val, svc.stats.inflight != nil
		svc.stats.mu.Unlock()
		if val.Expected == 2 && !busy {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the background count did not land: %+v busy %v", val, busy)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if n := st.calls.Load(); n != 2 {
		t.Fatalf("%d counts, want 2 (one refresh for 20 stale readers)", n)
	}
	if got, _ := svc.Stats(ctx); got.Expected != 2 {
		t.Fatalf("after the refresh: %+v", got)
	}

	// A background count whose store panics does not take the process
	// down: the old result is kept and the next stale read tries again.
	st.panic.Store(true)
	skew.Add(int64(2 * time.Second))
	if got, err := svc.Stats(ctx); err != nil || got.Expected != 2 {
		t.Fatalf("stale read before a panicking count: %+v %v", got, err)
	}
	waitIdle := func() {
		for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
			svc.stats.mu.Lock()
			busy := svc.stats.inflight != nil
			svc.stats.mu.Unlock()
			if !busy {
				return
			}
			if time.Now().After(deadline) {
				t.Fatal("a count never ended")
			}
		}
	}
	waitIdle()
	st.panic.Store(false)
	if got, err := svc.Stats(ctx); err != nil || got.Expected != 2 {
		t.Fatalf("after a panicking count: %+v %v", got, err)
	}
	waitIdle()
	if got, _ := svc.Stats(ctx); got.Expected != 4 {
		t.Fatalf("the count after the panic did not land: %+v", got)
	}
}

// WithExactStats counts on every call, even when counting is slow.
func TestStatsExactOption(t *testing.T) {
	st := &countingStats{delay: statsSlow + 5*time.Millisecond}
	svc, err := NewService(st, DefaultPolicy(), nil, WithExactStats())
	if err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= 3; i++ {
		got, err := svc.Stats(context.Background())
		if err != nil || got.Expected != int64(i) {
			t.Fatalf("call %d: %+v %v, want a fresh count", i, got, err)
		}
	}
}

// A held count is not served for ever once the store fails: the failed
// background count drops it, and the next caller gets the error.
func TestStatsHeldDroppedOnFailure(t *testing.T) {
	svc, st := newStatsService(t, 20*time.Millisecond)
	var skew atomic.Int64
	svc.stats.now = func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
	ctx := context.Background()
	if _, err := svc.Stats(ctx); err != nil {
		t.Fatal(err)
	}
	st.fail.Store(true)
	skew.Add(int64(2 * time.Second))
	if got, err := svc.Stats(ctx); err != nil || got.Expected != 1 {
		t.Fatalf("stale result while the recount runs: %+v %v", got, err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := svc.Stats(ctx)
		if err != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a failing store is still hidden behind the held count after 5 s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
