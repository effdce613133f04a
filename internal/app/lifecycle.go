package app

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
)

// lifecycle is the stack of what has started: every part that starts
// registers its stop right away, so that a failed start unwinds exactly
// what started and Stop can not forget a part (Alertmanager's
// app/lifecycle.go is the model).
type lifecycle struct {
	mu    sync.Mutex
	stops []namedStop
}

type namedStop struct {
	name string
	fn   func(context.Context) error
}

// onStop registers the stop of a part that has just started.
func (l *lifecycle) onStop(name string, fn func(context.Context) error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.stops = append(l.stops, namedStop{name, fn})
}

// depth is how many stops are registered, for stopTo.
func (l *lifecycle) depth() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.stops)
}

// stop runs the registered stops in reverse order, each once, and joins
// their errors. Stops registered while it runs are run too.
func (l *lifecycle) stop(ctx context.Context) error { return l.stopTo(ctx, 0) }

// stopTo runs the stops registered after the first depth ones, in
// reverse order (a failed start unwinds what it started).
func (l *lifecycle) stopTo(ctx context.Context, depth int) error {
	var errs []error
	for {
		l.mu.Lock()
		if len(l.stops) <= depth {
			l.mu.Unlock()
			return errors.Join(errs...)
		}
		s := l.stops[len(l.stops)-1]
		l.stops = slices.Delete(l.stops, len(l.stops)-1, len(l.stops))
		l.mu.Unlock()
		if err := s.fn(ctx); err != nil {
			errs = append(errs, fmt.Errorf("stop %s: %w", s.name, err))
		}
	}
}
