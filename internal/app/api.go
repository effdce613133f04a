package app

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"time"

	"go.uber.org/zap"

	"github.com/bhrd/bhrd/pkg/api"
	"github.com/bhrd/bhrd/pkg/auth"
)

// startAPI listens on the configured address and serves the API.
func (a *App) startAPI(ctx context.Context) error {
	c := a.opts.Config.API
	h, err := a.newAPI()
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", c.Listen)
	if err != nil {
		return fmt.Errorf("api listen %s: %w", c.Listen, err)
	}
	a.listener = ln
	a.httpSrv = &http.Server{
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
	a.httpSrv.RegisterOnShutdown(h.Drain)
	a.wg.Add(1)
	go func() {
		defer a.wg.Done()
		var err error
		if c.TLSCert != "" {
			err = a.httpSrv.ServeTLS(ln, c.TLSCert, c.TLSKey)
		} else {
			err = a.httpSrv.Serve(ln)
		}
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			a.log.Error("api server", zap.Error(err))
		}
	}()
	a.log.Info("api listening", zap.String("addr", ln.Addr().String()), zap.Bool("tls", c.TLSCert != ""))
	return nil
}

// newAPI builds the BHR API handler over the app's service and store.
func (a *App) newAPI() (*api.API, error) {
	cfg := a.opts.Config
	var local []netip.Prefix
	for _, n := range cfg.Policy.LocalNetworks {
		p, err := netip.ParsePrefix(n)
		if err != nil {
			return nil, fmt.Errorf("policy.local_networks: %q: %w", n, err)
		}
		local = append(local, p.Masked())
	}
	h, err := api.New(api.Options{
		Service:       a.svc,
		Auth:          auth.NewAuthenticator(a.store, auth.AuthenticatorOptions{}),
		Logger:        a.log.Named("api"),
		Config:        cfg.API,
		LocalNetworks: local,
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
