package dnsbl

import (
	"encoding/binary"
	"net/netip"
	"time"

	"github.com/miekg/dns"
)

// The fast path answers the common query, an A lookup of an address name
// in one of the zones, without building a dns.Msg: it parses the
// question in place and writes the reply into a reused buffer. Anything
// else (the apex, other types, TXT, compression in the question, several
// questions, an additional section other than one OPT) goes to Answer.
// TestFastPathMatchesAnswer and FuzzFastPath hold the two to the same
// replies.

// zoneWire is one zone, pre-split for the fast path.
type zoneWire struct {
	name   string   // as in s.zones
	labels []string // lower case, in order
	// soaRdata is the SOA's rdata (uncompressed names).
	soaRdata []byte
}

func (s *Server) prepareFast() {
	s.fastZones = s.fastZones[:0]
	for _, z := range s.zones {
		zw := zoneWire{name: z, labels: dns.SplitDomainName(z)}
		soa := s.soa(z).(*dns.SOA)
		buf := make([]byte, 512)
		n, err := dns.PackRR(soa, buf, 0, nil, false)
		if err != nil {
			continue // the slow path answers for it
		}
		// Skip the owner name (len(z)+1 bytes uncompressed: New refuses
		// the root), type, class, ttl and rdlength.
		zw.soaRdata = append([]byte(nil), buf[len(z)+1+10:n]...)
		s.fastZones = append(s.fastZones, zw)
	}
}

// maxFastLabels bounds the labels the fast path looks at: a v6 name with
// a key (33) plus a zone of up to 7 labels.
const maxFastLabels = 40

