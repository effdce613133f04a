package nullroute

import (
	"context"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

const benchRoutes = 100_000

// BenchmarkInstall100k installs 100,000 /32 blackhole routes in a fresh
// namespace and deletes them again, through the batched path and, for
// comparison, one netlink.Handle.RouteReplace / RouteDel call per route.
// Run with -benchtime=1x: one iteration is 100k routes each way.
func BenchmarkInstall100k(b *testing.B) {
	routes := hostRoutes(benchRoutes)
	for _, size := range []struct {
		name  string
		bytes int
	}{{"batched", DefaultBatchBytes}, {"batched-16KiB", 16 << 10}, {"batched-1MiB", 1 << 20}} {
		b.Run(size.name, func(b *testing.B) { benchBatched(b, routes, size.bytes) })
	}

	b.Run("naive", func(b *testing.B) {
		n := newTestNS(b)
		var add, del time.Duration
		route := func(i int) *netlink.Route {
			a := routes[i].Addr().As4()
			return &netlink.Route{
				Dst:      &net.IPNet{IP: net.IP(a[:]), Mask: net.CIDRMask(32, 32)},
				Type:     unix.RTN_BLACKHOLE,
				Protocol: DefaultProtocol,
				Table:    DefaultTable,
			}
		}
		b.ResetTimer()
		for range b.N {
			start := time.Now()
			for i := range routes {
				if err := n.h.RouteReplace(route(i)); err != nil {
					b.Fatalf("RouteReplace %v: %v", routes[i], err)
				}
			}
			add += time.Since(start)
			start = time.Now()
			for i := range routes {
				if err := n.h.RouteDel(route(i)); err != nil {
					b.Fatalf("RouteDel %v: %v", routes[i], err)
				}
			}
			del += time.Since(start)
		}
		b.StopTimer()
		report(b, add, 0, del)
	})
}

func benchBatched(b *testing.B, routes []netip.Prefix, batchBytes int) {
	ctx := context.Background()
	n := newTestNS(b)
	tbl := n.newTable(b, Config{BatchBytes: batchBytes})
	var add, list, del time.Duration
	b.ResetTimer()
	for range b.N {
		start := time.Now()
		if err := tbl.Add(ctx, routes); err != nil {
			b.Fatalf("Add: %v", err)
		}
		add += time.Since(start)

		start = time.Now()
		got, err := tbl.List(ctx)
		if err != nil {
			b.Fatalf("List: %v", err)
		}
		list += time.Since(start)
		if len(got) != benchRoutes {
			b.Fatalf("List has %d routes, want %d", len(got), benchRoutes)
		}

		start = time.Now()
		if err := tbl.Delete(ctx, routes); err != nil {
			b.Fatalf("Delete: %v", err)
		}
		del += time.Since(start)
	}
	b.StopTimer()
	if got := mustList(b, tbl); len(got) != 0 {
		b.Fatalf("%d routes left after Delete", len(got))
	}
	report(b, add, list, del)
}

func report(b *testing.B, add, list, del time.Duration) {
	b.ReportMetric(add.Seconds()/float64(b.N), "s/100k-add")
	if list > 0 {
		b.ReportMetric(list.Seconds()/float64(b.N), "s/100k-list")
	}
	b.ReportMetric(del.Seconds()/float64(b.N), "s/100k-delete")
}
