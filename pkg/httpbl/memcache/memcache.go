// Package memcache is an httpbl.Cache on memcached, so that several
// application servers share their Http:BL answers, as the Ruby gem's
// memcached option does.
package memcache

import (
	"context"
	"errors"
	"time"

	"github.com/bradfitz/gomemcache/memcache"
)

// Cache keeps answers in memcached.
type Cache struct {
	c *memcache.Client
}

// New returns a cache on the given servers ("host:port"). A memcached
// that is slow or down costs at most timeout per request (0: 100 ms) and
// the lookup goes on to the DNS.
func New(timeout time.Duration, servers ...string) *Cache {
	c := memcache.New(servers...)
	if timeout <= 0 {
		timeout = 100 * time.Millisecond
	}
	c.Timeout = timeout
	return &Cache{c: c}
}

// Get implements httpbl.Cache.
func (m *Cache) Get(_ context.Context, key string) ([]byte, bool, error) {
	it, err := m.c.Get(key)
	if errors.Is(err, memcache.ErrCacheMiss) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	return it.Value, true, nil
}

// Set implements httpbl.Cache.
func (m *Cache) Set(_ context.Context, key string, val []byte, ttl time.Duration) error {
	return m.c.Set(&memcache.Item{Key: key, Value: val, Expiration: int32(max(ttl/time.Second, 1))})
}
