package api_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/bhrd/bhrd/pkg/auth"
	"github.com/bhrd/bhrd/pkg/queue"
)

// Benchmarks of the targets, over loopback HTTP with keep-alive
// clients, against each store (the targets are for PostgreSQL):
//
//	go test -run '^$' -bench . -benchtime 5s ./pkg/api/
//
// Each reports its own figures (blocks/s, rows/s, p99-ms, rss-MB) next to
// Go's ns/op. The client runs in the same process, so it shares the CPU.

// parentCleanup is a TB whose cleanups run with a parent benchmark, so
// that an env set up once (a million rows take a while) outlives the
// several runs Go makes of each sub-benchmark.
type parentCleanup struct {
	testing.TB
	parent testing.TB
}

func (p parentCleanup) Cleanup(f func()) { p.parent.Cleanup(f) }

// benchClient is a keep-alive client with enough idle connections for
// the benchmark's concurrency (http.DefaultTransport keeps only 2).
func benchClient(conc int) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = conc * 2
	tr.MaxIdleConns = conc * 2
	return &http.Client{Transport: tr}
}

// percentile returns the p-th percentile (0..1) of ds, in milliseconds.
func percentile(ds []time.Duration, p float64) float64 {
	if len(ds) == 0 {
		return 0
	}
	slices.Sort(ds)
	i := int(float64(len(ds)-1) * p)
	return float64(ds[i]) / float64(time.Millisecond)
}

var benchCIDR atomic.Int64

// nextCIDR returns a /32 never used before in this process.
func nextCIDR() string {
	i := benchCIDR.Add(1) + 1<<22 // away from bulk's 10.0.0.0/10
	return fmt.Sprintf("10.%d.%d.%d", i>>16&255, i>>8&255, i&255)
}

// discardLogger logs real JSON to io.Discard: the daemon's cost of an
// access-log line, without keeping it.
func discardLogger() *zap.Logger {
	return zap.New(zapcore.NewCore(zapcore.NewJSONEncoder(zap.NewProductionEncoderConfig()), zapcore.AddSync(io.Discard), zap.InfoLevel))
}

// forStores runs fn against each store, with one env per store built
// (and set up) on first use and kept for every run of the sub-benchmark.
func forStores(b *testing.B, setup func(*env), fn func(b *testing.B, e *env)) {
	for _, st := range stores {
		var e *env
		b.Run(st.name, func(sb *testing.B) {
			if e == nil {
				e = newEnv(parentCleanup{TB: sb, parent: b}, st.new, envOpts{logger: discardLogger()})
				if setup != nil {
					setup(e)
				}
			}
			e.t = sb
			fn(sb, e)
		})
	}
}

// BenchmarkBlock: POST api/block from 8 concurrent keep-alive clients.
// Target (PostgreSQL, 2 cores): >= 2,000 blocks/s, p99 < 20 ms.
func BenchmarkBlock(b *testing.B) {
	forStores(b, nil, func(b *testing.B, e *env) {
		const conc = 8
		client := benchClient(conc)
		auth := "Token " + e.tokens["user"]
		var next atomic.Int64
		lat := make([][]time.Duration, conc)
		b.ResetTimer()
		start := time.Now()
		var wg sync.WaitGroup
		for w := range conc {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for next.Add(1) <= int64(b.N) {
					body := url.Values{"cidr": {nextCIDR()}, "source": {"bench"}, "why": {"benchmark"}, "duration": {"1h"},
						"autoscale": {"False"}, "skip_whitelist": {"False"}, "extend": {"False"}}.Encode()
					req, _ := http.NewRequest("POST", e.srv.URL+"/bhr/api/block", strings.NewReader(body))
					req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
					req.Header.Set("Authorization", auth)
					t0 := time.Now()
					resp, err := client.Do(req)
					if err != nil {
						b.Error(err)
						return
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					lat[w] = append(lat[w], time.Since(t0))
					if resp.StatusCode != http.StatusCreated {
						b.Errorf("status %d", resp.StatusCode)
						return
					}
				}
			}()
		}
		wg.Wait()
		el := time.Since(start)
		b.StopTimer()
		b.ReportMetric(float64(b.N)/el.Seconds(), "blocks/s")
		b.ReportMetric(percentile(slices.Concat(lat...), 0.99), "p99-ms")
	})
}

