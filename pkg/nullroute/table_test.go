package nullroute

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

func TestConfigDefaultsAndValidation(t *testing.T) {
	tests := []struct {
		name    string
		in      Config
		want    Config
		wantErr string
	}{
		{name: "zero", in: Config{}, want: Config{Table: 254, Protocol: 66, BatchBytes: DefaultBatchBytes}},
		{name: "explicit", in: Config{Table: 1000, Protocol: 201, BatchBytes: 4096},
			want: Config{Table: 1000, Protocol: 201, BatchBytes: 4096}},
		{name: "static protocol", in: Config{Protocol: unix.RTPROT_STATIC}, wantErr: "reserved"},
		{name: "kernel protocol", in: Config{Protocol: unix.RTPROT_KERNEL}, wantErr: "reserved"},
		{name: "protocol too big", in: Config{Protocol: 256}, wantErr: "out of range"},
		{name: "negative table", in: Config{Table: -1}, wantErr: "out of range"},
		{name: "table too big", in: Config{Table: 1 << 32}, wantErr: "out of range"},
		{name: "negative batch", in: Config{BatchBytes: -1}, wantErr: "negative"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.in.withDefaults()
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("withDefaults() error = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("withDefaults(): %v", err)
			}
			if got != tc.want {
				t.Fatalf("withDefaults() = %+v, want %+v", got, tc.want)
			}
		})
	}
	if _, err := New(nil, Config{}); err == nil {
		t.Fatal("New(nil handle) succeeded")
	}
}

func TestAddListDelete(t *testing.T) {
	n := newTestNS(t)
	tbl := n.newTable(t, Config{})
	ctx := context.Background()

	routes := pfx("192.0.2.1/32", "198.51.100.0/24", "0.0.0.0/0",
		"2001:db8::1/128", "2001:db8:1::/48", "::ffff:203.0.113.7/128")
	if err := tbl.Add(ctx, routes); err != nil {
		t.Fatalf("Add: %v", err)
	}
	if got := mustList(t, tbl); !slices.Equal(got, sorted(routes)) {
		t.Fatalf("List = %v, want %v", got, sorted(routes))
	}
	if got := n.ipBlackholes(t, 254, 66); !slices.Equal(got, sorted(routes)) {
		t.Fatalf("ip route show table 254 proto 66 type blackhole = %v, want %v", got, sorted(routes))
	}
	// The kernel sees them as blackholes: a lookup fails with EINVAL.
	if _, err := n.h.RouteGet(net.ParseIP("198.51.100.9")); !errors.Is(err, unix.EINVAL) {
		t.Fatalf("RouteGet inside a blackhole = %v, want EINVAL", err)
	}

	del := pfx("198.51.100.0/24", "2001:db8::1/128", "0.0.0.0/0")
	if err := tbl.Delete(ctx, del); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	left := pfx("192.0.2.1/32", "2001:db8:1::/48", "::ffff:203.0.113.7/128")
	if got := mustList(t, tbl); !slices.Equal(got, sorted(left)) {
		t.Fatalf("List after Delete = %v, want %v", got, sorted(left))
	}
	if got := n.ipBlackholes(t, 254, 66); !slices.Equal(got, sorted(left)) {
		t.Fatalf("ip after Delete = %v, want %v", got, sorted(left))
	}
	if err := tbl.Delete(ctx, left); err != nil {
		t.Fatalf("Delete rest: %v", err)
	}
	if got := mustList(t, tbl); len(got) != 0 {
		t.Fatalf("List after deleting all = %v, want none", got)
	}
	if got := n.ipBlackholes(t, 254, 66); len(got) != 0 {
		t.Fatalf("ip after deleting all = %v, want none", got)
	}
}

func TestIdempotent(t *testing.T) {
	n := newTestNS(t)
	tbl := n.newTable(t, Config{})
	ctx := context.Background()
	routes := pfx("192.0.2.1/32", "192.0.2.1/32", "2001:db8::/64", "2001:db8::/64", "203.0.113.0/24")

	for i := range 2 {
		if err := tbl.Add(ctx, routes); err != nil {
			t.Fatalf("Add #%d: %v", i+1, err)
		}
	}
	want := pfx("192.0.2.1/32", "203.0.113.0/24", "2001:db8::/64")
	if got := n.ipBlackholes(t, 254, 66); !slices.Equal(got, sorted(want)) {
		t.Fatalf("ip after double Add = %v, want %v (no duplicates)", got, sorted(want))
	}
	for i := range 2 {
		if err := tbl.Delete(ctx, routes); err != nil {
			t.Fatalf("Delete #%d: %v", i+1, err)
		}
	}
	if err := tbl.Delete(ctx, pfx("10.99.0.0/16", "2001:db8:99::/48")); err != nil {
		t.Fatalf("Delete of never-added prefixes: %v", err)
	}
	if got := n.ipBlackholes(t, 254, 66); len(got) != 0 {
		t.Fatalf("ip after Delete = %v, want none", got)
	}
	if err := tbl.Add(ctx, nil); err != nil {
		t.Fatalf("Add(nil): %v", err)
	}
	if err := tbl.Delete(ctx, nil); err != nil {
		t.Fatalf("Delete(nil): %v", err)
	}
}

