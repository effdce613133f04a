package app_test

import (
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/bhrd/bhrd/internal/app"
	"github.com/bhrd/bhrd/internal/bgptest"
	"github.com/bhrd/bhrd/internal/pgtest"
	"github.com/bhrd/bhrd/pkg/config"
	"github.com/bhrd/bhrd/pkg/dnsbl"
	"github.com/bhrd/bhrd/pkg/plane/dnsblplane"
)

// dnsblConfig is a bhrd config with one dnsbl enforcer serving zone
// bl.test on a free port of 127.0.0.1, on SQLite in dir or on a fresh
// PostgreSQL database.
func dnsblConfig(t testing.TB, dir, driver string) (config.Config, string) {
	t.Helper()
	c := config.Default()
	c.Log.Level = "warn"
	c.API.Listen = "127.0.0.1:0"
	switch driver {
	case "sqlite":
		c.Store.Path = filepath.Join(dir, "bhrd.db")
	case "postgres":
		c.Store = pgStore(pgtest.NewDatabase(t))
	}
	addr := fmt.Sprintf("127.0.0.1:%d", bgptest.FreePort(t))
	c.Enforcers = []config.Enforcer{{Ident: "dnsbl1", Type: "dnsbl", Settings: dnsblplane.Settings{
		Listen: []string{addr}, Zones: []string{"bl.test"}, Types: map[string]uint8{"e2e": dnsbl.TypeHarvester},
	}}}
	if err := c.Validate(); err != nil {
		t.Fatalf("test config: %v", err)
	}
	return c, addr
}

// lookup asks bhrd's zone for addr over UDP and returns the A record, ""
// for NXDOMAIN.
func lookup(t testing.TB, server string, addr netip.Addr) string {
	t.Helper()
	got, err := tryLookup(server, addr)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// tryLookup is lookup returning its error; "SERVFAIL" while the zone is
// not ready (a start).
func tryLookup(server string, addr netip.Addr) (string, error) {
	m := new(dns.Msg)
	m.SetQuestion(dnsbl.Name(addr, "bl.test", "abcdefghijkl"), dns.TypeA)
	c := &dns.Client{Timeout: time.Second}
	r, _, err := c.Exchange(m, server)
	if err != nil {
		return "", fmt.Errorf("dns %s: %w", addr, err)
	}
	for _, rr := range r.Answer {
		if a, ok := rr.(*dns.A); ok {
			return a.A.String(), nil
		}
	}
	switch r.Rcode {
	case dns.RcodeNameError:
		return "", nil
	case dns.RcodeServerFailure:
		return "SERVFAIL", nil
	}
	return "", fmt.Errorf("dns %s: rcode %s without an answer", addr, dns.RcodeToString[r.Rcode])
}

// waitListed polls the zone every millisecond until addr's answer is
// want (a prefix of it: "127." for any listing, "" for NXDOMAIN) and
// returns how long that took.
func waitListed(t testing.TB, server string, addr netip.Addr, want string, timeout time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		got := lookup(t, server, addr)
		if (want == "" && got == "") || (want != "" && strings.HasPrefix(got, want)) {
			return time.Since(start)
		}
		if time.Since(start) > timeout {
			t.Fatalf("%s: answer %q after %v, want %q", addr, got, timeout, want)
		}
		time.Sleep(time.Millisecond)
	}
}

