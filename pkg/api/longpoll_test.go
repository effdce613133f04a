package api_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/bhrd/bhrd/pkg/auth"
	"github.com/bhrd/bhrd/pkg/config"
)

// poll runs GET api/queue/<ident>?timeout=N in the background.
type poll struct {
	start time.Time
	done  chan struct{}
	resp  *response
	took  time.Duration
}

func (e *env) startPoll(path string) *poll {
	p := &poll{start: time.Now(), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		// do reports failures with Fatalf, which must not run off the
		// test goroutine: check the request here instead.
		req, _ := http.NewRequestWithContext(e.ctx, "GET", e.srv.URL+path, nil)
		req.Header.Set("Authorization", "Token "+e.tokens[auth.RoleBlockManager])
		resp, err := e.srv.Client().Do(req)
		p.took = time.Since(p.start)
		if err != nil {
			p.resp = &response{t: e.t, req: path, status: -1, body: []byte(err.Error())}
			return
		}
		defer resp.Body.Close()
		data, _ := io.ReadAll(resp.Body)
		p.resp = &response{t: e.t, req: "GET " + path, status: resp.StatusCode, header: resp.Header, body: data}
	}()
	return p
}

func (p *poll) wait(t *testing.T, within time.Duration) *response {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(within):
		t.Fatalf("long poll did not return within %v", within)
	}
	p.resp.t = t
	return p.resp
}

func testLongPoll(t *testing.T, f storeFactory) {
	e := newEnv(t, f, envOpts{})
	mgr := as(e, auth.RoleBlockManager)

	// An empty queue with a timeout answers [] once the timeout passes.
	p := e.startPoll("/bhr/api/queue/lp?timeout=1")
	r := p.wait(t, 10*time.Second).expect(http.StatusOK)
	if l := r.list(); len(l) != 0 {
		t.Fatalf("timed-out poll = %v", l)
	}
	if p.took < time.Second {
		t.Errorf("poll with timeout=1 returned after %v", p.took)
	}

	// A block wakes a waiting poll at once: the poll is parked (the API
	// counts it), then the block arrives, and the answer comes well before
	// the 30 s timeout.
	p = e.startPoll("/bhr/api/queue/lp?timeout=30")
	waitFor(t, "the poll to wait", func() bool { return e.api.Waiting() == 1 })
	posted := time.Now()
	b := e.block("192.0.2.33", "300")
	r = p.wait(t, 10*time.Second).expect(http.StatusOK)
	latency := time.Since(posted)
	l := r.list()
	if len(l) != 1 || id(t, l[0]) != id(t, b) {
		t.Fatalf("woken poll = %v", l)
	}
	if p.took > 5*time.Second {
		t.Errorf("woken poll took %v of its 30 s timeout", p.took)
	}
	t.Logf("long poll answered %v after the block was posted", latency)
	if e.api.Waiting() != 0 {
		t.Errorf("Waiting = %d after the poll returned", e.api.Waiting())
	}

	// Work that is already there is answered at once, timeout or not.
	start := time.Now()
	if l := e.get("/bhr/api/queue/lp?timeout=30", mgr).expect(http.StatusOK).list(); len(l) != 1 {
		t.Fatalf("queue with work = %v", l)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("poll with work waited %v", d)
	}

	// A change that gives this ident no work (its own set_blocked, an
	// unblock_now) leaves the poll waiting: it does not return early
	// with nothing.
	e.post("/bhr/api/set_blocked_multi/lp", jsonBody(t, map[string]any{"ids": []int64{id(t, b)}}), mgr).expect(http.StatusOK)
	p = e.startPoll("/bhr/api/queue/lp?timeout=2")
	waitFor(t, "the poll to wait", func() bool { return e.api.Waiting() == 1 })
	e.post("/bhr/api/unblock_now", jsonBody(t, map[string]string{"cidr": "192.0.2.33", "why": "x"}), as(e, auth.RoleUser)).expect(http.StatusOK)
	r = p.wait(t, 10*time.Second).expect(http.StatusOK)
	if l := r.list(); len(l) != 0 || p.took < 2*time.Second {
		t.Errorf("poll woken by an unrelated change returned %v after %v", l, p.took)
	}

	// Hundreds of idle polls, all woken by one block.
	const n = 200
	polls := make([]*poll, n)
	for i := range polls {
		polls[i] = e.startPoll("/bhr/api/queue/many?timeout=30")
	}
	waitFor(t, "every poll to wait", func() bool { return e.api.Waiting() == n })
	b2 := e.block("192.0.2.34", "300")
	for _, p := range polls {
		l := p.wait(t, 20*time.Second).expect(http.StatusOK).list()
		if len(l) != 1 || id(t, l[0]) != id(t, b2) || p.took > 15*time.Second {
			t.Fatalf("one of %d polls: %v after %v", n, l, p.took)
		}
	}
}

