package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gin-gonic/gin"
	"go.uber.org/zap"
	"golang.org/x/sync/singleflight"

	"github.com/bhrd/bhrd/pkg/audit"
	"github.com/bhrd/bhrd/pkg/auth"
	"github.com/bhrd/bhrd/pkg/config"
	"github.com/bhrd/bhrd/pkg/queue"
)

// Defaults for the config.API values left at zero (config.Default sets
// the same values; these keep a hand-built Options safe).
const (
	DefaultMaxBodyBytes   = 1 << 20
	DefaultMaxMBlockItems = 1000
	DefaultLongPollMax    = 60 * time.Second
	DefaultBodyTimeout    = 10 * time.Second
)

// Options configure the API.
type Options struct {
	Service *queue.Service
	Auth    *auth.Authenticator
	// StoreUnavailable, when set, tells a failure of the store that can
	// not serve now (answered 503 with Retry-After) from other failures
	// (500).
	StoreUnavailable func(error) bool
	// Logger receives one access-log line per request and handler errors.
	Logger *zap.Logger
	Config config.API
	// LocalNetworks are the site's own networks: ?local=true on block
	// lists keeps only blocks inside one of them (BHR marked such blocks
	// in its pages; it is not a validation).
	LocalNetworks []netip.Prefix
	// Audit receives authentication failures (the Service reports every
	// change itself); nil records nothing.
	Audit *audit.Logger
	// OnRequest, when set, is called once per request with its route
	// pattern ("unmatched" for none) and status (for metrics).
	OnRequest func(method, route string, status int, d time.Duration)
	// Pages, when set, are the web pages (pkg/web), served at their paths.
	Pages Pages
	// Logins throttles failed password logins; nil makes one of the API's
	// own (pass the web pages' to share it).
	Logins *auth.LoginThrottle
	// BGPPeers, when set, serves GET api/bgp/peers: the state of the
	// embedded speakers' peers (the value is encoded as JSON).
	BGPPeers func(ctx context.Context) (any, error)
}

// API is the HTTP handler for everything under /bhr/.
type API struct {
	svc         *queue.Service
	auth        *auth.Authenticator
	log         *zap.Logger
	unavailable func(error) bool
	logins      *auth.LoginThrottle
	audit       *audit.Logger
	onReq       func(method, route string, status int, d time.Duration)
	peers       func(ctx context.Context) (any, error)
	pages       Pages
	cfg         config.API
	local       []netip.Prefix
	base        string // scheme://host[/prefix] from config, "" = from the request
	engine      *gin.Engine

	waiting    atomic.Int64
	queueReads singleflight.Group // block-queue reads shared by waiters
	drain      chan struct{}
	drainOnce  sync.Once
}

var ginMode sync.Once

// New builds the router.
func New(opts Options) (*API, error) {
	if opts.Service == nil || opts.Auth == nil {
		return nil, errors.New("api: Service and Auth are required")
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	c := opts.Config
	if c.MaxBodyBytes <= 0 {
		c.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if c.MaxMBlockItems <= 0 {
		c.MaxMBlockItems = DefaultMaxMBlockItems
	}
	if c.LongPollMax <= 0 {
		c.LongPollMax = DefaultLongPollMax
	}
	if c.BodyTimeout <= 0 {
		c.BodyTimeout = DefaultBodyTimeout
	}
	if opts.Logins == nil {
		opts.Logins = auth.NewLoginThrottle()
	}
	base, err := parseBaseURL(c.BaseURL)
	if err != nil {
		return nil, err
	}
	a := &API{
		svc:         opts.Service,
		auth:        opts.Auth,
		log:         opts.Logger,
		audit:       opts.Audit,
		onReq:       opts.OnRequest,
		peers:       opts.BGPPeers,
		pages:       opts.Pages,
		unavailable: opts.StoreUnavailable,
		logins:      opts.Logins,
		cfg:         c,
		local:       opts.LocalNetworks,
		base:        base,
		drain:       make(chan struct{}),
	}
	// gin's mode is process-wide; debug mode prints every route to stdout.
	ginMode.Do(func() { gin.SetMode(gin.ReleaseMode) })
	a.engine = a.routes()
	return a, nil
}

// parseBaseURL checks api.base_url: the externally visible root of the
// server (scheme, host and any proxy path prefix, without /bhr).
func parseBaseURL(s string) (string, error) {
	if s == "" {
		return "", nil
	}
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return "", fmt.Errorf("api.base_url %q: want an absolute http(s) URL such as https://bhr.example.org", s)
	}
	return strings.TrimRight(s, "/"), nil
}

// ServeHTTP implements http.Handler.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	a.engine.ServeHTTP(w, r)
}

