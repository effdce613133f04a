package auth

import (
	"testing"
	"time"
)

// The counters are per key and per window: a new window forgives.
func TestLoginThrottleWindow(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	th := NewLoginThrottle()
	th.now = func() time.Time { return now }
	for i := 0; i < loginFailLimit; i++ {
		if th.Blocked("addr a", "user u") != 0 {
			t.Fatalf("blocked after %d failures", i)
		}
		th.Fail("addr a", "user u")
	}
	if left := th.Blocked("addr a"); left != loginFailWindow {
		t.Fatalf("blocked for %s after %d failures, want %s", left, loginFailLimit, loginFailWindow)
	}
	if th.Blocked("addr b", "user v") != 0 {
		t.Fatal("other keys blocked")
	}
	now = now.Add(loginFailWindow)
	if th.Blocked("addr a", "user u") != 0 {
		t.Fatal("still blocked in a new window")
	}
}
