package web

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/bhrd/bhrd/pkg/audit"
	"github.com/bhrd/bhrd/pkg/auth"
	"github.com/bhrd/bhrd/pkg/queue"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// DefaultSessionMaxAge is how long a login lasts when the config does not
// say.
const DefaultSessionMaxAge = 12 * time.Hour

// SessionTokenName names the tokens that are web sessions.
const SessionTokenName = "web session"

const cookieName = "bhrd_session"

// pageSize is the rows of every list page.
const pageSize = 50

// whyWindow is how many block ids one page of a text query scans.
const whyWindow = 50_000

// Peer is one BGP session of an internal enforcer, for the enforcers page.
type Peer struct {
	Address string
	ASN     uint32
	State   string
	Up      bool
	Since   time.Time
	Sent    uint64
}

// Resolver looks up reverse DNS names (net.Resolver does).
type Resolver interface {
	LookupAddr(ctx context.Context, addr string) ([]string, error)
}

// Options configure the pages.
type Options struct {
	Service *queue.Service
	Auth    *auth.Authenticator
	// Logins throttles failed logins; share the API's.
	Logins *auth.LoginThrottle
	// Audit receives logins, logouts and refused logins (the Service
	// reports every change itself); nil records nothing.
	Audit  *audit.Logger
	Logger *zap.Logger
	// LocalNetworks are the site's own networks: the list page shows the
	// blocks inside them, with reverse DNS names.
	LocalNetworks []netip.Prefix
	// Limited serves /bhr/limited/query and /bhr/limited/list to anyone
	// (BHR's unauthenticated_limited_query).
	Limited bool
	// SessionMaxAge bounds a login; 0 means DefaultSessionMaxAge.
	SessionMaxAge time.Duration
	// SecureCookie marks the cookie Secure even when the request did not
	// come over TLS (a TLS proxy in front).
	SecureCookie bool
	// StoreUnavailable tells a store that cannot serve now (503) from
	// other failures (500).
	StoreUnavailable func(error) bool
	// Peers, when set, reports the internal enforcers' BGP sessions.
	Peers func(ctx context.Context) (map[string][]Peer, error)
	// Resolver defaults to net.DefaultResolver.
	Resolver Resolver
	// DNSTimeout bounds one reverse lookup; 0 means 2 s.
	DNSTimeout time.Duration
}

// Pages is the handler of every page.
type Pages struct {
	svc         *queue.Service
	auth        *auth.Authenticator
	logins      *auth.LoginThrottle
	audit       *audit.Logger
	log         *zap.Logger
	local       []netip.Prefix
	limited     bool
	maxAge      time.Duration
	secure      bool
	peers       func(ctx context.Context) (map[string][]Peer, error)
	unavailable func(error) bool
	rdns        *rdnsCache
	daily       dailyCache

	tmpl    map[string]*template.Template
	handler http.Handler
	paths   []string
}

type route struct {
	pattern string // net/http pattern, without method
	methods string // "GET", "POST" or "GET POST"
	h       http.HandlerFunc
}

// New builds the pages.
func New(opts Options) (*Pages, error) {
	if opts.Service == nil || opts.Auth == nil {
		return nil, errors.New("web: Service and Auth are required")
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	if opts.Logins == nil {
		opts.Logins = auth.NewLoginThrottle()
	}
	if opts.SessionMaxAge <= 0 {
		opts.SessionMaxAge = DefaultSessionMaxAge
	}
	if opts.Resolver == nil {
		opts.Resolver = net.DefaultResolver
	}
	if opts.DNSTimeout <= 0 {
		opts.DNSTimeout = 2 * time.Second
	}
	p := &Pages{
		svc: opts.Service, auth: opts.Auth, logins: opts.Logins, audit: opts.Audit,
		log: opts.Logger, local: opts.LocalNetworks, limited: opts.Limited,
		maxAge: opts.SessionMaxAge, secure: opts.SecureCookie, peers: opts.Peers, unavailable: opts.StoreUnavailable,
		rdns: newRDNSCache(opts.Resolver, opts.DNSTimeout),
	}
	p.daily.svc = opts.Service
	if err := p.parseTemplates(); err != nil {
		return nil, err
	}
	static, err := fs.Sub(staticFS, "static")
	if err != nil {
		return nil, err
	}
	routes := []route{
		{"/bhr/{$}", "GET", p.home},
		{"/bhr/login", "GET POST", p.login},
		{"/bhr/logout", "GET POST", p.logout},
		{"/bhr/add", "GET POST", p.add},
		{"/bhr/query", "GET", p.query},
		{"/bhr/unblock", "GET POST", p.unblock},
		{"/bhr/stats", "GET", p.stats},
		{"/bhr/list", "GET POST", p.list},
		{"/bhr/list/source/{source}", "GET", p.listSource},
		{"/bhr/limited/query", "GET", p.limitedQuery},
		{"/bhr/limited/list", "GET", p.limitedList},
		{"/bhr/enforcers", "GET", p.enforcers},
		{"/bhr/admin/whitelist", "GET POST", p.whitelist},
		{"/bhr/admin/blacklist", "GET POST", p.blacklist},
	}
	mux := http.NewServeMux()
	for _, r := range routes {
		for _, m := range strings.Fields(r.methods) {
			mux.HandleFunc(m+" "+r.pattern, r.h)
		}
		path := strings.TrimSuffix(strings.ReplaceAll(r.pattern, "{source}", ":source"), "{$}")
		p.paths = append(p.paths, path)
	}
	fileServer := http.StripPrefix("/bhr/static/", http.FileServerFS(static))
	mux.Handle("GET /bhr/static/{file}", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=3600")
		fileServer.ServeHTTP(w, r)
	}))
	p.paths = append(p.paths, "/bhr/static/:file")
	cop := http.NewCrossOriginProtection()
	cop.SetDenyHandler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.log.Warn("cross-origin form refused", zap.String("path", r.URL.Path),
			zap.String("origin", r.Header.Get("Origin")), zap.String("sec_fetch_site", r.Header.Get("Sec-Fetch-Site")))
		p.fail(w, r, http.StatusForbidden, "This form was sent from another site, so it was refused. Open the page on this server and send it again.")
	}))
	p.handler = cop.Handler(mux)
	return p, nil
}

