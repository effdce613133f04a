package nullroute

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"syscall"
	"time"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

const (
	// DefaultBatchBytes bounds the netlink messages sent in one sendmsg
	// (about 5,900 IPv4 routes). Measured with BenchmarkInstall100k on 2
	// cores, 16 KiB to 1 MiB batches all take 0.35-0.5 s per 100k routes:
	// the kernel's FIB work dominates once the syscalls are amortised.
	DefaultBatchBytes = 256 << 10

	// Socket buffer sizes asked for; without CAP_NET_ADMIN the kernel caps
	// them at net.core.{w,r}mem_max.
	sendBufferBytes    = 4 << 20
	receiveBufferBytes = 8 << 20

	// replyCost is a conservative estimate of the receive-buffer memory one
	// kernel reply (an skb holding an nlmsgerr) consumes. Batches are sized
	// so that even all-failing batches fit, so ENOBUFS stays an exception.
	replyCost = 1280

	// ackTimeout bounds the wait for the kernel's replies when ctx has no
	// earlier deadline. The kernel handles a batch inside sendmsg, so its
	// replies are normally queued before the wait starts.
	ackTimeout = 30 * time.Second

	// loopbackIfindex is LOOPBACK_IFINDEX: the kernel gives the loopback
	// device index 1 in every namespace, and IPv6 blackhole routes use it.
	loopbackIfindex = 1

	sizeofRtMsg = 12
	nlaHdrLen   = 4
)

// op is one kind of batched route message.
type op struct {
	name    string // for errors: "add" or "delete"
	msgType uint16
	flags   uint16
	scope   uint8
	ignore  syscall.Errno // an errno that means "already so" (idempotency)
}

var (
	// No NLM_F_REPLACE and no NLM_F_EXCL: see the package documentation.
	opAdd = op{name: "add", msgType: unix.RTM_NEWROUTE, flags: unix.NLM_F_CREATE,
		scope: unix.RT_SCOPE_UNIVERSE, ignore: unix.EEXIST}
	// RT_SCOPE_NOWHERE matches a route of any scope on delete.
	opDelete = op{name: "delete", msgType: unix.RTM_DELROUTE,
		scope: unix.RT_SCOPE_NOWHERE, ignore: unix.ESRCH}
)

// conn is bhrd's own NETLINK_ROUTE socket for batched writes. It is not safe
// for concurrent use; Table serialises access.
type conn struct {
	f  *os.File
	rc syscall.RawConn

	seq       uint32
	maxBytes  int  // largest sendmsg the socket accepts, capped by BatchBytes
	maxMsgs   int  // most messages whose replies fit the receive buffer
	ackEach   bool // an ACK per message; tests use it to overrun the receive buffer
	rbuf      []byte
	overruns  int // ENOBUFS seen; tests read it
	kernelDst unix.SockaddrNetlink
}

// openConn opens the batch socket in namespace ns (the current one when ns
// is not open).
func openConn(ns netns.NsHandle, batchBytes int) (*conn, error) {
	fd, err := socketIn(ns)
	if err != nil {
		return nil, err
	}
	c, err := newConn(fd, batchBytes)
	if err != nil {
		unix.Close(fd)
		return nil, err
	}
	return c, nil
}

// socketIn creates the socket on a dedicated, locked OS thread that enters
// ns. A socket stays in the namespace it was created in, so only creation
// needs the switch. If the thread cannot return to its original namespace
// it is left locked, and the runtime discards it when the goroutine exits
// instead of reusing a thread in the wrong namespace.
func socketIn(ns netns.NsHandle) (int, error) {
	if ns == 0 || !ns.IsOpen() {
		return netlinkSocket()
	}
	type result struct {
		fd  int
		err error
	}
	ch := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			runtime.UnlockOSThread()
			ch <- result{-1, fmt.Errorf("get current network namespace: %w", err)}
			return
		}
		defer orig.Close()
		if err := netns.Set(ns); err != nil {
			runtime.UnlockOSThread()
			ch <- result{-1, fmt.Errorf("enter network namespace: %w", err)}
			return
		}
		fd, err := netlinkSocket()
		if rerr := netns.Set(orig); rerr != nil {
			if err == nil {
				unix.Close(fd)
			}
			ch <- result{-1, fmt.Errorf("return to original network namespace: %w", rerr)}
			return
		}
		runtime.UnlockOSThread()
		ch <- result{fd, err}
	}()
	r := <-ch
	return r.fd, r.err
}

