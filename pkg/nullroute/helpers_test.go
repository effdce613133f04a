package nullroute

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

func requireRoot(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("BHRD_REQUIRE_ROOT") == "1" {
		tb.Fatal("nullroute: this test needs root (netlink in a fresh network namespace) and BHRD_REQUIRE_ROOT=1")
	}
	tb.Skip("nullroute: SKIPPED, needs root for a fresh network namespace; set BHRD_REQUIRE_ROOT=1 to make this a failure")
}

// testNS is a fresh network namespace that lives as long as the test: it
// is never bind-mounted, so it disappears when its handle is closed.
type testNS struct {
	ns netns.NsHandle
	h  *netlink.Handle
}

func newTestNS(tb testing.TB) *testNS {
	tb.Helper()
	requireRoot(tb)
	type result struct {
		ns  netns.NsHandle
		err error
	}
	ch := make(chan result, 1)
	go func() {
		// netns.New moves the calling thread into the new namespace; the
		// thread goes back before it is unlocked, or is left locked (and
		// discarded by the runtime) if it cannot.
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{err: err}
			return
		}
		defer orig.Close()
		ns, err := netns.New()
		if rerr := netns.Set(orig); rerr != nil {
			ch <- result{err: fmt.Errorf("return to original namespace: %w", rerr)}
			return
		}
		runtime.UnlockOSThread()
		ch <- result{ns: ns, err: err}
	}()
	r := <-ch
	if r.err != nil {
		tb.Fatalf("create network namespace: %v", r.err)
	}
	tb.Cleanup(func() { r.ns.Close() })
	h, err := netlink.NewHandleAt(r.ns)
	if err != nil {
		tb.Fatalf("netlink handle in namespace: %v", err)
	}
	tb.Cleanup(h.Close)
	lo, err := h.LinkByName("lo")
	if err != nil {
		tb.Fatalf("find lo: %v", err)
	}
	if err := h.LinkSetUp(lo); err != nil {
		tb.Fatalf("set lo up: %v", err)
	}
	return &testNS{ns: r.ns, h: h}
}

func (n *testNS) newTable(tb testing.TB, cfg Config) *Table {
	tb.Helper()
	cfg.Netns = n.ns
	tbl, err := New(n.h, cfg)
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	tb.Cleanup(func() { tbl.Close() })
	return tbl
}

// ip runs the ip tool inside the namespace: an oracle independent of this
// package and of the netlink library.
func (n *testNS) ip(tb testing.TB, args ...string) string {
	tb.Helper()
	path := fmt.Sprintf("/proc/%d/fd/%d", os.Getpid(), int(n.ns))
	cmdArgs := append([]string{"--net=" + path, "ip"}, args...)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "nsenter", cmdArgs...).CombinedOutput()
	if err != nil {
		tb.Fatalf("nsenter ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// ipBlackholes returns what `ip route show table T proto P type blackhole`
// lists for both families.
func (n *testNS) ipBlackholes(tb testing.TB, table, proto int) []netip.Prefix {
	tb.Helper()
	var out []netip.Prefix
	for _, fam := range []string{"-4", "-6"} {
		js := n.ip(tb, fam, "-j", "route", "show", "table", strconv.Itoa(table),
			"proto", strconv.Itoa(proto), "type", "blackhole")
		var routes []struct {
			Dst string `json:"dst"`
		}
		if err := json.Unmarshal([]byte(js), &routes); err != nil {
			tb.Fatalf("parse ip -j output %q: %v", js, err)
		}
		for _, r := range routes {
			out = append(out, parseIPDst(tb, fam, r.Dst))
		}
	}
	slices.SortFunc(out, comparePrefix)
	return out
}

func parseIPDst(tb testing.TB, fam, dst string) netip.Prefix {
	tb.Helper()
	if dst == "default" {
		if fam == "-4" {
			return netip.MustParsePrefix("0.0.0.0/0")
		}
		return netip.MustParsePrefix("::/0")
	}
	if strings.Contains(dst, "/") {
		return netip.MustParsePrefix(dst)
	}
	a := netip.MustParseAddr(dst)
	return netip.PrefixFrom(a, a.BitLen())
}

func pfx(ss ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParsePrefix(s)
	}
	return out
}

func sorted(ps []netip.Prefix) []netip.Prefix {
	out := slices.Clone(ps)
	slices.SortFunc(out, comparePrefix)
	return out
}

// hostRoutes returns n /32 prefixes 10.0.0.1, 10.0.0.2, ...
func hostRoutes(n int) []netip.Prefix {
	out := make([]netip.Prefix, n)
	a := netip.MustParseAddr("10.0.0.0")
	for i := range out {
		a = a.Next()
		out[i] = netip.PrefixFrom(a, 32)
	}
	return out
}

func mustList(tb testing.TB, tbl *Table) []netip.Prefix {
	tb.Helper()
	got, err := tbl.List(context.Background())
	if err != nil {
		tb.Fatalf("List: %v", err)
	}
	return got
}
