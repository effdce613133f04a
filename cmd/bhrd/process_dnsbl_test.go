package main

import (
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/bhrd/bhrd/internal/bgptest"
	"github.com/bhrd/bhrd/pkg/dnsbl"
)

// The dnsbl enforcer as an operator runs it: the bhrd binary with an
// access key made by `bhrd dnsbl-key`, a block posted over HTTP answered
// over UDP and TCP with the key and NXDOMAIN without it, the listener in
// the audit log and the metrics; after kill -9 and a new start the zone
// is rebuilt from the store.
func TestProcessDNSBL(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the binary")
	}
	dir := t.TempDir()
	bin := buildBinary(t, dir)
	out, err := exec.Command(bin, "dnsbl-key", "-name", "web1").Output()
	if err != nil {
		t.Fatalf("dnsbl-key: %v", err)
	}
	m := regexp.MustCompile(`key: ([a-z]{12})\n(?s).*(- \{name: "web1", sha256: [0-9a-f]{64}\})`).FindStringSubmatch(string(out))
	if m == nil {
		t.Fatalf("dnsbl-key printed %q", out)
	}
	key, entry := m[1], m[2]
	apiPort, dnsPort := bgptest.FreePort(t), bgptest.FreePort(t)
	auditPath := filepath.Join(dir, "audit.log")
	cfgPath := filepath.Join(dir, "bhrd.yaml")
	y := fmt.Sprintf(`log: {level: info, audit: %s}
store: {driver: sqlite, path: %s}
api: {listen: "127.0.0.1:%d", shutdown_timeout: 5s}
enforcers:
  - ident: dnsbl1
    type: dnsbl
    dnsbl:
      listen: ["127.0.0.1:%d"]
      zones: [bl.test, dnsbl.httpbl.org]
      txt: true
      keys:
        %s
`, auditPath, filepath.Join(dir, "bhrd.db"), apiPort, dnsPort, entry)
	if err := os.WriteFile(cfgPath, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(bin, "check-config", "-config", cfgPath).CombinedOutput(); err != nil {
		t.Fatalf("check-config: %v\n%s", err, out)
	}
	token := adminToken(t, bin, cfgPath)
	base := fmt.Sprintf("http://127.0.0.1:%d", apiPort)
	client := &http.Client{Timeout: 5 * time.Second}
	dnsAddr := fmt.Sprintf("127.0.0.1:%d", dnsPort)
	ask := func(network, k string, addr netip.Addr) string {
		t.Helper()
		q := new(dns.Msg)
		q.SetQuestion(dnsbl.Name(addr, "dnsbl.httpbl.org", k), dns.TypeA)
		r, _, err := (&dns.Client{Net: network, Timeout: 2 * time.Second}).Exchange(q, dnsAddr)
		if err != nil {
			t.Fatalf("dns %s: %v", network, err)
		}
		if len(r.Answer) == 1 {
			return r.Answer[0].(*dns.A).A.String()
		}
		return dns.RcodeToString[r.Rcode]
	}

	first := serve(t, bin, cfgPath)
	waitReadyz(t, client, base, 30*time.Second)
	host := netip.MustParseAddr("203.0.113.7")
	postFormAs(t, client, base+"/bhr/api/block", token, url.Values{"cidr": {host.String()}, "source": {"test"}, "why": {"process test"}, "duration": {"864000"}}, 201)
	// 10 days: threat 25 + 25; type 1.
	bgptest.WaitFor(t, 5*time.Second, "the block answered in DNS", func() (bool, string) {
		got := ask("udp", key, host)
		return got == "127.0.50.1", got
	})
	if got := ask("tcp", key, host); got != "127.0.50.1" {
		t.Errorf("tcp: %s", got)
	}
	for _, k := range []string{"", "wrongwrongxx"} {
		if got := ask("udp", k, host); got != "NXDOMAIN" {
			t.Errorf("key %q: %s, want NXDOMAIN", k, got)
		}
	}
	resp, err := client.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`bhrd_dnsbl_queries_total{answer="listed",ident="dnsbl1",key="web1",zone="dnsbl.httpbl.org."}`,
		`bhrd_dnsbl_queries_total{answer="bad_key",ident="dnsbl1",key="",zone="dnsbl.httpbl.org."} 2`,
		`bhrd_dnsbl_listed_prefixes{ident="dnsbl1"} 1`,
	} {
		if !strings.Contains(string(b), want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	au, _ := os.ReadFile(auditPath)
	if !strings.Contains(string(au), `"event":"dnsbl_listener_started"`) {
		t.Errorf("no dnsbl_listener_started in the audit log:\n%s", au)
	}

	// kill -9, start again: the zone comes back from the store.
	_ = first.cmd.Process.Signal(syscall.SIGKILL)
	<-first.exited
	serve(t, bin, cfgPath)
	waitReadyz(t, client, base, 30*time.Second)
	if got := ask("udp", key, host); got != "127.0.50.1" {
		t.Errorf("after kill -9 and a new start: %s", got)
	}
}
