// Command dnsblbench serves a DNSBL zone of N prefixes with bhrd's DNS
// server (pkg/dnsbl, the code a dnsbl enforcer runs), writes the same
// data for rbldnsd and dnsperf, and measures answer latency. Used by
// scripts/bench-dnsbl.sh.
//
//	dnsblbench gen -n 100000 -dir D     # D/ip4set (rbldnsd), D/queries (dnsperf)
//	dnsblbench serve -n 100000 -listen 127.0.0.1:5300
//	dnsblbench latency -s 127.0.0.1:5300 -d D/queries -c 8 -n 100000
package main

import (
	"bufio"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/miekg/dns"

	"github.com/bhrd/bhrd/pkg/dnsbl"
)

const zone = "bl.test"

// prefixes are n distinct /32s of 10.0.0.0/8 and 100.64.0.0/10, from a
// fixed seed: the listed set both servers load.
func prefixes(n int) []netip.Addr {
	r := rand.New(rand.NewPCG(1, 2))
	seen := make(map[uint32]bool, n)
	out := make([]netip.Addr, 0, n)
	for len(out) < n {
		u := 10<<24 | r.Uint32()&0xffffff
		if len(out)%2 == 1 {
			u = 100<<24 | 64<<16 | r.Uint32()&0x3fffff
		}
		if seen[u] {
			continue
		}
		seen[u] = true
		out = append(out, netip.AddrFrom4([4]byte{byte(u >> 24), byte(u >> 16), byte(u >> 8), byte(u)}))
	}
	return out
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: dnsblbench gen|serve|latency ...")
		os.Exit(2)
	}
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	n := fs.Int("n", 100000, "prefixes in the zone")
	dir := fs.String("dir", ".", "gen: output directory")
	listen := fs.String("listen", "127.0.0.1:5300", "serve: address (UDP and TCP)")
	server := fs.String("s", "127.0.0.1:5300", "latency: server")
	data := fs.String("d", "queries", "latency: dnsperf data file")
	conc := fs.Int("c", 8, "latency: concurrent clients")
	total := fs.Int("q", 100000, "latency: queries")
	readers := fs.Int("readers", 0, "serve: UDP reader goroutines (0: GOMAXPROCS)")
	prof := fs.String("cpuprofile", "", "serve: write a CPU profile here until stopped")
	_ = fs.Parse(os.Args[2:])
	switch os.Args[1] {
	case "gen":
		gen(*n, *dir)
	case "serve":
		if *prof != "" {
			f, err := os.Create(*prof)
			must(err)
			must(pprof.StartCPUProfile(f))
			defer func() { pprof.StopCPUProfile(); f.Close() }()
		}
		serve(*n, *listen, *readers)
	case "latency":
		latency(*server, *data, *conc, *total)
	}
}

// gen writes rbldnsd's ip4set and dnsperf's queries: every listed
// address once and as many unlisted ones, shuffled.
func gen(n int, dir string) {
	ps := prefixes(n)
	var set, q strings.Builder
	set.WriteString(":127.0.25.1:listed\n")
	names := make([]string, 0, 2*n)
	for _, a := range ps {
		set.WriteString(a.String() + "\n")
		names = append(names, dnsbl.Name(a, zone, ""))
		b := a.As4()
		b[0] = 192 // 192.x: never listed
		names = append(names, dnsbl.Name(netip.AddrFrom4(b), zone, ""))
	}
	r := rand.New(rand.NewPCG(3, 4))
	r.Shuffle(len(names), func(i, j int) { names[i], names[j] = names[j], names[i] })
	for _, nm := range names {
		q.WriteString(nm + " A\n")
	}
	must(os.WriteFile(filepath.Join(dir, "ip4set"), []byte(set.String()), 0o644))
	must(os.WriteFile(filepath.Join(dir, "queries"), []byte(q.String()), 0o644))
}

func serve(n int, listen string, readers int) {
	t := dnsbl.NewTable()
	now := time.Now()
	for _, a := range prefixes(n) {
		t.Set(netip.PrefixFrom(a, 32), dnsbl.Entry{Source: "bench", Added: now, UnblockAt: now.Add(24 * time.Hour)})
	}
	runtime.GC()
	s, err := dnsbl.New(dnsbl.Config{Zones: []string{zone}, DefaultThreatBase: 25, UDPReaders: readers}, t)
	must(err)
	must(s.Listen([]string{listen}))
	fmt.Printf("serving %d prefixes on %s; VmRSS %s\n", t.Len(), listen, rss())
	ch := make(chan os.Signal, 1)
	signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM)
	<-ch
}

func rss() string {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return "?"
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			return strings.TrimSpace(strings.TrimPrefix(l, "VmRSS:"))
		}
	}
	return "?"
}

// latency sends total queries from conc clients, each waiting for its
// answer before the next, and prints percentiles of the round trip.
func latency(server, data string, conc, total int) {
	f, err := os.Open(data)
	must(err)
	var names []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if fs := strings.Fields(sc.Text()); len(fs) > 0 {
			names = append(names, fs[0])
		}
	}
	f.Close()
	var mu sync.Mutex
	var lat []time.Duration
	errs := 0
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < conc; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			c := &dns.Client{Timeout: 2 * time.Second}
			conn, err := c.Dial(server)
			must(err)
			defer conn.Close()
			mine := make([]time.Duration, 0, total/conc)
			bad := 0
			for i := w; i < total; i += conc {
				m := new(dns.Msg)
				m.SetQuestion(names[i%len(names)], dns.TypeA)
				t0 := time.Now()
				if _, _, err := c.ExchangeWithConn(m, conn); err != nil {
					bad++
					continue
				}
				mine = append(mine, time.Since(t0))
			}
			mu.Lock()
			lat = append(lat, mine...)
			errs += bad
			mu.Unlock()
		}(w)
	}
	wg.Wait()
	el := time.Since(start)
	slices.Sort(lat)
	p := func(q float64) time.Duration { return lat[int(q*float64(len(lat)-1))] }
	fmt.Printf("latency %s: %d queries, %d clients, %.0f q/s, p50 %v p99 %v p99.9 %v max %v, errors %d\n",
		server, len(lat), conc, float64(len(lat))/el.Seconds(), p(0.5), p(0.99), p(0.999), lat[len(lat)-1], errs)
}

func must(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
