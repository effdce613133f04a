package httpbl

import (
	"context"
	"html"
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// ClientAddr is the request's client: the socket peer, unless the peer
// is a trusted proxy; then the Forwarded header's for= hops (or, without
// it, X-Forwarded-For's) are walked from the right and the first address
// that is not a trusted proxy is the client. The leftmost hop, which any
// client can write, is taken only when every hop after it is trusted.
// IPv4-mapped IPv6 addresses are unmapped. The zero Addr means none.
func (c *Checker) ClientAddr(r *http.Request) netip.Addr {
	peer := parseHost(r.RemoteAddr)
	if !peer.IsValid() || !c.trusted(peer) {
		return peer
	}
	hops := forwardedFor(r.Header.Values("Forwarded"))
	if len(hops) == 0 {
		for _, v := range r.Header.Values("X-Forwarded-For") {
			for _, h := range strings.Split(v, ",") {
				hops = append(hops, strings.TrimSpace(h))
			}
		}
	}
	client := peer
	for i := len(hops) - 1; i >= 0; i-- {
		a := parseHost(hops[i])
		if !a.IsValid() {
			break // garbage: stop at the last good hop
		}
		client = a
		if !c.trusted(a) {
			break
		}
	}
	return client
}

func (c *Checker) trusted(a netip.Addr) bool {
	for _, p := range c.o.TrustedProxies {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// parseHost reads "1.2.3.4", "1.2.3.4:80", "[2001:db8::1]:80",
// "2001:db8::1" or a quoted Forwarded value.
func parseHost(s string) netip.Addr {
	s = strings.Trim(strings.TrimSpace(s), `"`)
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap()
	}
	if h, _, err := net.SplitHostPort(s); err == nil {
		if a, err := netip.ParseAddr(h); err == nil {
			return a.Unmap()
		}
	}
	if strings.HasPrefix(s, "[") && strings.HasSuffix(s, "]") {
		if a, err := netip.ParseAddr(s[1 : len(s)-1]); err == nil {
			return a.Unmap()
		}
	}
	return netip.Addr{}
}

// forwardedFor returns the for= values of Forwarded headers (RFC 7239),
// in order.
func forwardedFor(values []string) []string {
	var out []string
	for _, v := range values {
		for _, elem := range strings.Split(v, ",") {
			for _, pair := range strings.Split(elem, ";") {
				k, val, ok := strings.Cut(strings.TrimSpace(pair), "=")
				if ok && strings.EqualFold(k, "for") {
					out = append(out, val)
				}
			}
		}
	}
	return out
}

type ctxKey struct{}

// FromContext returns the decision the middleware made for a request
// (in a denied handler, or in the next handler when allowed).
func FromContext(ctx context.Context) (Decision, bool) {
	d, ok := ctx.Value(ctxKey{}).(Decision)
	return d, ok
}

// Middleware returns next behind the checker: a denied client gets
// Denied instead (unless ReportOnly).
func (c *Checker) Middleware(next http.Handler) http.Handler {
	denied := c.o.Denied
	if denied == nil {
		denied = http.HandlerFunc(DefaultDenied)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d := c.Check(r.Context(), c.ClientAddr(r))
		if c.o.OnDecision != nil {
			c.o.OnDecision(r, d)
		}
		if c.o.Report != nil {
			c.o.Report.Report(d)
		}
		r = r.WithContext(context.WithValue(r.Context(), ctxKey{}, d))
		if d.Deny && !c.o.ReportOnly {
			denied.ServeHTTP(w, r)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// DefaultDenied answers 403 Forbidden with a short page naming the
// reason.
func DefaultDenied(w http.ResponseWriter, r *http.Request) {
	reason := "your address is listed in a DNS blacklist"
	if d, ok := FromContext(r.Context()); ok && d.Reason != "" {
		reason = d.Reason
		if d.Err != nil {
			reason = "the blacklist could not be asked"
		}
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusForbidden)
	_, _ = w.Write([]byte("<!DOCTYPE html>\n<html><head><title>403 Forbidden</title></head><body><h1>Forbidden</h1><p>" +
		html.EscapeString(reason) + "</p></body></html>\n"))
}
