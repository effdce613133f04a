package audit_test

import (
	"bufio"
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/bhrd/bhrd/pkg/audit"
	"github.com/bhrd/bhrd/pkg/queue"
)

func readLines(t *testing.T, path string) []map[string]any {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []map[string]any
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("line %q is not JSON: %v", sc.Text(), err)
		}
		out = append(out, m)
	}
	return out
}

func TestFileLinesAndReopen(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "audit.log")
	l, err := audit.New(path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	a := audit.Actor{Name: "alice", TokenID: 7, RemoteAddr: "192.0.2.1:5555", RequestID: "r1"}
	end := time.Date(2030, 1, 2, 3, 4, 5, 0, time.FixedZone("x", 3600))
	l.Block(a, queue.BlockResult{Outcome: queue.Created, Block: queue.Block{
		ID: 42, CIDR: netip.MustParsePrefix("203.0.113.7/32"), Source: "ids", Why: "scan", UnblockAt: end}})

	// logrotate: move the file away, then reopen.
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	if err := l.Reopen(); err != nil {
		t.Fatal(err)
	}
	l.SetBlocked(audit.Enforcer("r1"), "r1", 42, netip.MustParsePrefix("203.0.113.7/32"))

	old := readLines(t, path+".1")
	if len(old) != 1 {
		t.Fatalf("rotated file has %d lines, want 1", len(old))
	}
	b := old[0]
	want := map[string]any{"event": "block_created", "actor": "alice", "token_id": 7.0, "remote_addr": "192.0.2.1:5555",
		"request_id": "r1", "cidr": "203.0.113.7/32", "block_id": 42.0, "source": "ids", "why": "scan",
		"unblock_at": "2030-01-02T02:04:05Z", "skip_whitelist": false}
	for k, v := range want {
		if b[k] != v {
			t.Errorf("%s = %#v, want %#v (line %v)", k, b[k], v, b)
		}
	}
	tm, err := time.Parse(time.RFC3339Nano, b["time"].(string))
	if err != nil || tm.Location() != time.UTC {
		t.Errorf("time %v: want RFC 3339 UTC (%v)", b["time"], err)
	}
	if _, ok := b["level"]; ok {
		t.Errorf("audit lines carry no level: %v", b)
	}

	cur := readLines(t, path)
	if len(cur) != 1 || cur[0]["event"] != "set_blocked" || cur[0]["actor"] != "enforcer:r1" {
		t.Fatalf("new file: %v", cur)
	}
	// Fixed keys are present even for internal actors; token_id only
	// when a token was used.
	for _, k := range []string{"time", "event", "actor", "remote_addr", "request_id"} {
		if _, ok := cur[0][k]; !ok {
			t.Errorf("key %s missing: %v", k, cur[0])
		}
	}
	if _, ok := cur[0]["token_id"]; ok {
		t.Errorf("token_id without a token: %v", cur[0])
	}
}

func TestNilLoggerRecordsNothing(t *testing.T) {
	var l *audit.Logger
	l.BlockRejected(audit.Actor{}, "x", "y", "z", "r")
	if err := l.Reopen(); err != nil {
		t.Fatal(err)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestNewBadPath(t *testing.T) {
	if _, err := audit.New(filepath.Join(t.TempDir(), "missing", "audit.log")); err == nil {
		t.Fatal("want an error for a file in a missing directory")
	}
}

// A Batch writes the same lines as the Logger itself, and none of them
// before Flush.
func TestBatchSameLinesAtFlush(t *testing.T) {
	dir := t.TempDir()
	direct, batched := filepath.Join(dir, "direct.log"), filepath.Join(dir, "batched.log")
	emit := func(l *audit.Logger) {
		a := audit.Actor{Name: "alice", TokenID: 7, RemoteAddr: "192.0.2.1:5555", RequestID: "r1"}
		for i := range 3 {
			l.Block(a, queue.BlockResult{Outcome: queue.Outcome(i), Block: queue.Block{
				ID: int64(40 + i), CIDR: netip.MustParsePrefix("203.0.113.7/32"), Source: "ids", Why: "scan",
				UnblockAt: time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)}})
		}
		l.SetBlocked(audit.Enforcer("r1"), "r1", 42, netip.MustParsePrefix("203.0.113.7/32"))
		l.SetUnblocked(audit.Enforcer("r1"), "r1", 9, 42, netip.MustParsePrefix("203.0.113.7/32"))
	}
	// Both carry the instance name, written and batched alike.
	ldf, err := audit.New(direct)
	if err != nil {
		t.Fatal(err)
	}
	defer ldf.Close()
	ld := ldf.WithInstance("edge-1")
	emit(ld)
	lbf, err := audit.New(batched)
	if err != nil {
		t.Fatal(err)
	}
	defer lbf.Close()
	b := lbf.WithInstance("edge-1").Batch()
	emit(b)
	if got := readLines(t, batched); len(got) != 0 {
		t.Fatalf("%d lines written before Flush", len(got))
	}
	b.Flush()
	b.Flush() // nothing more to write
	want, got := readLines(t, direct), readLines(t, batched)
	if len(want) != 5 || len(got) != len(want) {
		t.Fatalf("batched %d lines, direct %d (want 5)", len(got), len(want))
	}
	for i := range want {
		if want[i]["instance"] != "edge-1" || got[i]["instance"] != "edge-1" {
			t.Errorf("line %d without the instance: direct %v, batched %v", i, want[i], got[i])
		}
		delete(want[i], "time")
		if _, ok := got[i]["time"]; !ok {
			t.Fatalf("batched line %d has no time: %v", i, got[i])
		}
		delete(got[i], "time")
		wj, _ := json.Marshal(want[i])
		gj, _ := json.Marshal(got[i])
		if string(wj) != string(gj) {
			t.Errorf("line %d:\nbatched %s\ndirect  %s", i, gj, wj)
		}
	}
	// The batch's lines go to the Logger's file, after what it wrote.
	ld.Block(audit.Actor{Name: "bob"}, queue.BlockResult{Outcome: queue.Created, Block: queue.Block{ID: 1, CIDR: netip.MustParsePrefix("192.0.2.1/32")}})
	b2 := ld.Batch()
	b2.SetBlocked(audit.Enforcer("r2"), "r2", 1, netip.MustParsePrefix("192.0.2.1/32"))
	b2.Flush()
	lines := readLines(t, direct)
	if len(lines) != 7 || lines[6]["event"] != "set_blocked" || lines[5]["actor"] != "bob" {
		t.Fatalf("direct file after a batch: %v", lines)
	}
}

// On a Logger over a caller's core (zap's observer in tests), a Batch
// writes through at once.
func TestBatchOnCallerCore(t *testing.T) {
	core, logs := observer.New(zapcore.InfoLevel)
	l := audit.NewWithCore(core)
	b := l.Batch()
	b.SetBlocked(audit.Enforcer("r1"), "r1", 1, netip.MustParsePrefix("192.0.2.1/32"))
	if logs.Len() != 1 {
		t.Fatalf("%d lines before Flush, want 1", logs.Len())
	}
	b.Flush()
	if logs.Len() != 1 {
		t.Fatalf("%d lines after Flush, want 1", logs.Len())
	}
}
