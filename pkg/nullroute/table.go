package nullroute

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

const (
	// DefaultTable is the main routing table.
	DefaultTable = unix.RT_TABLE_MAIN
	// DefaultProtocol is the route protocol number that tags bhrd's routes;
	// see the package documentation for why 66.
	DefaultProtocol = 66

	// dumpRetries bounds List's retries of a dump the kernel marked as
	// interrupted by concurrent route changes.
	dumpRetries = 5
)

// Config selects the routes a Table manages. The zero value means bhrd's
// blackhole routes in the main table of the current namespace.
type Config struct {
	// Table is the routing table id: 0 means DefaultTable (main, 254).
	// Tables above 255 are supported.
	Table int
	// Protocol is the route protocol number (rtm_protocol) that marks
	// bhrd's routes: 0 means DefaultProtocol (66). Values 1-4 (redirect,
	// kernel, boot, static) are refused: they belong to the kernel and to
	// administrators.
	Protocol int
	// Netns is the network namespace the injected handle was opened in,
	// e.g. the handle given to netlink.NewHandleAt. Table opens its batch
	// socket there, once, in New. 0 and netns.None() mean the namespace
	// the process runs in (a daemon never has a namespace handle as fd 0).
	// New does not keep or close it.
	Netns netns.NsHandle
	// BatchBytes bounds the messages sent in one sendmsg; 0 means
	// DefaultBatchBytes. It is further capped by the socket buffers.
	BatchBytes int
}

// Check reports a Table or Protocol New would refuse (zero values mean
// the defaults).
func (c Config) Check() error {
	_, err := c.withDefaults()
	return err
}

func (c Config) withDefaults() (Config, error) {
	if c.Table == 0 {
		c.Table = DefaultTable
	}
	if c.Table < 0 || int64(c.Table) > 1<<32-1 {
		return c, fmt.Errorf("nullroute: table %d out of range 1-4294967295", c.Table)
	}
	if c.Table == unix.RT_TABLE_UNSPEC {
		return c, fmt.Errorf("nullroute: table 0 is not a table")
	}
	if c.Protocol == 0 {
		c.Protocol = DefaultProtocol
	}
	if c.Protocol < 0 || c.Protocol > 255 {
		return c, fmt.Errorf("nullroute: route protocol %d out of range 5-255", c.Protocol)
	}
	if c.Protocol <= unix.RTPROT_STATIC {
		return c, fmt.Errorf("nullroute: route protocol %d is reserved for the kernel and administrators (use 5-255)", c.Protocol)
	}
	if c.BatchBytes == 0 {
		c.BatchBytes = DefaultBatchBytes
	}
	if c.BatchBytes < 0 {
		return c, fmt.Errorf("nullroute: batch size %d is negative", c.BatchBytes)
	}
	return c, nil
}

// Table manages bhrd's blackhole routes in one routing table. Its methods
// are safe for concurrent use; Reconcile's view may be stale for prefixes
// that concurrent calls of Add or Delete change.
type Table struct {
	h     *netlink.Handle
	table uint32
	proto uint8

	mu   sync.Mutex // serialises use of conn
	conn *conn
}

// New returns a Table that lists routes through h and writes them through
// its own netlink socket, opened in cfg.Netns (which must be h's
// namespace). The caller keeps ownership of h; Close releases only what New
// opened.
func New(h *netlink.Handle, cfg Config) (*Table, error) {
	if h == nil {
		return nil, errors.New("nullroute: nil netlink handle")
	}
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	c, err := openConn(cfg.Netns, cfg.BatchBytes)
	if err != nil {
		return nil, fmt.Errorf("nullroute: %w", err)
	}
	return &Table{h: h, table: uint32(cfg.Table), proto: uint8(cfg.Protocol), conn: c}, nil
}

// Close closes the batch socket. It does not close the injected handle.
func (t *Table) Close() error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.conn == nil {
		return nil
	}
	err := t.conn.close()
	t.conn = nil
	return err
}

// TableID returns the routing table the Table manages.
func (t *Table) TableID() int { return int(t.table) }

// Protocol returns the route protocol number that marks bhrd's routes.
func (t *Table) Protocol() int { return int(t.proto) }

