package dnsbl

import (
	"net/netip"
	"sync"
	"time"
)

// Entry is what the zone knows of one listed prefix: the block's source,
// when it was added and when it ends (zero: indefinite).
type Entry struct {
	Source    string
	Added     time.Time
	UnblockAt time.Time
}

// entry is Entry stored compactly (a million prefixes stay small).
type entry struct {
	source       string // interned
	added, until int64  // Unix seconds; until 0 = indefinite
}

func (e entry) public() Entry {
	out := Entry{Source: e.source, Added: time.Unix(e.added, 0).UTC()}
	if e.until != 0 {
		out.UnblockAt = time.Unix(e.until, 0).UTC()
	}
	return out
}

// Table is a set of listed prefixes with longest-prefix lookup, safe for
// concurrent use. Lookups take a read lock and probe only the prefix
// lengths present in the table.
type Table struct {
	mu      sync.RWMutex
	v4      map[uint64]entry // addr<<8 | bits
	v6      map[netip.Prefix]entry
	lens4   [33]int
	lens6   [129]int
	sources map[string]string
}

// NewTable returns an empty table.
func NewTable() *Table {
	return &Table{v4: map[uint64]entry{}, v6: map[netip.Prefix]entry{}, sources: map[string]string{}}
}

func key4(p netip.Prefix) uint64 {
	a := p.Addr().As4()
	return (uint64(a[0])<<24|uint64(a[1])<<16|uint64(a[2])<<8|uint64(a[3]))<<8 | uint64(p.Bits())
}

// norm masks p and unmaps an IPv4-mapped prefix; ok is false for an
// invalid one.
func norm(p netip.Prefix) (netip.Prefix, bool) {
	if !p.IsValid() {
		return p, false
	}
	if a := p.Addr(); a.Is4In6() {
		if p.Bits() < 96 {
			return p, false
		}
		p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p.Masked(), true
}

// Set lists p (or replaces what the table had for it).
func (t *Table) Set(p netip.Prefix, e Entry) {
	p, ok := norm(p)
	if !ok {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.set(p, e)
}

func (t *Table) set(p netip.Prefix, e Entry) {
	src, ok := t.sources[e.Source]
	if !ok {
		src = e.Source
		t.sources[src] = src
	}
	v := entry{source: src, added: e.Added.Unix()}
	if !e.UnblockAt.IsZero() {
		v.until = e.UnblockAt.Unix()
	}
	if p.Addr().Is4() {
		k := key4(p)
		if _, had := t.v4[k]; !had {
			t.lens4[p.Bits()]++
		}
		t.v4[k] = v
		return
	}
	if _, had := t.v6[p]; !had {
		t.lens6[p.Bits()]++
	}
	t.v6[p] = v
}

// Delete unlists p.
func (t *Table) Delete(p netip.Prefix) {
	p, ok := norm(p)
	if !ok {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	t.delete(p)
}

func (t *Table) delete(p netip.Prefix) {
	if p.Addr().Is4() {
		k := key4(p)
		if _, had := t.v4[k]; had {
			delete(t.v4, k)
			t.lens4[p.Bits()]--
		}
		return
	}
	if _, had := t.v6[p]; had {
		delete(t.v6, p)
		t.lens6[p.Bits()]--
	}
}

// Has reports whether p itself is listed.
func (t *Table) Has(p netip.Prefix) bool {
	p, ok := norm(p)
	if !ok {
		return false
	}
	t.mu.RLock()
	defer t.mu.RUnlock()
	if p.Addr().Is4() {
		_, ok = t.v4[key4(p)]
	} else {
		_, ok = t.v6[p]
	}
	return ok
}

// Prefixes returns every listed prefix.
func (t *Table) Prefixes() []netip.Prefix {
	t.mu.RLock()
	defer t.mu.RUnlock()
	out := make([]netip.Prefix, 0, len(t.v4)+len(t.v6))
	for k := range t.v4 {
		a := uint32(k >> 8)
		out = append(out, netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(a >> 24), byte(a >> 16), byte(a >> 8), byte(a)}), int(k&0xff)))
	}
	for p := range t.v6 {
		out = append(out, p)
	}
	return out
}

// Len returns the number of listed prefixes.
func (t *Table) Len() int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return len(t.v4) + len(t.v6)
}

// Lookup returns the longest listed prefix covering a, with its entry.
func (t *Table) Lookup(a netip.Addr) (netip.Prefix, Entry, bool) {
	a = a.Unmap()
	t.mu.RLock()
	defer t.mu.RUnlock()
	if a.Is4() {
		b := a.As4()
		u := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
		for l := 32; l >= 0; l-- {
			if t.lens4[l] == 0 {
				continue
			}
			m := u
			if l < 32 {
				m = u &^ (1<<(32-l) - 1)
			}
			if e, ok := t.v4[uint64(m)<<8|uint64(l)]; ok {
				return netip.PrefixFrom(a, l).Masked(), e.public(), true
			}
		}
		return netip.Prefix{}, Entry{}, false
	}
	for l := 128; l >= 0; l-- {
		if t.lens6[l] == 0 {
			continue
		}
		p := netip.PrefixFrom(a, l).Masked()
		if e, ok := t.v6[p]; ok {
			return p, e.public(), true
		}
	}
	return netip.Prefix{}, Entry{}, false
}
