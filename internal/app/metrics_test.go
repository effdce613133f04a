package app

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v3/api"

	"github.com/bhrd/bhrd/internal/bgptest"
	"github.com/bhrd/bhrd/pkg/auth"
	"github.com/bhrd/bhrd/pkg/bgp"
	"github.com/bhrd/bhrd/pkg/config"
	"github.com/bhrd/bhrd/pkg/plane/bgpplane"
	"github.com/bhrd/bhrd/pkg/queue"
)

// metricValue finds one sample in a Prometheus text exposition: the
// metric name and every given label must match. ok is false if absent.
func metricValue(body, name string, labels map[string]string) (float64, bool) {
	for _, line := range strings.Split(body, "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		series := line[:i]
		n, rest, _ := strings.Cut(series, "{")
		if n != name {
			continue
		}
		match := true
		for k, v := range labels {
			if !strings.Contains(rest, k+`="`+v+`"`) {
				match = false
			}
		}
		if match {
			v, err := strconv.ParseFloat(line[i+1:], 64)
			return v, err == nil
		}
	}
	return 0, false
}

func get(t *testing.T, u string) (int, string) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// runApp validates cfg and runs an App on it until the test ends.
func runApp(t *testing.T, cfg config.Config) *App {
	t.Helper()
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	a, err := New(ctx, Options{Config: cfg, Logger: bgptest.Logger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Start(ctx); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = a.Stop(context.Background()) })
	return a
}

// TestMetricsAndHealth runs bhrd with a BGP enforcer peering with a
// GoBGP router, blocks an address over HTTP and reads /metrics, /healthz
// and /readyz; then breaks the store and sees readiness and the store
// error counter follow.
func TestMetricsAndHealth(t *testing.T) {
	r := bgptest.NewRouter(t, 64999)
	r.AddPeer(64512, bgptest.PeerOptions{})
	cfg := config.Default()
	cfg.Log.Level = "warn"
	cfg.Store.Path = filepath.Join(t.TempDir(), "bhrd.db")
	cfg.API.Listen = "127.0.0.1:0"
	cfg = bgpplane.WithSection(cfg, bgpplane.Config{
		ASN: 64512, RouterID: netip.MustParseAddr("192.0.2.254"), ListenPort: -1,
		Peers: []bgpplane.Peer{{Name: "router", Address: netip.MustParseAddr("127.0.0.1"), ASN: 64999, Port: uint16(r.Port), HoldTime: 9 * time.Second}},
	})
	cfg.Enforcers = []config.Enforcer{{Ident: "r1", Type: "bgp"}}
	ctx := context.Background()
	a := runApp(t, cfg)
	base := "http://" + a.APIAddr()

	if code, body := get(t, base+"/healthz"); code != 200 {
		t.Fatalf("/healthz: %d %s", code, body)
	}
	bgptest.WaitFor(t, 20*time.Second, "/readyz 200", func() (bool, string) {
		code, body := get(t, base+"/readyz")
		return code == 200, body
	})

	au := auth.NewAuthenticator(a.Store(), auth.AuthenticatorOptions{})
	if _, err := au.AddUser(ctx, "alice", "", []string{auth.RoleAdmin}); err != nil {
		t.Fatal(err)
	}
	token, _, err := au.CreateToken(ctx, "alice", "")
	if err != nil {
		t.Fatal(err)
	}
	form := url.Values{"cidr": {"203.0.113.7"}, "source": {"t"}, "why": {"t"}, "duration": {"300"}}
	req, _ := http.NewRequest("POST", base+"/bhr/api/block", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Authorization", "Token "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 201 {
		t.Fatalf("block: %d", resp.StatusCode)
	}
	r.WaitRIB(bgp.IPv4Unicast, 20*time.Second, []netip.Prefix{netip.MustParsePrefix("203.0.113.7/32")}, nil)
	if code, _ := get(t, base+"/bhr/api/blocks/999"); code != 401 {
		t.Fatalf("anonymous GET: %d", code)
	}
	// A 404 is the client's mistake, not a store error.
	req, _ = http.NewRequest("GET", base+"/bhr/api/blocks/999", nil)
	req.Header.Set("Authorization", "Token "+token)
	if resp, err = http.DefaultClient.Do(req); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Fatalf("GET unknown block: %d", resp.StatusCode)
	}

	want := []struct {
		name   string
		labels map[string]string
		value  float64
	}{
		{"bhrd_blocks", map[string]string{"state": "expected"}, 1},
		{"bhrd_blocks", map[string]string{"state": "current"}, 1},
		{"bhrd_enforcer_installed_prefixes", map[string]string{"ident": "r1", "type": "bgp"}, 1},
		{"bhrd_enforcer_reconciled", map[string]string{"ident": "r1"}, 1},
		{"bhrd_queue_depth", map[string]string{"ident": "r1", "queue": "block"}, 0},
		{"bhrd_queue_depth", map[string]string{"ident": "r1", "queue": "unblock"}, 0},
		{"bhrd_bgp_peer_up", map[string]string{"ident": "r1", "peer": "127.0.0.1", "state": "established", "peer_asn": "64999"}, 1},
		{"bhrd_bgp_prefixes_advertised", map[string]string{"ident": "r1", "peer": "127.0.0.1"}, 1},
		{"bhrd_enforcer_applied_total", map[string]string{"ident": "r1", "op": "block"}, 1},
		{"bhrd_enforcer_apply_duration_seconds_count", map[string]string{"ident": "r1", "op": "block"}, 1},
		{"bhrd_http_request_duration_seconds_count", map[string]string{"method": "POST", "route": "/bhr/api/block", "status": "201"}, 1},
		{"bhrd_http_request_duration_seconds_count", map[string]string{"method": "GET", "route": "/bhr/api/blocks/:id", "status": "401"}, 1},
		{"bhrd_http_request_duration_seconds_count", map[string]string{"method": "GET", "route": "/bhr/api/blocks/:id", "status": "404"}, 1},
		{"bhrd_store_errors_total", nil, 0},
		{"bhrd_scrape_errors", map[string]string{"part": "peers"}, 0},
	}
	// The advertised count follows the RIB asynchronously: poll.
	var body string
	bgptest.WaitFor(t, 20*time.Second, "metrics", func() (bool, string) {
		_, body = get(t, base+"/metrics")
		for _, w := range want {
			if v, ok := metricValue(body, w.name, w.labels); !ok || v != w.value {
				return false, w.name + " " + strconv.FormatFloat(v, 'g', -1, 64)
			}
		}
		return true, ""
	})
	if _, ok := metricValue(body, "go_goroutines", nil); !ok {
		t.Error("no Go runtime metrics")
	}

	// A router whose session is down leaves bhrd ready, and /readyz
	// names it.
	if err := r.Server().DeletePeer(ctx, &api.DeletePeerRequest{Address: "127.0.0.1"}); err != nil {
		t.Fatal(err)
	}
	bgptest.WaitFor(t, 20*time.Second, "/readyz to name the peer that is down", func() (bool, string) {
		code, body := get(t, base+"/readyz")
		return code == 200 && strings.Contains(body, "bgp peers down: r1 127.0.0.1 ("), body
	})

	// A dead store: not ready, and the failures are counted.
	if err := a.store.Close(); err != nil {
		t.Fatal(err)
	}
	code, msg := get(t, base+"/readyz")
	if code != 503 || !strings.Contains(msg, "store") {
		t.Fatalf("/readyz with a closed store: %d %s", code, msg)
	}
	_, body = get(t, base+"/metrics")
	if v, _ := metricValue(body, "bhrd_store_errors_total", nil); v < 1 {
		t.Errorf("bhrd_store_errors_total = %v after store failures", v)
	}
	// A count held from before (when counting took 10 ms or more on a
	// loaded machine) is served until its hold ends; the failed recount
	// then drops it, and the scrape reports the error.
	bgptest.WaitFor(t, 15*time.Second, "bhrd_scrape_errors{part=blocks} = 1 with a closed store", func() (bool, string) {
		_, body := get(t, base+"/metrics")
		v, _ := metricValue(body, "bhrd_scrape_errors", map[string]string{"part": "blocks"})
		return v == 1, fmt.Sprint(v)
	})
}

