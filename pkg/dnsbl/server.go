package dnsbl

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/miekg/dns"
)

// Config says what a Server answers.
type Config struct {
	// Zones are the zone names answered (e.g. "bl.example.net",
	// "dnsbl.httpbl.org"); names outside them get REFUSED.
	Zones []string
	// NS names the zones' name servers (NS records at the apex); empty
	// means "ns.<zone>".
	NS []string
	// Mbox is the SOA's responsible mailbox as a name; empty means
	// "hostmaster.<zone>".
	Mbox string
	// TTL of listed answers; NegativeTTL of NXDOMAIN (the SOA's minimum
	// and TTL, RFC 2308). Zero means 60s and 30s.
	TTL, NegativeTTL time.Duration
	// TXT adds a TXT record with the block's source and end to listed
	// names (and answers TXT queries); off, TXT queries get no data.
	TXT bool
	// Types maps a block's source to its Http:BL type (1–255, never 0);
	// DefaultType (0 means 1, suspicious) for the others.
	Types       map[string]uint8
	DefaultType uint8
	// ThreatBase maps a source to the base of its threat score (see
	// Threat); DefaultThreatBase for the others.
	ThreatBase        map[string]int
	DefaultThreatBase int
	// Keys maps the SHA-256 of an access key to the name of who holds it.
	// When not empty, every query must start with a known key label, or
	// it is answered NXDOMAIN. Empty: a key label is accepted and ignored.
	Keys map[[32]byte]string
	// UDPReaders is how many goroutines read each UDP socket (a batch of
	// datagrams per system call each); 0 means GOMAXPROCS.
	UDPReaders int
	// NotReady makes the server answer SERVFAIL to address queries until
	// SetReady: while the table is being filled (a restart), "not listed"
	// would be cached by resolvers for NegativeTTL.
	NotReady bool
}

