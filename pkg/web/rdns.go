package web

import (
	"context"
	"net/netip"
	"strings"
	"sync"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
)

// Reverse names are cached: found ones for an hour, failures for ten
// minutes. A page never waits for a lookup: it shows the names it has and
// asks for the others in the background, at most rdnsWorkers at a time.
const (
	rdnsFound   = time.Hour
	rdnsMissing = 10 * time.Minute
	rdnsWorkers = 8
	rdnsEntries = 10_000
)

type rdnsEntry struct {
	name    string
	expires time.Time
}

type rdnsCache struct {
	res     Resolver
	timeout time.Duration
	cache   *lru.Cache[netip.Addr, rdnsEntry]
	slots   chan struct{}

	mu       sync.Mutex
	inflight map[netip.Addr]bool
	ctx      context.Context
	cancel   context.CancelFunc
	wg       sync.WaitGroup
}

func newRDNSCache(res Resolver, timeout time.Duration) *rdnsCache {
	c, _ := lru.New[netip.Addr, rdnsEntry](rdnsEntries) // fails only for a size <= 0
	ctx, cancel := context.WithCancel(context.Background())
	return &rdnsCache{res: res, timeout: timeout, cache: c, slots: make(chan struct{}, rdnsWorkers),
		inflight: map[netip.Addr]bool{}, ctx: ctx, cancel: cancel}
}

// names returns the cached names of addrs and starts lookups for the
// others ("" until found).
func (c *rdnsCache) names(addrs []netip.Addr) map[netip.Addr]string {
	out := make(map[netip.Addr]string, len(addrs))
	now := time.Now()
	for _, a := range addrs {
		if e, ok := c.cache.Get(a); ok && now.Before(e.expires) {
			out[a] = e.name
			continue
		}
		c.lookup(a)
	}
	return out
}

func (c *rdnsCache) lookup(a netip.Addr) {
	c.mu.Lock()
	if c.inflight[a] || c.ctx.Err() != nil {
		c.mu.Unlock()
		return
	}
	select {
	case c.slots <- struct{}{}:
	default:
		c.mu.Unlock()
		return // busy: a later page asks again
	}
	c.inflight[a] = true
	c.wg.Add(1)
	c.mu.Unlock()
	go func() {
		defer c.wg.Done()
		defer func() { <-c.slots }()
		ctx, cancel := context.WithTimeout(c.ctx, c.timeout)
		names, err := c.res.LookupAddr(ctx, a.String())
		cancel()
		e := rdnsEntry{expires: time.Now().Add(rdnsMissing)}
		if err == nil && len(names) > 0 {
			e = rdnsEntry{name: strings.TrimSuffix(names[0], "."), expires: time.Now().Add(rdnsFound)}
		}
		c.cache.Add(a, e)
		c.mu.Lock()
		delete(c.inflight, a)
		c.mu.Unlock()
	}()
}

func (c *rdnsCache) close() {
	c.mu.Lock()
	c.cancel()
	c.mu.Unlock()
	c.wg.Wait()
}