func netlinkSocket() (int, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.NETLINK_ROUTE)
	if err != nil {
		return -1, fmt.Errorf("open netlink socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("bind netlink socket: %w", err)
	}
	return fd, nil
}

func newConn(fd, batchBytes int) (*conn, error) {
	// Error replies carry the extended-ack text but not a copy of the
	// failed request, which keeps them small.
	for _, o := range []int{unix.NETLINK_EXT_ACK, unix.NETLINK_CAP_ACK} {
		if err := unix.SetsockoptInt(fd, unix.SOL_NETLINK, o, 1); err != nil && !errors.Is(err, unix.ENOPROTOOPT) {
			return nil, fmt.Errorf("set netlink socket option %d: %w", o, err)
		}
	}
	if err := setBuffer(fd, unix.SO_SNDBUFFORCE, unix.SO_SNDBUF, sendBufferBytes); err != nil {
		return nil, fmt.Errorf("set send buffer: %w", err)
	}
	if err := setBuffer(fd, unix.SO_RCVBUFFORCE, unix.SO_RCVBUF, receiveBufferBytes); err != nil {
		return nil, fmt.Errorf("set receive buffer: %w", err)
	}
	f := os.NewFile(uintptr(fd), "nullroute-netlink")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("netlink socket: %w", err)
	}
	c := &conn{
		f:         f,
		rc:        rc,
		rbuf:      make([]byte, 64<<10),
		kernelDst: unix.SockaddrNetlink{Family: unix.AF_NETLINK},
	}
	if err := c.sizeBatches(batchBytes); err != nil {
		f.Close()
		return nil, err
	}
	return c, nil
}

func setBuffer(fd, force, plain, size int) error {
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, force, size); err == nil {
		return nil
	}
	return unix.SetsockoptInt(fd, unix.SOL_SOCKET, plain, size)
}

// sizeBatches derives the batch limits from the buffers the kernel granted.
func (c *conn) sizeBatches(batchBytes int) error {
	var snd, rcv int
	var err error
	cerr := c.rc.Control(func(fd uintptr) {
		snd, err = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUF)
		if err != nil {
			return
		}
		rcv, err = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF)
	})
	if err = errors.Join(cerr, err); err != nil {
		return fmt.Errorf("read socket buffer sizes: %w", err)
	}
	// netlink_sendmsg refuses a message longer than sk_sndbuf-32, and
	// getsockopt reports sk_sndbuf itself.
	c.maxBytes = min(batchBytes, snd-64)
	c.maxMsgs = max(rcv/replyCost, 1)
	return nil
}

func (c *conn) close() error { return c.f.Close() }

