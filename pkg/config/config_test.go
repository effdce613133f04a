package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestExampleConfigIsValid(t *testing.T) {
	if _, err := Load("../../configs/bhrd.yaml"); err != nil {
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
			_, err := Load(filepath.Join("testdata", c.file))
			if err == nil {
				t.Fatal("accepted")
			}
			if c.msg != "" && !strings.Contains(err.Error(), c.msg) {
				t.Fatalf("error %q does not mention %q", err, c.msg)
			}
			if len(c.keys) == 0 {
				return
			}
			var ps Problems
			if !errors.As(err, &ps) {
				t.Fatalf("error %v is not Problems", err)
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
	c, err := Load("testdata/valid_full.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if c.API.LongPollMax != 30*time.Second || c.Store.PruneAfter != 8760*time.Hour || c.Policy.MinimumPrefixLen != 23 {
		t.Fatalf("values not decoded: %+v", c)
	}
	if c.API.MaxBodyBytes != 1<<20 || c.Policy.MinimumPrefixLenV6 != 64 {
		t.Fatal("defaults lost for keys not in the file")
	}
}

func TestSecretsFromEnvAndFile(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "url")
	if err := os.WriteFile(f, []byte("postgres://from-file/db\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Parse([]byte("store: {driver: postgres, url_file: " + f + "}"))
	if err != nil || c.Store.URL != "postgres://from-file/db" {
		t.Fatalf("url_file: %q %v", c.Store.URL, err)
	}
	t.Setenv("BHRD_DATABASE_URL", "postgres://from-env/db")
	c, err = Parse([]byte("store: {driver: postgres, url_file: /nonexistent}"))
	if err != nil || c.Store.URL != "postgres://from-env/db" {
		t.Fatalf("env: %q %v", c.Store.URL, err)
	}
}

func TestCommunities(t *testing.T) {
	for in, want := range map[string]uint32{"65535:666": 0xFFFF029A, "blackhole": 0xFFFF029A, "no-export": 0xFFFFFF01, "64512:100": 64512<<16 | 100} {
		got, err := ParseCommunity(in)
		if err != nil || got != want {
			t.Errorf("ParseCommunity(%q) = %x, %v", in, got, err)
		}
	}
	for _, bad := range []string{"", "65536:1", "1:-1", "banana"} {
		if _, err := ParseCommunity(bad); err == nil {
			t.Errorf("ParseCommunity(%q) accepted", bad)
		}
	}
	if lc, err := ParseLargeCommunity("64512:666:1"); err != nil || lc != [3]uint32{64512, 666, 1} {
		t.Errorf("ParseLargeCommunity = %v, %v", lc, err)
	}
}
