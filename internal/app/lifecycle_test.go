package app

import (
	"context"
	"errors"
	"net"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bhrd/bhrd/pkg/config"
)

func TestLifecycleStopsInReverseAndJoinsErrors(t *testing.T) {
	var l lifecycle
	var order []string
	add := func(name string, err error) {
		l.onStop(name, func(context.Context) error { order = append(order, name); return err })
	}
	add("store", nil)
	add("enforcer", errors.New("socket"))
	mark := l.depth()
	add("api", errors.New("busy"))
	add("late", nil)
	if err := l.stopTo(context.Background(), mark); err == nil || !strings.Contains(err.Error(), "stop api: busy") {
		t.Fatalf("unwind to the mark: %v", err)
	}
	if !slices.Equal(order, []string{"late", "api"}) {
		t.Fatalf("unwound %v", order)
	}
	err := l.stop(context.Background())
	if !slices.Equal(order, []string{"late", "api", "enforcer", "store"}) {
		t.Fatalf("stopped %v", order)
	}
	if err == nil || !strings.Contains(err.Error(), "stop enforcer: socket") {
		t.Fatalf("stop: %v", err)
	}
	if err := l.stop(context.Background()); err != nil || len(order) != 4 {
		t.Fatalf("a second stop ran something again: %v %v", order, err)
	}
}

// A Start that fails part way (here the API's port is taken, after the
// enforcers started) leaves nothing running.
func TestFailedStartUnwinds(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cfg, err := config.Parse([]byte(`
store: {path: ` + filepath.Join(t.TempDir(), "bhrd.db") + `}
api: {listen: "` + ln.Addr().String() + `"}
bgp: {asn: 64512, router_id: 192.0.2.254, listen_port: -1}
enforcers: [{ident: b1, type: bgp}]
`))
	if err != nil {
		t.Fatal(err)
	}
	a, err := New(context.Background(), Options{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(context.Background()); err == nil {
		t.Fatal("started on a taken port")
	}
	if n := len(a.EnforcerStatus()); n != 0 {
		t.Errorf("%d enforcers still running after a failed start", n)
	}
	// What is left is the store, which New opened.
	if d := a.life.depth(); d != 1 {
		t.Errorf("%d stops left after a failed start, want the store's", d)
	}
	if err := a.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// Run's shutdown gives up on a part whose stop hangs, past
// api.shutdown_timeout and a second's grace, and says so; the parts
// stopped before it were stopped.
func TestRunGivesUpOnAHangingStop(t *testing.T) {
	cfg := config.Default()
	cfg.Store.Path = filepath.Join(t.TempDir(), "bhrd.db")
	cfg.API.Listen = "127.0.0.1:0"
	cfg.API.ShutdownTimeout = 300 * time.Millisecond
	a, err := New(context.Background(), Options{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	defer close(release)
	a.OnStop("a hung backend", func(context.Context) error { <-release; return nil })
	addr := a.APIAddr()

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx, RunOptions{}) }()
	time.Sleep(50 * time.Millisecond)
	start := time.Now()
	cancel()
	select {
	case err := <-done:
		took := time.Since(start)
		if err == nil || !strings.Contains(err.Error(), "did not finish within shutdown_timeout") {
			t.Fatalf("Run returned %v", err)
		}
		if took < cfg.API.ShutdownTimeout || took > cfg.API.ShutdownTimeout+shutdownGrace+2*time.Second {
			t.Errorf("Run gave up after %s", took)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("Run did not return with a stop that hangs")
	}
	// The hung part was registered last, so it stops first and nothing
	// behind it stopped: the API still answers. Releasing it lets the
	// rest stop.
	if c, err := net.DialTimeout("tcp", addr, time.Second); err != nil {
		t.Errorf("API closed before the hung part let go: %v", err)
	} else {
		c.Close()
	}
}

// Without a hang, Run stops everything and returns nil.
func TestRunStops(t *testing.T) {
	cfg := config.Default()
	cfg.Store.Path = filepath.Join(t.TempDir(), "bhrd.db")
	cfg.API.Listen = "127.0.0.1:0"
	a, err := New(context.Background(), Options{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	addr := a.APIAddr()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := a.Run(ctx, RunOptions{}); err != nil {
		t.Fatal(err)
	}
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Error("API still listening after Run returned")
	}
	if d := a.life.depth(); d != 0 {
		t.Errorf("%d parts not stopped", d)
	}
}