// exec sends one o.msgType message per item of prefixes and fills results
// with each one's outcome: nil, or the kernel's errno (with its extended-ack
// text). An errno equal to o.ignore counts as success; ignored is set for
// those items so callers can look closer where that errno is ambiguous. A
// non-nil return means exec stopped early: items without a result were not
// confirmed either way.
func (c *conn) exec(ctx context.Context, o op, table uint32, proto uint8,
	prefixes []netip.Prefix, results []error, ignored []bool) error {

	pending := make([]int, len(prefixes))
	for i := range pending {
		pending[i] = i
	}
	maxMsgs := c.maxMsgs
	buf := make([]byte, 0, c.maxBytes)
	for len(pending) > 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		// Build one batch.
		buf = buf[:0]
		first := c.seq + 1
		k, lastOff := 0, 0
		for k < len(pending) && k < maxMsgs {
			if k > 0 && len(buf)+routeMsgLen(prefixes[pending[k]]) > c.maxBytes {
				break
			}
			flags := unix.NLM_F_REQUEST | o.flags
			if c.ackEach {
				flags |= unix.NLM_F_ACK
			}
			lastOff = len(buf)
			buf = appendRouteMsg(buf, o.msgType, flags, first+uint32(k), table, proto, o.scope, prefixes[pending[k]])
			k++
		}
		// The ACK on the last message marks the end of the batch's replies.
		flagsAt := buf[lastOff+6 : lastOff+8]
		binary.NativeEndian.PutUint16(flagsAt, binary.NativeEndian.Uint16(flagsAt)|unix.NLM_F_ACK)
		c.seq += uint32(k)

		replies := make([]int32, k)
		got := make([]bool, k)
		msgs := make([]string, k)
		lost, err := c.roundTrip(ctx, buf, first, replies, got, msgs)
		if err != nil {
			return fmt.Errorf("%s routes: %w", o.name, err)
		}

		var retry []int
		for i := range k {
			idx := pending[i]
			if !got[i] && (lost || c.ackEach) {
				retry = append(retry, idx)
				continue
			}
			switch errno := syscall.Errno(-replies[i]); {
			case errno == 0:
				results[idx] = nil
			case errno == o.ignore:
				results[idx] = nil
				if ignored != nil {
					ignored[idx] = true
				}
			case msgs[i] != "":
				results[idx] = fmt.Errorf("%w: %s", errno, msgs[i])
			default:
				results[idx] = errno
			}
		}
		if len(retry) > 0 {
			if lost {
				c.overruns++
				if k == 1 {
					return fmt.Errorf("%s routes: kernel reply lost even for a single message: %w", o.name, unix.ENOBUFS)
				}
				maxMsgs = max(k/2, 1)
			}
			// Outcomes unknown: send those items again, first.
			pending = append(retry, pending[k:]...)
		} else {
			pending = pending[k:]
		}
	}
	return nil
}

// roundTrip sends one batch and collects its replies until the reply to the
// last message arrives. lost reports that the kernel dropped replies
// (ENOBUFS); the replies still queued are then read, so got tells which
// outcomes are known.
func (c *conn) roundTrip(ctx context.Context, batch []byte, first uint32,
	replies []int32, got []bool, msgs []string) (lost bool, err error) {

	// Replies left over from an earlier, interrupted batch carry old
	// sequence numbers and would only use up the receive buffer.
	if err := c.drain(nil); err != nil {
		return false, err
	}

	deadline := time.Now().Add(ackTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	if err := c.f.SetDeadline(deadline); err != nil {
		return false, err
	}
	// Cancelling ctx wakes a blocked read by moving the deadline. Wait for
	// a callback already running, lest it spoil the next batch's deadline.
	fired := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		c.f.SetDeadline(time.Unix(1, 0))
		close(fired)
	})
	defer func() {
		if !stop() {
			<-fired
		}
	}()

	var sendErr error
	werr := c.rc.Write(func(fd uintptr) bool {
		sendErr = unix.Sendto(int(fd), batch, 0, &c.kernelDst)
		return sendErr != unix.EAGAIN
	})
	if err := c.ioErr(ctx, "send", errors.Join(werr, sendErr)); err != nil {
		return false, err
	}

	last := uint32(len(replies) - 1)
	done := false
	handle := func(seq uint32, errno int32, msg string) {
		i := seq - first
		if i >= uint32(len(replies)) {
			return // not ours: a stale reply
		}
		replies[i], got[i], msgs[i] = errno, true, msg
		if i == last {
			done = true
		}
	}
	for !done {
		var n int
		var rerr error
		werr := c.rc.Read(func(fd uintptr) bool {
			n, rerr = c.recv(int(fd))
			return rerr != unix.EAGAIN
		})
		if rerr == unix.ENOBUFS {
			if err := c.drain(handle); err != nil {
				return true, err
			}
			return true, nil
		}
		if err := c.ioErr(ctx, "receive", errors.Join(werr, rerr)); err != nil {
			return false, err
		}
		if err := parseReplies(c.rbuf[:n], handle); err != nil {
			return false, err
		}
	}
	return false, nil
}