// Waiting is the number of block-queue long polls waiting for work now.
func (a *API) Waiting() int64 { return a.waiting.Load() }

// Drain makes every waiting long poll answer at once (with what it has:
// an empty list) and later ones not wait, so that a graceful shutdown is
// not held up by enforcers parked for up to api.long_poll_max. Register
// it with http.Server.RegisterOnShutdown.
func (a *API) Drain() {
	a.drainOnce.Do(func() { close(a.drain) })
}

func (a *API) routes() *gin.Engine {
	e := gin.New()
	// Every route is registered with and without its trailing slash, so a
	// POST is never answered with a redirect that clients would not follow.
	e.RedirectTrailingSlash = false
	e.RedirectFixedPath = false
	e.HandleMethodNotAllowed = true
	e.Use(a.requestID, a.accessLog, a.recoverPanic, a.limitBody)
	e.NoRoute(func(c *gin.Context) {
		writeJSON(c, http.StatusNotFound, detail("Not found."))
	})
	e.NoMethod(func(c *gin.Context) {
		// gin has set Allow to the path's methods.
		if c.Request.Method == http.MethodOptions {
			c.Writer.Header().Set("Allow", c.Writer.Header().Get("Allow")+", OPTIONS")
			c.Status(http.StatusNoContent)
			c.Writer.WriteHeaderNow()
			return
		}
		writeJSON(c, http.StatusMethodNotAllowed, detail(fmt.Sprintf("Method %q not allowed.", c.Request.Method)))
	})

	healthz := func(c *gin.Context) { writeJSON(c, http.StatusOK, map[string]string{"status": "ok"}) }
	e.GET("/healthz", healthz)
	e.HEAD("/healthz", healthz)

	g := e.Group("/bhr", a.authenticate, func(c *gin.Context) { withActor(c) })
	read := a.require(auth.PermRead)
	// publist.csv and query_limited are public only when the operator
	// says so, as BHR's unauthenticated_limited_query did.
	limited := read
	if a.cfg.UnauthenticatedLimitedQuery {
		limited = nil
	}
	both := func(method, path string, handlers ...gin.HandlerFunc) {
		var hs []gin.HandlerFunc
		for _, h := range handlers {
			if h != nil {
				hs = append(hs, h)
			}
		}
		p := strings.TrimSuffix(path, "/")
		g.Handle(method, p, hs...)
		g.Handle(method, p+"/", hs...)
		if method == http.MethodGet {
			// Django answered HEAD on every GET view; probes use it. The
			// server discards the body.
			g.Handle(http.MethodHead, p, hs...)
			g.Handle(http.MethodHead, p+"/", hs...)
		}
	}

	// Blocks (blocks.go).
	both("POST", "api/block", a.require(auth.PermAddBlock), a.postBlock)
	both("POST", "api/mblock", a.require(auth.PermAddBlock), a.postMBlock)
	both("POST", "api/unblock_now", a.require(auth.PermChangeBlock), a.postUnblockNow)
	both("GET", "api/blocks", read, a.listBlocks(queue.FilterAll, fullBlock))
	both("GET", "api/blocks/:id", read, a.getBlock)
	both("POST", "api/blocks/:id/set_blocked", a.require(auth.PermAddBlockEntry), a.postBlockSetBlocked)
	both("GET", "api/current_blocks", read, a.listBlocks(queue.FilterCurrent, fullBlock))
	both("GET", "api/pending_blocks", read, a.listBlocks(queue.FilterPending, fullBlock))
	both("GET", "api/pending_removal_blocks", read, a.listBlocks(queue.FilterPendingRemoval, fullBlock))
	both("GET", "api/expected_blocks", read, a.listBlocks(queue.FilterExpected, briefBlock))
	both("GET", "api/current_blocks_brief", read, a.listBlocks(queue.FilterCurrent, briefBlock))

	// Queues (queue.go). Idents may contain slashes, as BHR's ".+" allowed.
	g.GET("/api/queue/*ident", a.require(auth.PermAddBlockEntry), a.getBlockQueue)
	g.HEAD("/api/queue/*ident", a.require(auth.PermAddBlockEntry), a.getBlockQueue)
	g.POST("/api/set_blocked_multi/*ident", a.require(auth.PermAddBlockEntry), a.postSetBlockedMulti)
	g.GET("/api/unblock_queue/*ident", a.require(auth.PermChangeBlockEntry), a.getUnblockQueue)
	g.HEAD("/api/unblock_queue/*ident", a.require(auth.PermChangeBlockEntry), a.getUnblockQueue)
	both("POST", "api/set_unblocked_multi", a.require(auth.PermChangeBlockEntry), a.postSetUnblockedMulti)
	both("GET", "api/idents", read, a.listIdents)

	// Entries (entries.go).
	both("GET", "api/blockentries", read, a.listEntries)
	both("GET", "api/blockentries/:id", read, a.getEntry)
	both("POST", "api/blockentries/:id/set_unblocked", a.require(auth.PermChangeBlockEntry), a.postEntrySetUnblocked)

	// History (query.go). A cidr has a slash in it: a wildcard route.
	g.GET("/api/query/*cidr", read, a.getQuery(false))
	g.HEAD("/api/query/*cidr", read, a.getQuery(false))
	g.GET("/api/query_limited/*cidr", limited, a.getQuery(true))
	g.HEAD("/api/query_limited/*cidr", limited, a.getQuery(true))

	// Whitelist and source blacklist (whitelist.go, blacklist.go).
	both("GET", "api/whitelist", read, a.listWhitelist)
	both("POST", "api/whitelist", a.require(auth.PermChangeWhitelist), a.postWhitelist)
	both("GET", "api/whitelist/:id", read, a.getWhitelist)
	both("DELETE", "api/whitelist/:id", a.require(auth.PermChangeWhitelist), a.deleteWhitelist)
	both("GET", "api/source_blacklist", read, a.listSourceBlacklist)
	both("POST", "api/source_blacklist", a.require(auth.PermChangeSourceBlacklist), a.postSourceBlacklist)
	both("GET", "api/source_blacklist/:id", read, a.getSourceBlacklist)
	both("DELETE", "api/source_blacklist/:id", a.require(auth.PermChangeSourceBlacklist), a.deleteSourceBlacklist)

	// Statistics (stats.go): public, as in BHR.
	both("GET", "api/stats", a.getStats)
	both("GET", "api/source_stats", a.getSourceStats)
	both("GET", "api/metrics", a.getMetrics)

	// BGP peers of the internal enforcers (peers.go).
	if a.peers != nil {
		both("GET", "api/bgp/peers", read, a.getBGPPeers)
	}

	// CSV exports (csv.go).
	both("GET", "list.csv", read, a.getListCSV)
	both("GET", "publist.csv", limited, a.getPublistCSV)

	if a.pages != nil {
		a.mountPages(e, a.pages)
	}
	return e
}

// wildcard returns a catch-all route parameter without its leading slash
// and without one trailing slash ("api/queue/r1/" means ident "r1").
func wildcard(c *gin.Context, name string) string {
	s := strings.TrimPrefix(c.Param(name), "/")
	return strings.TrimSuffix(s, "/")
}
