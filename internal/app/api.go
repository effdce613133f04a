package app

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"sort"
	"strings"
	"time"

	"go.uber.org/zap"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/bhrd/bhrd/pkg/api"
	"github.com/bhrd/bhrd/pkg/auth"
	"github.com/bhrd/bhrd/pkg/bgp"
	"github.com/bhrd/bhrd/pkg/web"
)

// startAPI listens on the configured address and serves the API.
func (a *App) startAPI(ctx context.Context) error {
	c := a.opts.Config.API
	bhr, err := a.newAPI()
	if err != nil {
		return err
	}
	h := &rootHandler{a: a, bhr: bhr, metrics: promhttp.HandlerFor(a.mets.reg, promhttp.HandlerOpts{
		ErrorLog: zap.NewStdLog(a.log.Named("metrics")), ErrorHandling: promhttp.ContinueOnError})}
	ln, err := net.Listen("tcp", c.Listen)
	if err != nil {
		return fmt.Errorf("api listen %s: %w", c.Listen, err)
	}
	a.listener = ln
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		// No WriteTimeout: long polls last up to api.long_poll_max and
		// CSV exports of a million rows take seconds.
		IdleTimeout: 120 * time.Second,
		BaseContext: func(net.Listener) context.Context { return ctx },
		ErrorLog:    zap.NewStdLog(a.log.Named("http")),
	}
	// Parked long polls answer at once when shutdown starts, instead of
	// holding it up for up to api.long_poll_max.
	srv.RegisterOnShutdown(bhr.Drain)
	served := make(chan struct{})
	go func() {
		defer close(served)
		var err error
		if c.TLSCert != "" {
			err = srv.ServeTLS(ln, c.TLSCert, c.TLSKey)
		} else {
			err = srv.Serve(ln)
		}
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Error("api server", zap.Error(err))
		}
	}()
	// In-flight requests finish within the stop's context.
	a.life.onStop("api", func(ctx context.Context) error {
		err := srv.Shutdown(ctx)
		if err == nil {
			<-served
		}
		return err
	})
	a.log.Info("api listening", zap.String("addr", ln.Addr().String()), zap.Bool("tls", c.TLSCert != ""))
	return nil
}

// newAPI builds the BHR API handler over the app's service and store.
func (a *App) newAPI() (*api.API, error) {
	cfg := a.opts.Config
	var local []netip.Prefix
	for _, p := range cfg.Policy.LocalNetworks {
		local = append(local, p.Masked())
	}
	authn := auth.NewAuthenticator(a.store, auth.AuthenticatorOptions{})
	// Another instance revoking a token or disabling a user takes effect
	// here at once, not when the cached authentication expires.
	a.svc.OnAuthChange(authn.Invalidate)
	logins := auth.NewLoginThrottle()
	var pages api.Pages
	if cfg.API.WebPages {
		p, err := web.New(web.Options{
			Service:          a.svc,
			Auth:             authn,
			Logins:           logins,
			Audit:            a.audit,
			Logger:           a.log.Named("web"),
			LocalNetworks:    local,
			Limited:          cfg.API.UnauthenticatedLimitedQuery,
			SessionMaxAge:    cfg.API.SessionMaxAge,
			SecureCookie:     cfg.API.SecureCookie || cfg.API.TLSCert != "",
			Peers:            a.webPeers,
			StoreUnavailable: a.store.Unavailable,
		})
		if err != nil {
			return nil, fmt.Errorf("web pages: %w", err)
		}
		a.life.onStop("web pages", func(context.Context) error { p.Close(); return nil })
		pages = p
	}
	h, err := api.New(api.Options{
		Service:          a.svc,
		StoreUnavailable: a.store.Unavailable,
		Auth:             authn,
		Logger:           a.log.Named("api"),
		Config:           cfg.API,
		LocalNetworks:    local,
		Audit:            a.audit,
		OnRequest:        a.mets.observeRequest,
		BGPPeers:         a.peersJSON,
		Pages:            pages,
		Logins:           logins,
	})
	if err != nil {
		return nil, fmt.Errorf("api: %w", err)
	}
	return h, nil
}

// APIAddr is the address the API listens on (useful with port 0).
func (a *App) APIAddr() string {
	if a.listener == nil {
		return ""
	}
	return a.listener.Addr().String()
}

// rootHandler serves the monitoring endpoints beside the BHR API: they
// live outside /bhr/ and need no credentials (bind the API to a
// management address, or filter /metrics in the proxy, to keep them in).
type rootHandler struct {
	a       *App
	bhr     *api.API
	metrics http.Handler
}

