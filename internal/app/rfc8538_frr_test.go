package app_test

import (
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/bhrd/bhrd/internal/bgptest"
)

// RFC 8538: with graceful restart bhrd negotiates the N bit, so when
// FRR's hold timer expires on a stalled bhrd (SIGSTOP, as a frozen VM
// or a long pause) FRR keeps bhrd's 1,000 blackholes, stale, instead of
// flushing them, and they are fresh again once bhrd runs on. Without the
// N bit FRR flushed every one of them at the hold-timer expiry.
func TestHoldTimerExpiryKeepsFRRRoutes(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the bhrd binary; skipped with -short")
	}
	bin := buildBhrd(t, t.TempDir())
	frr := bgptest.StartFRR(t, bgptest.FRRConfig{RouterASN: routerASN, SpeakerASN: speakerASN, GracefulRestart: true})
	rs := newRestartRun(t, bin, t.TempDir(), frr.Port)
	frr.WaitPrefixes("ipv4", 30*time.Second, rs.first)
	out, err := frr.Cmd("show bgp neighbors 127.0.0.1 json")
	if err != nil || !strings.Contains(out, `"nBit":true`) {
		t.Fatalf("FRR did not negotiate the N bit with bhrd (%v):\n%s", err, out)
	}

	if err := rs.d1.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stopped := true
	defer func() {
		if stopped {
			_ = rs.d1.cmd.Process.Signal(syscall.SIGCONT)
		}
	}()
	// FRR's hold time with bhrd is 9 s.
	bgptest.WaitFor(t, 20*time.Second, "FRR's hold timer to expire", func() (bool, string) {
		up, out := frr.Established()
		return !up, out
	})
	for end := time.Now().Add(2 * time.Second); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
		if n := frr.Count("ipv4"); n != len(rs.first) {
			t.Fatalf("FRR holds %d of bhrd's %d routes after the hold timer expired", n, len(rs.first))
		}
	}
	if err := rs.d1.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	stopped = false
	bgptest.WaitFor(t, 60*time.Second, "the session to come back", frr.Established)
	frr.WaitPrefixes("ipv4", 30*time.Second, rs.first)
	bgptest.WaitFor(t, 30*time.Second, "no stale path left", func() (bool, string) {
		out, err := frr.Cmd("show bgp ipv4 unicast json detail")
		return err == nil && !strings.Contains(out, `"stale":true`), "stale paths remain"
	})
}
