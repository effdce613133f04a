package dnsbl

import (
	"errors"
	"net"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// udpBatch is how many datagrams one system call reads or writes
// (recvmmsg, sendmmsg).
const udpBatch = 64

// mmsghdr is Linux's struct mmsghdr.
type mmsghdr struct {
	hdr unix.Msghdr
	n   uint32
	_   [4]byte
}

// serveUDP answers the queries arriving on pc until it is closed, a
// batch of datagrams per system call (recvmmsg and sendmmsg over
// headers built once: no allocation per datagram, and a reply goes to
// the sender's address as the kernel gave it): the fast path first,
// else the full one.
func (s *Server) serveUDP(pc *net.UDPConn) {
	defer s.udpWG.Done()
	rc, err := pc.SyscallConn()
	if err != nil {
		return
	}
	var (
		in    [udpBatch]mmsghdr
		out   [udpBatch]mmsghdr
		iovIn [udpBatch]unix.Iovec
		iovOu [udpBatch]unix.Iovec
		names [udpBatch]unix.RawSockaddrInet6
		bufs  = make([]byte, udpBatch*65535)
		resp  = make([]byte, udpBatch*512)
	)
	for i := range in {
		iovIn[i].Base = &bufs[i*65535]
		iovIn[i].SetLen(65535)
		in[i].hdr.Iov = &iovIn[i]
		in[i].hdr.SetIovlen(1)
		in[i].hdr.Name = (*byte)(unsafe.Pointer(&names[i]))
		out[i].hdr.Iov = &iovOu[i]
		out[i].hdr.SetIovlen(1)
	}
	for {
		var n int
		var errno syscall.Errno
		err := rc.Read(func(fd uintptr) bool {
			for {
				for i := range in {
					in[i].hdr.Namelen = unix.SizeofSockaddrInet6
				}
				r, _, e := unix.RawSyscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&in[0])), udpBatch, unix.MSG_DONTWAIT, 0, 0)
				if e == unix.EAGAIN || e == unix.EWOULDBLOCK {
					return false // park in the poller
				}
				if e == unix.EINTR {
					continue
				}
				n, errno = int(r), e
				return true
			}
		})
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		if errno != 0 {
			continue
		}
		k := 0
		for i := 0; i < n; i++ {
			req := bufs[i*65535 : i*65535+int(in[i].n)]
			b := s.reply(req, resp[i*512:i*512:i*512+512])
			if b == nil {
				continue
			}
			iovOu[k].Base = unsafe.SliceData(b)
			iovOu[k].SetLen(len(b))
			out[k].hdr.Name = in[i].hdr.Name
			out[k].hdr.Namelen = in[i].hdr.Namelen
			k++
		}
		for sent := 0; sent < k; {
			var m int
			var werr syscall.Errno
			err := rc.Write(func(fd uintptr) bool {
				r, _, e := unix.RawSyscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&out[sent])), uintptr(k-sent), unix.MSG_DONTWAIT, 0, 0)
				if e == unix.EAGAIN || e == unix.EWOULDBLOCK {
					return false
				}
				m, werr = int(r), e
				return true
			})
			if err != nil || werr != 0 || m <= 0 {
				break // the clients retry
			}
			sent += m
		}
	}
}
