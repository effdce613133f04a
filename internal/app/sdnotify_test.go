package app

import (
	"context"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/bhrd/bhrd/pkg/config"
)

// listenNotify listens where systemd would (NOTIFY_SOCKET, set for the
// test) and returns a reader of the next datagram, "" after wait.
func listenNotify(t *testing.T, wait time.Duration) func() string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	t.Setenv("NOTIFY_SOCKET", sock)
	return func() string {
		buf := make([]byte, 512)
		_ = conn.SetReadDeadline(time.Now().Add(wait))
		n, err := conn.Read(buf)
		if err != nil {
			return ""
		}
		return string(buf[:n])
	}
}

// TestNotifyReload listens where systemd would (NOTIFY_SOCKET) and checks
// the datagrams of a reload: none before READY=1 was sent, then
// RELOADING=1 with MONOTONIC_USEC, the reload, and READY=1.
func TestNotifyReload(t *testing.T) {
	read := listenNotify(t, 200*time.Millisecond)

	a := &App{}
	ran := 0
	a.NotifyReload(func() { ran++ })
	if got := read(); got != "" || ran != 1 {
		t.Fatalf("before READY: sent %q, reload ran %d times", got, ran)
	}
	a.readySent.Store(true)
	a.NotifyReload(func() { ran++ })
	first, second := read(), read()
	if !strings.HasPrefix(first, "RELOADING=1\nMONOTONIC_USEC=") || len(first) <= len("RELOADING=1\nMONOTONIC_USEC=") {
		t.Fatalf("first datagram %q", first)
	}
	if second != "READY=1" || ran != 2 {
		t.Fatalf("second datagram %q, reload ran %d times", second, ran)
	}
}

// The watchdog says "alive", not "the store answers": with the store
// gone (closed under a running bhrd) the pings go on, each with a STATUS
// naming the store; before, they stopped and systemd would have killed
// bhrd after WatchdogSec, dropping every BGP session.
func TestWatchdogThroughStoreOutage(t *testing.T) {
	read := listenNotify(t, 2*time.Second)
	t.Setenv("WATCHDOG_USEC", "200000") // a ping every 100 ms
	t.Setenv("WATCHDOG_PID", "")

	c := config.Default()
	c.Store.Path = filepath.Join(t.TempDir(), "bhrd.db")
	c.API.Listen = "127.0.0.1:0"
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a, err := New(ctx, Options{Config: c})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = a.Stop(context.Background()) }()
	go a.Notify(ctx)
	if got := read(); got != "READY=1" {
		t.Fatalf("first datagram %q", got)
	}
	if got := read(); got != "WATCHDOG=1\nSTATUS=ready" {
		t.Fatalf("ping while healthy: %q", got)
	}
	a.store.Close() // the outage
	pings := 0
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline) && pings < 3; {
		got := read()
		if strings.HasPrefix(got, "WATCHDOG=1\nSTATUS=not ready: store:") {
			pings++
		} else if got != "WATCHDOG=1\nSTATUS=ready" {
			t.Fatalf("during the outage: %q", got)
		}
	}
	if pings < 3 {
		t.Fatalf("%d watchdog pings naming the store during the outage, want 3", pings)
	}
}