func TestReconcileAfterRestart(t *testing.T) {
	n := newTestNS(t)
	ctx := context.Background()
	before := n.newTable(t, Config{})
	if err := before.Add(ctx, pfx("192.0.2.1/32", "192.0.2.2/32", "2001:db8::1/128", "2001:db8::2/128")); err != nil {
		t.Fatalf("Add: %v", err)
	}
	if err := before.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := before.Add(ctx, pfx("192.0.2.9/32")); err == nil {
		t.Fatal("Add on a closed Table succeeded")
	}

	// A new process: a new Table over the same namespace. The store now
	// wants .1 and ::1 kept, .2 and ::2 gone (stale), .3 and ::3 new.
	after := n.newTable(t, Config{})
	want := pfx("192.0.2.1/32", "192.0.2.3/32", "2001:db8::1/128", "2001:db8::3/128")
	added, removed, err := after.Reconcile(ctx, want)
	if err != nil {
		t.Fatalf("Reconcile: %v", err)
	}
	if w := pfx("192.0.2.3/32", "2001:db8::3/128"); !slices.Equal(added, w) {
		t.Errorf("added = %v, want %v", added, w)
	}
	if w := pfx("192.0.2.2/32", "2001:db8::2/128"); !slices.Equal(removed, w) {
		t.Errorf("removed = %v, want %v", removed, w)
	}
	if got := n.ipBlackholes(t, 254, 66); !slices.Equal(got, sorted(want)) {
		t.Fatalf("ip after Reconcile = %v, want %v", got, sorted(want))
	}
	added, removed, err = after.Reconcile(ctx, want)
	if err != nil || len(added) != 0 || len(removed) != 0 {
		t.Fatalf("second Reconcile = %v, %v, %v; want no change", added, removed, err)
	}
}