func (h *rootHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/metrics":
		h.metrics.ServeHTTP(w, r)
	case "/healthz":
		// Alive: the process answers HTTP.
		writePlain(w, http.StatusOK, "ok\n")
	case "/readyz":
		peers, err := h.a.readiness(r.Context())
		if err != nil {
			writePlain(w, http.StatusServiceUnavailable, "not ready: "+err.Error()+"\n")
			return
		}
		// A router that is down does not make bhrd unready (the API
		// still queues blocks and the other peers still enforce them), but
		// that router has none of the blackholes: say so.
		body := "ready\n"
		if down := peersDown(peers); len(down) > 0 {
			body += "bgp peers down: " + strings.Join(down, ", ") + "\n"
		}
		writePlain(w, http.StatusOK, body)
	default:
		h.bhr.ServeHTTP(w, r)
	}
}

// peersDown lists the BGP peers whose session is not established, as
// "ident peer (state)".
func peersDown(byIdent map[string][]bgp.PeerState) []string {
	var out []string
	for ident, ps := range byIdent {
		for _, p := range ps {
			if !p.Up {
				out = append(out, fmt.Sprintf("%s %s (%s)", ident, p.Address, p.State))
			}
		}
	}
	sort.Strings(out)
	return out
}

func writePlain(w http.ResponseWriter, status int, body string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(body))
}

// peerJSON is one BGP peer as GET /bhr/api/bgp/peers shows it.
type peerJSON struct {
	Ident            string   `json:"ident"`
	Peer             string   `json:"peer"`
	ASN              uint32   `json:"asn"`
	Description      string   `json:"description"`
	State            string   `json:"state"`
	Up               bool     `json:"up"`
	Since            *string  `json:"since"`
	UptimeSeconds    int64    `json:"uptime_seconds"`
	Families         []string `json:"families"`
	GracefulRestart  bool     `json:"graceful_restart"`
	PrefixesSent     uint64   `json:"prefixes_sent"`
	PrefixesReceived uint64   `json:"prefixes_received"`
	PrefixesAccepted uint64   `json:"prefixes_accepted"`
	PrefixesRejected uint64   `json:"prefixes_rejected"`
	LastDown         *string  `json:"last_down"`
	LastDownReason   string   `json:"last_down_reason"`
}

// peersJSON lists the peers of every bgp enforcer, sorted by ident and
// address.
// webPeers is BGPPeers for the enforcers page.
func (a *App) webPeers(ctx context.Context) (map[string][]web.Peer, error) {
	byIdent, err := a.BGPPeers(ctx)
	if err != nil {
		return nil, err
	}
	out := map[string][]web.Peer{}
	for ident, ps := range byIdent {
		for _, p := range ps {
			out[ident] = append(out[ident], web.Peer{Address: p.Address.String(), ASN: p.ASN, State: p.State, Up: p.Up, Since: p.Since, Sent: p.PrefixesSent})
		}
	}
	return out, nil
}

func (a *App) peersJSON(ctx context.Context) (any, error) {
	byIdent, err := a.BGPPeers(ctx)
	if err != nil {
		return nil, err
	}
	out := []peerJSON{}
	for ident, ps := range byIdent {
		for _, p := range ps {
			pj := peerJSON{
				Ident: ident, Peer: p.Address.String(), ASN: p.ASN, Description: p.Description,
				State: p.State, Up: p.Up, UptimeSeconds: int64(p.Uptime.Seconds()),
				GracefulRestart: p.GracefulRestart, PrefixesSent: p.PrefixesSent,
				PrefixesReceived: p.PrefixesReceived, PrefixesAccepted: p.PrefixesAccepted,
				PrefixesRejected: p.PrefixesRejected, Families: []string{},
				LastDownReason: p.LastDownReason,
			}
			if !p.LastDown.IsZero() {
				s := p.LastDown.UTC().Format(time.RFC3339)
				pj.LastDown = &s
			}
			if !p.Since.IsZero() {
				s := p.Since.UTC().Format(time.RFC3339)
				pj.Since = &s
			}
			for _, f := range p.Families {
				pj.Families = append(pj.Families, string(f))
			}
			out = append(out, pj)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Ident != out[j].Ident {
			return out[i].Ident < out[j].Ident
		}
		return out[i].Peer < out[j].Peer
	})
	return out, nil
}
