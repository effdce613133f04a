package bgp

import (
	"errors"
	"testing"

	gobgplog "github.com/osrg/gobgp/v3/pkg/log"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

func TestGoBGPLoggerLevelFollowsZap(t *testing.T) {
	lvl := zap.NewAtomicLevelAt(zapcore.InfoLevel)
	core, logs := observer.New(lvl)
	l := NewGoBGPLogger(zap.New(core))

	if got := l.GetLevel(); got != gobgplog.InfoLevel {
		t.Errorf("level %v at zap info, want info", got)
	}
	l.Debug("dropped", nil)
	lvl.SetLevel(zapcore.DebugLevel)
	if got := l.GetLevel(); got != gobgplog.DebugLevel {
		t.Errorf("level %v after zap went to debug, want debug", got)
	}
	l.Debug("kept", gobgplog.Fields{"Topic": "Peer", "Key": "192.0.2.1"})

	// SetLevel can quieten GoBGP below zap's level...
	l.SetLevel(gobgplog.WarnLevel)
	if got := l.GetLevel(); got != gobgplog.WarnLevel {
		t.Errorf("level %v after SetLevel(warn), want warn", got)
	}
	l.Info("dropped by ceiling", nil)
	l.Warn("warned", gobgplog.Fields{"Error": errors.New("boom")})
	// ...but not make it louder than zap lets through.
	lvl.SetLevel(zapcore.ErrorLevel)
	l.SetLevel(gobgplog.TraceLevel)
	if got := l.GetLevel(); got != gobgplog.ErrorLevel {
		t.Errorf("level %v with zap at error, want error", got)
	}
	l.Error("errored", nil)

	var msgs []string
	for _, e := range logs.All() {
		msgs = append(msgs, e.Message)
	}
	want := []string{"kept", "warned", "errored"}
	if len(msgs) != len(want) {
		t.Fatalf("logged %v, want %v", msgs, want)
	}
	for i := range want {
		if msgs[i] != want[i] {
			t.Fatalf("logged %v, want %v", msgs, want)
		}
	}
	kept := logs.All()[0]
	if kept.Level != zapcore.DebugLevel || kept.ContextMap()["Topic"] != "Peer" || kept.ContextMap()["Key"] != "192.0.2.1" {
		t.Errorf("debug entry %+v", kept)
	}
	if logs.All()[1].ContextMap()["Error"] != "boom" {
		t.Errorf("error field %v", logs.All()[1].ContextMap())
	}
}

func TestFromZapLevel(t *testing.T) {
	for z, g := range map[zapcore.Level]gobgplog.LogLevel{
		zapcore.DebugLevel:  gobgplog.DebugLevel,
		zapcore.InfoLevel:   gobgplog.InfoLevel,
		zapcore.WarnLevel:   gobgplog.WarnLevel,
		zapcore.ErrorLevel:  gobgplog.ErrorLevel,
		zapcore.DPanicLevel: gobgplog.ErrorLevel,
		zapcore.PanicLevel:  gobgplog.PanicLevel,
		zapcore.FatalLevel:  gobgplog.FatalLevel,
	} {
		if got := fromZapLevel(z); got != g {
			t.Errorf("fromZapLevel(%v) = %v, want %v", z, got, g)
		}
	}
}