// TestOtherRoutesUntouched puts routes that are not bhrd's next to ours,
// some with prefixes equal to ours, and checks that nothing bhrd does
// changes them.
func TestOtherRoutesUntouched(t *testing.T) {
	n := newTestNS(t)
	ctx := context.Background()
	// No dummy driver everywhere; a veth pair is an interface all the same.
	n.ip(t, "link", "add", "veth0", "type", "veth", "peer", "name", "veth1")
	n.ip(t, "link", "set", "veth0", "up")
	n.ip(t, "link", "set", "veth1", "up")
	n.ip(t, "addr", "add", "192.0.2.1/24", "dev", "veth0")
	n.ip(t, "route", "add", "blackhole", "198.51.100.0/24", "proto", "static")
	n.ip(t, "route", "add", "blackhole", "198.51.101.0/24", "proto", "67") // another daemon
	n.ip(t, "route", "add", "203.0.113.0/24", "dev", "veth0")              // proto boot, unicast
	n.ip(t, "route", "add", "blackhole", "100.64.0.0/24", "proto", "static", "table", "1000")
	// Our protocol number but not a blackhole: not ours either.
	n.ip(t, "route", "add", "100.65.0.0/24", "dev", "veth0", "proto", "66")
	n.ip(t, "-6", "route", "add", "blackhole", "2001:db8:9::/64", "proto", "static")
	n.ip(t, "-6", "route", "add", "2001:db8:8::/64", "dev", "veth0")
	n.ip(t, "-6", "route", "add", "2001:db8:7::/64", "dev", "veth0", "proto", "66")

	snapshot := func() string {
		return n.ip(t, "-4", "route", "show", "table", "all") + n.ip(t, "-6", "route", "show", "table", "all")
	}
	foreign := snapshot()

	tbl := n.newTable(t, Config{})
	if got := mustList(t, tbl); len(got) != 0 {
		t.Fatalf("List with only foreign routes = %v, want none", got)
	}
	// Equal prefixes to every foreign route, plus one of our own.
	ours := pfx("198.51.100.0/24", "198.51.101.0/24", "203.0.113.0/24", "100.65.0.0/24",
		"192.0.2.77/32", "2001:db8:8::/64", "2001:db8:77::1/128")
	if err := tbl.Add(ctx, ours); err != nil {
		t.Fatalf("Add: %v", err)
	}
	// IPv6 keeps one route per prefix and metric among reject routes: the
	// static blackhole stays and Add says so.
	err := tbl.Add(ctx, pfx("2001:db8:9::/64"))
	var be *BatchError
	if !errors.As(err, &be) || len(be.Errors) != 1 || !errors.Is(err, ErrConflict) ||
		be.Errors[0].Prefix != netip.MustParsePrefix("2001:db8:9::/64") {
		t.Fatalf("Add over a static IPv6 blackhole = %v, want a BatchError with ErrConflict for 2001:db8:9::/64", err)
	}
	if got := n.ipBlackholes(t, 254, 66); !slices.Equal(got, sorted(ours)) {
		t.Fatalf("ours per ip = %v, want %v", got, sorted(ours))
	}
	if got := n.ipBlackholes(t, 254, 4); !slices.Equal(got, pfx("198.51.100.0/24", "2001:db8:9::/64")) {
		t.Fatalf("static blackholes while ours are in place = %v", got)
	}
	// IPv4 puts our route first, so the block takes effect.
	if _, err := n.h.RouteGet(net.ParseIP("203.0.113.5")); !errors.Is(err, unix.EINVAL) {
		t.Fatalf("lookup of an address we blackholed over a unicast route = %v, want EINVAL", err)
	}
	// Deleting a prefix that only foreign routes have removes nothing.
	if err := tbl.Delete(ctx, pfx("2001:db8:7::/64", "100.64.0.0/24", "2001:db8:9::/64")); err != nil {
		t.Fatalf("Delete of foreign-only prefixes: %v", err)
	}

	added, removed, err := tbl.Reconcile(ctx, nil)
	if err != nil {
		t.Fatalf("Reconcile(nil): %v", err)
	}
	if len(added) != 0 || !slices.Equal(removed, sorted(ours)) {
		t.Fatalf("Reconcile(nil) = added %v, removed %v; want removed %v", added, removed, sorted(ours))
	}
	if got := snapshot(); got != foreign {
		t.Fatalf("foreign routes changed.\nbefore:\n%s\nafter:\n%s", foreign, got)
	}
}

func TestNonMainTable(t *testing.T) {
	for _, id := range []int{100, 1000} {
		t.Run("table-"+strconv.Itoa(id), func(t *testing.T) {
			n := newTestNS(t)
			ctx := context.Background()
			side := n.newTable(t, Config{Table: id})
			main := n.newTable(t, Config{})
			routes := pfx("192.0.2.0/24", "2001:db8::/32")
			if err := side.Add(ctx, routes); err != nil {
				t.Fatalf("Add to table %d: %v", id, err)
			}
			if got := n.ipBlackholes(t, id, 66); !slices.Equal(got, routes) {
				t.Fatalf("ip route show table %d = %v, want %v", id, got, routes)
			}
			if got := mustList(t, side); !slices.Equal(got, routes) {
				t.Fatalf("List(table %d) = %v, want %v", id, got, routes)
			}
			if got := mustList(t, main); len(got) != 0 {
				t.Fatalf("List(main) = %v, want none", got)
			}
			if _, removed, err := main.Reconcile(ctx, nil); err != nil || len(removed) != 0 {
				t.Fatalf("Reconcile(nil) on main = removed %v, %v; want nothing", removed, err)
			}
			if got := n.ipBlackholes(t, id, 66); !slices.Equal(got, routes) {
				t.Fatalf("table %d after main Reconcile = %v, want %v", id, got, routes)
			}
			if got := n.ipBlackholes(t, 254, 66); len(got) != 0 {
				t.Fatalf("main table = %v, want none", got)
			}
			if err := side.Delete(ctx, routes); err != nil {
				t.Fatalf("Delete: %v", err)
			}
			if got := n.ipBlackholes(t, id, 66); len(got) != 0 {
				t.Fatalf("table %d after Delete = %v", id, got)
			}
		})
	}
}

func TestOtherProtocolNumber(t *testing.T) {
	n := newTestNS(t)
	ctx := context.Background()
	a := n.newTable(t, Config{})
	b := n.newTable(t, Config{Protocol: 201})
	if err := a.Add(ctx, pfx("192.0.2.1/32")); err != nil {
		t.Fatal(err)
	}
	if err := b.Add(ctx, pfx("192.0.2.1/32", "192.0.2.2/32")); err != nil {
		t.Fatal(err)
	}
	if _, removed, err := b.Reconcile(ctx, nil); err != nil || !slices.Equal(removed, pfx("192.0.2.1/32", "192.0.2.2/32")) {
		t.Fatalf("Reconcile(nil) with protocol 201 = %v, %v", removed, err)
	}
	if got := mustList(t, a); !slices.Equal(got, pfx("192.0.2.1/32")) {
		t.Fatalf("protocol 66 routes after protocol 201 cleared its own = %v", got)
	}
}

