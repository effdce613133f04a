package api_test

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/bhrd/bhrd/pkg/config"
)

// Connections that declare a body and never send it are answered 408 and
// closed within api.body_timeout, however many there are, and the server
// keeps answering everyone else meanwhile.
func TestStalledBodiesAreClosed(t *testing.T) {
	const n = 1000
	e := newEnv(t, sqliteStore, envOpts{cfg: func(c *config.API) { c.BodyTimeout = time.Second }})
	addr := strings.TrimPrefix(e.srv.URL, "http://")
	conns := make([]net.Conn, 0, n)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	start := time.Now()
	for range n {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("dial after %d: %v", len(conns), err)
		}
		conns = append(conns, c)
		if _, err := io.WriteString(c, "POST /bhr/api/block HTTP/1.1\r\nHost: bhrd\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 200\r\n\r\ncidr="); err != nil {
			t.Fatal(err)
		}
	}
	// /healthz answers throughout.
	stop := make(chan struct{})
	healthErr := make(chan error, 1)
	go func() {
		client := &http.Client{Timeout: 2 * time.Second}
		for {
			select {
			case <-stop:
				healthErr <- nil
				return
			case <-time.After(50 * time.Millisecond):
			}
			resp, err := client.Get(e.srv.URL + "/healthz")
			if err != nil {
				healthErr <- err
				return
			}
			resp.Body.Close()
		}
	}()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var bad []string
	var last time.Duration
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
			r := bufio.NewReader(c)
			status, err := r.ReadString('\n')
			rest, _ := io.ReadAll(r) // until the server closes
			mu.Lock()
			defer mu.Unlock()
			if d := time.Since(start); d > last {
				last = d
			}
			if err != nil || !strings.HasPrefix(status, "HTTP/1.1 408") || !strings.Contains(string(rest), "api.body_timeout") {
				bad = append(bad, status+" "+string(rest))
			}
		}()
	}
	wg.Wait()
	close(stop)
	if err := <-healthErr; err != nil {
		t.Errorf("/healthz failed meanwhile: %v", err)
	}
	if len(bad) > 0 {
		t.Fatalf("%d of %d stalled connections not answered 408 and closed; first: %q", len(bad), n, bad[0])
	}
	// Read deadline 10 s: a connection the server never closed fails
	// above; the last closed this long after the first was opened.
	t.Logf("all %d closed within %s of the first", n, last.Round(time.Millisecond))
	if last > 5*time.Second {
		t.Errorf("last stalled connection closed after %s (api.body_timeout 1s)", last)
	}
}
