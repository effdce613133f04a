package app_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/bhrd/bhrd/internal/app"
	"github.com/bhrd/bhrd/internal/bgptest"
	"github.com/bhrd/bhrd/pkg/bgp"
	"github.com/bhrd/bhrd/pkg/plane/bgpplane"
	"github.com/bhrd/bhrd/pkg/queue"
)

// bgpEnv is one in-process bhrd peering with one in-test GoBGP router.
type bgpEnv struct {
	app    *app.App
	router *bgptest.Router
	api    *client
}

func newBGPEnv(t testing.TB) *bgpEnv {
	t.Helper()
	r := bgptest.NewRouter(t, routerASN)
	r.AddPeer(speakerASN, bgptest.PeerOptions{})
	cfg := bgpConfig(t, t.TempDir(), r.Port)
	a := startApp(t, app.Options{Config: cfg})
	e := &bgpEnv{app: a, router: r, api: newClient(t, a.APIAddr(), newToken(t, a.Store()))}
	r.WaitEstablished(20 * time.Second)
	return e
}

// blackholeCheck checks a path as bhrd's default enforcer
// announces it: discard next hop, BLACKHOLE and NO_EXPORT, over eBGP from
// bhrd's AS without LOCAL_PREF.
func blackholeCheck(nh netip.Addr) func(bgptest.Path) error {
	attrs := bgptest.Blackhole(nh, blackholeCommunities)
	return func(p bgptest.Path) error {
		if err := attrs(p); err != nil {
			return err
		}
		if !slices.Equal(p.ASPath, []uint32{speakerASN}) {
			return errors.New(p.Prefix.String() + ": AS path not [65000]: " + p.String())
		}
		if p.HasLocalPref {
			return errors.New(p.Prefix.String() + ": eBGP path with LOCAL_PREF: " + p.String())
		}
		return nil
	}
}