// Add installs a blackhole route for every prefix. A prefix that already
// has our route succeeds, so Add is idempotent. Per-prefix failures come
// back as a *BatchError while every other prefix is installed; any other
// error means Add stopped and left the remaining prefixes unconfirmed.
func (t *Table) Add(ctx context.Context, prefixes []netip.Prefix) error {
	results, existed, err := t.apply(ctx, opAdd, prefixes)
	if err != nil {
		return err
	}
	if err := t.resolveExisting(ctx, prefixes, results, existed); err != nil {
		return err
	}
	return batchError(opAdd.name, prefixes, results)
}

// Delete removes our blackhole route for every prefix. A prefix without
// our route succeeds, so Delete is idempotent, and routes of other
// protocols or types are never removed. Errors are as for Add.
func (t *Table) Delete(ctx context.Context, prefixes []netip.Prefix) error {
	results, _, err := t.apply(ctx, opDelete, prefixes)
	if err != nil {
		return err
	}
	return batchError(opDelete.name, prefixes, results)
}

// apply validates prefixes and runs o for the valid ones. results holds
// each prefix's outcome; existed marks those where the kernel answered
// o.ignore.
func (t *Table) apply(ctx context.Context, o op, prefixes []netip.Prefix) (results []error, existed []bool, err error) {
	results = make([]error, len(prefixes))
	existed = make([]bool, len(prefixes))
	valid := make([]netip.Prefix, 0, len(prefixes))
	index := make([]int, 0, len(prefixes))
	for i, p := range prefixes {
		if err := checkPrefix(p); err != nil {
			results[i] = err
			continue
		}
		valid = append(valid, p)
		index = append(index, i)
	}
	if len(valid) == 0 {
		return results, existed, nil
	}
	vres := make([]error, len(valid))
	vexisted := make([]bool, len(valid))

	t.mu.Lock()
	defer t.mu.Unlock()
	if t.conn == nil {
		return nil, nil, errors.New("nullroute: table is closed")
	}
	if err := t.conn.exec(ctx, o, t.table, t.proto, valid, vres, vexisted); err != nil {
		return nil, nil, fmt.Errorf("nullroute: %w", err)
	}
	for j, i := range index {
		results[i] = vres[j]
		existed[i] = vexisted[j]
	}
	return results, existed, nil
}

// resolveExisting checks the IPv6 prefixes for which the kernel answered
// EEXIST: the IPv6 FIB says so also when the existing route is not ours.
func (t *Table) resolveExisting(ctx context.Context, prefixes []netip.Prefix, results []error, existed []bool) error {
	var check []int
	for i, e := range existed {
		if e && prefixes[i].Addr().Is6() {
			check = append(check, i)
		}
	}
	if len(check) == 0 {
		return nil
	}
	ours, err := t.list(ctx, netlink.FAMILY_V6)
	if err != nil {
		return fmt.Errorf("nullroute: add: check existing IPv6 routes: %w", err)
	}
	set := make(map[netip.Prefix]struct{}, len(ours))
	for _, p := range ours {
		set[p] = struct{}{}
	}
	for _, i := range check {
		if _, ok := set[prefixes[i]]; !ok {
			results[i] = ErrConflict
		}
	}
	return nil
}

// List returns the prefixes of our blackhole routes in our table, IPv4
// first, each sorted.
func (t *Table) List(ctx context.Context) ([]netip.Prefix, error) {
	v4, err := t.list(ctx, netlink.FAMILY_V4)
	if err != nil {
		return nil, fmt.Errorf("nullroute: list: %w", err)
	}
	v6, err := t.list(ctx, netlink.FAMILY_V6)
	if err != nil {
		return nil, fmt.Errorf("nullroute: list: %w", err)
	}
	return append(v4, v6...), nil
}

func (t *Table) list(ctx context.Context, family int) ([]netip.Prefix, error) {
	filter := &netlink.Route{
		Table:    int(t.table),
		Protocol: netlink.RouteProtocol(t.proto),
		Type:     unix.RTN_BLACKHOLE,
	}
	mask := netlink.RT_FILTER_TABLE | netlink.RT_FILTER_PROTOCOL | netlink.RT_FILTER_TYPE
	var (
		out     []netip.Prefix
		convErr error
	)
	for attempt := 1; ; attempt++ {
		out, convErr = out[:0], nil
		err := t.h.RouteListFilteredIter(family, filter, mask, func(r netlink.Route) bool {
			if ctx.Err() != nil {
				return false
			}
			p, err := routePrefix(family, r.Dst)
			if err != nil {
				convErr = err
				return false
			}
			out = append(out, p)
			return true
		})
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		if convErr != nil {
			return nil, convErr
		}
		if errors.Is(err, netlink.ErrDumpInterrupted) && attempt < dumpRetries {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("dump routes: %w", err)
		}
		break
	}
	slices.SortFunc(out, comparePrefix)
	// Two routes of ours for one prefix (another TOS or metric, added by
	// hand) are still one prefix.
	return slices.Compact(out), nil
}

