package app

import (
	"fmt"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/bhrd/bhrd/pkg/audit"
)

// NewLogger builds the operational logger: JSON to stderr (journald),
// RFC 3339 UTC times, at the given level (changeable at run time through
// the returned AtomicLevel).
func NewLogger(level string) (*zap.Logger, zap.AtomicLevel, error) {
	lvl, err := zap.ParseAtomicLevel(level)
	if err != nil {
		return nil, lvl, fmt.Errorf("log level %q: %w", level, err)
	}
	core := zapcore.NewCore(zapcore.NewJSONEncoder(EncoderConfig()), audit.Stderr, lvl)
	return zap.New(core, zap.ErrorOutput(audit.Stderr)), lvl, nil
}

// EncoderConfig is the JSON layout shared by the operational and audit
// logs: "time" in RFC 3339 UTC, "level", "msg".
func EncoderConfig() zapcore.EncoderConfig {
	ec := zap.NewProductionEncoderConfig()
	ec.TimeKey = "time"
	ec.EncodeTime = func(t time.Time, enc zapcore.PrimitiveArrayEncoder) {
		enc.AppendString(t.UTC().Format(time.RFC3339Nano))
	}
	ec.EncodeDuration = zapcore.MillisDurationEncoder
	return ec
}
