//go:build !linux

package bgp

import (
	"errors"
	"net/netip"
)

// shutdownTCP is only implemented on Linux; elsewhere Stop falls back to
// GoBGP's Cease, which makes graceful-restart helpers drop the routes.
func shutdownTCP(func(local, remote netip.AddrPort) bool) (int, error) {
	return 0, errors.New("closing sessions without a NOTIFICATION is only supported on Linux")
}