func lowerByte(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// labelIs compares a wire label with a lower-case label.
func labelIs(wire []byte, l string) bool {
	if len(wire) != len(l) {
		return false
	}
	for i := range wire {
		if lowerByte(wire[i]) != l[i] {
			return false
		}
	}
	return true
}

// fastAnswer writes the reply to req into out[:0] and returns it, or nil
// when the slow path must answer.
func (s *Server) fastAnswer(req, out []byte) []byte {
	if len(req) < 12+5 || !s.ready.Load() {
		return nil
	}
	flags := binary.BigEndian.Uint16(req[2:])
	if flags&0x8000 != 0 || flags&0x7800 != 0 { // a response, or not QUERY
		return nil
	}
	if binary.BigEndian.Uint16(req[4:]) != 1 || binary.BigEndian.Uint16(req[6:]) != 0 || binary.BigEndian.Uint16(req[8:]) != 0 {
		return nil
	}
	ar := binary.BigEndian.Uint16(req[10:])
	if ar > 1 {
		return nil
	}
	// The question name: labels, no compression.
	var starts [maxFastLabels]int
	nl := 0
	off := 12
	for {
		if off >= len(req) {
			return nil
		}
		l := int(req[off])
		if l == 0 {
			off++
			break
		}
		if l > 63 || nl == maxFastLabels || off+1+l > len(req) {
			return nil
		}
		// Only letters, digits, '-' and '_': anything the presentation
		// form escapes goes to the full path, which reads the escapes.
		for _, c := range req[off+1 : off+1+l] {
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return nil
			}
		}
		starts[nl] = off
		nl++
		off += 1 + l
	}
	if off+4 > len(req) {
		return nil
	}
	qtype := binary.BigEndian.Uint16(req[off:])
	qclass := binary.BigEndian.Uint16(req[off+2:])
	qend := off + 4
	if qtype != dns.TypeA || qclass != dns.ClassINET {
		return nil
	}
	edns := false
	if ar == 1 {
		// Only a bare OPT: root name, type 41.
		if qend+11 > len(req) || req[qend] != 0 || binary.BigEndian.Uint16(req[qend+1:]) != dns.TypeOPT {
			return nil
		}
		if qend+11+int(binary.BigEndian.Uint16(req[qend+9:])) != len(req) {
			return nil
		}
		edns = true
	} else if qend != len(req) {
		return nil
	}
	label := func(i int) []byte { return req[starts[i]+1 : starts[i]+1+int(req[starts[i]])] }
	// The zone: its labels at the end of the name.
	zi := -1
	for i, z := range s.fastZones {
		k := len(z.labels)
		if k >= nl {
			continue // the apex, or shorter: slow path
		}
		match := true
		for j := 0; j < k; j++ {
			if !labelIs(label(nl-k+j), z.labels[j]) {
				match = false
				break
			}
		}
		if match {
			zi = i
			break
		}
	}
	if zi < 0 {
		return nil // REFUSED, by the slow path
	}
	z := &s.fastZones[zi]
	na := nl - len(z.labels) // labels before the zone
	first := 0
	if na == 5 || na == 33 {
		first = 1
	}
	keyName := ""
	if len(s.cfg.Keys) > 0 {
		if first == 0 {
			return nil
		}
		var kb [63]byte
		k := label(0)
		for i := range k {
			kb[i] = lowerByte(k[i])
		}
		n, ok := s.cfg.Keys[HashKey(string(kb[:len(k)]))]
		if !ok {
			return nil
		}
		keyName = n
	}
	var addr netip.Addr
	switch na - first {
	case 4:
		var b [4]byte
		for i := 0; i < 4; i++ {
			l := label(first + i)
			if len(l) == 0 || len(l) > 3 {
				return nil
			}
			v := 0
			for _, c := range l {
				if c < '0' || c > '9' {
					return nil
				}
				v = v*10 + int(c-'0')
			}
			if v > 255 {
				return nil
			}
			b[3-i] = byte(v)
		}
		addr = netip.AddrFrom4(b)
	case 32:
		var b [16]byte
		for i := 0; i < 32; i++ {
			l := label(first + i)
			if len(l) != 1 {
				return nil
			}
			c := lowerByte(l[0])
			var v byte
			switch {
			case '0' <= c && c <= '9':
				v = c - '0'
			case 'a' <= c && c <= 'f':
				v = c - 'a' + 10
			default:
				return nil
			}
			j := 31 - i
			if j%2 == 0 {
				b[j/2] |= v << 4
			} else {
				b[j/2] |= v
			}
		}
		addr = netip.AddrFrom16(b).Unmap()
	default:
		return nil
	}
	if addr == netip.AddrFrom4([4]byte{127, 0, 0, 2}) {
		return nil // the test entry: slow path
	}
	_, e, listed := s.table.Lookup(addr)

	out = out[:0]
	out = append(out, req[0], req[1])
	rflags := uint16(0x8000 | 0x0400) // QR, AA
	rflags |= flags & 0x0110          // RD, CD
	an, ns := uint16(0), uint16(0)
	if listed {
		an = 1
		s.count(z.name, AnswerListed, keyName)
	} else {
		rflags |= dns.RcodeNameError
		ns = 1
		s.count(z.name, AnswerUnlisted, keyName)
	}
	var arc uint16
	if edns {
		arc = 1
	}
	out = binary.BigEndian.AppendUint16(out, rflags)
	out = binary.BigEndian.AppendUint16(out, 1)
	out = binary.BigEndian.AppendUint16(out, an)
	out = binary.BigEndian.AppendUint16(out, ns)
	out = binary.BigEndian.AppendUint16(out, arc)
	out = append(out, req[12:qend]...)
	if listed {
		a := s.listing(e).As4()
		out = append(out, 0xc0, 12) // the question's name
		out = binary.BigEndian.AppendUint16(out, dns.TypeA)
		out = binary.BigEndian.AppendUint16(out, dns.ClassINET)
		out = binary.BigEndian.AppendUint32(out, uint32(s.cfg.TTL/time.Second))
		out = binary.BigEndian.AppendUint16(out, 4)
		out = append(out, a[:]...)
	} else {
		zoff := starts[na] // where the zone's labels start in the question
		out = append(out, 0xc0|byte(zoff>>8), byte(zoff))
		out = binary.BigEndian.AppendUint16(out, dns.TypeSOA)
		out = binary.BigEndian.AppendUint16(out, dns.ClassINET)
		out = binary.BigEndian.AppendUint32(out, uint32(s.cfg.NegativeTTL/time.Second))
		out = binary.BigEndian.AppendUint16(out, uint16(len(z.soaRdata)))
		out = append(out, z.soaRdata...)
	}
	if edns {
		out = append(out, 0)
		out = binary.BigEndian.AppendUint16(out, dns.TypeOPT)
		out = binary.BigEndian.AppendUint16(out, 1232)
		out = append(out, 0, 0, 0, 0, 0, 0)
	}
	return out
}
