package config_test

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	_ "github.com/bhrd/bhrd/internal/planes"
	"github.com/bhrd/bhrd/pkg/config"
	"github.com/bhrd/bhrd/pkg/plane/bgpplane"
	"github.com/bhrd/bhrd/pkg/queue"
)

func TestExampleConfigIsValid(t *testing.T) {
	if _, err := config.Load("../../configs/bhrd.yaml"); err != nil {
		t.Fatalf("configs/bhrd.yaml: %v", err)
	}
}

func TestFixtures(t *testing.T) {
	cases := []struct {
		file string
		keys []string // key paths every problem list must name
		msg  string   // for decode errors
	}{
		{file: "unknown_key.yaml", msg: "field listne not found"},
		{file: "wrong_type.yaml", msg: "cannot unmarshal"},
		{file: "bad_values.yaml", keys: []string{"log.level", "store.driver", "api.listen", "api.max_body_bytes", "policy", "policy.local_networks[0]"}},
		{file: "postgres_no_url.yaml", keys: []string{"store.url"}},
		// Listening with two speakers, an unknown peer name, and the same
		// peer fed by both enforcers (ixp names none that exists, so it
		// would take every peer).
		{file: "shared_peer.yaml", keys: []string{"enforcers[1].bgp.peers"}},
		{file: "two_bgp_enforcers.yaml", keys: []string{"bgp.listen_port", "enforcers[1].bgp.peers[0]"}},
		{file: "bad_bgp.yaml", keys: []string{"bgp.asn", "bgp.router_id", "bgp.peers[0].address", "bgp.peers[0].asn", "bgp.peers[0].families[0]",
			"enforcers[0].bgp.next_hop_v4", "enforcers[0].bgp.communities[1]", "enforcers[0].bgp.large_communities[0]", "enforcers[1].ident", "enforcers[1].type"}},
	}
	for _, c := range cases {
		t.Run(c.file, func(t *testing.T) {
			_, err := config.Load(filepath.Join("testdata", c.file))
			if err == nil {
				t.Fatal("accepted")
			}
			if c.msg != "" && !strings.Contains(err.Error(), c.msg) {
				t.Fatalf("error %q does not mention %q", err, c.msg)
			}
			if len(c.keys) == 0 {
				return
			}
			var ps config.Problems
			if !errors.As(err, &ps) {
				t.Fatalf("error %v is not config.Problems", err)
			}
			got := map[string]bool{}
			for _, p := range ps {
				got[p.Key] = true
			}
			for _, k := range c.keys {
				if !got[k] {
					t.Errorf("no problem reported at %s; got %v", k, ps)
				}
			}
		})
	}
}

func TestValidFull(t *testing.T) {
	c, err := config.Load("testdata/valid_full.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if c.API.LongPollMax != 30*time.Second || c.Store.PruneAfter != 8760*time.Hour || c.Policy.MinimumPrefixLen != 23 {
		t.Fatalf("values not decoded: %+v", c)
	}
	if c.API.MaxBodyBytes != 1<<20 || c.Policy.MinimumPrefixLenV6 != 64 {
		t.Fatal("defaults lost for keys not in the file")
	}
	sel := c.Enforcers[0].Select
	if !slices.Equal(sel.Sources, []string{"zeek"}) || sel.PrefixLenV4.Min != 32 || sel.PrefixLenV6 != (queue.LenRange{Min: 128, Max: 128}) {
		t.Fatalf("select not decoded: %+v", sel)
	}
	rules := bgpplane.SettingsOf(c.Enforcers[0]).Rules
	if len(rules) != 1 || rules[0].Select.Sources[0] != "scanner" || len(rules[0].Communities) != 1 {
		t.Fatalf("rules not decoded: %+v", rules)
	}
}

func TestSecretsFromEnvAndFile(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "url")
	if err := os.WriteFile(f, []byte("postgres://from-file/db\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := config.Parse([]byte("store: {driver: postgres, url_file: " + f + "}"))
	if err != nil || c.Store.URL != "postgres://from-file/db" {
		t.Fatalf("url_file: %q %v", c.Store.URL, err)
	}
	t.Setenv("BHRD_DATABASE_URL", "postgres://from-env/db")
	c, err = config.Parse([]byte("store: {driver: postgres, url_file: /nonexistent}"))
	if err != nil || c.Store.URL != "postgres://from-env/db" {
		t.Fatalf("env: %q %v", c.Store.URL, err)
	}
}

// Every mistake of a file comes back at once with its key path, the
// planes' sections' as well as the core's, whatever the kind of mistake
// (unknown key, wrong type, a value its type does not parse, a rule).
func TestEveryProblemAtOnce(t *testing.T) {
	_, err := config.Parse([]byte(`
api: {max_mblock_items: lots, listne: x}
bgp:
  asn: 64512
  router_id: 192.0.2.254
  peers:
    - {address: 192.0.2.10, asn: 64512, port: 70000, pasword: x}
nullroute: {protocol: 4}
enforcers:
  - {ident: b1, type: bgp, bgp: {communities: [no-export, "1:70000"], next_hop_v4: 0.0.0.0}}
  - {ident: n1, type: nullroute, nullroute: {table: 0}, bgp: {}}
  - ident: b2
    type: bgp
    select: {prefixlen_v4: {min: 33}, prefixlen_v6: {min: 64, max: 48}}
    bgp: {rules: [{select: {}, communities: ["1:1"]}, {select: {sources: [x]}}]}
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
		"api.max_mblock_items":                 "cannot unmarshal",
		"api.listne":                           "field listne not found",
		"bgp.peers[0].port":                    "cannot unmarshal",
		"bgp.peers[0].pasword":                 "not found",
		"nullroute":                            "reserved",
		"enforcers[0].bgp.communities[1]":      "0..65535",
		"enforcers[0].bgp.next_hop_v4":         "discard address",
		"enforcers[1].nullroute":               "table 0",
		"enforcers[1].bgp":                     "only for type bgp",
		"enforcers[2].select.prefixlen_v4.min": "1..32",
		"enforcers[2].select.prefixlen_v6":     "nothing would match",
		"enforcers[2].bgp.rules[0].select":     "required",
		"enforcers[2].bgp.rules[1]":            "adds nothing",
	} {
		if !strings.Contains(got[key], want) {
			t.Errorf("%s: got %q, want it to say %q; all: %v", key, got[key], want, ps)
		}
	}
}

// A key whose value did not decode is not reported again by a rule that
// sees the value missing.
func TestOneProblemPerBadValue(t *testing.T) {
	_, err := config.Parse([]byte("bgp: {asn: 1, router_id: banana}\nenforcers: [{ident: b, type: bgp}]\n"))
	var ps config.Problems
	if !errors.As(err, &ps) {
		t.Fatalf("error %v is not Problems", err)
	}
	if len(ps) != 1 || ps[0].Key != "bgp.router_id" {
		t.Fatalf("want one problem at bgp.router_id, got %v", ps)
	}
}
