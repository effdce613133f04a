package app

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// sdNotify sends a state string to systemd when run under Type=notify
// (NOTIFY_SOCKET is set); elsewhere it does nothing. It is the whole of
// sd_notify(3) that bhrd needs, without linking libsystemd.
func sdNotify(state string) error {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return nil
	}
	if path[0] == '@' {
		path = "\x00" + path[1:] // abstract namespace
	}
	conn, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("sd_notify: %w", err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(state)); err != nil {
		return fmt.Errorf("sd_notify: %w", err)
	}
	return nil
}

// watchdogInterval returns how often to send WATCHDOG=1 (half of
// WatchdogSec, as sd_watchdog_enabled(3) advises), or 0 when the service
// manager did not ask for it.
func watchdogInterval() time.Duration {
	usec, err := strconv.ParseInt(os.Getenv("WATCHDOG_USEC"), 10, 64)
	if err != nil || usec <= 0 {
		return 0
	}
	if pid := os.Getenv("WATCHDOG_PID"); pid != "" && pid != strconv.Itoa(os.Getpid()) {
		return 0
	}
	return time.Duration(usec) * time.Microsecond / 2
}

// monotonicUsec is CLOCK_MONOTONIC in microseconds, as RELOADING=1 wants.
func monotonicUsec() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return 0
	}
	return ts.Nano() / 1000
}

// NotifyReload runs reload between RELOADING=1 and READY=1, so that
// "systemctl reload" waits for it and shows it. Before bhrd has reported
// READY=1 the first time it just runs reload: a reload must not announce
// readiness that start-up has not reached.
func (a *App) NotifyReload(reload func()) {
	if !a.readySent.Load() {
		reload()
		return
	}
	_ = sdNotify(fmt.Sprintf("RELOADING=1\nMONOTONIC_USEC=%d", monotonicUsec()))
	reload()
	_ = sdNotify("READY=1")
}