// The store reads of a scrape serve the scrapes within storeScrapeHold
// (anonymous pollers of /metrics cost the store one set of reads a
// second), and the next scrape after it reads the store again.
func TestMetricsStoreReadsHeld(t *testing.T) {
	cfg := config.Default()
	cfg.Log.Level = "warn"
	cfg.Store.Path = filepath.Join(t.TempDir(), "bhrd.db")
	cfg.API.Listen = "127.0.0.1:0"
	ctx := context.Background()
	a := runApp(t, cfg)
	base := "http://" + a.APIAddr()
	svc := a.Service()
	// A remote enforcer's ident, registered by its first queue read.
	if _, err := svc.BlockQueue(ctx, "r9", time.Time{}, queue.QueueLimit); err != nil {
		t.Fatal(err)
	}
	block := func(cidr string) {
		t.Helper()
		if _, err := svc.Block(queue.WithActor(ctx, queue.Actor{Name: "alice"}), queue.BlockRequest{CIDR: cidr, Who: "alice", Source: "t", Why: "t", Duration: "300"}); err != nil {
			t.Fatal(err)
		}
	}
	depth := func() float64 {
		t.Helper()
		_, body := get(t, base+"/metrics")
		v, ok := metricValue(body, "bhrd_ident_queue_depth", map[string]string{"ident": "r9", "queue": "block"})
		if !ok {
			t.Fatalf("no queue depth for r9:\n%s", body)
		}
		return v
	}
	block("203.0.113.1")
	first := time.Now()
	if d := depth(); d != 1 {
		t.Fatalf("depth %v, want 1", d)
	}
	block("203.0.113.2")
	if d := depth(); time.Since(first) < storeScrapeHold && d != 1 {
		t.Errorf("a scrape within the hold read the store again: depth %v, want the held 1", d)
	}
	time.Sleep(storeScrapeHold)
	if d := depth(); d != 2 {
		t.Errorf("after the hold: depth %v, want 2", d)
	}
}
