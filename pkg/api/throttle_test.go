package api_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/bhrd/bhrd/pkg/auth"
)

// After ten wrong passwords in a minute, password logins from that
// address and for that user are refused with 429 and Retry-After without
// being checked; tokens are not slowed. The throttle is in front of the
// store, so one store is enough (each password check takes about a
// second under the race detector).
func TestLoginThrottle(t *testing.T) {
	e := newEnv(t, sqliteStore, envOpts{})
	for _, u := range []string{"alice", "bob"} {
		if _, err := e.authn.AddUser(e.ctx, u, u+"-password", []string{auth.RoleUser}); err != nil {
			t.Fatal(err)
		}
	}
	e.get("/bhr/api/blocks/", basic("alice", "alice-password")).expect(http.StatusOK)
	for i := 0; i < 10; i++ {
		e.get("/bhr/api/blocks/", basic("alice", "wrong")).expect(http.StatusUnauthorized)
	}
	r := e.get("/bhr/api/blocks/", basic("alice", "wrong")).expect(http.StatusTooManyRequests)
	if r.header.Get("Retry-After") == "" || !strings.Contains(string(r.body), "Too many failed logins") {
		t.Errorf("throttled answer: %q, Retry-After %q", r.body, r.header.Get("Retry-After"))
	}
	// The right password is not even checked now, for alice or from this
	// address.
	e.get("/bhr/api/blocks/", basic("alice", "alice-password")).expect(http.StatusTooManyRequests)
	e.get("/bhr/api/blocks/", basic("bob", "bob-password")).expect(http.StatusTooManyRequests)
	// Tokens go through.
	e.get("/bhr/api/blocks/", as(e, auth.RoleUser)).expect(http.StatusOK)
}
