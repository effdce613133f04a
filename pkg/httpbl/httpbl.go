// Package httpbl filters web clients by an Http:BL DNS blacklist: Project
// Honeypot's (dnsbl.httpbl.org) or a bhrd DNSBL zone, which answer in the
// same format. It is a library first (a Checker usable on its own), with
// a net/http middleware here and a gin adapter in httpbl/httpblgin.
//
// The decision (Decide) is the one the Ruby HttpBL gem's README
// promises, not the one its code makes: a listed client is denied when
// its type has a bit in DenyTypes AND its threat is above
// ThreatLevelThreshold AND it was seen fewer than AgeThreshold days ago;
// a search engine (type 0) only when its serial is in
// BlockedSearchEngines; an answer outside 127.0.0.0/8 is an error, never
// a listing. Lookups are cached (a positive and a shorter negative
// lifetime), concurrent lookups of one address share one query, and a
// failed lookup is never cached: the request is let through (or refused
// with FailClosed) and the next one asks again.
package httpbl

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/hashicorp/golang-lru/v2/expirable"
	"golang.org/x/sync/singleflight"

	"github.com/bhrd/bhrd/pkg/dnsbl"
)

// Http:BL visitor types (bits of the answer's last octet).
const (
	SearchEngine   = 0
	Suspicious     = 1
	Harvester      = 2
	CommentSpammer = 4
)

// Options configure a Checker. The zero value of a field is its default.
type Options struct {
	// AccessKey is the Http:BL access key (12 lower-case letters), sent
	// as the first label. Project Honeypot requires one; a bhrd zone
	// only when it has keys configured.
	AccessKey string
	// Zone is the blacklist's zone (default "dnsbl.httpbl.org").
	Zone string
	// Resolvers are "host:port" DNS servers to ask, in order; empty means
	// the system's resolver.
	Resolvers []string
	// DenyTypes is the set of type bits that deny (default all: 1 to 128).
	DenyTypes []int
	// ThreatLevelThreshold: deny only above this threat (default 2; set
	// ZeroThreshold to use 0).
	ThreatLevelThreshold int
	// AgeThreshold: deny only if seen fewer than this many days ago
	// (default 10).
	AgeThreshold int
	// BlockedSearchEngines are the search-engine serials (type 0) to deny.
	BlockedSearchEngines []int
	// DNSTimeout bounds one lookup (default 500 ms).
	DNSTimeout time.Duration
	// CacheSize is the in-process cache's capacity in addresses (default
	// 10,000; -1 disables it). CacheTTL is how long an answer is kept
	// (default 1 h), NegativeTTL a "not listed" (default 10 min).
	CacheSize             int
	CacheTTL, NegativeTTL time.Duration
	// Cache is an optional second-level cache shared by several servers
	// (httpbl/memcache); looked up after the in-process one.
	Cache Cache
	// TrustedProxies are the peers whose X-Forwarded-For / Forwarded
	// headers are believed.
	TrustedProxies []netip.Prefix
	// IPv6 looks IPv6 clients up in the RFC 5782 nibble form (a bhrd zone
	// answers them; Project Honeypot does not: off, they are allowed).
	IPv6 bool
	// FailClosed refuses a request whose lookup failed (default: let it
	// through).
	FailClosed bool
	// ReportOnly decides and reports but never refuses.
	ReportOnly bool
	// ZeroThreshold makes a zero ThreatLevelThreshold mean 0, not 2.
	ZeroThreshold bool
	// Denied answers a refused request (default DefaultDenied: 403 with
	// a short page naming the reason, as the gem). FromContext gives it
	// the decision.
	Denied http.Handler
	// OnDecision sees every decision (logs, metrics), denied or not.
	OnDecision func(*http.Request, Decision)
	// Report, when set, posts denied clients to a bhrd as blocks (its Run
	// must be running).
	Report *Reporter
}

// Cache is a shared cache of answers: the value is the answer's four
// bytes, or empty for "not listed".
type Cache interface {
	Get(ctx context.Context, key string) (val []byte, ok bool, err error)
	Set(ctx context.Context, key string, val []byte, ttl time.Duration) error
}

// Decision is the outcome for one client.
type Decision struct {
	Client netip.Addr
	// Listed: the blacklist has the client; Answer is its 127.x.y.z.
	Listed bool
	Answer netip.Addr
	Days   int
	Threat int
	Type   int
	// Deny is whether the request is refused (before ReportOnly).
	Deny bool
	// Reason says why, for the denied page and the logs.
	Reason string
	// Err is the lookup's error, if it failed (then Deny is FailClosed).
	Err error
	// Cached: the answer came from a cache.
	Cached bool
}