// BenchmarkMBlock: POST api/mblock with 100 blocks per request, 4 clients.
// Target (PostgreSQL, 2 cores): >= 20,000 blocks/s.
func BenchmarkMBlock(b *testing.B) { benchMBlock(b, 4) }

// BenchmarkMBlockSeq is BenchmarkMBlock with one client, as bhrbench's
// mblock scenario runs it: each request waits for the one before.
func BenchmarkMBlockSeq(b *testing.B) { benchMBlock(b, 1) }

func benchMBlock(b *testing.B, conc int) {
	forStores(b, nil, func(b *testing.B, e *env) {
		const per = 100
		client := benchClient(conc)
		auth := "Token " + e.tokens["user"]
		var next atomic.Int64
		b.ResetTimer()
		start := time.Now()
		var wg sync.WaitGroup
		for range conc {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for next.Add(1) <= int64(b.N) {
					items := make([]map[string]any, per)
					for i := range items {
						items[i] = map[string]any{"cidr": nextCIDR(), "source": "bench", "why": "benchmark", "duration": 3600}
					}
					data, _ := json.Marshal(items)
					req, _ := http.NewRequest("POST", e.srv.URL+"/bhr/api/mblock", bytes.NewReader(data))
					req.Header.Set("Content-Type", "application/json")
					req.Header.Set("Authorization", auth)
					resp, err := client.Do(req)
					if err != nil {
						b.Error(err)
						return
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusCreated {
						b.Errorf("status %d", resp.StatusCode)
						return
					}
				}
			}()
		}
		wg.Wait()
		el := time.Since(start)
		b.StopTimer()
		b.ReportMetric(float64(b.N*per)/el.Seconds(), "blocks/s")
	})
}

// BenchmarkQueueIdle: GET api/queue/<ident> when 100,000 blocks are all
// set_blocked for that ident and nothing is pending.
// Target (PostgreSQL, 2 cores): p99 < 5 ms.
func BenchmarkQueueIdle(b *testing.B) {
	const n = 100_000
	forStores(b, func(e *env) {
		e.bulk(n)
		var ids []int64
		if err := e.svc.ListBlocks(e.ctx, queue.ListOptions{Filter: queue.FilterAll}, func(bl queue.Block) error {
			ids = append(ids, bl.ID)
			return nil
		}); err != nil {
			e.t.Fatal(err)
		}
		for len(ids) > 0 {
			k := min(len(ids), 5000)
			if err := e.svc.SetBlocked(e.ctx, "idle", ids[:k]); err != nil {
				e.t.Fatal(err)
			}
			ids = ids[k:]
		}
	}, func(b *testing.B, e *env) {
		client := benchClient(1)
		lat := make([]time.Duration, 0, b.N)
		b.ResetTimer()
		for range b.N {
			req, _ := http.NewRequest("GET", e.srv.URL+"/bhr/api/queue/idle", nil)
			req.Header.Set("Authorization", "Token "+e.tokens[auth.RoleBlockManager])
			t0 := time.Now()
			resp, err := client.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			data, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			lat = append(lat, time.Since(t0))
			if resp.StatusCode != 200 || strings.TrimSpace(string(data)) != "[]" {
				b.Fatalf("queue: %d %s", resp.StatusCode, data)
			}
		}
		b.StopTimer()
		b.ReportMetric(percentile(lat, 0.99), "p99-ms")
		b.ReportMetric(percentile(lat, 0.5), "p50-ms")
	})
}

