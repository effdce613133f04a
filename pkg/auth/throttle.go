package auth

import (
	"sync"
	"time"
)

// Failed password logins are throttled per source address and per user
// name: past loginFailLimit failures within loginFailWindow, password
// logins (HTTP Basic or the web pages' form) from that address or for that user are refused with 429
// without being checked, until the window ends. Checking a password is
// deliberately slow; without this a flood of wrong passwords takes the
// CPU from every other request. Tokens are not throttled: checking one is
// a hash lookup, and a valid detection tool must never wait.
const (
	loginFailLimit  = 10
	loginFailWindow = time.Minute
	// loginFailKeys bounds the memory of the counters.
	loginFailKeys = 100_000
)

type failWindow struct {
	start time.Time
	n     int
}

// LoginThrottle counts failed password logins; the API and the web
// pages share one, so that an address refused by one is refused by both.
type LoginThrottle struct {
	mu  sync.Mutex
	m   map[string]*failWindow
	now func() time.Time
}

// NewLoginThrottle returns an empty throttle.
func NewLoginThrottle() *LoginThrottle {
	return &LoginThrottle{m: map[string]*failWindow{}, now: time.Now}
}

// Blocked returns how long the first throttled key stays refused, or 0.
func (t *LoginThrottle) Blocked(keys ...string) time.Duration {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	for _, k := range keys {
		w := t.m[k]
		if w == nil {
			continue
		}
		if left := w.start.Add(loginFailWindow).Sub(now); left > 0 && w.n >= loginFailLimit {
			return left
		}
	}
	return 0
}

// Fail counts one failed login for every key.
func (t *LoginThrottle) Fail(keys ...string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	if len(t.m) >= loginFailKeys {
		for k, w := range t.m {
			if now.Sub(w.start) >= loginFailWindow {
				delete(t.m, k)
			}
		}
		if len(t.m) >= loginFailKeys {
			return // all recent: an attack from very many addresses; the per-user keys already counted hold
		}
	}
	for _, k := range keys {
		w := t.m[k]
		if w == nil || now.Sub(w.start) >= loginFailWindow {
			w = &failWindow{start: now}
			t.m[k] = w
		}
		w.n++
	}
}
