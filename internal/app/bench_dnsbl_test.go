package app_test

import (
	"fmt"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/bhrd/bhrd/internal/app"
)

// BenchmarkDNSBLPostToAnswer: for 200 blocks posted one after another
// over HTTP, the time from the POST's answer until bhrd's zone
// answers the address over UDP (polled every 0.2 ms), as p50/p99/max, on
// both stores.
func BenchmarkDNSBLPostToAnswer(b *testing.B) {
	for _, driver := range []string{"sqlite", "postgres"} {
		// Back to back (the next POST as soon as the previous block is
		// answered, while its enforcer still records it), and with 20 ms
		// between blocks (independent arrivals).
		for _, gap := range []time.Duration{0, 20 * time.Millisecond} {
			b.Run(fmt.Sprintf("%s/gap=%v", driver, gap), func(b *testing.B) { benchPostToAnswer(b, driver, gap) })
		}
	}
}

func benchPostToAnswer(b *testing.B, driver string, gap time.Duration) {
	for range b.N {
		cfg, dnsAddr := dnsblConfig(b, b.TempDir(), driver)
		a := startApp(b, app.Options{Config: cfg})
		api := newClient(b, a.APIAddr(), newToken(b, a.Store()))
		var ds []time.Duration
		for i := range 200 {
			ip := netip.AddrFrom4([4]byte{198, 51, byte(100 + i/250), byte(1 + i%250)})
			api.block(ip.String(), "300")
			start := time.Now()
			for lookup(b, dnsAddr, ip) == "" {
				if time.Since(start) > 5*time.Second {
					b.Fatalf("%s not answered after 5 s", ip)
				}
				time.Sleep(200 * time.Microsecond)
			}
			ds = append(ds, time.Since(start))
			if gap > 0 {
				time.Sleep(gap)
			}
		}
		slices.Sort(ds)
		b.ReportMetric(float64(ds[len(ds)/2].Microseconds())/1000, "p50-ms")
		b.ReportMetric(float64(ds[len(ds)*99/100].Microseconds())/1000, "p99-ms")
		b.ReportMetric(float64(ds[len(ds)-1].Microseconds())/1000, "max-ms")
		fmt.Fprintf(b.Output(), "200 blocks: POST answer → DNS answer p50 %v p99 %v max %v\n", ds[len(ds)/2], ds[len(ds)*99/100], ds[len(ds)-1])
		stopApp(b, a)
	}
}