// ValidName reports whether name is a host-style domain name: labels of
// letters, digits, '-' and '_', 1–63 bytes each, 253 in all, a trailing
// dot allowed.
func ValidName(name string) bool {
	name = strings.TrimSuffix(name, ".")
	if name == "" || len(name) > 253 {
		return false
	}
	for _, l := range strings.Split(name, ".") {
		if l == "" || len(l) > 63 {
			return false
		}
		for _, c := range []byte(l) {
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
	}
	return true
}

// HashKey is how Keys are indexed.
func HashKey(key string) [32]byte { return sha256.Sum256([]byte(strings.ToLower(key))) }

// Answer kinds, as counted.
const (
	AnswerListed   = "listed"
	AnswerUnlisted = "unlisted"
	AnswerTest     = "test"
	AnswerApex     = "apex"
	AnswerBadKey   = "bad_key"
	AnswerRefused  = "refused"
	AnswerInvalid  = "invalid"
	AnswerNotReady = "not_ready"
)

// CountKey identifies one query counter.
type CountKey struct {
	Zone, Answer, Key string
}

// Server answers DNSBL queries from a Table.
type Server struct {
	cfg    Config
	table  *Table
	zones  []string // fully qualified, lower case, longest first
	serial uint32
	now    func() time.Time

	countMu sync.RWMutex
	counts  map[CountKey]*atomic.Uint64

	fastZones []zoneWire
	ready     atomic.Bool

	mu      sync.Mutex
	servers []*dns.Server // TCP
	udp     []*net.UDPConn
	udpWG   sync.WaitGroup
	addrs   []netip.AddrPort
}

// New checks cfg and returns a server over t. It opens no socket.
func New(cfg Config, t *Table) (*Server, error) {
	if len(cfg.Zones) == 0 {
		return nil, errors.New("dnsbl: at least one zone is required")
	}
	s := &Server{cfg: cfg, table: t, serial: uint32(time.Now().Unix()), now: time.Now, counts: map[CountKey]*atomic.Uint64{}}
	for _, z := range cfg.Zones {
		if !ValidName(z) {
			return nil, fmt.Errorf("dnsbl: zone %q is not a domain name", z)
		}
		z = strings.ToLower(dns.Fqdn(z))
		s.zones = append(s.zones, z)
	}
	slices.SortFunc(s.zones, func(a, b string) int { return len(b) - len(a) })
	if s.cfg.TTL <= 0 {
		s.cfg.TTL = 60 * time.Second
	}
	if s.cfg.NegativeTTL <= 0 {
		s.cfg.NegativeTTL = 30 * time.Second
	}
	if s.cfg.DefaultType == 0 {
		s.cfg.DefaultType = TypeSuspicious
	}
	for src, typ := range s.cfg.Types {
		if typ == 0 {
			return nil, fmt.Errorf("dnsbl: type 0 (search engine) for source %q: clients would not deny it", src)
		}
	}
	s.prepareFast()
	s.ready.Store(!cfg.NotReady)
	return s, nil
}

// SetReady makes the server answer from its table (see Config.NotReady).
func (s *Server) SetReady(ready bool) { s.ready.Store(ready) }

// Zones returns the zone names answered, fully qualified.
func (s *Server) Zones() []string { return slices.Clone(s.zones) }

func (s *Server) count(zone, answer, key string) {
	k := CountKey{Zone: zone, Answer: answer, Key: key}
	s.countMu.RLock()
	v, ok := s.counts[k]
	s.countMu.RUnlock()
	if !ok {
		s.countMu.Lock()
		if v, ok = s.counts[k]; !ok {
			v = new(atomic.Uint64)
			s.counts[k] = v
		}
		s.countMu.Unlock()
	}
	v.Add(1)
}

// Counts returns the query counters.
func (s *Server) Counts() map[CountKey]uint64 {
	s.countMu.RLock()
	defer s.countMu.RUnlock()
	out := make(map[CountKey]uint64, len(s.counts))
	for k, v := range s.counts {
		out[k] = v.Load()
	}
	return out
}

func (s *Server) soa(zone string) dns.RR {
	mbox := s.cfg.Mbox
	if mbox == "" {
		mbox = "hostmaster." + zone
	}
	neg := uint32(s.cfg.NegativeTTL / time.Second)
	return &dns.SOA{
		Hdr: dns.RR_Header{Name: zone, Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: neg},
		Ns:  s.nsNames(zone)[0], Mbox: dns.Fqdn(mbox), Serial: s.serial,
		Refresh: 3600, Retry: 600, Expire: 86400, Minttl: neg,
	}
}

func (s *Server) nsNames(zone string) []string {
	if len(s.cfg.NS) == 0 {
		return []string{"ns." + zone}
	}
	out := make([]string, len(s.cfg.NS))
	for i, n := range s.cfg.NS {
		out[i] = dns.Fqdn(n)
	}
	return out
}

// ServeDNS implements dns.Handler, for TCP (UDP has its own loop,
// serveUDP, which truncates to the client's size).
func (s *Server) ServeDNS(w dns.ResponseWriter, r *dns.Msg) {
	if m := s.Answer(r); m != nil {
		_ = w.WriteMsg(m)
	}
}

// Answer returns the reply to r, or nil for a message that gets none (a
// response, or no question at all).
func (s *Server) Answer(r *dns.Msg) *dns.Msg {
	if r.Response {
		return nil
	}
	m := new(dns.Msg)
	if r.Opcode != dns.OpcodeQuery {
		m.SetRcode(r, dns.RcodeNotImplemented)
		return m
	}
	if len(r.Question) != 1 {
		m.SetRcode(r, dns.RcodeFormatError)
		s.count("", AnswerInvalid, "")
		return m
	}
	m.SetReply(r)
	if o := r.IsEdns0(); o != nil {
		m.SetEdns0(1232, false)
	}
	q := r.Question[0]
	name := strings.ToLower(q.Name)
	pq, ok := parseName(name, s.zones)
	if !ok || (q.Qclass != dns.ClassINET && q.Qclass != dns.ClassANY) {
		m.Rcode = dns.RcodeRefused
		s.count("", AnswerRefused, "")
		return m
	}
	m.Authoritative = true
	zone := pq.zone
	if pq.apex {
		s.count(zone, AnswerApex, "")
		switch q.Qtype {
		case dns.TypeSOA:
			m.Answer = append(m.Answer, s.soa(zone))
		case dns.TypeNS:
			m.Answer = append(m.Answer, s.nsRRs(zone)...)
		case dns.TypeANY:
			m.Answer = append(append(m.Answer, s.soa(zone)), s.nsRRs(zone)...)
		default:
			m.Ns = append(m.Ns, s.soa(zone))
		}
		return m
	}
	if !s.ready.Load() {
		// The table is being filled: no answer rather than a wrong one.
		m.Rcode = dns.RcodeServerFailure
		s.count(zone, AnswerNotReady, "")
		return m
	}
	keyName := ""
	if len(s.cfg.Keys) > 0 {
		n, known := "", false
		if pq.key != "" {
			n, known = s.cfg.Keys[HashKey(pq.key)]
		}
		if !known {
			s.count(zone, AnswerBadKey, "")
			return s.nxdomain(m, zone)
		}
		keyName = n
	}
	if !pq.addr.IsValid() {
		s.count(zone, AnswerInvalid, keyName)
		return s.nxdomain(m, zone)
	}
	addr := pq.addr.Unmap()
	var a netip.Addr
	var txt string
	switch {
	case addr == netip.AddrFrom4([4]byte{127, 0, 0, 2}):
		// RFC 5782 test entry (::FFFF:7F00:2 unmaps to it as well).
		a, txt = addr, "RFC 5782 test entry"
		s.count(zone, AnswerTest, keyName)
	default:
		_, e, listed := s.table.Lookup(addr)
		if !listed {
			s.count(zone, AnswerUnlisted, keyName)
			return s.nxdomain(m, zone)
		}
		s.count(zone, AnswerListed, keyName)
		a = s.listing(e)
		if s.cfg.TXT {
			txt = "source=" + e.Source + "; until="
			if e.UnblockAt.IsZero() {
				txt += "never"
			} else {
				txt += e.UnblockAt.UTC().Format(time.RFC3339)
			}
		}
	}
	ttl := uint32(s.cfg.TTL / time.Second)
	hdr := dns.RR_Header{Name: q.Name, Class: dns.ClassINET, Ttl: ttl}
	if q.Qtype == dns.TypeA || q.Qtype == dns.TypeANY {
		hdr.Rrtype = dns.TypeA
		m.Answer = append(m.Answer, &dns.A{Hdr: hdr, A: a.AsSlice()})
	}
	if txt != "" && (q.Qtype == dns.TypeTXT || q.Qtype == dns.TypeANY) {
		hdr.Rrtype = dns.TypeTXT
		m.Answer = append(m.Answer, &dns.TXT{Hdr: hdr, Txt: chunks(txt, 255)})
	}
	if len(m.Answer) == 0 {
		// A listed name with no data of this type: NOERROR, SOA for the
		// negative caching.
		m.Ns = append(m.Ns, s.soa(zone))
	}
	return m
}

// chunks splits s into character-strings of at most n bytes (a TXT
// record's strings are 255 bytes at most).
func chunks(s string, n int) []string {
	var out []string
	for len(s) > n {
		out = append(out, s[:n])
		s = s[n:]
	}
	return append(out, s)
}

func (s *Server) listing(e Entry) netip.Addr {
	typ, ok := s.cfg.Types[e.Source]
	if !ok {
		typ = s.cfg.DefaultType
	}
	base, ok := s.cfg.ThreatBase[e.Source]
	if !ok {
		base = s.cfg.DefaultThreatBase
	}
	return Listing(Days(e.Added, s.now()), Threat(base, e.Added, e.UnblockAt), typ)
}

func (s *Server) nsRRs(zone string) []dns.RR {
	var out []dns.RR
	for _, n := range s.nsNames(zone) {
		out = append(out, &dns.NS{Hdr: dns.RR_Header{Name: zone, Rrtype: dns.TypeNS, Class: dns.ClassINET, Ttl: 3600}, Ns: n})
	}
	return out
}

func (s *Server) nxdomain(m *dns.Msg, zone string) *dns.Msg {
	m.Rcode = dns.RcodeNameError
	m.Ns = append(m.Ns, s.soa(zone))
	return m
}

// Listen opens UDP and TCP on each address ("127.0.0.1:5353"; port 0
// picks one free for both) and serves until Shutdown. It returns once
// every socket is open, or the first error (then nothing stays open).
func (s *Server) Listen(addrs []string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var started []*dns.Server
	var udp []*net.UDPConn
	fail := func(err error) error {
		for _, srv := range started {
			_ = srv.Shutdown()
		}
		for _, pc := range udp {
			pc.Close()
		}
		return err
	}
	var bound []netip.AddrPort
	for _, addr := range addrs {
		pc, ln, err := listenBoth(addr)
		if err != nil {
			return fail(err)
		}
		ap := pc.LocalAddr().(*net.UDPAddr).AddrPort()
		bound = append(bound, netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()))
		udp = append(udp, pc.(*net.UDPConn))
		srv := &dns.Server{Listener: ln, Handler: s, ReadTimeout: 5 * time.Second, WriteTimeout: 5 * time.Second,
			IdleTimeout: func() time.Duration { return 10 * time.Second }}
		ready := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(ready) }
		errc := make(chan error, 1)
		go func() { errc <- srv.ActivateAndServe() }()
		select {
		case <-ready:
		case err := <-errc:
			ln.Close()
			return fail(fmt.Errorf("dnsbl: serve tcp %s: %w", addr, err))
		}
		started = append(started, srv)
	}
	// Several readers per socket: one core each.
	readers := s.cfg.UDPReaders
	if readers <= 0 {
		readers = runtime.GOMAXPROCS(0)
	}
	for _, pc := range udp {
		for i := 0; i < readers; i++ {
			s.udpWG.Add(1)
			go s.serveUDP(pc)
		}
	}
	s.servers = append(s.servers, started...)
	s.udp = append(s.udp, udp...)
	s.addrs = append(s.addrs, bound...)
	return nil
}