// TestE2EBGP drives bhrd over HTTP and watches the peering router's RIB:
// block → announced with the RTBH attributes → unblock_now or expiry →
// withdrawn; and blocks of bhrd's own peering addresses are refused.
func TestE2EBGP(t *testing.T) {
	e := newBGPEnv(t)
	cases := []struct {
		name, cidr string
		want       netip.Prefix
		nextHop    netip.Addr
	}{
		{"ipv4", "198.51.100.7", netip.MustParsePrefix("198.51.100.7/32"), nextHopV4},
		{"ipv6", "2001:db8::7", netip.MustParsePrefix("2001:db8::7/128"), nextHopV6},
	}
	t.Run("peers endpoint", func(t *testing.T) {
		bgptest.WaitFor(t, 10*time.Second, "api/bgp/peers to show the router up", func() (bool, string) {
			status, body := e.api.do("GET", "/bhr/api/bgp/peers", nil)
			if status != 200 {
				return false, fmt.Sprintf("%d %s", status, body)
			}
			var peers []struct {
				Ident string `json:"ident"`
				Peer  string `json:"peer"`
				Up    bool   `json:"up"`
			}
			if err := json.Unmarshal(body, &peers); err != nil {
				t.Fatalf("decode %s: %v", body, err)
			}
			ok := len(peers) == 1 && peers[0].Peer == "127.0.0.1" && peers[0].Up && peers[0].Ident != ""
			return ok, string(body)
		})
	})
	t.Run("internal ident refused to remote enforcers", func(t *testing.T) {
		for _, req := range []struct{ method, path string }{
			{"POST", "/bhr/api/set_blocked_multi/" + bgpIdent},
			{"GET", "/bhr/api/unblock_queue/" + bgpIdent},
		} {
			var body any
			if req.method == "POST" {
				body = map[string]any{"ids": []int64{1}}
			}
			status, out := e.api.do(req.method, req.path, body)
			if status != 409 || !strings.Contains(string(out), "enforced inside bhrd") {
				t.Errorf("%s %s: %d %s, want 409 naming the internal enforcer", req.method, req.path, status, out)
			}
		}
		// Other idents are still free for remote enforcers.
		if status, out := e.api.do("GET", "/bhr/api/unblock_queue/remote1", nil); status != 200 {
			t.Errorf("unblock_queue/remote1: %d %s", status, out)
		}
	})
	for _, tc := range cases {
		t.Run(tc.name+" block and unblock_now", func(t *testing.T) {
			fam := bgptest.FamilyOf(tc.want)
			b := e.api.block(tc.cidr, "300")
			if b.CIDR != tc.want.String() {
				t.Fatalf("block answer cidr %q, want %q", b.CIDR, tc.want)
			}
			e.router.WaitRIB(fam, 10*time.Second, []netip.Prefix{tc.want}, blackholeCheck(tc.nextHop))
			// The enforcer marks the block set_blocked once the speaker
			// took it, so it shows as current.
			e.api.waitCurrent(10*time.Second, tc.want.String())

			e.api.unblockNow(tc.cidr)
			e.router.WaitRIB(fam, 10*time.Second, nil, nil)
			e.api.waitCurrent(10 * time.Second)
			if n := e.router.Count(bgp.IPv4Unicast) + e.router.Count(bgp.IPv6Unicast); n != 0 {
				t.Errorf("router holds %d prefixes after the unblock", n)
			}
		})
	}

	t.Run("expiry", func(t *testing.T) {
		p := netip.MustParsePrefix("198.51.100.8/32")
		b := e.api.block(p.Addr().String(), "2s")
		blk, err := e.app.Service().GetBlock(context.Background(), b.ID)
		if err != nil {
			t.Fatal(err)
		}
		unblockAt := blk.UnblockAt
		if unblockAt.IsZero() {
			t.Fatalf("block %d has no unblock_at", b.ID)
		}
		e.router.WaitRIB(bgp.IPv4Unicast, 5*time.Second, []netip.Prefix{p}, blackholeCheck(nextHopV4))
		// Watch the route until it goes: it must stay until unblock_at and
		// be gone within 1 s after it. A read that finds it absent only
		// says it was withdrawn before the read ended, so each poll is
		// timed after its read.
		var goneAt time.Time
		ok, last := bgptest.Poll(time.Until(unblockAt)+5*time.Second, func() (bool, string) {
			rib := e.router.RIB(bgp.IPv4Unicast)
			at := time.Now()
			if _, present := rib[p]; present {
				return false, "still announced at " + at.Format(time.StampMicro)
			}
			goneAt = at
			return true, ""
		})
		if !ok {
			t.Fatalf("%s not withdrawn within 5 s of its unblock_at %s; %s", p, unblockAt.Format(time.StampMicro), last)
		}
		late := goneAt.Sub(unblockAt)
		t.Logf("expiry reached the router at most %s after unblock_at", late.Round(time.Millisecond))
		if late < 0 {
			t.Errorf("%s withdrawn %s before its unblock_at", p, -late)
		}
		if late > time.Second {
			t.Errorf("%s withdrawn %s after its unblock_at, want within 1 s", p, late)
		}
		e.api.waitCurrent(5 * time.Second)
	})

	t.Run("protected addresses", func(t *testing.T) {
		refused := []struct{ cidr, reason string }{
			{"127.0.0.1", "BGP peer 127.0.0.1"},
			{"127.0.0.0/24", "BGP peer 127.0.0.1"},
			{"192.0.2.1", "next hop of enforcer " + bgpIdent},
			{"192.0.2.0/24", "next hop of enforcer " + bgpIdent},
			{"100::1", "next hop of enforcer " + bgpIdent},
			{routerID, "BGP router id"},
		}
		ctx := context.Background()
		for _, r := range refused {
			// Through the service, even for a caller allowed to skip the
			// whitelist.
			for _, skip := range []bool{false, true} {
				_, err := e.app.Service().Block(ctx, queue.BlockRequest{
					CIDR: r.cidr, Who: "e2e", Source: "e2e", Why: "test", Duration: "300",
					SkipWhitelist: skip, MaySkipWhitelist: skip,
				})
				if !errors.Is(err, queue.ErrProtectedAddresses) {
					t.Errorf("Service.Block(%s, skip_whitelist=%v): error %v, want ErrProtectedAddresses", r.cidr, skip, err)
				} else if !strings.Contains(err.Error(), r.reason) {
					t.Errorf("Service.Block(%s): %q does not name the reason %q", r.cidr, err, r.reason)
				}
			}
			// Through HTTP: a 400 with BHR's non_field_errors naming the reason.
			for _, skip := range []string{"False", "True"} {
				st, body := e.api.do("POST", "/bhr/api/block", url.Values{
					"cidr": {r.cidr}, "source": {"e2e"}, "why": {"test"}, "duration": {"300"}, "skip_whitelist": {skip},
				})
				var errs struct {
					NonField []string `json:"non_field_errors"`
				}
				_ = json.Unmarshal(body, &errs)
				if st != http.StatusBadRequest || len(errs.NonField) != 1 || !strings.Contains(errs.NonField[0], r.reason) {
					t.Errorf("POST block %s skip_whitelist=%s: status %d body %s; want 400 with non_field_errors naming %q",
						r.cidr, skip, st, body, r.reason)
				}
			}
		}
		// Nothing was stored, so nothing reaches the router: a valid block
		// sent after the refused ones is all the router gets.
		ok := netip.MustParsePrefix("198.51.100.9/32")
		e.api.block(ok.Addr().String(), "300")
		e.router.WaitRIB(bgp.IPv4Unicast, 10*time.Second, []netip.Prefix{ok}, blackholeCheck(nextHopV4))
		e.router.WaitRIB(bgp.IPv6Unicast, time.Second, nil, nil)
		st, err := e.app.Service().Stats(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if st.Expected != 1 {
			t.Errorf("stats after the refused blocks: %+v, want 1 expected block", st)
		}
	})
}

// TestE2EBIRD peers bhrd with BIRD 2, an implementation other than the
// GoBGP it embeds: BIRD must accept the blackholes of both families over
// one IPv4 session, with their communities, and drop them on unblock.
func TestE2EBIRD(t *testing.T) {
	d := bgptest.StartBIRD(t, bgptest.BIRDConfig{RouterASN: routerASN, SpeakerASN: speakerASN})
	cfg := bgpConfig(t, t.TempDir(), d.Port)
	// A large community too, as a site would tag its own blackholes.
	cfg.Enforcers[0].Settings = bgpplane.Settings{LargeCommunities: []bgp.LargeCommunity{{GlobalAdmin: 65000, LocalData1: 666, LocalData2: 1}}}
	a := startApp(t, app.Options{Config: cfg})
	api := newClient(t, a.APIAddr(), newToken(t, a.Store()))
	d.WaitSessionUp(20 * time.Second)

	v4 := netip.MustParsePrefix("198.51.100.30/32")
	v6 := netip.MustParsePrefix("2001:db8::30/128")
	api.block(v4.Addr().String(), "300")
	api.block(v6.Addr().String(), "300")
	large := func(out string) error {
		if !strings.Contains(out, "BGP.large_community: (65000, 666, 1)") {
			return errors.New("no large community (65000, 666, 1) in:\n" + out)
		}
		return nil
	}
	for _, c := range []struct {
		p  netip.Prefix
		nh netip.Addr
	}{{v4, nextHopV4}, {v6, nextHopV6}} {
		check := bgptest.BlackholedBy(c.nh, speakerASN)
		out := d.WaitRoute(c.p, 20*time.Second, func(out string) error {
			if err := check(out); err != nil {
				return err
			}
			return large(out)
		})
		t.Logf("birdc show route all for %s:\n%s", c.p, out)
	}

	api.unblockNow(v4.Addr().String())
	api.unblockNow(v6.Addr().String())
	d.WaitNoRoute(v4, 20*time.Second)
	d.WaitNoRoute(v6, 20*time.Second)
	if up, out := d.SessionUp(); !up {
		t.Errorf("BIRD's session went down after the withdrawals:\n%s", out)
	}
}
