package app

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/bhrd/bhrd/pkg/config"
	"github.com/bhrd/bhrd/pkg/queue"
)

// hostProtected returns bhrd's own addresses, which no block may cover
// whatever the planes: every address of this host's interfaces (an
// unspecified listen address means all of them, and sessions leave from
// one of them), the API listen address, and the database host. The
// reserved ranges (loopback, link-local, ...) are the queue's own rule.
func hostProtected(c config.Config) []queue.ProtectedPrefix {
	var out []queue.ProtectedPrefix
	add := func(a netip.Addr, reason string) {
		a = a.Unmap().WithZone("")
		if !a.IsValid() || a.IsUnspecified() || a.IsLoopback() || a.IsLinkLocalUnicast() {
			return
		}
		out = append(out, queue.ProtectedPrefix{Prefix: netip.PrefixFrom(a, a.BitLen()), Reason: reason})
	}
	if ifs, err := net.Interfaces(); err == nil {
		for _, ifc := range ifs {
			addrs, err := ifc.Addrs()
			if err != nil {
				continue
			}
			for _, ad := range addrs {
				if n, ok := ad.(*net.IPNet); ok {
					if a, ok := netip.AddrFromSlice(n.IP); ok {
						add(a, "address of this host ("+ifc.Name+")")
					}
				}
			}
		}
	}
	if ap, err := netip.ParseAddrPort(c.API.Listen); err == nil {
		add(ap.Addr(), "API listen address")
	}
	for _, a := range databaseHosts(c.Store) {
		add(a, "database host")
	}
	return out
}

// databaseHosts returns the addresses of the PostgreSQL hosts in the
// store URL: IP literals as they are, names resolved now (within two
// seconds; a name that does not resolve protects nothing).
func databaseHosts(s config.Store) []netip.Addr {
	if s.Driver != "postgres" || s.URL == "" {
		return nil
	}
	pc, err := pgconn.ParseConfig(s.URL)
	if err != nil {
		return nil
	}
	hosts := []string{pc.Host}
	for _, f := range pc.Fallbacks {
		hosts = append(hosts, f.Host)
	}
	var out []netip.Addr
	for _, h := range hosts {
		if h == "" || strings.HasPrefix(h, "/") { // a Unix socket
			continue
		}
		if a, err := netip.ParseAddr(h); err == nil {
			out = append(out, a)
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		as, err := net.DefaultResolver.LookupNetIP(ctx, "ip", h)
		cancel()
		if err == nil {
			out = append(out, as...)
		}
	}
	return out
}
