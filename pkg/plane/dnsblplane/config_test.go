package dnsblplane_test

import (
	"errors"
	"strings"
	"testing"

	_ "github.com/bhrd/bhrd/internal/planes"
	"github.com/bhrd/bhrd/pkg/config"
	"github.com/bhrd/bhrd/pkg/dnsbl"
	"github.com/bhrd/bhrd/pkg/plane/dnsblplane"
)

// check-config names every mistake of a dnsbl sub-section by its key.
func TestSettingsProblems(t *testing.T) {
	_, err := config.Parse([]byte(`
dnsbl: {listen: ["127.0.0.1:53"]}
enforcers:
  - ident: d1
    type: dnsbl
    dnsbl:
      listen: ["127.0.0.1", "localhost:53", "127.0.0.1:70000", "127.0.0.1:8053"]
      zones: ["bad zone!"]
      ttl: 48h
      types: {ids: 0}
      threat_base: {ids: 300}
      keys: [{name: "", sha256: "abc"}]
  - ident: d2
    type: dnsbl
    dnsbl: {listen: ["127.0.0.1:8053"]}
`))
	var ps config.Problems
	if !errors.As(err, &ps) {
		t.Fatalf("error %v is not Problems", err)
	}
	got := map[string]string{}
	for _, p := range ps {
		got[p.Key] += p.Message
	}
	for key, want := range map[string]string{
		"dnsbl":                              "own dnsbl sub-section",
		"enforcers[0].dnsbl.listen[0]":       "host:port",
		"enforcers[0].dnsbl.listen[1]":       "IP address",
		"enforcers[0].dnsbl.listen[2]":       "1..65535",
		"enforcers[0].dnsbl.zones[0]":        "not a domain name",
		"enforcers[0].dnsbl.ttl":             "24h",
		"enforcers[0].dnsbl.types.ids":       "search engine",
		"enforcers[0].dnsbl.threat_base.ids": "0..255",
		"enforcers[0].dnsbl.keys[0].name":    "required",
		"enforcers[0].dnsbl.keys[0].sha256":  "64 hex",
		"enforcers[1].dnsbl.zones":           "required",
		"enforcers[1].dnsbl.listen[0]":       "already served by enforcer d1",
	} {
		if !strings.Contains(got[key], want) {
			t.Errorf("%s: got %q, want it to say %q", key, got[key], want)
		}
	}
}

func TestSettingsDecode(t *testing.T) {
	c, err := config.Parse([]byte(`
enforcers:
  - ident: d1
    type: dnsbl
    select: {sources: [zeek]}
    dnsbl:
      listen: ["127.0.0.1:8053"]
      zones: [bl.example.net]
      txt: true
      types: {zeek: 2}
      default_threat_base: 0
      keys: [{name: web1, sha256: 369152cf12c6c555fe4c9588ae059b02af9e912c45be3228da86447205da6ff4}]
`))
	if err != nil {
		t.Fatal(err)
	}
	sc := dnsblplane.SettingsOf(c.Enforcers[0]).ServerConfig()
	if !sc.TXT || sc.Types["zeek"] != 2 || sc.DefaultThreatBase != 0 || len(sc.Keys) != 1 {
		t.Fatalf("decoded %+v", sc)
	}
	if sc.Keys[dnsbl.HashKey("sehcxuxqwbrz")] != "web1" {
		t.Error("key hash not indexed as dnsbl.HashKey does")
	}
	if sc = dnsblplane.SettingsOf(config.Enforcer{Settings: dnsblplane.Settings{}}).ServerConfig(); sc.DefaultThreatBase != dnsblplane.DefaultThreatBase {
		t.Errorf("default threat base %d", sc.DefaultThreatBase)
	}
}
