package bgp

import (
	"fmt"
	"sort"
	"sync/atomic"

	gobgplog "github.com/osrg/gobgp/v3/pkg/log"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// zapLogger adapts zap to GoBGP's log.Logger.
//
// GoBGP asks GetLevel before building expensive debug fields (path dumps per
// UPDATE), so GetLevel must tell the truth: it reports the least verbose of
// the zap core's level (which may be an AtomicLevel the operator changes at
// run time) and of the ceiling set through SetLevel. SetLevel can therefore
// quieten GoBGP below the zap level but never make it louder than zap allows,
// since zap would drop those entries anyway.
type zapLogger struct {
	z       *zap.Logger
	ceiling atomic.Uint32 // a gobgplog.LogLevel
}

// NewGoBGPLogger returns a GoBGP v3 log.Logger writing to z. It is exported
// so that an embedder (or a test) running its own GoBGP server can share the
// adapter.
func NewGoBGPLogger(z *zap.Logger) gobgplog.Logger {
	l := &zapLogger{z: z.WithOptions(zap.AddCallerSkip(1))}
	l.ceiling.Store(uint32(gobgplog.TraceLevel))
	return l
}

func (l *zapLogger) Panic(msg string, fields gobgplog.Fields) {
	l.z.Panic(msg, zapFields(fields)...)
}

func (l *zapLogger) Fatal(msg string, fields gobgplog.Fields) {
	l.z.Fatal(msg, zapFields(fields)...)
}

func (l *zapLogger) Error(msg string, fields gobgplog.Fields) {
	l.log(gobgplog.ErrorLevel, zapcore.ErrorLevel, msg, fields)
}

func (l *zapLogger) Warn(msg string, fields gobgplog.Fields) {
	l.log(gobgplog.WarnLevel, zapcore.WarnLevel, msg, fields)
}

func (l *zapLogger) Info(msg string, fields gobgplog.Fields) {
	l.log(gobgplog.InfoLevel, zapcore.InfoLevel, msg, fields)
}

func (l *zapLogger) Debug(msg string, fields gobgplog.Fields) {
	l.log(gobgplog.DebugLevel, zapcore.DebugLevel, msg, fields)
}

func (l *zapLogger) log(gl gobgplog.LogLevel, zl zapcore.Level, msg string, fields gobgplog.Fields) {
	if gl > gobgplog.LogLevel(l.ceiling.Load()) {
		return
	}
	if ce := l.z.Check(zl, msg); ce != nil {
		ce.Write(zapFields(fields)...)
	}
}

func (l *zapLogger) SetLevel(level gobgplog.LogLevel) {
	l.ceiling.Store(uint32(level))
}

func (l *zapLogger) GetLevel() gobgplog.LogLevel {
	zl := fromZapLevel(l.z.Level())
	if c := gobgplog.LogLevel(l.ceiling.Load()); c < zl {
		return c
	}
	return zl
}

// fromZapLevel maps zap's level (lower is more verbose) to GoBGP's
// logrus-style level (higher is more verbose).
func fromZapLevel(z zapcore.Level) gobgplog.LogLevel {
	switch {
	case z <= zapcore.DebugLevel:
		return gobgplog.DebugLevel
	case z == zapcore.InfoLevel:
		return gobgplog.InfoLevel
	case z == zapcore.WarnLevel:
		return gobgplog.WarnLevel
	case z <= zapcore.DPanicLevel:
		return gobgplog.ErrorLevel
	case z == zapcore.PanicLevel:
		return gobgplog.PanicLevel
	default:
		return gobgplog.FatalLevel
	}
}

// zapFields sorts keys so that the same GoBGP event always renders the same
// way, which keeps logs diffable.
func zapFields(fields gobgplog.Fields) []zap.Field {
	if len(fields) == 0 {
		return nil
	}
	keys := make([]string, 0, len(fields))
	for k := range fields {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]zap.Field, 0, len(keys))
	for _, k := range keys {
		switch v := fields[k].(type) {
		case error:
			out = append(out, zap.NamedError(k, v))
		case fmt.Stringer:
			// GoBGP passes paths, prefixes and FSM states; their String form
			// is what an operator wants, not zap's reflection of internals.
			out = append(out, zap.Stringer(k, v))
		default:
			out = append(out, zap.Any(k, v))
		}
	}
	return out
}