// ioErr reports ctx's error for I/O that ctx interrupted.
func (c *conn) ioErr(ctx context.Context, what string, err error) error {
	if err == nil {
		return nil
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		if d, ok := ctx.Deadline(); ok && !time.Now().Before(d) {
			return context.DeadlineExceeded
		}
		return fmt.Errorf("%s: no reply from the kernel within %s", what, ackTimeout)
	}
	return fmt.Errorf("%s: %w", what, err)
}

// recv reads one datagram from the kernel into c.rbuf. Datagrams from other
// senders are dropped: any local process may unicast to our port.
func (c *conn) recv(fd int) (int, error) {
	for {
		n, _, flags, from, err := unix.Recvmsg(fd, c.rbuf, nil, 0)
		if err != nil {
			return 0, err
		}
		if sa, ok := from.(*unix.SockaddrNetlink); !ok || sa.Pid != 0 {
			continue
		}
		if flags&unix.MSG_TRUNC != 0 {
			return 0, fmt.Errorf("netlink reply of more than %d bytes", len(c.rbuf))
		}
		return n, nil
	}
}

// drain reads every datagram already queued without waiting. The kernel
// queues a batch's replies before sendmsg returns, so after ENOBUFS this
// collects all replies that were not dropped.
func (c *conn) drain(handle func(seq uint32, errno int32, msg string)) error {
	var err error
	cerr := c.rc.Control(func(fd uintptr) {
		for {
			var n int
			n, err = c.recv(int(fd))
			if err == unix.EAGAIN {
				err = nil
				return
			}
			if err == unix.ENOBUFS {
				continue // the queued replies behind the error are still readable
			}
			if err != nil {
				return
			}
			if handle != nil {
				if err = parseReplies(c.rbuf[:n], handle); err != nil {
					return
				}
			}
		}
	})
	if err = errors.Join(cerr, err); err != nil {
		return fmt.Errorf("drain netlink socket: %w", err)
	}
	return nil
}

// parseReplies walks the netlink messages of one datagram and hands every
// NLMSG_ERROR (errno 0 is an ACK) to handle.
func parseReplies(b []byte, handle func(seq uint32, errno int32, msg string)) error {
	for len(b) >= unix.SizeofNlMsghdr {
		l := int(binary.NativeEndian.Uint32(b[0:4]))
		if l < unix.SizeofNlMsghdr || l > len(b) {
			return fmt.Errorf("malformed netlink reply: length %d of %d bytes", l, len(b))
		}
		typ := binary.NativeEndian.Uint16(b[4:6])
		flags := binary.NativeEndian.Uint16(b[6:8])
		seq := binary.NativeEndian.Uint32(b[8:12])
		data := b[unix.SizeofNlMsghdr:l]
		if typ == unix.NLMSG_ERROR {
			if len(data) < 4+unix.SizeofNlMsghdr {
				return fmt.Errorf("short netlink error reply (%d bytes)", len(data))
			}
			errno := int32(binary.NativeEndian.Uint32(data[0:4]))
			handle(seq, errno, extAckMsg(data[4:], flags))
		}
		b = b[min(nlmAlign(l), len(b)):]
	}
	return nil
}