// Checker looks clients up and decides.
type Checker struct {
	o        Options
	zone     string
	denyMask int
	resolver *net.Resolver
	pos, neg *expirable.LRU[netip.Addr, netip.Addr]
	group    singleflight.Group
}

// New checks o and returns a Checker.
func New(o Options) (*Checker, error) {
	if o.Zone == "" {
		o.Zone = "dnsbl.httpbl.org"
	}
	if o.DenyTypes == nil {
		o.DenyTypes = []int{1, 2, 4, 8, 16, 32, 64, 128}
	}
	if o.ThreatLevelThreshold == 0 && !o.ZeroThreshold {
		o.ThreatLevelThreshold = 2
	}
	if o.AgeThreshold == 0 {
		o.AgeThreshold = 10
	}
	if o.DNSTimeout <= 0 {
		o.DNSTimeout = 500 * time.Millisecond
	}
	if o.CacheSize == 0 {
		o.CacheSize = 10000
	}
	if o.CacheTTL <= 0 {
		o.CacheTTL = time.Hour
	}
	if o.NegativeTTL <= 0 {
		o.NegativeTTL = 10 * time.Minute
	}
	if o.AccessKey != "" && (len(o.AccessKey) > 63 || strings.ContainsAny(o.AccessKey, ". ")) {
		return nil, errors.New("httpbl: the access key must be one DNS label")
	}
	c := &Checker{o: o, zone: strings.TrimSuffix(strings.ToLower(o.Zone), ".")}
	for _, t := range o.DenyTypes {
		if t < 1 || t > 128 || t&(t-1) != 0 {
			return nil, fmt.Errorf("httpbl: deny type %d is not one of 1, 2, 4, ..., 128", t)
		}
		c.denyMask |= t
	}
	c.resolver = net.DefaultResolver
	if len(o.Resolvers) > 0 {
		servers := slices.Clone(o.Resolvers)
		c.resolver = &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			var err error
			for _, s := range servers {
				var conn net.Conn
				if conn, err = d.DialContext(ctx, network, s); err == nil {
					return conn, nil
				}
			}
			return nil, err
		}}
	}
	if o.CacheSize > 0 {
		c.pos = expirable.NewLRU[netip.Addr, netip.Addr](o.CacheSize, nil, o.CacheTTL)
		c.neg = expirable.NewLRU[netip.Addr, netip.Addr](o.CacheSize, nil, o.NegativeTTL)
	}
	return c, nil
}

// Decide applies the options to an answer (the address a listed client's
// name resolved to).
func (c *Checker) Decide(ans netip.Addr) (deny bool, reason string, err error) {
	if !ans.Is4() || ans.As4()[0] != 127 {
		return false, "", fmt.Errorf("httpbl: answer %s is not in 127.0.0.0/8: a bad query or a hijacking resolver", ans)
	}
	b := ans.As4()
	days, threat, typ := int(b[1]), int(b[2]), int(b[3])
	if typ == SearchEngine {
		if slices.Contains(c.o.BlockedSearchEngines, threat) {
			return true, fmt.Sprintf("search engine %d is blocked", threat), nil
		}
		return false, fmt.Sprintf("search engine %d", threat), nil
	}
	what := typeNames(typ)
	switch {
	case typ&c.denyMask == 0:
		return false, what + ": type not denied", nil
	case threat <= c.o.ThreatLevelThreshold:
		return false, fmt.Sprintf("%s: threat %d not above %d", what, threat, c.o.ThreatLevelThreshold), nil
	case days >= c.o.AgeThreshold:
		return false, fmt.Sprintf("%s: last seen %d days ago", what, days), nil
	}
	return true, fmt.Sprintf("%s, threat %d, last seen %d days ago", what, threat, days), nil
}

func typeNames(t int) string {
	var n []string
	for _, x := range []struct {
		bit  int
		name string
	}{{Suspicious, "suspicious"}, {Harvester, "harvester"}, {CommentSpammer, "comment spammer"}} {
		if t&x.bit != 0 {
			n = append(n, x.name)
		}
	}
	if t&^7 != 0 {
		n = append(n, fmt.Sprintf("type %d", t&^7))
	}
	return strings.Join(n, " and ")
}

// queryName is the name asked for addr: [key.]reversed.zone (the
// RFC 5782 form bhrd's zones answer).
func (c *Checker) queryName(addr netip.Addr) string { return dnsbl.Name(addr, c.zone, c.o.AccessKey) }

