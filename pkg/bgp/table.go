package bgp

import (
	"net/netip"
	"slices"
	"sync"
)

// announcements is the speaker's own record of what each owner announces,
// so that a withdraw needs only the prefix and peer state can count
// prefixes without walking GoBGP's RIB inside its event loop.
//
// There is one map entry per prefix, whatever the number of owners, and
// path attributes are interned: a million blackholes with the same
// attributes share one attrSet.
type announcements struct {
	mu       sync.RWMutex
	routes   map[netip.Prefix]entry
	distinct [2]int // prefixes announced by at least one owner: [0] IPv4, [1] IPv6
	attrs    map[string]*attrSet
}

type slot struct {
	owner uint32
	attrs *attrSet
}

// entry holds the owners of one prefix; nearly always just one.
type entry struct {
	first slot
	rest  []slot
}

func newAnnouncements() *announcements {
	return &announcements{routes: make(map[netip.Prefix]entry), attrs: make(map[string]*attrSet)}
}

func familyIndex(p netip.Prefix) int {
	if p.Addr().Is4() {
		return 0
	}
	return 1
}

// lookup returns owner's attributes for p, or nil.
func (t *announcements) lookup(p netip.Prefix, owner uint32) *attrSet {
	t.mu.RLock()
	defer t.mu.RUnlock()
	e, ok := t.routes[p]
	if !ok {
		return nil
	}
	if e.first.owner == owner {
		return e.first.attrs
	}
	for _, s := range e.rest {
		if s.owner == owner {
			return s.attrs
		}
	}
	return nil
}

// set records that owner announces p with as, taking over the caller's
// reference to as and releasing the attributes it replaces.
func (t *announcements) set(p netip.Prefix, owner uint32, as *attrSet) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.routes[p]
	switch {
	case !ok:
		t.routes[p] = entry{first: slot{owner, as}}
		t.distinct[familyIndex(p)]++
		return
	case e.first.owner == owner:
		t.releaseLocked(e.first.attrs)
		e.first.attrs = as
	default:
		i := slices.IndexFunc(e.rest, func(s slot) bool { return s.owner == owner })
		if i >= 0 {
			t.releaseLocked(e.rest[i].attrs)
			e.rest[i].attrs = as
		} else {
			e.rest = append(e.rest, slot{owner, as})
		}
	}
	t.routes[p] = e
}

// remove forgets owner's announcement of p and releases its attributes.
func (t *announcements) remove(p netip.Prefix, owner uint32) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.routes[p]
	if !ok {
		return
	}
	if e.first.owner == owner {
		t.releaseLocked(e.first.attrs)
		if len(e.rest) == 0 {
			delete(t.routes, p)
			t.distinct[familyIndex(p)]--
			return
		}
		e.first, e.rest = e.rest[0], slices.Clip(e.rest[1:])
	} else {
		i := slices.IndexFunc(e.rest, func(s slot) bool { return s.owner == owner })
		if i < 0 {
			return
		}
		t.releaseLocked(e.rest[i].attrs)
		e.rest = slices.Delete(e.rest, i, i+1)
	}
	if len(e.rest) == 0 {
		e.rest = nil
	}
	t.routes[p] = e
}

// acquire returns the interned attributes of r with a reference for the
// caller; last, when it matches, saves the key computation.
func (t *announcements) acquire(r Route, last *attrSet) (*attrSet, error) {
	if last != nil && sameAttrs(last, r) {
		t.mu.Lock()
		last.refs++
		t.mu.Unlock()
		return last, nil
	}
	key := r.attrKey()
	t.mu.Lock()
	defer t.mu.Unlock()
	if as := t.attrs[key]; as != nil {
		as.refs++
		return as, nil
	}
	as, err := newAttrSet(r)
	if err != nil {
		return nil, err
	}
	as.refs = 1
	t.attrs[key] = as
	return as, nil
}

func (t *announcements) release(as *attrSet) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.releaseLocked(as)
}

func (t *announcements) releaseLocked(as *attrSet) {
	as.refs--
	if as.refs == 0 {
		delete(t.attrs, as.key)
	}
}

func sameAttrs(a *attrSet, r Route) bool {
	return a.nextHop == r.NextHop && a.localPref == r.LocalPref &&
		slices.Equal(a.communities, r.Communities) && slices.Equal(a.large, r.LargeCommunities)
}

// byOwner lists owner's routes, sorted by prefix.
func (t *announcements) byOwner(owner uint32) []Route {
	t.mu.RLock()
	var out []Route
	for p, e := range t.routes {
		if e.first.owner == owner {
			out = append(out, e.first.attrs.route(p))
			continue
		}
		for _, s := range e.rest {
			if s.owner == owner {
				out = append(out, s.attrs.route(p))
			}
		}
	}
	t.mu.RUnlock()
	slices.SortFunc(out, func(a, b Route) int { return comparePrefix(a.Prefix, b.Prefix) })
	return out
}

func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}

// counts returns the number of distinct announced IPv4 and IPv6 prefixes.
func (t *announcements) counts() (v4, v6 int) {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return t.distinct[0], t.distinct[1]
}

// interned reports the number of distinct attribute sets in use.
func (t *announcements) interned() int {
	t.mu.RLock()
	defer t.mu.RUnlock()
	return len(t.attrs)
}