// extAckMsg returns the kernel's NLMSGERR_ATTR_MSG text, if any. rest starts
// at the echoed request header.
func extAckMsg(rest []byte, flags uint16) string {
	if flags&unix.NLM_F_ACK_TLVS == 0 {
		return ""
	}
	echoed := unix.SizeofNlMsghdr
	if flags&unix.NLM_F_CAPPED == 0 {
		echoed = nlmAlign(int(binary.NativeEndian.Uint32(rest[0:4])))
	}
	if echoed > len(rest) {
		return ""
	}
	tlv := rest[echoed:]
	for len(tlv) >= nlaHdrLen {
		l := int(binary.NativeEndian.Uint16(tlv[0:2]))
		typ := binary.NativeEndian.Uint16(tlv[2:4])
		if l < nlaHdrLen || l > len(tlv) {
			return ""
		}
		if typ == unix.NLMSGERR_ATTR_MSG {
			return unix.ByteSliceToString(tlv[nlaHdrLen:l])
		}
		tlv = tlv[min(rtaAlign(l), len(tlv)):]
	}
	return ""
}

func nlmAlign(n int) int { return (n + unix.NLMSG_ALIGNTO - 1) &^ (unix.NLMSG_ALIGNTO - 1) }
func rtaAlign(n int) int { return (n + unix.RTA_ALIGNTO - 1) &^ (unix.RTA_ALIGNTO - 1) }

func routeMsgLen(p netip.Prefix) int {
	return unix.SizeofNlMsghdr + sizeofRtMsg +
		rtaAlign(nlaHdrLen+p.Addr().BitLen()/8) + // RTA_DST
		rtaAlign(nlaHdrLen+4) + // RTA_TABLE
		rtaAlign(nlaHdrLen+4) // RTA_OIF (IPv6 delete only; counted always)
}

// appendRouteMsg appends one RTM_NEWROUTE/RTM_DELROUTE message for a
// blackhole route to p.
func appendRouteMsg(buf []byte, msgType, flags uint16, seq, table uint32, proto, scope uint8, p netip.Prefix) []byte {
	ne := binary.NativeEndian
	start := len(buf)
	addr := p.Addr()
	family := uint8(unix.AF_INET6)
	if addr.Is4() {
		family = unix.AF_INET
	}
	// nlmsghdr; the length is filled in at the end.
	buf = ne.AppendUint32(buf, 0)
	buf = ne.AppendUint16(buf, msgType)
	buf = ne.AppendUint16(buf, flags)
	buf = ne.AppendUint32(buf, seq)
	buf = ne.AppendUint32(buf, 0) // port id: the kernel fills in ours
	// rtmsg. Tables above 255 only fit RTA_TABLE; the kernel reads that
	// attribute when present.
	rtmTable := uint8(unix.RT_TABLE_UNSPEC)
	if table < 256 {
		rtmTable = uint8(table)
	}
	const srcLen, tos = 0, 0
	buf = append(buf, family, uint8(p.Bits()), srcLen, tos, rtmTable, proto, scope, unix.RTN_BLACKHOLE)
	buf = ne.AppendUint32(buf, 0) // rtm_flags
	// RTA_DST
	a := addr.AsSlice()
	buf = ne.AppendUint16(buf, uint16(nlaHdrLen+len(a)))
	buf = ne.AppendUint16(buf, unix.RTA_DST)
	buf = append(buf, a...) // 4 or 16 bytes: already aligned
	// RTA_TABLE
	buf = ne.AppendUint16(buf, nlaHdrLen+4)
	buf = ne.AppendUint16(buf, unix.RTA_TABLE)
	buf = ne.AppendUint32(buf, table)
	if msgType == unix.RTM_DELROUTE && family == unix.AF_INET6 {
		// The IPv6 delete path ignores the route type; requiring the
		// loopback device keeps a unicast route that happens to carry our
		// protocol number safe.
		buf = ne.AppendUint16(buf, nlaHdrLen+4)
		buf = ne.AppendUint16(buf, unix.RTA_OIF)
		buf = ne.AppendUint32(buf, loopbackIfindex)
	}
	ne.PutUint32(buf[start:], uint32(len(buf)-start))
	return buf
}
