package httpbl

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"
)

// Reporter posts the clients the middleware denies to a bhrd as blocks
// (source "httpbl"), batched: one api/mblock per Interval with what was
// denied meanwhile, each address once. Off unless Options.Report is set;
// Run must be running.
type Reporter struct {
	// URL is bhrd's base URL ("http://127.0.0.1:8080"); Token an API
	// token of a user allowed to block.
	URL, Token string
	// Duration of each block, in BHR's format (default "1h"); Why its
	// reason (default "denied by Http:BL").
	Duration, Why string
	// Interval between posts (default 5 s).
	Interval time.Duration
	// Client posts (default one with a 10 s timeout).
	Client *http.Client
	// OnError sees a failed post (the batch is dropped: the next denial
	// of the same client reports it again).
	OnError func(error)

	mu      sync.Mutex
	pending map[netip.Addr]string // client → reason
}

// Report queues a denied client.
func (r *Reporter) Report(d Decision) {
	if !d.Deny || !d.Listed || !d.Client.IsValid() {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.pending == nil {
		r.pending = map[netip.Addr]string{}
	}
	r.pending[d.Client] = d.Reason
}

// Run posts every Interval until ctx ends, then once more.
func (r *Reporter) Run(ctx context.Context) {
	iv := r.Interval
	if iv <= 0 {
		iv = 5 * time.Second
	}
	t := time.NewTicker(iv)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			r.Flush(context.WithoutCancel(ctx))
			return
		case <-t.C:
			r.Flush(ctx)
		}
	}
}

type reportItem struct {
	CIDR     string `json:"cidr"`
	Source   string `json:"source"`
	Why      string `json:"why"`
	Duration string `json:"duration"`
}

// Flush posts what is queued now. An all-or-nothing api/mblock refused
// for one item (a whitelisted address) is retried item by item.
func (r *Reporter) Flush(ctx context.Context) {
	r.mu.Lock()
	pending := r.pending
	r.pending = nil
	r.mu.Unlock()
	if len(pending) == 0 {
		return
	}
	dur, why := r.Duration, r.Why
	if dur == "" {
		dur = "1h"
	}
	if why == "" {
		why = "denied by Http:BL"
	}
	items := make([]reportItem, 0, len(pending))
	for a, reason := range pending {
		items = append(items, reportItem{CIDR: a.String(), Source: "httpbl", Why: why + ": " + reason, Duration: dur})
	}
	status, err := r.post(ctx, "/bhr/api/mblock", items)
	if err == nil && status == http.StatusBadRequest && len(items) > 1 {
		for _, it := range items {
			if _, err := r.post(ctx, "/bhr/api/block", it); err != nil {
				r.fail(err)
			}
		}
		return
	}
	if err == nil && status != http.StatusCreated {
		err = fmt.Errorf("httpbl: report to %s: status %d", r.URL, status)
	}
	if err != nil {
		r.fail(err)
	}
}

func (r *Reporter) fail(err error) {
	if r.OnError != nil {
		r.OnError(err)
	}
}

func (r *Reporter) post(ctx context.Context, path string, body any) (int, error) {
	b, err := json.Marshal(body)
	if err != nil {
		return 0, err
	}
	req, err := http.NewRequestWithContext(ctx, "POST", strings.TrimSuffix(r.URL, "/")+path, bytes.NewReader(b))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Token "+r.Token)
	cl := r.Client
	if cl == nil {
		cl = &http.Client{Timeout: 10 * time.Second}
	}
	resp, err := cl.Do(req)
	if err != nil {
		return 0, fmt.Errorf("httpbl: report to %s: %w", r.URL, err)
	}
	resp.Body.Close()
	return resp.StatusCode, nil
}
