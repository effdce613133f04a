//go:build !linux

package dnsbl

import (
	"errors"
	"net"

	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// udpBatch is how many datagrams one system call reads or writes
// (recvmmsg, sendmmsg).
const udpBatch = 64

// batchConn is the batch I/O of golang.org/x/net's ipv4 and ipv6
// packet conns.
type batchConn interface {
	ReadBatch(ms []ipv4.Message, flags int) (int, error)
	WriteBatch(ms []ipv4.Message, flags int) (int, error)
}

// serveUDP answers the queries arriving on pc until it is closed, a
// batch of datagrams per system call (x/net's ReadBatch and WriteBatch:
// recvmmsg and sendmmsg on Linux): the fast path first, else the full
// one.
func (s *Server) serveUDP(pc *net.UDPConn) {
	defer s.udpWG.Done()
	var bc batchConn = ipv4.NewPacketConn(pc)
	if a, ok := pc.LocalAddr().(*net.UDPAddr); ok && a.IP.To4() == nil {
		bc = ipv6.NewPacketConn(pc)
	}
	in := make([]ipv4.Message, udpBatch)
	out := make([]ipv4.Message, udpBatch)
	bufs := make([][]byte, udpBatch)
	resp := make([][]byte, udpBatch)
	for i := range in {
		bufs[i] = make([]byte, 65535)
		in[i].Buffers = [][]byte{bufs[i]}
		resp[i] = make([]byte, 0, 512)
		out[i].Buffers = [][]byte{nil}
	}
	for {
		n, err := bc.ReadBatch(in, 0)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		k := 0
		for i := 0; i < n; i++ {
			b := s.reply(bufs[i][:in[i].N], resp[i])
			if b == nil {
				continue
			}
			out[k].Buffers[0], out[k].Addr = b, in[i].Addr
			k++
		}
		for sent := 0; sent < k; {
			m, err := bc.WriteBatch(out[sent:k], 0)
			if err != nil {
				break // the clients retry
			}
			sent += m
		}
	}
}
