package app

import (
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestNotifyReload listens where systemd would (NOTIFY_SOCKET) and checks
// the datagrams of a reload: none before READY=1 was sent, then
// RELOADING=1 with MONOTONIC_USEC, the reload, and READY=1.
func TestNotifyReload(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	t.Setenv("NOTIFY_SOCKET", sock)
	read := func() string {
		buf := make([]byte, 512)
		_ = conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		n, err := conn.Read(buf)
		if err != nil {
			return ""
		}
		return string(buf[:n])
	}

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