func testLongPollCapAndDisconnect(t *testing.T, f storeFactory) {
	e := newEnv(t, f, envOpts{cfg: func(c *config.API) { c.LongPollMax = time.Second }})
	// timeout=100 is capped at api.long_poll_max (1 s here).
	p := e.startPoll("/bhr/api/queue/cap?timeout=100")
	if l := p.wait(t, 10*time.Second).expect(http.StatusOK).list(); len(l) != 0 {
		t.Fatalf("capped poll = %v", l)
	}
	if p.took < time.Second || p.took > 8*time.Second {
		t.Errorf("capped poll took %v, want about 1 s", p.took)
	}

	// A client that goes away frees its poll at once.
	e2 := newEnv(t, f, envOpts{})
	ctx, cancel := context.WithCancel(e2.ctx)
	errc := make(chan error, 1)
	go func() {
		req, _ := http.NewRequestWithContext(ctx, "GET", e2.srv.URL+"/bhr/api/queue/gone?timeout=60", nil)
		req.Header.Set("Authorization", "Token "+e2.tokens[auth.RoleBlockManager])
		resp, err := e2.srv.Client().Do(req)
		if err == nil {
			resp.Body.Close()
		}
		errc <- err
	}()
	waitFor(t, "the poll to wait", func() bool { return e2.api.Waiting() == 1 })
	cancel()
	if err := <-errc; !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled poll: %v", err)
	}
	waitFor(t, "the handler to notice the disconnect", func() bool { return e2.api.Waiting() == 0 })
}

func testLongPollDrain(t *testing.T, f storeFactory) {
	e := newEnv(t, f, envOpts{})
	var polls []*poll
	for range 3 {
		polls = append(polls, e.startPoll("/bhr/api/queue/drain?timeout=60"))
	}
	waitFor(t, "the polls to wait", func() bool { return e.api.Waiting() == 3 })
	e.api.Drain()
	for _, p := range polls {
		if l := p.wait(t, 10*time.Second).expect(http.StatusOK).list(); len(l) != 0 || p.took > 10*time.Second {
			t.Errorf("drained poll: %v after %v", l, p.took)
		}
	}
	// After Drain, polls do not park at all.
	start := time.Now()
	e.get("/bhr/api/queue/drain?timeout=60", as(e, auth.RoleBlockManager)).expect(http.StatusOK)
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("poll after Drain waited %v", d)
	}
	e.api.Drain() // twice is fine
}

