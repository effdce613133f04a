package bgp

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
)

const mptcpHelperEnv = "BHRD_BGP_MPTCP_HELPER"

// mptcpHelper runs in a test binary whose GODEBUG turns Multipath TCP back
// on (see TestMain): Start must refuse TCP-MD5 and say how to fix it.
func mptcpHelper() int {
	cfg := validConfig()
	cfg.ListenAddresses = []netip.Addr{loopback}
	cfg.ListenPort = 1 // never bound: Start must fail before listening
	cfg.Peers[0].Password = "secret"
	s, err := New(cfg, nil)
	if err != nil {
		fmt.Println("new:", err)
		return 1
	}
	err = s.Start(ctxb)
	if err == nil {
		_ = s.Stop(ctxb)
		fmt.Println("Start accepted TCP-MD5 on a Multipath TCP listener")
		return 1
	}
	if !strings.Contains(err.Error(), "multipathtcp=0") {
		fmt.Println("error does not say how to fix it:", err)
		return 1
	}
	fmt.Println("MPTCP-REFUSED")
	return 0
}

func TestStartRefusesMD5OnMultipathTCP(t *testing.T) {
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), mptcpHelperEnv+"=1", "GODEBUG=multipathtcp=2")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "MPTCP-REFUSED") {
		t.Fatalf("helper process: %v\n%s", err, out)
	}
}
