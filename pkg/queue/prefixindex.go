package queue

import "net/netip"

// prefixIndex is an immutable binary trie of prefixes answering "does this
// prefix overlap any stored one, in either direction?" in O(prefix length),
// whatever the number of entries. BHR looped over every whitelist entry per
// request; with 10,000 entries that dominated block creation.
//
// It is built once per whitelist change and then only read, so lookups need
// no lock (the Service swaps it atomically).
type prefixIndex[T any] struct {
	v4, v6 *trieNode[T]
}

type trieNode[T any] struct {
	child [2]*trieNode[T]
	// here holds the values stored at exactly this prefix.
	here []T
	// below counts values stored strictly below this node, so a lookup can
	// tell at once whether a request contains any entry.
	below int
}

type indexed[T any] struct {
	prefix netip.Prefix
	value  T
}

func newPrefixIndex[T any](items []indexed[T]) *prefixIndex[T] {
	ix := &prefixIndex[T]{v4: &trieNode[T]{}, v6: &trieNode[T]{}}
	for _, it := range items {
		ix.insert(it.prefix.Masked(), it.value)
	}
	return ix
}

func (ix *prefixIndex[T]) root(p netip.Prefix) *trieNode[T] {
	if p.Addr().Is4() {
		return ix.v4
	}
	return ix.v6
}

func bitAt(a []byte, i int) int {
	return int(a[i/8]>>(7-uint(i%8))) & 1
}

func addrBytes(a netip.Addr) []byte {
	if a.Is4() {
		b := a.As4()
		return b[:]
	}
	b := a.As16()
	return b[:]
}

func (ix *prefixIndex[T]) insert(p netip.Prefix, v T) {
	n := ix.root(p)
	b := addrBytes(p.Addr())
	for i := 0; i < p.Bits(); i++ {
		n.below++
		c := bitAt(b, i)
		if n.child[c] == nil {
			n.child[c] = &trieNode[T]{}
		}
		n = n.child[c]
	}
	n.here = append(n.here, v)
}

// overlap returns a stored value whose prefix contains p or is contained in
// p, preferring the one that contains p (the broadest match first).
func (ix *prefixIndex[T]) overlap(p netip.Prefix) (T, bool) {
	var zero T
	if ix == nil || !p.IsValid() {
		return zero, false
	}
	p = p.Masked()
	n := ix.root(p)
	b := addrBytes(p.Addr())
	for i := 0; ; i++ {
		if len(n.here) > 0 {
			return n.here[0], true // an entry contains (or equals) p
		}
		if i == p.Bits() {
			break
		}
		n = n.child[bitAt(b, i)]
		if n == nil {
			return zero, false
		}
	}
	// p contains entries if anything is stored below its node.
	for n.below > 0 {
		for _, c := range n.child {
			if c != nil && (len(c.here) > 0 || c.below > 0) {
				n = c
				break
			}
		}
		if len(n.here) > 0 {
			return n.here[0], true
		}
	}
	return zero, false
}
