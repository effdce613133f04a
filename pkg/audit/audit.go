package audit

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/bhrd/bhrd/pkg/queue"
)

// The fixed keys of every line (besides "time" and "event").
const (
	KeyActor      = "actor"
	KeyTokenID    = "token_id"
	KeyRemoteAddr = "remote_addr"
	KeyRequestID  = "request_id"
)

// Stderr is the process's standard error behind one lock. Every logger
// writing there (the operational log too) must use it: a batch of audit
// lines is one write larger than a pipe's atomic size, which a concurrent
// write by another logger could otherwise split.
var Stderr = zapcore.Lock(os.Stderr)

// System is the actor of changes bhrd makes by itself (config reloads).
const System = "system"

// Actor is who did something and through what (the Service's actor).
type Actor = queue.Actor

// Enforcer is the actor of an internal enforcer.
func Enforcer(ident string) Actor { return queue.EnforcerActor(ident) }

func fields(a Actor) []zap.Field { return appendFields(make([]zap.Field, 0, 4), a) }

func appendFields(f []zap.Field, a Actor) []zap.Field {
	f = append(f, zap.String(KeyActor, a.Name))
	if a.TokenID != 0 {
		f = append(f, zap.Int64(KeyTokenID, a.TokenID))
	}
	return append(f, zap.String(KeyRemoteAddr, a.RemoteAddr), zap.String(KeyRequestID, a.RequestID))
}

// Logger writes audit events.
type Logger struct {
	log *zap.Logger
	out *reopener // nil for stderr and for caller-supplied cores

	// enc and ws are the encoder and output of log's core, for batches;
	// nil for caller-supplied cores.
	enc zapcore.Encoder
	ws  zapcore.WriteSyncer
	// batch is non-nil on a Batch: lines are encoded into it and written
	// by Flush. fields is its scratch slice.
	batch  *[]byte
	fields []zap.Field
	// base are fields every line carries (the instance name).
	base []zap.Field
}

// KeyInstance is the field naming the bhrd instance that wrote a line.
const KeyInstance = "instance"

// WithInstance returns a logger whose every line also carries
// "instance": name. It writes to the same output; close the original.
func (l *Logger) WithInstance(name string) *Logger {
	if l == nil {
		return nil
	}
	c := *l
	f := zap.String(KeyInstance, name)
	c.log = l.log.With(f)
	c.base = append(append([]zap.Field(nil), l.base...), f)
	c.fields = nil
	return &c
}

// New opens the audit log at dest: "stderr" (or "") or a file path,
// appended to and created 0640 when missing.
func New(dest string) (*Logger, error) {
	var ws zapcore.WriteSyncer
	var r *reopener
	if dest == "" || dest == "stderr" {
		ws = Stderr
	} else {
		r = &reopener{path: dest}
		if err := r.Reopen(); err != nil {
			return nil, err
		}
		ws = r
	}
	enc := zapcore.NewJSONEncoder(EncoderConfig())
	l := NewWithCore(zapcore.NewCore(enc, ws, zapcore.InfoLevel))
	l.out, l.enc, l.ws = r, enc, ws
	return l, nil
}

// Batch returns a logger for one goroutine's burst of lines (an mblock,
// a set_blocked_multi), which keeps them until Flush writes them all with
// one write: the same lines, without a system call each. Flush before
// answering the request. On a Logger over a caller-supplied core, Batch
// returns l itself and lines are written as they come.
func (l *Logger) Batch() *Logger {
	if l == nil || l.enc == nil {
		return l
	}
	return &Logger{log: l.log, out: l.out, enc: l.enc, ws: l.ws, batch: new([]byte), base: l.base}
}

// Flush writes the lines of a Batch kept so far; it does nothing on a
// Logger that is not a Batch. A write error is reported on stderr, as
// zap reports its own.
func (l *Logger) Flush() {
	if l == nil || l.batch == nil || len(*l.batch) == 0 {
		return
	}
	if _, err := l.ws.Write(*l.batch); err != nil {
		fmt.Fprintf(Stderr, "%s\taudit log write error: %v\n", time.Now().UTC().Format(time.RFC3339Nano), err)
	}
	*l.batch = (*l.batch)[:0]
}

// NewWithCore builds a Logger over any core (tests use zap's observer).
// No sampling is added: every event is written.
func NewWithCore(core zapcore.Core) *Logger {
	return &Logger{log: zap.New(core, zap.ErrorOutput(Stderr))}
}

// EncoderConfig is the audit line layout: "time" (RFC 3339, UTC) and
// "event", then the fields. No level: every line is an event.
func EncoderConfig() zapcore.EncoderConfig {
	return zapcore.EncoderConfig{
		TimeKey:    "time",
		MessageKey: "event",
		LineEnding: zapcore.DefaultLineEnding,
		EncodeTime: func(t time.Time, enc zapcore.PrimitiveArrayEncoder) {
			enc.AppendString(t.UTC().Format(time.RFC3339Nano))
		},
		EncodeDuration: zapcore.StringDurationEncoder,
	}
}

// Reopen closes and reopens the audit file, for logrotate's
// postrotate (SIGHUP). It does nothing when the log goes to stderr.
func (l *Logger) Reopen() error {
	if l == nil || l.out == nil {
		return nil
	}
	return l.out.Reopen()
}

// Path is the audit file, "" for stderr.
func (l *Logger) Path() string {
	if l == nil || l.out == nil {
		return ""
	}
	return l.out.path
}

// Close flushes and closes the audit file.
func (l *Logger) Close() error {
	if l == nil {
		return nil
	}
	// Sync on a terminal or pipe fails with EINVAL: only a file's
	// Sync error matters.
	err := l.log.Sync()
	if l.out == nil {
		return nil
	}
	return errors.Join(err, l.out.Close())
}

func (l *Logger) emit(event string, a Actor, f ...zap.Field) {
	if l == nil {
		return
	}
	if l.batch == nil {
		l.log.Info(event, append(fields(a), f...)...)
		return
	}
	l.fields = append(appendFields(append(l.fields[:0], l.base...), a), f...)
	buf, err := l.enc.EncodeEntry(zapcore.Entry{Level: zapcore.InfoLevel, Time: time.Now(), Message: event}, l.fields)
	if err != nil {
		fmt.Fprintf(Stderr, "%s\taudit log encode error: %v\n", time.Now().UTC().Format(time.RFC3339Nano), err)
		return
	}
	*l.batch = append(*l.batch, buf.Bytes()...)
	buf.Free()
}

// reopener is a file WriteSyncer whose file can be swapped under it.
type reopener struct {
	path string
	mu   sync.Mutex
	f    *os.File
}

func (r *reopener) Reopen() error {
	f, err := os.OpenFile(r.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return fmt.Errorf("open audit log: %w", err)
	}
	r.mu.Lock()
	old := r.f
	r.f = f
	r.mu.Unlock()
	if old != nil {
		_ = old.Close()
	}
	return nil
}

func (r *reopener) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.f == nil {
		return 0, os.ErrClosed
	}
	return r.f.Write(p)
}

func (r *reopener) Sync() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.f == nil {
		return nil
	}
	return r.f.Sync()
}

func (r *reopener) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.f == nil {
		return nil
	}
	err := r.f.Close()
	r.f = nil
	if err != nil {
		return fmt.Errorf("close audit log: %w", err)
	}
	return nil
}