// A block posted over HTTP is answered by bhrd's DNSBL zone, a /24 for
// every address inside it; unblock_now and expiry withdraw the answer;
// current_blocks shows the dnsbl ident; a restart rebuilds the zone from
// the store. On both stores.
func TestE2EDNSBL(t *testing.T) {
	for _, driver := range []string{"sqlite", "postgres"} {
		t.Run(driver, func(t *testing.T) {
			dir := t.TempDir()
			cfg, dnsAddr := dnsblConfig(t, dir, driver)
			a := startApp(t, app.Options{Config: cfg})
			api := newClient(t, a.APIAddr(), newToken(t, a.Store()))
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := a.WaitReconciled(ctx); err != nil {
				t.Fatal(err)
			}

			host := netip.MustParseAddr("198.51.100.23")
			if got := lookup(t, dnsAddr, host); got != "" {
				t.Fatalf("listed before any block: %s", got)
			}
			api.block(host.String(), "300")
			d := waitListed(t, dnsAddr, host, "127.0.", 5*time.Second)
			t.Logf("%s: answered in DNS %v after the POST's answer", driver, d)
			// 0 days; a 300 s block counts as one day: threat 25 (the
			// default base); type 2, the mapping for source e2e.
			if got := lookup(t, dnsAddr, host); got != "127.0.25.2" {
				t.Errorf("answer %s, want 127.0.25.2", got)
			}
			api.block("203.0.113.0/24", "300")
			waitListed(t, dnsAddr, netip.MustParseAddr("203.0.113.200"), "127.0.", 5*time.Second)
			if got := lookup(t, dnsAddr, netip.MustParseAddr("203.0.113.1")); got == "" {
				t.Error("an address inside the /24 is not listed")
			}
			if got := lookup(t, dnsAddr, netip.MustParseAddr("203.0.114.1")); got != "" {
				t.Errorf("an address outside the /24 is listed: %s", got)
			}
			api.waitCurrent(5*time.Second, "198.51.100.23/32", "203.0.113.0/24")

			api.unblockNow(host.String())
			d = waitListed(t, dnsAddr, host, "", 5*time.Second)
			t.Logf("%s: unlisted %v after unblock_now's answer", driver, d)

			short := netip.MustParseAddr("198.51.100.99")
			b := api.block(short.String(), "1")
			waitListed(t, dnsAddr, short, "127.", 5*time.Second)
			end, err := time.Parse(time.RFC3339Nano, *b.UnblockAt)
			if err != nil {
				t.Fatal(err)
			}
			waitListed(t, dnsAddr, short, "", 5*time.Second)
			late := time.Since(end)
			t.Logf("%s: unlisted %v after unblock_at", driver, late)
			if late > 2*time.Second {
				t.Errorf("expired block still answered %v after its end", late)
			}

			// A restart: the zone is rebuilt from the store.
			stopApp(t, a)
			if lookup2(dnsAddr) {
				t.Fatal("the DNS server still answers after stop")
			}
			// From the first answer on, a listed address is never NXDOMAIN
			// (which resolvers would cache): SERVFAIL until the zone is
			// rebuilt, then listed.
			done := make(chan struct{})
			seen := map[string]int{}
			go func() {
				defer close(done)
				start := time.Now()
				for time.Since(start) < 10*time.Second {
					got := "down"
					if lookup2(dnsAddr) {
						var err error
						if got, err = tryLookup(dnsAddr, netip.MustParseAddr("203.0.113.7")); err != nil {
							got = "error"
						}
					}
					seen[got]++
					if strings.HasPrefix(got, "127.") {
						return
					}
					time.Sleep(200 * time.Microsecond)
				}
			}()
			startApp(t, app.Options{Config: cfg})
			<-done
			t.Logf("%s: answers while restarting: %v", driver, seen)
			if seen[""] > 0 {
				t.Errorf("a listed address was answered NXDOMAIN %d times during the start", seen[""])
			}
			waitListed(t, dnsAddr, netip.MustParseAddr("203.0.113.7"), "127.0.", 10*time.Second)
			if got := lookup(t, dnsAddr, host); got != "" {
				t.Errorf("unblocked %s listed again after the restart: %s", host, got)
			}
		})
	}
}

// lookup2 reports whether anything answers on server (TCP, quick).
func lookup2(server string) bool {
	m := new(dns.Msg)
	m.SetQuestion("bl.test.", dns.TypeSOA)
	c := &dns.Client{Net: "tcp", Timeout: 300 * time.Millisecond}
	_, _, err := c.Exchange(m, server)
	return err == nil
}
