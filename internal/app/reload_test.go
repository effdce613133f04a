package app

import (
	"context"
	"net/netip"
	"path/filepath"
	"slices"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/bhrd/bhrd/pkg/audit"
	"github.com/bhrd/bhrd/pkg/config"
	"github.com/bhrd/bhrd/pkg/plane/bgpplane"
	"github.com/bhrd/bhrd/pkg/queue"
)

func TestReload(t *testing.T) {
	cfg := config.Default()
	cfg.Store.Path = filepath.Join(t.TempDir(), "bhrd.db")
	b := bgpplane.SectionOf(cfg)
	b.Peers = []bgpplane.Peer{{Address: netip.MustParseAddr("192.0.2.1"), ASN: 64500}}
	b.ASN, b.RouterID = 64512, netip.MustParseAddr("192.0.2.254")
	cfg = bgpplane.WithSection(cfg, b)
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zapcore.InfoLevel)
	lvl := zap.NewAtomicLevelAt(zapcore.InfoLevel)
	a, err := New(context.Background(), Options{Config: cfg, Audit: audit.NewWithCore(core), LogLevel: &lvl})
	if err != nil {
		t.Fatal(err)
	}
	defer a.store.Close()

	next := cfg
	next.Log.Level = "debug"
	next.Policy.MinimumPrefixLen = 23
	b.Peers = []bgpplane.Peer{{Address: netip.MustParseAddr("192.0.2.9"), ASN: 64500}}
	next = bgpplane.WithSection(next, b)
	next.API.Listen = "127.0.0.1:9999"
	res, err := a.Reload("bhrd.yaml", next)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(res.Applied, []string{"log.level", "policy", "bgp.peers"}) {
		t.Errorf("applied %v", res.Applied)
	}
	if !slices.Equal(res.NotReloaded, []string{"api: restart needed"}) {
		t.Errorf("not reloaded %v", res.NotReloaded)
	}
	if lvl.Level() != zapcore.DebugLevel {
		t.Errorf("level %v after reload", lvl.Level())
	}
	p := a.svc.Policy()
	if p.MinimumPrefixLen != 23 {
		t.Errorf("minimum_prefixlen %d after reload", p.MinimumPrefixLen)
	}
	// The protected set follows the peers: the new one is protected, the
	// removed one no longer.
	isProtected := func(s string) bool {
		return slices.ContainsFunc(p.Protected, func(pp queue.ProtectedPrefix) bool { return pp.Prefix.String() == s })
	}
	if !isProtected("192.0.2.9/32") || isProtected("192.0.2.1/32") {
		t.Errorf("protected set after a peer reload: %v", p.Protected)
	}
	if n := logs.FilterMessage(audit.EventConfigReloaded).Len(); n != 1 {
		t.Fatalf("%d config_reloaded lines", n)
	}

	// Reloading the same file again changes nothing.
	res, err = a.Reload("bhrd.yaml", next)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Applied) != 0 || !slices.Equal(res.NotReloaded, []string{"api: restart needed"}) {
		t.Errorf("second reload: %+v", res)
	}
}

// A bgp change beyond the peer list still needs a restart.
func TestReloadBGPOtherThanPeers(t *testing.T) {
	cfg := config.Default()
	cfg.Store.Path = filepath.Join(t.TempDir(), "bhrd.db")
	b := bgpplane.SectionOf(cfg)
	b.ASN, b.RouterID = 64512, netip.MustParseAddr("192.0.2.254")
	cfg = bgpplane.WithSection(cfg, b)
	a, err := New(context.Background(), Options{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	defer a.store.Close()
	next := cfg
	b.ASN = 64513
	b.Peers = []bgpplane.Peer{{Address: netip.MustParseAddr("192.0.2.9"), ASN: 64500}}
	next = bgpplane.WithSection(next, b)
	res, err := a.Reload("bhrd.yaml", next)
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(res.Applied, "bgp.peers") || !slices.Equal(res.NotReloaded, []string{"bgp: restart needed"}) {
		t.Errorf("reload of asn and peers: %+v", res)
	}
}
