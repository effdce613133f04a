package app

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"

	"github.com/bhrd/bhrd/pkg/config"
	"github.com/bhrd/bhrd/pkg/queue"
)

// bhrd's own addresses can not be blocked, skip_whitelist or not: this
// host's interface addresses, the API listen address, the database host,
// and (two bgp enforcers connecting out, the case that was announced
// before) the loopback it peers over.
func TestOwnAddressesNeverBlocked(t *testing.T) {
	cfg, err := config.Parse([]byte(`
store: {path: ` + filepath.Join(t.TempDir(), "bhrd.db") + `}
api: {listen: "198.51.100.9:8080"}
bgp:
  asn: 64512
  router_id: 192.0.2.254
  listen_port: -1
  peers:
    - {name: r1, address: 127.0.0.1, asn: 64513}
    - {name: r2, address: 127.0.0.2, asn: 64514}
enforcers:
  - {ident: b1, type: bgp, bgp: {peers: [r1]}}
  - {ident: b2, type: bgp, bgp: {peers: [r2]}}
`))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"198.51.100.9": "API listen address",
		"127.0.0.1":    "BGP peer 127.0.0.1",
		"127.0.0.3":    "loopback",
	}
	// The database host, from a PostgreSQL URL (not connected to here).
	pg := cfg
	pg.Store = config.Store{Driver: "postgres", URL: "postgres://bhrd@203.0.113.77:5432/bhrd"}
	if !protects(PolicyFromConfig(pg), "203.0.113.77", "database host") {
		t.Errorf("database host not protected: %v", PolicyFromConfig(pg).Protected)
	}
	// Every address of this host's interfaces but loopback and link-local.
	ifaddrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, ad := range ifaddrs {
		n, ok := ad.(*net.IPNet)
		if !ok {
			continue
		}
		a, _ := netip.AddrFromSlice(n.IP)
		a = a.Unmap()
		if !a.IsLoopback() && !a.IsLinkLocalUnicast() {
			want[a.String()] = "address of this host"
		}
	}
	a, err := New(context.Background(), Options{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Stop(context.Background())
	if err := a.svc.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	for addr, reason := range want {
		_, err := a.Service().Block(context.Background(), queue.BlockRequest{
			CIDR: addr, Who: "admin", Source: "test", Why: "test", Duration: "300",
			SkipWhitelist: true, MaySkipWhitelist: true,
		})
		if !errors.Is(err, queue.ErrProtectedAddresses) || !strings.Contains(err.Error(), reason) {
			t.Errorf("block of %s with skip_whitelist: %v, want it refused as %q", addr, err, reason)
		}
	}
}

func protects(p queue.Policy, addr, reason string) bool {
	a := netip.MustParseAddr(addr)
	for _, pp := range p.Protected {
		if pp.Prefix.Contains(a) && strings.Contains(pp.Reason, reason) {
			return true
		}
	}
	return false
}
