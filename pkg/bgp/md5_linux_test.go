package bgp

import (
	"bufio"
	"context"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// requireMD5 skips unless the process may set TCP-MD5 keys (root, and a
// kernel with TCP_MD5SIG); BHRD_REQUIRE_ROOT=1 turns the skip into a failure.
func requireMD5(t *testing.T) {
	t.Helper()
	skip := func(why string) {
		if os.Getenv("BHRD_REQUIRE_ROOT") == "1" {
			t.Fatalf("TCP-MD5 test cannot run (%s) and BHRD_REQUIRE_ROOT=1", why)
		}
		t.Skipf("SKIPPING TCP-MD5 test: %s (set BHRD_REQUIRE_ROOT=1 to make this a failure)", why)
	}
	if os.Geteuid() != 0 {
		skip("not root")
	}
	// Probe the way GoBGP sets keys for its passive side: on a listener.
	// Some kernels accept TCP_MD5SIG on a fresh socket yet refuse it there.
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	defer l.Close()
	sc, err := l.(*net.TCPListener).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	sig := unix.TCPMD5Sig{Keylen: 4}
	copy(sig.Key[:], "test")
	// sockaddr_in inside sockaddr_storage: port (0), then the address.
	sig.Addr.Family = unix.AF_INET
	copy(sig.Addr.Data[2:6], []byte{127, 0, 0, 1})
	var serr error
	if err := sc.Control(func(fd uintptr) {
		serr = unix.SetsockoptTCPMD5Sig(int(fd), unix.IPPROTO_TCP, unix.TCP_MD5SIG, &sig)
	}); err != nil {
		t.Fatal(err)
	}
	if serr != nil {
		skip("the kernel refuses TCP_MD5SIG on a listening socket: " + serr.Error())
	}
}

// tcpExt reads one TcpExt counter from /proc/net/netstat.
func tcpExt(t *testing.T, name string) int {
	t.Helper()
	f, err := os.Open("/proc/net/netstat")
	if err != nil {
		t.Fatalf("read TCP counters: %v", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		keys := strings.Fields(sc.Text())
		if !sc.Scan() {
			break
		}
		vals := strings.Fields(sc.Text())
		if len(keys) == 0 || keys[0] != "TcpExt:" {
			continue
		}
		for i, k := range keys {
			if k == name && i < len(vals) {
				n, err := strconv.Atoi(vals[i])
				if err != nil {
					t.Fatalf("counter %s: %v", name, err)
				}
				return n
			}
		}
	}
	t.Fatalf("counter TcpExt %s not found", name)
	return 0
}

func TestMD5Password(t *testing.T) {
	requireMD5(t)
	const password = "bhrd-md5-secret"
	r := newRouter(t, routerASN)
	r.addPeer(speakerASN, routerPeerOpts{password: password})

	// A wrong key: the router's kernel drops the signed SYNs, counting
	// them, and no session comes up.
	failures := tcpExt(t, "TCPMD5Failure")
	cfg := r.speakerConfig(speakerASN)
	cfg.Peers[0].Password = "not-the-secret"
	wrong := startSpeaker(t, cfg)
	if err := wrong.Ready(ctxb); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 15*time.Second, "the kernel to reject a SYN with a wrong MD5 signature", func() (bool, string) {
		n := tcpExt(t, "TCPMD5Failure")
		return n > failures, "TCPMD5Failure=" + strconv.Itoa(n)
	})
	if ps, _ := wrong.Peers(ctxb); ps[0].Up || r.established() {
		t.Fatalf("session came up with a wrong MD5 password: %+v", ps[0])
	}
	ctx, cancel := context.WithTimeout(ctxb, 5*time.Second)
	defer cancel()
	if err := wrong.Stop(ctx); err != nil {
		t.Fatal(err)
	}

	cfg.Peers[0].Password = password
	s := startSpeaker(t, cfg)
	p := netip.MustParsePrefix("198.51.100.20/32")
	if err := s.Announce(ctxb, "bgp1", []Route{blackhole(p.String())}); err != nil {
		t.Fatal(err)
	}
	if err := s.Ready(ctxb); err != nil {
		t.Fatal(err)
	}
	r.waitRIB(IPv4Unicast, 20*time.Second, []netip.Prefix{p}, expectAttrs(DefaultNextHopV4, DefaultCommunities()))
}
