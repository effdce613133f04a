package api_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bhrd/bhrd/pkg/auth"
	"github.com/bhrd/bhrd/pkg/config"
	"github.com/bhrd/bhrd/pkg/queue"
)

// BenchmarkLongPollsNewIdents: 1,000 long polls on 1,000 new idents
// (each registers its ident and catches up on 10,000 expected blocks),
// while one client posts blocks one after another, on SQLite, whose one
// write connection registrations and blocks share. The polls ask for
// blocks added after 2100, so they stay parked through the blocks (each
// block wakes them all). Reported: block POST latency while the polls
// arrive and register ("storm": a block, then up to 10 s for all to park) and with all
// 1,000 parked (each block posted once every poll waits again).
// Target (issue #10): p99 < 50 ms with 1,000 polls parked.
func BenchmarkLongPollsNewIdents(b *testing.B) {
	polls, seed := 1000, 1000
	if n, err := strconv.Atoi(os.Getenv("BHRD_BENCH_SEED")); err == nil {
		seed = n
	}
	if n, err := strconv.Atoi(os.Getenv("BHRD_BENCH_POLLS")); err == nil {
		polls = n
	}
	e := newEnv(b, sqliteStore, envOpts{logger: discardLogger(), cfg: func(c *config.API) { c.LongPollMax = 10 * time.Minute }})
	for i := 0; i+1000 <= seed; i += 1000 {
		var reqs []queue.BlockRequest
		for j := i; j < i+1000; j++ {
			reqs = append(reqs, queue.BlockRequest{CIDR: fmt.Sprintf("10.%d.%d.0/24", j/256, j%256), Source: "seed", Why: "seed", Duration: "1000h"})
		}
		if _, err := e.svc.MBlock(e.ctx, reqs); err != nil {
			b.Fatal(err)
		}
	}
	client := benchClient(polls + 2)
	mgr := "Token " + e.tokens[auth.RoleBlockManager]
	post := func() time.Duration {
		body := url.Values{"cidr": {nextCIDR()}, "source": {"bench"}, "why": {"parked polls"}, "duration": {"1h"}}.Encode()
		req, _ := http.NewRequest("POST", e.srv.URL+"/bhr/api/block", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("Authorization", "Token "+e.tokens[auth.RoleUser])
		t0 := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusCreated {
			b.Fatalf("block: %d", resp.StatusCode)
		}
		return time.Since(t0)
	}
	for b.Loop() {
		var wg sync.WaitGroup
		start := time.Now()
		for i := range polls {
			wg.Add(1)
			go func() {
				defer wg.Done()
				ident := fmt.Sprintf("new-%d-%d", start.UnixNano(), i)
				// An enforcer: poll, report what it got, poll again, until
				// the drain answers [] at once.
				for {
					req, _ := http.NewRequest("GET", e.srv.URL+"/bhr/api/queue/"+ident+"?timeout=600", nil)
					req.Header.Set("Authorization", mgr)
					resp, err := client.Do(req)
					if err != nil {
						b.Error(err)
						return
					}
					var items []struct{ ID int64 }
					err = json.NewDecoder(resp.Body).Decode(&items)
					resp.Body.Close()
					if err != nil || resp.StatusCode != http.StatusOK {
						b.Errorf("poll: %d %v", resp.StatusCode, err)
						return
					}
					if len(items) == 0 {
						return // drained
					}
					ids := make([]int64, len(items))
					for k, it := range items {
						ids[k] = it.ID
					}
					body, _ := json.Marshal(map[string]any{"ids": ids})
					req, _ = http.NewRequest("POST", e.srv.URL+"/bhr/api/set_blocked_multi/"+ident, bytes.NewReader(body))
					req.Header.Set("Authorization", mgr)
					req.Header.Set("Content-Type", "application/json")
					if resp, err = client.Do(req); err != nil {
						b.Error(err)
						return
					}
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						b.Errorf("set_blocked_multi: %d", resp.StatusCode)
						return
					}
				}
			}()
		}
		var storm, parked []time.Duration
		// settle waits up to d for every poll to be parked again (a block
		// wakes them all; each re-reads its queue and waits again).
		settle := func(d time.Duration) bool {
			for t0 := time.Now(); time.Since(t0) < d; time.Sleep(time.Millisecond) {
				if e.api.Waiting() == int64(polls) {
					return true
				}
			}
			return false
		}
		for {
			storm = append(storm, post())
			if settle(10 * time.Second) {
				break
			}
			if time.Since(start) > 5*time.Minute {
				b.Fatalf("only %d of %d polls parked after 5 minutes", e.api.Waiting(), polls)
			}
		}
		registered := time.Since(start)
		for range 100 {
			parked = append(parked, post())
			if !settle(60 * time.Second) {
				b.Fatalf("polls did not park again: %d", e.api.Waiting())
			}
		}
		e.api.Drain()
		wg.Wait()
		b.ReportMetric(registered.Seconds(), "s-to-park-all")
		b.ReportMetric(float64(len(storm)), "blocks-during-storm")
		b.ReportMetric(percentile(storm, 0.5), "storm-p50-ms")
		b.ReportMetric(percentile(storm, 0.99), "storm-p99-ms")
		b.ReportMetric(percentile(parked, 0.5), "parked-p50-ms")
		b.ReportMetric(percentile(parked, 0.99), "parked-p99-ms")
	}
}

// BenchmarkSetBlockedMulti1MB: one set_blocked_multi whose body is 1 MB
// of ids, all repeats of a few blocks (issue #10: it gave 111 MB of audit
// log and +530 MB of RSS). rss-MB is the peak RSS growth while serving it
// (VmHWM after clear_refs); target < 20 MB. Both stores.
func BenchmarkSetBlockedMulti1MB(b *testing.B) {
	forStores(b, nil, func(b *testing.B, e *env) {
		var ids []int64
		for range 5 {
			ids = append(ids, id(b, e.block(nextCIDR(), "1h")))
		}
		var sb strings.Builder
		sb.WriteString(`{"ids":[`)
		for i := 0; sb.Len() < 1<<20-20; i++ {
			if i > 0 {
				sb.WriteByte(',')
			}
			sb.WriteString(strconv.FormatInt(ids[i%len(ids)], 10))
		}
		sb.WriteString(`]}`)
		body := sb.String()
		client := benchClient(1)
		mgr := "Token " + e.tokens[auth.RoleBlockManager]
		var peak int64
		n := 0
		for b.Loop() {
			runtime.GC()
			resetPeakRSS()
			base := procStatusKB("VmHWM")
			req, _ := http.NewRequest("POST", e.srv.URL+fmt.Sprintf("/bhr/api/set_blocked_multi/rss-%d", n), strings.NewReader(body))
			req.Header.Set("Authorization", mgr)
			req.Header.Set("Content-Type", "application/json")
			resp, err := client.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				b.Fatalf("status %d", resp.StatusCode)
			}
			if d := procStatusKB("VmHWM") - base; d > peak {
				peak = d
			}
			n++
		}
		b.ReportMetric(float64(len(body))/1e6, "body-MB")
		b.ReportMetric(float64(peak)/1024, "rss-MB")
	})
}