// errNotListed marks a "not listed" answer inside the lookup.
var errNotListed = errors.New("not listed")

// Check looks addr up (through the caches) and decides.
func (c *Checker) Check(ctx context.Context, addr netip.Addr) Decision {
	addr = addr.Unmap()
	d := Decision{Client: addr}
	if !addr.IsValid() {
		d.Err = errors.New("httpbl: no client address")
		d.Deny = c.o.FailClosed
		return d
	}
	if addr.Is6() && !c.o.IPv6 {
		d.Reason = "IPv6 client: the zone does not list IPv6"
		return d
	}
	ans, listed, cached, err := c.lookup(ctx, addr)
	d.Cached = cached
	if err != nil {
		d.Err = err
		d.Deny = c.o.FailClosed
		d.Reason = "lookup failed"
		return d
	}
	if !listed {
		d.Reason = "not listed"
		return d
	}
	d.Listed, d.Answer = true, ans
	b := ans.As4()
	d.Days, d.Threat, d.Type = int(b[1]), int(b[2]), int(b[3])
	d.Deny, d.Reason, d.Err = c.Decide(ans)
	if d.Err != nil {
		d.Listed = false
		d.Deny = c.o.FailClosed
	}
	return d
}

// lookup returns addr's answer from the caches or the DNS. Errors are
// never cached.
func (c *Checker) lookup(ctx context.Context, addr netip.Addr) (ans netip.Addr, listed, cached bool, err error) {
	if c.pos != nil {
		if a, ok := c.pos.Get(addr); ok {
			return a, true, true, nil
		}
		if _, ok := c.neg.Get(addr); ok {
			return netip.Addr{}, false, true, nil
		}
	}
	key := addr.String()
	if c.o.Cache != nil {
		if v, ok, err := c.o.Cache.Get(ctx, "httpbl:"+key); err == nil && ok {
			if len(v) == 4 {
				a := netip.AddrFrom4([4]byte(v))
				c.remember(addr, a, true)
				return a, true, true, nil
			}
			c.remember(addr, netip.Addr{}, false)
			return netip.Addr{}, false, true, nil
		}
	}
	v, err, _ := c.group.Do(key, func() (any, error) {
		// A flight that ended between our cache miss and this call has
		// left its answer there.
		if c.pos != nil {
			if a, ok := c.pos.Get(addr); ok {
				return a, nil
			}
			if _, ok := c.neg.Get(addr); ok {
				return netip.Addr{}, errNotListed
			}
		}
		lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.o.DNSTimeout)
		defer cancel()
		ips, err := c.resolver.LookupNetIP(lctx, "ip4", c.queryName(addr))
		var de *net.DNSError
		switch {
		case errors.As(err, &de) && de.IsNotFound:
			c.remember(addr, netip.Addr{}, false)
			c.share(ctx, key, nil, c.o.NegativeTTL)
			return netip.Addr{}, errNotListed
		case err != nil:
			return netip.Addr{}, fmt.Errorf("httpbl: lookup %s: %w", addr, err)
		case len(ips) == 0:
			return netip.Addr{}, fmt.Errorf("httpbl: lookup %s: no address in the answer", addr)
		}
		a := ips[0].Unmap()
		if !a.Is4() || a.As4()[0] != 127 {
			// Not an answer of the blacklist's (a hijacking resolver's
			// ad page): an error, not kept.
			return netip.Addr{}, fmt.Errorf("httpbl: lookup %s: answer %s is not in 127.0.0.0/8", addr, a)
		}
		c.remember(addr, a, true)
		if a.Is4() {
			b := a.As4()
			c.share(ctx, key, b[:], c.o.CacheTTL)
		}
		return a, nil
	})
	if errors.Is(err, errNotListed) {
		return netip.Addr{}, false, false, nil
	}
	if err != nil {
		return netip.Addr{}, false, false, err
	}
	return v.(netip.Addr), true, false, nil
}

func (c *Checker) remember(addr, ans netip.Addr, listed bool) {
	if c.pos == nil {
		return
	}
	if listed {
		c.pos.Add(addr, ans)
	} else {
		c.neg.Add(addr, ans)
	}
}

func (c *Checker) share(ctx context.Context, key string, val []byte, ttl time.Duration) {
	if c.o.Cache != nil {
		_ = c.o.Cache.Set(ctx, "httpbl:"+key, val, ttl)
	}
}
