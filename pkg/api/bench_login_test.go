package api_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/bhrd/bhrd/pkg/auth"
)

// BenchmarkLoginUnderFlood: a real user's HTTP Basic login (from
// 127.0.0.2) while 16 clients on 127.0.0.1 send wrong passwords as fast as
// they can, against the same login with no flood. Without the throttle
// every wrong password costs a password hash.
func BenchmarkLoginUnderFlood(b *testing.B) {
	e := newEnv(b, sqliteStore, envOpts{logger: zap.NewNop()})
	if _, err := e.authn.AddUser(e.ctx, "alice", "alice-password", []string{auth.RoleUser}); err != nil {
		b.Fatal(err)
	}
	from2 := &http.Client{Transport: &http.Transport{DialContext: (&net.Dialer{
		LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}).DialContext}}
	var loginAs func(string) time.Duration
	login := func() time.Duration { return loginAs("alice") }
	// loginAs logs user in; a user's first login checks the password hash
	// (uncached), the later ones hit the verified-credentials cache.
	loginAs = func(user string) time.Duration {
		req, _ := http.NewRequest("GET", e.srv.URL+"/bhr/api/blocks/?limit=1", nil)
		req.SetBasicAuth(user, "alice-password")
		start := time.Now()
		resp, err := from2.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("%s's login: %d", user, resp.StatusCode)
		}
		return time.Since(start)
	}
	users := 0
	firstLogins := func() []time.Duration {
		var ds []time.Duration
		for range 5 {
			users++
			u := fmt.Sprintf("first%d", users)
			if _, err := e.authn.AddUser(e.ctx, u, "alice-password", []string{auth.RoleUser}); err != nil {
				b.Fatal(err)
			}
			ds = append(ds, loginAs(u))
		}
		return ds
	}
	p50 := func(ds []time.Duration) time.Duration { slices.Sort(ds); return ds[len(ds)/2] }
	for b.Loop() {
		var quiet []time.Duration
		for range 20 {
			quiet = append(quiet, login())
		}
		firstQuiet := firstLogins()
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		var sent, throttled atomic.Int64
		for range 16 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for ctx.Err() == nil {
					req, _ := http.NewRequestWithContext(ctx, "GET", e.srv.URL+"/bhr/api/blocks/?limit=1", nil)
					req.SetBasicAuth("mallory", "guess")
					resp, err := e.srv.Client().Do(req)
					if err != nil {
						continue
					}
					resp.Body.Close()
					sent.Add(1)
					if resp.StatusCode == http.StatusTooManyRequests {
						throttled.Add(1)
					}
				}
			}()
		}
		time.Sleep(2 * time.Second) // past the first failures, which are checked
		var flooded []time.Duration
		for range 20 {
			flooded = append(flooded, login())
		}
		firstFlooded := firstLogins()
		cancel()
		wg.Wait()
		b.ReportMetric(float64(p50(quiet).Microseconds())/1000, "ms_login_p50_quiet")
		b.ReportMetric(float64(p50(flooded).Microseconds())/1000, "ms_login_p50_flood")
		b.ReportMetric(float64(p50(firstQuiet).Microseconds())/1000, "ms_first_login_p50_quiet")
		b.ReportMetric(float64(p50(firstFlooded).Microseconds())/1000, "ms_first_login_p50_flood")
		b.Logf("login p50 %s quiet, %s under a flood of %d wrong passwords (%d throttled); a first (uncached) login p50 %s quiet, %s under the flood",
			p50(quiet), p50(flooded), sent.Load(), throttled.Load(), p50(firstQuiet), p50(firstFlooded))
	}
}