// reply is the UDP answer to one datagram, nil for none.
func (s *Server) reply(req, buf []byte) []byte {
	if b := s.fastAnswer(req, buf); b != nil {
		return b
	}
	r := new(dns.Msg)
	if err := r.Unpack(req); err != nil {
		return nil // not DNS: no answer
	}
	m := s.Answer(r)
	if m == nil {
		return nil
	}
	size := dns.MinMsgSize
	if o := r.IsEdns0(); o != nil {
		size = max(int(o.UDPSize()), dns.MinMsgSize)
	}
	m.Truncate(size)
	b, err := m.PackBuffer(buf[:0])
	if err != nil {
		return nil
	}
	return b
}

// listenBoth opens UDP and TCP on the same address and port.
func listenBoth(addr string) (net.PacketConn, net.Listener, error) {
	for try := 0; ; try++ {
		pc, err := net.ListenPacket("udp", addr)
		if err != nil {
			return nil, nil, fmt.Errorf("dnsbl: listen udp %s: %w", addr, err)
		}
		host, _, _ := net.SplitHostPort(addr)
		port := pc.LocalAddr().(*net.UDPAddr).Port
		ln, err := net.Listen("tcp", net.JoinHostPort(host, fmt.Sprint(port)))
		if err == nil {
			return pc, ln, nil
		}
		pc.Close()
		if _, p, _ := net.SplitHostPort(addr); p != "0" || try == 10 {
			return nil, nil, fmt.Errorf("dnsbl: listen tcp %s: %w", addr, err)
		}
	}
}

// Addrs returns the addresses served (UDP and TCP alike).
func (s *Server) Addrs() []netip.AddrPort {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.addrs)
}

// Shutdown closes every socket and waits for the handlers, within ctx.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	servers, udp := s.servers, s.udp
	s.servers, s.udp, s.addrs = nil, nil, nil
	s.mu.Unlock()
	var errs []error
	for _, pc := range udp {
		if err := pc.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	s.udpWG.Wait()
	for _, srv := range servers {
		if err := srv.ShutdownContext(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
