package bgp

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func validConfig() Config {
	return Config{
		ASN:      65000,
		RouterID: netip.MustParseAddr("192.0.2.10"),
		Peers:    []PeerConfig{{Address: netip.MustParseAddr("192.0.2.20"), ASN: 65001}},
	}
}

func TestNewAppliesDefaults(t *testing.T) {
	s, err := New(validConfig(), nil)
	if err != nil {
		t.Fatal(err)
	}
	c := s.cfg
	if c.ListenPort != 179 || c.listens() {
		t.Errorf("listen port %d listens %v: want 179 and not listening without addresses", c.ListenPort, c.listens())
	}
	p := c.Peers[0]
	if p.Port != 179 || p.HoldTime != 90*time.Second || p.ConnectRetry != 10*time.Second {
		t.Errorf("peer defaults: %+v", p)
	}
	if len(p.Families) != 2 || p.Families[0] != IPv4Unicast || p.Families[1] != IPv6Unicast {
		t.Errorf("families %v", p.Families)
	}
	if c.GracefulRestart.RestartTime != 120*time.Second || c.GracefulRestart.DeferralTime != 30*time.Second {
		t.Errorf("graceful restart defaults: %+v", c.GracefulRestart)
	}
}

func TestConfigValidation(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(*Config)
		want   string // substring of the error; "" means valid
	}{
		{"valid", func(*Config) {}, ""},
		{"no peers and listening is fine", func(c *Config) {
			c.Peers = nil
			c.ListenAddresses = []netip.Addr{netip.MustParseAddr("127.0.0.1")}
			c.ListenPort = 1790
		}, ""},
		{"missing asn", func(c *Config) { c.ASN = 0 }, "asn: must be set"},
		{"missing router id", func(c *Config) { c.RouterID = netip.Addr{} }, "router_id: must be set"},
		{"ipv6 router id", func(c *Config) { c.RouterID = netip.MustParseAddr("2001:db8::1") }, "must be an IPv4 address"},
		{"listen port too big", func(c *Config) { c.ListenPort = 70000 }, "listen_port 70000"},
		{"peer without address", func(c *Config) { c.Peers[0].Address = netip.Addr{} }, "peers[0]: address must be set"},
		{"peer without asn", func(c *Config) { c.Peers[0].ASN = 0 }, "peers[0] (192.0.2.20): asn must be set"},
		{"duplicate peer", func(c *Config) { c.Peers = append(c.Peers, c.Peers[0]) }, "same address as peers[0]"},
		{"mapped address", func(c *Config) { c.Peers[0].Address = netip.MustParseAddr("::ffff:192.0.2.20") }, "plain IPv4"},
		{"local address family", func(c *Config) { c.Peers[0].LocalAddress = netip.MustParseAddr("2001:db8::1") }, "not of the same family"},
		{"hold time too short", func(c *Config) { c.Peers[0].HoldTime = 2 * time.Second }, "hold_time 2s"},
		{"hold time fraction", func(c *Config) { c.Peers[0].HoldTime = 3500 * time.Millisecond }, "whole seconds"},
		{"unknown family", func(c *Config) { c.Peers[0].Families = []Family{"l2vpn-evpn"} }, `unknown address family "l2vpn-evpn"`},
		{"family twice", func(c *Config) { c.Peers[0].Families = []Family{IPv4Unicast, IPv4Unicast} }, "listed twice"},
		{"multihop on ibgp", func(c *Config) { c.Peers[0].ASN = c.ASN; c.Peers[0].EBGPMultihopTTL = 2 }, "only for eBGP"},
		{"restart time too long", func(c *Config) { c.GracefulRestart = GracefulRestartConfig{Enabled: true, RestartTime: time.Hour * 2} }, "restart_time"},
		{"restarting without gr", func(c *Config) { c.GracefulRestart.Restarting = true }, "needs graceful_restart.enabled"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := validConfig()
			tt.mutate(&c)
			_, err := New(c, nil)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want one containing %q", err, tt.want)
			}
			if !errors.Is(err, ErrInvalidConfig) {
				t.Errorf("error does not wrap ErrInvalidConfig: %v", err)
			}
		})
	}
}

func TestConfigReportsEveryProblem(t *testing.T) {
	_, err := New(Config{Peers: []PeerConfig{{}}}, nil)
	if err == nil {
		t.Fatal("empty config accepted")
	}
	for _, want := range []string{"asn: must be set", "router_id: must be set", "peers[0]: address must be set", "peers[0]: asn must be set"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}
