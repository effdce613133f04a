package app_test

import (
	"syscall"
	"testing"
	"time"

	"github.com/bhrd/bhrd/internal/bgptest"
)

// TestRestartKeepsFRRRoutes stops the bhrd binary (SIGKILL, then in a
// second run SIGTERM) while it announces 1,000 blackholes to FRR as a
// graceful-restart helper, changes the expected set while bhrd is down,
// and starts it again: FRR holds every route the whole time bhrd is away,
// never loses one that stays blocked while bhrd comes back, and ends
// with exactly the new set.
func TestRestartKeepsFRRRoutes(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the bhrd binary; skipped with -short")
	}
	bin := buildBhrd(t, t.TempDir())
	for _, sig := range []syscall.Signal{syscall.SIGKILL, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) { testRestartKeepsFRRRoutes(t, bin, sig) })
	}
}

func testRestartKeepsFRRRoutes(t *testing.T, bin string, sig syscall.Signal) {
	frr := bgptest.StartFRR(t, bgptest.FRRConfig{RouterASN: routerASN, SpeakerASN: speakerASN, GracefulRestart: true})
	rs := newRestartRun(t, bin, t.TempDir(), frr.Port)
	d1, first := rs.d1, rs.first
	frr.WaitPrefixes("ipv4", 30*time.Second, first)

	_ = d1.cmd.Process.Signal(sig)
	<-d1.exited
	bgptest.WaitFor(t, 15*time.Second, "FRR to see bhrd's session go", func() (bool, string) {
		up, out := frr.Established()
		return !up, out
	})
	// While bhrd is away FRR keeps every route (stale).
	for end := time.Now().Add(2 * time.Second); time.Now().Before(end); time.Sleep(200 * time.Millisecond) {
		if n := frr.Count("ipv4"); n != len(first) {
			t.Fatalf("FRR holds %d of bhrd's %d routes while bhrd is down (%s)", n, len(first), sig)
		}
	}

	want, added := rs.changeWhileDown(t)

	start := time.Now()
	startDaemon(t, bin, rs.cfgPath, rs.apiAddr)
	// Until FRR holds exactly want, no route that stays blocked is ever
	// missing.
	for {
		got := frr.Prefixes("ipv4")
		for _, p := range first[100:] {
			if _, ok := got[p]; !ok {
				t.Fatalf("FRR lost %s, still blocked, %s into the restart", p, time.Since(start).Round(time.Millisecond))
			}
		}
		exact := len(got) == len(want)
		for _, p := range added {
			if _, ok := got[p]; !ok {
				exact = false
			}
		}
		if exact {
			break
		}
		if time.Since(start) > 60*time.Second {
			t.Fatalf("FRR holds %d prefixes 60 s after the restart, want exactly %d", len(got), len(want))
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("%s: FRR held exactly the %d expected prefixes %s after the restart, none lost meanwhile",
		sig, len(want), time.Since(start).Round(time.Millisecond))
}
