package bgp

import (
	"context"
	"testing"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// A session a router closes with a NOTIFICATION is reported down with
// its code, subcode and name.
func TestPeerDownSaysWhy(t *testing.T) {
	r := newRouter(t, 65001)
	r.addPeer(speakerASN, routerPeerOpts{})
	s := startSpeaker(t, r.speakerConfig(speakerASN))
	events := make(chan PeerEvent, 10)
	s.OnPeerEvent(func(ev PeerEvent) { events <- ev })
	if err := s.Ready(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitPeerUp(t, s, 20*time.Second)
	if err := r.srv.DeletePeer(context.Background(), &api.DeletePeerRequest{Address: "127.0.0.1"}); err != nil {
		t.Fatal(err)
	}
	deadline := time.After(20 * time.Second)
	for {
		select {
		case ev := <-events:
			if ev.Up {
				continue
			}
			if ev.Reason != "received NOTIFICATION 6/3 (Cease: peer de-configured)" {
				t.Fatalf("down event: %+v", ev)
			}
			return
		case <-deadline:
			t.Fatal("no down event")
		}
	}
}

// GoBGP's error about closing a connection bhrd's graceful stop already
// closed is debug, not error; other errors stay errors.
func TestCloseNoiseIsDebug(t *testing.T) {
	core, logs := observer.New(zapcore.DebugLevel)
	l := reasonLogger{NewGoBGPLogger(zap.New(core)), &downReasons{}}
	l.Error("failed to close existing tcp connection", map[string]any{"Key": "127.0.0.1"})
	l.Error("something else", nil)
	if got := logs.FilterMessage("failed to close existing tcp connection").All(); len(got) != 1 || got[0].Level != zapcore.DebugLevel {
		t.Errorf("close noise: %v", got)
	}
	if got := logs.FilterMessage("something else").All(); len(got) != 1 || got[0].Level != zapcore.ErrorLevel {
		t.Errorf("other error: %v", got)
	}
}