// BenchmarkLongPollWake: a block posted while a long poll waits; the time
// from the POST to the poll's answer.
// Target (PostgreSQL, 2 cores): p99 < 20 ms.
func BenchmarkLongPollWake(b *testing.B) {
	forStores(b, nil, func(b *testing.B, e *env) {
		client := benchClient(2)
		mgr := "Token " + e.tokens[auth.RoleBlockManager]
		lat := make([]time.Duration, 0, b.N)
		b.ResetTimer()
		for range b.N {
			done := make(chan []map[string]any, 1)
			go func() {
				req, _ := http.NewRequest("GET", e.srv.URL+"/bhr/api/queue/wake?timeout=30", nil)
				req.Header.Set("Authorization", mgr)
				resp, err := client.Do(req)
				if err != nil {
					b.Error(err)
					done <- nil
					return
				}
				var l []map[string]any
				_ = json.NewDecoder(resp.Body).Decode(&l)
				resp.Body.Close()
				done <- l
			}()
			for e.api.Waiting() == 0 {
				runtime.Gosched()
			}
			body := url.Values{"cidr": {nextCIDR()}, "source": {"bench"}, "why": {"wake"}, "duration": {"1h"}}.Encode()
			req, _ := http.NewRequest("POST", e.srv.URL+"/bhr/api/block", strings.NewReader(body))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.Header.Set("Authorization", "Token "+e.tokens["user"])
			t0 := time.Now()
			resp, err := client.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			l := <-done
			lat = append(lat, time.Since(t0))
			if len(l) != 1 {
				b.Fatalf("poll answered %v", l)
			}
			// Acknowledge, so that the next poll waits again.
			if err := e.svc.SetBlocked(e.ctx, "wake", []int64{int64(l[0]["id"].(float64))}); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		b.ReportMetric(percentile(lat, 0.99), "p99-ms")
		b.ReportMetric(percentile(lat, 0.5), "p50-ms")
	})
}

// BenchmarkPublistCSV: publist.csv of 1,000,000 expected blocks, read
// and discarded by the client. rss-MB is the process's peak RSS growth
// while serving it (Linux: VmHWM after resetting it via clear_refs).
// Target (PostgreSQL, 2 cores): >= 300,000 rows/s, RSS growth < 50 MB.
func BenchmarkPublistCSV(b *testing.B) {
	n := 1_000_000
	if s := os.Getenv("BHRD_BENCH_ROWS"); s != "" {
		n, _ = strconv.Atoi(s)
	}
	forStores(b, func(e *env) { e.bulk(n) }, func(b *testing.B, e *env) {
		client := benchClient(1)
		runtime.GC()
		debug.FreeOSMemory()
		base := procStatusKB("VmRSS")
		resetPeakRSS()
		b.ResetTimer()
		start := time.Now()
		for range b.N {
			req, _ := http.NewRequest("GET", e.srv.URL+"/bhr/publist.csv", nil)
			req.Header.Set("Authorization", "Token "+e.tokens[auth.RoleReadOnly])
			resp, err := client.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			rows := 0
			sc := bufio.NewScanner(resp.Body)
			for sc.Scan() {
				rows++
			}
			resp.Body.Close()
			if err := sc.Err(); err != nil || rows != n+1 {
				b.Fatalf("publist.csv: %d rows, %v", rows, err)
			}
		}
		el := time.Since(start)
		b.StopTimer()
		b.ReportMetric(float64(n*b.N)/el.Seconds(), "rows/s")
		if peak := procStatusKB("VmHWM"); peak > 0 && base > 0 {
			b.ReportMetric(float64(peak-base)/1024, "rss-MB")
		}
	})
}

func resetPeakRSS() { _ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) }

// procStatusKB reads a kB field of /proc/self/status (0 if unavailable).
func procStatusKB(field string) int64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			n, _ := strconv.ParseInt(strings.Fields(v)[0], 10, 64)
			return n
		}
	}
	return 0
}
