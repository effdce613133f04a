package app

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"go.uber.org/zap"
)

// startAPI listens on the configured address and serves the API.
func (a *App) startAPI(ctx context.Context) error {
	c := a.opts.Config.API
	handler := a.apiHandler()
	ln, err := net.Listen("tcp", c.Listen)
	if err != nil {
		return fmt.Errorf("api listen %s: %w", c.Listen, err)
	}
	a.listener = ln
	a.httpSrv = &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
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

// APIAddr is the address the API listens on (useful with port 0).
func (a *App) APIAddr() string {
	if a.listener == nil {
		return ""
	}
	return a.listener.Addr().String()
}

// apiHandler is replaced by the BHR API router once pkg/api lands.
func (a *App) apiHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"status":"ok"}` + "\n"))
	})
	return mux
}
