package api_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/bhrd/bhrd/pkg/queue"
)

// BenchmarkBlockUnblockLoad: 8 clients each posting a block of its own
// /32 and then unblock_now of it, as fast as they can, for 30 s
// (BHRD_BENCH_SECONDS), while an enforcer loop drains both queues of one
// ident (block_queue → set_blocked, unblock_queue → set_unblocked) as
// bgp1 would: the load that made PostgreSQL deadlock between unblock_now
// and set_blocked (issue 11). Reports the operations per second and
// every status; any 5xx fails.
func BenchmarkBlockUnblockLoad(b *testing.B) {
	dur := 30 * time.Second
	if s := os.Getenv("BHRD_BENCH_SECONDS"); s != "" {
		var n int
		fmt.Sscan(s, &n)
		dur = time.Duration(n) * time.Second
	}
	forStores(b, nil, func(b *testing.B, e *env) {
		for range b.N {
			ctx, cancel := context.WithTimeout(context.Background(), dur)
			ectx := queue.WithActor(ctx, queue.EnforcerActor("load1"))
			var wg sync.WaitGroup
			wg.Add(1)
			go func() { // the enforcer
				defer wg.Done()
				for ctx.Err() == nil {
					if q, err := e.svc.BlockQueue(ectx, "load1", time.Time{}, 200); err == nil && len(q) > 0 {
						ids := make([]int64, len(q))
						for i, it := range q {
							ids[i] = it.ID
						}
						_ = e.svc.SetBlocked(ectx, "load1", ids)
					}
					if u, err := e.svc.UnblockQueue(ectx, "load1", 200); err == nil && len(u) > 0 {
						ids := make([]int64, len(u))
						for i, it := range u {
							ids[i] = it.ID
						}
						_ = e.svc.SetUnblocked(ectx, ids)
					}
					time.Sleep(time.Millisecond)
				}
			}()
			var ops atomic.Int64
			var mu sync.Mutex
			codes := map[string]int{}
			client := benchClient(8)
			do := func(path string, form url.Values) int {
				req, _ := http.NewRequestWithContext(context.WithoutCancel(ctx), "POST", e.srv.URL+path, strings.NewReader(form.Encode()))
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				req.Header.Set("Authorization", "Token "+e.tokens["user"])
				resp, err := client.Do(req)
				if err != nil {
					return -1
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				return resp.StatusCode
			}
			start := time.Now()
			for w := range 8 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					cidr := fmt.Sprintf("10.250.%d.1", w)
					for ctx.Err() == nil {
						s1 := do("/bhr/api/block", url.Values{"cidr": {cidr}, "source": {"load"}, "why": {"load"}, "duration": {"3600"}})
						s2 := do("/bhr/api/unblock_now", url.Values{"cidr": {cidr}, "why": {"load"}})
						mu.Lock()
						codes[fmt.Sprintf("block %d", s1)]++
						codes[fmt.Sprintf("unblock_now %d", s2)]++
						mu.Unlock()
						ops.Add(2)
					}
				}()
			}
			wg.Wait()
			cancel()
			el := time.Since(start)
			b.ReportMetric(float64(ops.Load())/el.Seconds(), "requests/s")
			fmt.Fprintf(b.Output(), "%s: %d requests in %v: %v\n", b.Name(), ops.Load(), el.Round(time.Millisecond), codes)
			for k, n := range codes {
				if strings.HasSuffix(k, " -1") || strings.Contains(k, " 5") {
					b.Errorf("%d answers %q", n, k)
				}
			}
		}
	})
}
