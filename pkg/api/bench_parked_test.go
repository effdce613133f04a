package api_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/bhrd/bhrd/pkg/auth"
	"github.com/bhrd/bhrd/pkg/queue"
)

// BenchmarkParkedPollsCPU: the server's CPU time (user + system, of the
// whole process, getrusage) for one request while 1,000 long polls over
// 10 idents are parked. The polls run in a child process (this test
// binary, re-run as parkedPoller by TestMain), so that their client side
// is not counted. Reported per store:
//   - idle-block-cpu-ms: a block POST with no poll parked, the floor;
//   - nowork-block-cpu-ms: a block POST while the 1,000 polls ask for
//     blocks added after a later time (as issue #11 measured it: the
//     block gives them no work), POST and 5 ms after it;
//   - unblock-cpu-ms: an unblock_now, which gives block queues no work,
//     while 1,000 polls that would take a block are parked;
//   - answered-block-cpu-ms: a block POST that wakes those 1,000 polls,
//     from the POST until every poll has its answer (10 store reads,
//     1,000 answers written and their connections read again).
//
// Target (issue #11 item 6): nowork-block-cpu-ms under 5 ms.
func BenchmarkParkedPollsCPU(b *testing.B) {
	const idents, per = 10, 100
	forStores(b, nil, func(b *testing.B, e *env) {
		client := benchClient(2)
		post := func(path string, form url.Values, role string) {
			req, _ := http.NewRequest("POST", e.srv.URL+path, strings.NewReader(form.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.Header.Set("Authorization", "Token "+e.tokens[role])
			resp, err := client.Do(req)
			if err != nil {
				b.Fatal(err)
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode >= 300 {
				b.Fatalf("%s: %d", path, resp.StatusCode)
			}
		}
		block := func() string {
			c := nextCIDR()
			post("/bhr/api/block", url.Values{"cidr": {c}, "source": {"bench"}, "why": {"parked"}, "duration": {"1h"}}, auth.RoleUser)
			return c
		}
		ack := func() {
			// Every ident acknowledges everything queued, so that the
			// polls park again.
			for i := range idents {
				ident := fmt.Sprintf("park%d", i)
				items, err := e.svc.BlockQueue(e.ctx, ident, time.Time{}, queue.QueueLimit)
				if err != nil {
					b.Fatal(err)
				}
				ids := make([]int64, len(items))
				for k, it := range items {
					ids[k] = it.ID
				}
				if err := e.svc.SetBlocked(e.ctx, ident, ids); err != nil {
					b.Fatal(err)
				}
			}
		}
		// The idents exist before the polls park.
		ack()
		last := block() // warm the connection and the statements
		ack()

		const settle = 5 * time.Millisecond
		// Floor: a block with nothing parked.
		var idle time.Duration
		for range 20 {
			t0 := cpuTime(b)
			last = block()
			time.Sleep(settle)
			idle += cpuTime(b) - t0
		}
		ack()

		// Polls the blocks give no work.
		var nowork time.Duration
		later := startPollers(b, e.srv.URL, e.tokens[auth.RoleBlockManager], idents, per, "2100-01-01T00:00:00Z")
		later.park()
		waitFor(b, "every poll to park", func() bool { return e.api.Waiting() == idents*per })
		for range 20 {
			t0 := cpuTime(b)
			last = block()
			time.Sleep(settle)
			nowork += cpuTime(b) - t0
			if w := e.api.Waiting(); w != idents*per {
				b.Fatalf("a block none asked for left %d of %d polls parked", w, idents*per)
			}
		}
		later.stop()
		waitFor(b, "the polls to go", func() bool { return e.api.Waiting() == 0 })
		ack()

		child := startPollers(b, e.srv.URL, e.tokens[auth.RoleBlockManager], idents, per, "")
		defer child.stop()
		var blockCPU, unblockCPU time.Duration
		b.ResetTimer()
		for range b.N {
			b.StopTimer()
			child.park()
			waitFor(b, "every poll to park", func() bool { return e.api.Waiting() == idents*per })
			b.StartTimer()
			// An unblock_now of the block before: no poll wakes.
			t0 := cpuTime(b)
			post("/bhr/api/unblock_now", url.Values{"cidr": {last}, "why": {"x"}}, auth.RoleUser)
			unblockCPU += cpuTime(b) - t0
			b.StopTimer()
			if w := e.api.Waiting(); w != idents*per {
				b.Fatalf("an unblock_now left %d of %d polls parked", w, idents*per)
			}
			b.StartTimer()
			t0 = cpuTime(b)
			last = block()
			child.answered()
			blockCPU += cpuTime(b) - t0
			b.StopTimer()
			ack()
			b.StartTimer()
		}
		b.StopTimer()
		ms := func(d time.Duration, n int) float64 { return float64(d) / float64(n) / float64(time.Millisecond) }
		b.ReportMetric(ms(idle, 20), "idle-block-cpu-ms")
		b.ReportMetric(ms(nowork, 20), "nowork-block-cpu-ms")
		b.ReportMetric(ms(unblockCPU, b.N), "unblock-cpu-ms")
		b.ReportMetric(ms(blockCPU, b.N), "answered-block-cpu-ms")
	})
}

// cpuTime is the process's user + system CPU time so far.
func cpuTime(t testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// pollers is the child process holding the parked polls.
type pollers struct {
	t   testing.TB
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Scanner
}

// startPollers starts the child; since, when set, is each poll's
// added_since, and then the polls are sent but their answers not waited
// for.
func startPollers(t testing.TB, base, token string, idents, per int, since string) *pollers {
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "BHRD_POLLER_URL="+base, "BHRD_POLLER_TOKEN="+token,
		"BHRD_POLLER_IDENTS="+strconv.Itoa(idents), "BHRD_POLLER_PER="+strconv.Itoa(per), "BHRD_POLLER_SINCE="+since)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	outp, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &pollers{t: t, cmd: cmd, in: in, out: bufio.NewScanner(outp)}
	p.expect("ready")
	return p
}

func (p *pollers) expect(want string) {
	if !p.out.Scan() {
		p.t.Fatalf("poller child ended: %v", p.out.Err())
	}
	if got := p.out.Text(); got != want {
		p.t.Fatalf("poller child said %q, want %q", got, want)
	}
}

// park sends every poll; answered waits until each has its answer.
func (p *pollers) park() {
	if _, err := io.WriteString(p.in, "park\n"); err != nil {
		p.t.Fatal(err)
	}
}

func (p *pollers) answered() { p.expect("answered") }

func (p *pollers) stop() {
	p.in.Close()
	_ = p.cmd.Process.Kill() // its polls may still be parked
	_ = p.cmd.Wait()
}

// parkedPoller is BenchmarkParkedPollsCPU's child (TestMain runs it when
// BHRD_POLLER_URL is set): idents × per keep-alive connections; at each
// "park" on stdin each sends one long poll, and once all are answered
// (with a block) it says "answered" (with BHRD_POLLER_SINCE set, it sends
// them and waits for nothing). It returns the process's exit status.
func parkedPoller(base string) int {
	fail := func(err error) int {
		fmt.Fprintln(os.Stderr, "poller:", err)
		return 1
	}
	idents, _ := strconv.Atoi(os.Getenv("BHRD_POLLER_IDENTS"))
	per, _ := strconv.Atoi(os.Getenv("BHRD_POLLER_PER"))
	u, err := url.Parse(base)
	if err != nil {
		return fail(err)
	}
	type conn struct {
		c   net.Conn
		r   *bufio.Reader
		req string
	}
	since := os.Getenv("BHRD_POLLER_SINCE")
	query := "timeout=600"
	if since != "" {
		query += "&added_since=" + since
	}
	conns := make([]*conn, idents*per)
	for i := range conns {
		c, err := net.Dial("tcp", u.Host)
		if err != nil {
			return fail(err)
		}
		conns[i] = &conn{c: c, r: bufio.NewReader(c), req: fmt.Sprintf("GET /bhr/api/queue/park%d?%s HTTP/1.1\r\nHost: %s\r\nAuthorization: Token %s\r\n\r\n",
			i%idents, query, u.Host, os.Getenv("BHRD_POLLER_TOKEN"))}
	}
	fmt.Println("ready")
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		if since != "" {
			for _, c := range conns {
				if _, err := io.WriteString(c.c, c.req); err != nil {
					return fail(err)
				}
			}
			continue
		}
		var wg sync.WaitGroup
		failed := make(chan error, len(conns))
		for _, c := range conns {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, err := io.WriteString(c.c, c.req); err != nil {
					failed <- err
					return
				}
				resp, err := http.ReadResponse(c.r, nil)
				if err != nil {
					failed <- err
					return
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 || !strings.Contains(string(body), `"cidr"`) {
					failed <- fmt.Errorf("poll answered %d %s", resp.StatusCode, body)
				}
			}()
		}
		wg.Wait()
		select {
		case err := <-failed:
			return fail(err)
		default:
		}
		fmt.Println("answered")
	}
	return 0
}

// BenchmarkUnblockNowParkedPolls: sequential api/unblock_now of
// existing blocks for 3 s with no poll parked, then with 500 long polls
// over 10 idents parked (in a child process). Reported: unblocks/s of
// each. An unblock_now gives block queues no work, so the polls must not
// cost it anything (issue #16 item 3: before, every change woke every
// poll, and 500 parked polls cut 1,407/s to 70/s).
func BenchmarkUnblockNowParkedPolls(b *testing.B) {
	const idents, per, blocks = 10, 50, 20000
	// The next block to unblock, per store: the benchmark function runs
	// more than once (b.N = 1 first) over the same blocks.
	nextOf := map[*env]int{}
	forStores(b, func(e *env) {
		var reqs []queue.BlockRequest
		for i := range blocks {
			reqs = append(reqs, queue.BlockRequest{CIDR: fmt.Sprintf("10.200.%d.%d", i/256, i%256), Who: "bench", Source: "bench", Why: "unblock", Duration: "1d", Extend: true})
			if len(reqs) == 1000 {
				if _, err := e.svc.MBlock(e.ctx, reqs); err != nil {
					e.t.Fatal(err)
				}
				reqs = reqs[:0]
			}
		}
	}, func(b *testing.B, e *env) {
		client := benchClient(2)
		next := nextOf[e]
		defer func() { nextOf[e] = next }()
		unblock := func(d time.Duration) float64 {
			n := 0
			end := time.Now().Add(d)
			for time.Now().Before(end) && next < blocks {
				form := url.Values{"cidr": {fmt.Sprintf("10.200.%d.%d", next/256, next%256)}, "why": {"bench"}}
				next++
				req, _ := http.NewRequest("POST", e.srv.URL+"/bhr/api/unblock_now", strings.NewReader(form.Encode()))
				req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
				req.Header.Set("Authorization", "Token "+e.tokens[auth.RoleUser])
				resp, err := client.Do(req)
				if err != nil {
					b.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					b.Fatalf("unblock_now %s: %d %s", form.Get("cidr"), resp.StatusCode, body)
				}
				n++
			}
			if next >= blocks {
				b.Fatalf("ran out of the %d blocks to unblock: run it with -benchtime 1x", blocks)
			}
			return float64(n) / d.Seconds()
		}
		// Every ident exists and has nothing queued, so the polls park.
		for i := range idents {
			ident := fmt.Sprintf("park%d", i)
			for {
				items, err := e.svc.BlockQueue(e.ctx, ident, time.Time{}, queue.QueueLimit)
				if err != nil {
					b.Fatal(err)
				}
				if len(items) == 0 {
					break
				}
				ids := make([]int64, len(items))
				for k, it := range items {
					ids[k] = it.ID
				}
				if err := e.svc.SetBlocked(e.ctx, ident, ids); err != nil {
					b.Fatal(err)
				}
			}
		}
		b.ResetTimer()
		for range b.N {
			alone := unblock(3 * time.Second)
			child := startPollers(b, e.srv.URL, e.tokens[auth.RoleBlockManager], idents, per, "")
			child.park()
			waitFor(b, "every poll to park", func() bool { return e.api.Waiting() == idents*per })
			parked := unblock(3 * time.Second)
			if w := e.api.Waiting(); w != idents*per {
				b.Fatalf("unblocks left %d of %d polls parked", w, idents*per)
			}
			child.stop()
			b.ReportMetric(alone, "unblocks/s")
			b.ReportMetric(parked, "unblocks-500-parked/s")
		}
	})
}