func TestInvalidPrefixes(t *testing.T) {
	n := newTestNS(t)
	tbl := n.newTable(t, Config{})
	ctx := context.Background()
	in := []netip.Prefix{
		netip.MustParsePrefix("192.0.2.1/32"),
		netip.MustParsePrefix("10.0.0.1/24"), // host bits
		{},                                   // zero value
		netip.MustParsePrefix("2001:db8::1/64"),
		netip.MustParsePrefix("2001:db8::/64"),
	}
	err := tbl.Add(ctx, in)
	var be *BatchError
	if !errors.As(err, &be) {
		t.Fatalf("Add = %v, want *BatchError", err)
	}
	if be.Total != len(in) || !slices.Equal(be.Failed(), []netip.Prefix{in[1], in[2], in[3]}) {
		t.Fatalf("failed = %v of %d, want %v of %d", be.Failed(), be.Total, in[1:4], len(in))
	}
	for _, pe := range be.Errors {
		if !errors.Is(pe, ErrInvalidPrefix) || pe.Op != "add" {
			t.Errorf("error for %v = %v (op %q), want ErrInvalidPrefix", pe.Prefix, pe.Err, pe.Op)
		}
	}
	if !strings.Contains(be.Errors[0].Error(), "the network is 10.0.0.0/24") {
		t.Errorf("host-bits error %q does not name the network", be.Errors[0])
	}
	if got := n.ipBlackholes(t, 254, 66); !slices.Equal(got, pfx("192.0.2.1/32", "2001:db8::/64")) {
		t.Fatalf("valid prefixes not installed: %v", got)
	}
	err = tbl.Delete(ctx, in)
	if !errors.As(err, &be) || len(be.Errors) != 3 || be.Op != "delete" {
		t.Fatalf("Delete = %v, want 3 invalid prefixes", err)
	}
	if got := n.ipBlackholes(t, 254, 66); len(got) != 0 {
		t.Fatalf("valid prefixes not deleted: %v", got)
	}

	added, removed, err := tbl.Reconcile(ctx, in)
	if !errors.As(err, &be) || be.Op != "reconcile" || len(be.Errors) != 3 {
		t.Fatalf("Reconcile = %v, want 3 invalid prefixes", err)
	}
	if !slices.Equal(added, pfx("192.0.2.1/32", "2001:db8::/64")) || len(removed) != 0 {
		t.Fatalf("Reconcile = added %v removed %v", added, removed)
	}
}

// TestKernelErrorsMapToPrefixes sends messages the kernel refuses in the
// middle of batches and checks that each error lands on its own prefix.
func TestKernelErrorsMapToPrefixes(t *testing.T) {
	n := newTestNS(t)
	tbl := n.newTable(t, Config{BatchBytes: 1024}) // ~20 messages per batch
	good := hostRoutes(100)
	in := slices.Clone(good)
	bad := map[int]bool{0: true, 21: true, 22: true, 57: true, 99: true}
	for i := range bad {
		// Host bits set: the kernel answers EINVAL for IPv4. Validation is
		// bypassed by calling the batch layer directly.
		in[i] = netip.PrefixFrom(in[i].Addr(), 24)
	}
	results := make([]error, len(in))
	tbl.mu.Lock()
	err := tbl.conn.exec(context.Background(), opAdd, tbl.table, tbl.proto, in, results, nil)
	tbl.mu.Unlock()
	if err != nil {
		t.Fatalf("exec: %v", err)
	}
	var want []netip.Prefix
	for i, r := range results {
		if bad[i] {
			if !errors.Is(r, unix.EINVAL) || !strings.Contains(r.Error(), "prefix") {
				t.Errorf("result %d (%v) = %v, want EINVAL with the kernel's message", i, in[i], r)
			}
			continue
		}
		want = append(want, in[i])
		if r != nil {
			t.Errorf("result %d (%v) = %v, want success", i, in[i], r)
		}
	}
	if got := mustList(t, tbl); !slices.Equal(got, want) {
		t.Fatalf("installed %d routes, want the %d good ones", len(got), len(want))
	}
}