// Paths implements api.Pages.
func (p *Pages) Paths() []string { return p.paths }

// ServeHTTP implements http.Handler.
func (p *Pages) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// Every page answers with and without a trailing slash.
	if path := r.URL.Path; path != "/bhr/" && strings.HasSuffix(path, "/") {
		r2 := r.Clone(r.Context())
		r2.URL.Path = strings.TrimSuffix(path, "/")
		r2.URL.RawPath = ""
		r = r2
	}
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "same-origin")
	p.handler.ServeHTTP(w, r)
}

// Close stops background work (reverse lookups).
func (p *Pages) Close() { p.rdns.close() }

// view is what every page template gets.
type view struct {
	Title   string
	User    *auth.Principal
	Limited bool
	Path    string
	Error   string
	Notice  string
	Now     time.Time
	Data    any
}

func (v view) Can(perm string) bool { return v.User.Can(auth.Permission(perm)) }

func (p *Pages) render(w http.ResponseWriter, r *http.Request, status int, name, title string, data any, msgs ...string) {
	t := p.tmpl[name]
	if t == nil {
		panic("web: no template " + name)
	}
	v := view{Title: title, User: auth.FromContext(r.Context()), Limited: p.limited, Path: r.URL.Path, Now: p.svc.Now(), Data: data}
	if len(msgs) > 0 {
		v.Error = msgs[0]
	}
	if len(msgs) > 1 {
		v.Notice = msgs[1]
	}
	var b strings.Builder
	if err := t.ExecuteTemplate(&b, "layout", v); err != nil {
		p.log.Error("render page", zap.String("page", name), zap.Error(err))
		http.Error(w, "The page could not be drawn.", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(b.String()))
}

// fail renders an error page.
func (p *Pages) fail(w http.ResponseWriter, r *http.Request, status int, msg string) {
	p.render(w, r, status, "error", http.StatusText(status), nil, msg)
}

// failErr renders an error of the Service: field errors and refusals
// are the user's (4xx); a store that cannot answer now is a 503, and
// anything else a 500 that is logged.
func (p *Pages) failErr(w http.ResponseWriter, r *http.Request, err error) {
	status, msg := p.errorStatus(err)
	if status >= 500 {
		p.log.Error("page failed", zap.String("path", r.URL.Path), zap.Error(err))
	}
	if status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "5")
	}
	p.fail(w, r, status, msg)
}

func (p *Pages) errorStatus(err error) (int, string) {
	var fes queue.FieldErrors
	var fe *queue.FieldError
	var pe *queue.PolicyError
	switch {
	case errors.Is(err, queue.ErrSkipNotPermitted):
		return http.StatusForbidden, "Your account may not skip the whitelist."
	case errors.Is(err, queue.ErrReservedIdent), errors.Is(err, queue.ErrTooManyIdents):
		return http.StatusConflict, err.Error()
	case errors.As(err, &fes):
		var parts []string
		for _, f := range fes {
			parts = append(parts, f.Field+": "+f.Message)
		}
		return http.StatusBadRequest, strings.Join(parts, "; ")
	case errors.As(err, &fe):
		return http.StatusBadRequest, fe.Field + ": " + fe.Message
	case errors.As(err, &pe):
		return http.StatusBadRequest, pe.Message
	case errors.Is(err, queue.ErrNotFound), errors.Is(err, auth.ErrNotFound):
		return http.StatusNotFound, "Not found."
	case errors.Is(err, queue.ErrDuplicate), errors.Is(err, auth.ErrDuplicate):
		return http.StatusBadRequest, "Already exists."
	case errors.Is(err, queue.ErrNotBlocked):
		return http.StatusBadRequest, err.Error()
	case errors.Is(err, context.DeadlineExceeded), p.unavailable != nil && p.unavailable(err):
		return http.StatusServiceUnavailable, "The store is unavailable; try again shortly."
	}
	return http.StatusInternalServerError, "Internal server error."
}

// need lets a request through for a user holding perm: anonymous users
// are sent to the login page (a GET) or refused (401), others lacking
// the permission get 403.
func (p *Pages) need(w http.ResponseWriter, r *http.Request, perm auth.Permission) (*auth.Principal, bool) {
	u := auth.FromContext(r.Context())
	if u == nil {
		if r.Method == http.MethodGet || r.Method == http.MethodHead {
			next := r.URL.Path
			if r.URL.RawQuery != "" {
				next += "?" + r.URL.RawQuery
			}
			http.Redirect(w, r, "/bhr/login?next="+urlQueryEscape(next), http.StatusSeeOther)
			return nil, false
		}
		p.fail(w, r, http.StatusUnauthorized, "Log in first.")
		return nil, false
	}
	if !u.Can(perm) {
		p.fail(w, r, http.StatusForbidden, fmt.Sprintf("Your account may not do this (it needs %s).", perm))
		return nil, false
	}
	return u, true
}