func routePrefix(family int, dst *net.IPNet) (netip.Prefix, error) {
	if dst == nil { // a default route has no RTA_DST
		if family == netlink.FAMILY_V4 {
			return netip.PrefixFrom(netip.IPv4Unspecified(), 0), nil
		}
		return netip.PrefixFrom(netip.IPv6Unspecified(), 0), nil
	}
	addr, ok := netip.AddrFromSlice(dst.IP)
	if !ok {
		return netip.Prefix{}, fmt.Errorf("route with a %d-byte destination", len(dst.IP))
	}
	if family == netlink.FAMILY_V4 {
		addr = addr.Unmap()
	}
	ones, _ := dst.Mask.Size()
	return netip.PrefixFrom(addr, ones).Masked(), nil
}

func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}

// Reconcile makes our routes in the table exactly want: it adds the
// prefixes that have no route of ours and deletes our routes whose prefix
// is not wanted. It returns what it changed, sorted. Per-prefix failures
// (an invalid prefix in want, a conflict) come back as a *BatchError with
// Op "reconcile" after everything else was done; any other error means
// Reconcile stopped, added and removed are nil, and the state is unknown
// until a retry.
func (t *Table) Reconcile(ctx context.Context, want []netip.Prefix) (added, removed []netip.Prefix, err error) {
	have, err := t.List(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("nullroute: reconcile: %w", err)
	}
	var failed []*PrefixError
	wantSet := make(map[netip.Prefix]struct{}, len(want))
	for _, p := range want {
		if err := checkPrefix(p); err != nil {
			failed = append(failed, &PrefixError{Op: opAdd.name, Prefix: p, Err: err})
			continue
		}
		wantSet[p] = struct{}{}
	}
	haveSet := make(map[netip.Prefix]struct{}, len(have))
	var extra []netip.Prefix
	for _, p := range have {
		haveSet[p] = struct{}{}
		if _, ok := wantSet[p]; !ok {
			extra = append(extra, p)
		}
	}
	var missing []netip.Prefix
	for p := range wantSet {
		if _, ok := haveSet[p]; !ok {
			missing = append(missing, p)
		}
	}
	slices.SortFunc(missing, comparePrefix)

	added, aerrs, err := t.changed(ctx, missing, t.Add)
	if err != nil {
		return nil, nil, fmt.Errorf("nullroute: reconcile: %w", err)
	}
	removed, derrs, err := t.changed(ctx, extra, t.Delete)
	if err != nil {
		return nil, nil, fmt.Errorf("nullroute: reconcile: %w", err)
	}
	failed = append(append(failed, aerrs...), derrs...)
	if len(failed) > 0 {
		return added, removed, &BatchError{Op: "reconcile", Total: len(want) + len(extra), Errors: failed}
	}
	return added, removed, nil
}

// changed runs fn on prefixes and splits the outcome into the prefixes it
// changed and the per-prefix errors.
func (t *Table) changed(ctx context.Context, prefixes []netip.Prefix,
	fn func(context.Context, []netip.Prefix) error) ([]netip.Prefix, []*PrefixError, error) {

	if len(prefixes) == 0 {
		return nil, nil, nil
	}
	err := fn(ctx, prefixes)
	var be *BatchError
	if err != nil && !errors.As(err, &be) {
		return nil, nil, err
	}
	if be == nil {
		return prefixes, nil, nil
	}
	bad := make(map[netip.Prefix]struct{}, len(be.Errors))
	for _, pe := range be.Errors {
		bad[pe.Prefix] = struct{}{}
	}
	ok := make([]netip.Prefix, 0, len(prefixes)-len(bad))
	for _, p := range prefixes {
		if _, failed := bad[p]; !failed {
			ok = append(ok, p)
		}
	}
	return ok, be.Errors, nil
}
