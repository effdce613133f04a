package queue_test

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"sync"
	"testing"

	"github.com/bhrd/bhrd/pkg/queue"
	"github.com/bhrd/bhrd/pkg/queue/sqlitestore"
)

func newSQLiteService(t *testing.T, p queue.Policy) *queue.Service {
	t.Helper()
	ctx := context.Background()
	st, err := sqlitestore.Open(ctx, filepath.Join(t.TempDir(), "q.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if _, err := st.Migrate(ctx); err != nil {
		t.Fatal(err)
	}
	svc, err := queue.NewService(st, p, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := svc.Start(ctx); err != nil {
		t.Fatal(err)
	}
	return svc
}

func req(cidr string) queue.BlockRequest {
	return queue.BlockRequest{CIDR: cidr, Who: "t", Source: "test", Why: "test", Duration: "300", Extend: true}
}

func protect(s string) []queue.ProtectedPrefix {
	return []queue.ProtectedPrefix{{Prefix: netip.MustParsePrefix(s), Reason: "BGP peer " + s}}
}

func TestSetPolicy(t *testing.T) {
	ctx := context.Background()
	p := queue.DefaultPolicy()
	p.Protected = protect("192.0.2.1/32")
	svc := newSQLiteService(t, p)

	if _, err := svc.Block(ctx, req("198.51.100.0/23")); !errors.Is(err, queue.ErrPrefixTooShort) {
		t.Fatalf("/23 under minimum 24: %v, want ErrPrefixTooShort", err)
	}
	if _, err := svc.Block(ctx, req("192.0.2.1")); !errors.Is(err, queue.ErrProtectedAddresses) {
		t.Fatalf("protected address: %v", err)
	}

	bad := p
	bad.MinimumPrefixLen = 33
	if err := svc.SetPolicy(bad); err == nil {
		t.Fatal("SetPolicy accepted minimum_prefixlen 33")
	}
	if got := svc.Policy().MinimumPrefixLen; got != 24 {
		t.Fatalf("a refused policy changed the rules: minimum %d", got)
	}

	np := p
	np.MinimumPrefixLen = 23
	np.Protected = protect("192.0.2.2/32") // the peer moved
	if err := svc.SetPolicy(np); err != nil {
		t.Fatal(err)
	}
	if got := svc.Policy().MinimumPrefixLen; got != 23 {
		t.Fatalf("Policy() after SetPolicy: minimum %d", got)
	}
	if _, err := svc.Block(ctx, req("198.51.100.0/23")); err != nil {
		t.Fatalf("/23 under minimum 23: %v", err)
	}
	if _, err := svc.Block(ctx, req("192.0.2.1")); err != nil {
		t.Fatalf("no longer protected: %v", err)
	}
	if _, err := svc.Block(ctx, req("192.0.2.2")); !errors.Is(err, queue.ErrProtectedAddresses) {
		t.Fatalf("newly protected address: %v", err)
	}
	if w, ok := svc.WhitelistCheck(netip.MustParsePrefix("192.0.2.2/32")); !ok || w != "192.0.2.2/32" {
		t.Fatalf("WhitelistCheck uses the new protected set: %q %v", w, ok)
	}
}

// TestSetPolicyConcurrent lets the race detector watch requests running
// while the policy is swapped.
func TestSetPolicyConcurrent(t *testing.T) {
	ctx := context.Background()
	svc := newSQLiteService(t, queue.DefaultPolicy())
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 25 {
				_, err := svc.Block(ctx, req(fmt.Sprintf("10.%d.%d.0/24", g, i)))
				if err != nil {
					t.Errorf("block: %v", err)
					return
				}
			}
		}()
	}
	for i := range 50 {
		p := queue.DefaultPolicy()
		p.MinimumPrefixLen = 16 + i%8
		if err := svc.SetPolicy(p); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
}