// TestReceiveOverrun shrinks the receive buffer far below one batch's
// replies so the kernel drops some (ENOBUFS), and checks that the retries
// still report every outcome: the kernel applies a batch even when it
// cannot deliver the replies, so the failures it refuses are what a lost
// reply would hide. Without per-message ACKs, replies pile up when most
// messages fail: adding what exists, deleting what is gone.
func TestReceiveOverrun(t *testing.T) {
	for _, ackEach := range []bool{false, true} {
		t.Run("ackEach="+strconv.FormatBool(ackEach), func(t *testing.T) {
			n := newTestNS(t)
			tbl := n.newTable(t, Config{})
			c := tbl.conn
			c.ackEach = ackEach
			c.maxMsgs = 2000
			if err := c.rc.Control(func(fd uintptr) {
				if err := unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, 64<<10); err != nil {
					t.Errorf("SO_RCVBUF: %v", err)
				}
			}); err != nil {
				t.Fatal(err)
			}
			in := append(hostRoutes(1500), pfx("2001:db8::1/128", "2001:db8::2/128")...)
			bad := map[int]bool{3: true, 700: true, 1200: true, 1499: true}
			for i := range bad {
				in[i] = netip.PrefixFrom(in[i].Addr(), 24) // the kernel refuses host bits
			}
			check := func(o op, wantOverrun bool) {
				t.Helper()
				c.overruns = 0
				results := make([]error, len(in))
				tbl.mu.Lock()
				err := c.exec(context.Background(), o, tbl.table, tbl.proto, in, results, nil)
				tbl.mu.Unlock()
				if err != nil {
					t.Fatalf("%s: %v", o.name, err)
				}
				if wantOverrun && c.overruns == 0 {
					t.Fatalf("%s: no ENOBUFS happened; the retry path was not exercised", o.name)
				}
				for i, r := range results {
					switch {
					case bad[i] && !errors.Is(r, unix.EINVAL) && !errors.Is(r, unix.ESRCH):
						t.Errorf("%s %v = %v, want the kernel's refusal", o.name, in[i], r)
					case !bad[i] && r != nil:
						t.Errorf("%s %v = %v, want success", o.name, in[i], r)
					}
				}
			}
			check(opAdd, ackEach)
			check(opAdd, true)
			if got := mustList(t, tbl); len(got) != len(in)-len(bad) {
				t.Fatalf("List has %d routes after Add, want %d", len(got), len(in)-len(bad))
			}
			check(opDelete, ackEach)
			check(opDelete, true)
			if got := mustList(t, tbl); len(got) != 0 {
				t.Fatalf("List after Delete has %d routes", len(got))
			}
		})
	}
}

func TestContextCanceled(t *testing.T) {
	n := newTestNS(t)
	tbl := n.newTable(t, Config{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := tbl.Add(ctx, pfx("192.0.2.1/32")); !errors.Is(err, context.Canceled) {
		t.Fatalf("Add with a canceled context = %v", err)
	}
	if _, err := tbl.List(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("List with a canceled context = %v", err)
	}
	if _, _, err := tbl.Reconcile(ctx, nil); !errors.Is(err, context.Canceled) {
		t.Fatalf("Reconcile with a canceled context = %v", err)
	}
	// Still usable afterwards.
	if err := tbl.Add(context.Background(), pfx("192.0.2.1/32")); err != nil {
		t.Fatalf("Add after a canceled one: %v", err)
	}
	if got := mustList(t, tbl); !slices.Equal(got, pfx("192.0.2.1/32")) {
		t.Fatalf("List = %v", got)
	}
}

// TestSocketInHandleNamespace checks that routes written through the batch
// socket land in the handle's namespace, not in the test process's.
func TestSocketInHandleNamespace(t *testing.T) {
	a, b := newTestNS(t), newTestNS(t)
	ta := a.newTable(t, Config{})
	if err := ta.Add(context.Background(), pfx("192.0.2.1/32")); err != nil {
		t.Fatal(err)
	}
	if got := a.ipBlackholes(t, 254, 66); !slices.Equal(got, pfx("192.0.2.1/32")) {
		t.Fatalf("namespace a = %v", got)
	}
	if got := b.ipBlackholes(t, 254, 66); len(got) != 0 {
		t.Fatalf("namespace b = %v, want none", got)
	}
	routes, err := netlink.RouteListFiltered(netlink.FAMILY_V4,
		&netlink.Route{Protocol: 66, Table: 254}, netlink.RT_FILTER_PROTOCOL|netlink.RT_FILTER_TABLE)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range routes {
		if r.Dst != nil && r.Dst.String() == "192.0.2.1/32" {
			t.Fatal("route leaked into the test process's namespace")
		}
	}
}
