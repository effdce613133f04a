package bgp

import (
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"syscall"
)

// shutdownTCP shuts down (both directions) the process's own connected
// TCP sockets whose endpoints satisfy match, and reports how many it found. GoBGP v3 offers no way to close a session without first sending a
// NOTIFICATION, and a NOTIFICATION makes graceful-restart helpers flush the
// routes at once; a shut-down socket looks to the peer exactly like a
// crashed bhrd, which is the case graceful restart exists for.
//
// Each descriptor is duplicated before it is inspected, so a descriptor that
// another goroutine closes and reuses meanwhile is only acted upon if its
// own endpoints match.
func shutdownTCP(match func(local, remote netip.AddrPort) bool) (int, error) {
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return 0, fmt.Errorf("list own file descriptors: %w", err)
	}
	found := 0
	for _, e := range entries {
		fd, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		dup, _, errno := syscall.Syscall(syscall.SYS_FCNTL, uintptr(fd), syscall.F_DUPFD_CLOEXEC, 0)
		if errno != 0 {
			continue
		}
		local, remote, ok := endpoints(int(dup))
		if ok && match(local, remote) {
			if err := syscall.Shutdown(int(dup), syscall.SHUT_RDWR); err == nil {
				found++
			}
		}
		_ = syscall.Close(int(dup))
	}
	return found, nil
}

func endpoints(fd int) (local, remote netip.AddrPort, ok bool) {
	typ, err := syscall.GetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_TYPE)
	if err != nil || typ != syscall.SOCK_STREAM {
		return local, remote, false
	}
	ls, err := syscall.Getsockname(fd)
	if err != nil {
		return local, remote, false
	}
	rs, err := syscall.Getpeername(fd)
	if err != nil {
		return local, remote, false
	}
	local, ok1 := addrPort(ls)
	remote, ok2 := addrPort(rs)
	return local, remote, ok1 && ok2
}

func addrPort(sa syscall.Sockaddr) (netip.AddrPort, bool) {
	switch a := sa.(type) {
	case *syscall.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(a.Port)), true
	case *syscall.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(a.Addr).Unmap(), uint16(a.Port)), true
	}
	return netip.AddrPort{}, false
}