// testLongPollShared: polls of one ident share one store read per wake,
// and a change that gives no block-queue work wakes none of them.
func testLongPollShared(t *testing.T, f storeFactory) {
	e := newEnv(t, f, envOpts{faulty: true})
	user := as(e, auth.RoleUser)
	const idents, per = 10, 30
	// Every ident exists and has acknowledged an earlier block, so that
	// the polls below all wait.
	old := e.block("192.0.2.40", "300")
	for i := range idents {
		ident := fmt.Sprintf("sh%d", i)
		e.get("/bhr/api/queue/"+ident, as(e, auth.RoleBlockManager)).expect(http.StatusOK)
		e.post("/bhr/api/set_blocked_multi/"+ident, jsonBody(t, map[string]any{"ids": []int64{id(t, old)}}), as(e, auth.RoleBlockManager)).expect(http.StatusOK)
	}
	polls := make([]*poll, 0, idents*per)
	for i := range idents * per {
		polls = append(polls, e.startPoll(fmt.Sprintf("/bhr/api/queue/sh%d?timeout=30", i%idents)))
	}
	waitFor(t, "every poll to wait", func() bool { return e.api.Waiting() == idents*per })

	// An unblock_now gives no block-queue work; a new block does.
	e.post("/bhr/api/unblock_now", jsonBody(t, map[string]string{"cidr": "192.0.2.40", "why": "x"}), user).expect(http.StatusOK)
	ext := e.block("192.0.2.41", "300")
	waitFor(t, "the polls to wake for the new block", func() bool { return e.api.Waiting() == 0 })
	for _, p := range polls {
		if l := p.wait(t, 20*time.Second).expect(http.StatusOK).list(); len(l) != 1 || id(t, l[0]) != id(t, ext) {
			t.Fatalf("poll answered %v", l)
		}
	}
	ack := func(b map[string]any) {
		for i := range idents {
			ident := fmt.Sprintf("sh%d", i)
			e.post("/bhr/api/set_blocked_multi/"+ident, jsonBody(t, map[string]any{"ids": []int64{id(t, b)}}), as(e, auth.RoleBlockManager)).expect(http.StatusOK)
		}
	}
	ack(ext)

	// Polls asking only for blocks added after a time to come are not
	// woken by a block added now: no read, all still parked.
	late := make([]*poll, 0, idents*per)
	for i := range idents * per {
		late = append(late, e.startPoll(fmt.Sprintf("/bhr/api/queue/sh%d?timeout=2&added_since=2100-01-01T00:00:00Z", i%idents)))
	}
	waitFor(t, "every poll to wait", func() bool { return e.api.Waiting() == idents*per })
	reads := e.faulty.queueReads.Load()
	ack(e.block("192.0.2.43", "300"))
	if n := e.faulty.queueReads.Load() - reads; n != 0 || e.api.Waiting() != idents*per {
		t.Fatalf("a block none of the polls asked for made %d queue reads; %d of %d polls still wait", n, e.api.Waiting(), idents*per)
	}
	for _, p := range late {
		if l := p.wait(t, 20*time.Second).expect(http.StatusOK).list(); len(l) != 0 || p.took < 2*time.Second {
			t.Fatalf("a poll for blocks added after 2100 answered %v after %v", l, p.took)
		}
	}

	polls = polls[:0]
	for i := range idents * per {
		polls = append(polls, e.startPoll(fmt.Sprintf("/bhr/api/queue/sh%d?timeout=30", i%idents)))
	}
	waitFor(t, "every poll to wait", func() bool { return e.api.Waiting() == idents*per })
	reads = e.faulty.queueReads.Load()
	e.block("192.0.2.41", "600") // extends: no new block
	e.post("/bhr/api/unblock_now", jsonBody(t, map[string]string{"cidr": "192.0.2.41", "why": "x"}), user).expect(http.StatusOK)
	time.Sleep(200 * time.Millisecond)
	if n := e.faulty.queueReads.Load() - reads; n != 0 || e.api.Waiting() != idents*per {
		t.Fatalf("an extend and an unblock_now made %d queue reads; %d of %d polls still wait", n, e.api.Waiting(), idents*per)
	}

	// One new block wakes every poll; while the store read is held, the
	// woken polls of one ident join the read in flight. Without sharing
	// each poll would read once.
	gate := make(chan struct{})
	e.faulty.queueGate.Store(&gate)
	b := e.block("192.0.2.42", "300")
	waitFor(t, "the polls to wake", func() bool { return e.api.Waiting() == 0 })
	time.Sleep(100 * time.Millisecond) // let the woken polls reach the read
	e.faulty.queueGate.Store(nil)
	close(gate)
	for _, p := range polls {
		if l := p.wait(t, 20*time.Second).expect(http.StatusOK).list(); len(l) != 1 || id(t, l[0]) != id(t, b) {
			t.Fatalf("poll answered %v", l)
		}
	}
	n := e.faulty.queueReads.Load() - reads
	t.Logf("%d polls over %d idents woken by one block: %d store reads", idents*per, idents, n)
	if n > 2*idents {
		t.Errorf("%d polls over %d idents made %d store reads for one wake, want about %d", idents*per, idents, n, idents)
	}
}
