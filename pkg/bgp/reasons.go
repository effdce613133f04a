package bgp

import (
	"fmt"
	"net/netip"
	"sync"

	gobgplog "github.com/osrg/gobgp/v3/pkg/log"
)

// downReasons keeps, per peer, the last NOTIFICATION that went either way,
// which GoBGP reports only in its log: a session that goes down is then
// reported with why.
type downReasons struct {
	mu sync.Mutex
	m  map[netip.Addr]string
}

func (r *downReasons) set(addr netip.Addr, reason string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.m == nil {
		r.m = map[netip.Addr]string{}
	}
	r.m[addr] = reason
}

// take returns and forgets the reason recorded for addr.
func (r *downReasons) take(addr netip.Addr) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := r.m[addr]
	delete(r.m, addr)
	return s
}

// reasonLogger passes GoBGP's log on, recording NOTIFICATIONs in reasons,
// and lowers to debug the error GoBGP logs when it closes a connection
// that bhrd's graceful stop had already closed (noise on every normal
// shutdown).
type reasonLogger struct {
	gobgplog.Logger
	reasons *downReasons
}

func (l reasonLogger) Warn(msg string, fields gobgplog.Fields) {
	if addr, ok := peerKey(fields); ok {
		switch msg {
		case "received notification":
			l.reasons.set(addr, "received NOTIFICATION "+notificationName(fields["Code"], fields["Subcode"]))
		case "sent notification":
			l.reasons.set(addr, fmt.Sprintf("sent NOTIFICATION: %v", fields["Data"]))
		}
	}
	l.Logger.Warn(msg, fields)
}

func (l reasonLogger) Error(msg string, fields gobgplog.Fields) {
	if msg == "failed to close existing tcp connection" {
		l.Logger.Debug(msg, fields)
		return
	}
	l.Logger.Error(msg, fields)
}

func peerKey(fields gobgplog.Fields) (netip.Addr, bool) {
	s, ok := fields["Key"].(string)
	if !ok {
		return netip.Addr{}, false
	}
	a, err := netip.ParseAddr(s)
	return a.Unmap(), err == nil
}

// notificationName renders a NOTIFICATION's code and subcode (RFC 4271,
// RFC 4486, RFC 8538) as "6/2 (Cease: administrative shutdown)".
func notificationName(code, subcode any) string {
	c, _ := code.(uint8)
	sc, _ := subcode.(uint8)
	name := map[uint8]string{1: "message header error", 2: "OPEN message error", 3: "UPDATE message error",
		4: "hold timer expired", 5: "finite state machine error", 6: "Cease"}[c]
	if c == 6 {
		if s, ok := map[uint8]string{1: "maximum number of prefixes reached", 2: "administrative shutdown",
			3: "peer de-configured", 4: "administrative reset", 5: "connection rejected", 6: "other configuration change",
			7: "connection collision resolution", 8: "out of resources", 9: "hard reset"}[sc]; ok {
			name += ": " + s
		}
	}
	if name == "" {
		name = "unknown"
	}
	return fmt.Sprintf("%d/%d (%s)", c, sc, name)
}
