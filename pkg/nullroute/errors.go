package nullroute

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// ErrInvalidPrefix is reported for a prefix that is not valid or has host
// bits set (10.0.0.1/24). Such prefixes never reach the kernel: it would
// refuse them for IPv4 but silently mask them for IPv6.
var ErrInvalidPrefix = errors.New("invalid prefix")

// ErrConflict is reported by Add for an IPv6 prefix when another route that
// is not bhrd's (a static blackhole, for example) already has the same
// prefix and metric in the table. The Linux IPv6 FIB holds only one such
// route, and bhrd does not replace routes it does not own.
var ErrConflict = errors.New("another route with the same prefix and metric exists in the table")

// PrefixError is the failure of one prefix within an Add, Delete or
// Reconcile.
type PrefixError struct {
	Op     string // "add" or "delete"
	Prefix netip.Prefix
	Err    error // ErrInvalidPrefix, ErrConflict, or a syscall.Errno from the kernel
}

func (e *PrefixError) Error() string {
	return fmt.Sprintf("nullroute: %s %s: %v", e.Op, e.Prefix, e.Err)
}

func (e *PrefixError) Unwrap() error { return e.Err }

// BatchError reports the prefixes an operation failed for. Every other
// prefix of the operation was applied.
type BatchError struct {
	Op     string // "add", "delete" or "reconcile"
	Total  int    // prefixes the operation was given (reconcile: wanted plus stale)
	Errors []*PrefixError
}

func (e *BatchError) Error() string {
	const show = 3
	var b strings.Builder
	fmt.Fprintf(&b, "nullroute: %s: %d of %d prefixes failed: ", e.Op, len(e.Errors), e.Total)
	for i, pe := range e.Errors {
		if i == show {
			fmt.Fprintf(&b, "; and %d more", len(e.Errors)-show)
			break
		}
		if i > 0 {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "%s %s: %v", pe.Op, pe.Prefix, pe.Err)
	}
	return b.String()
}

// Unwrap lets errors.Is and errors.As look at every prefix's error.
func (e *BatchError) Unwrap() []error {
	errs := make([]error, len(e.Errors))
	for i, pe := range e.Errors {
		errs[i] = pe
	}
	return errs
}

// Failed returns the prefixes that failed, in the order they were given.
func (e *BatchError) Failed() []netip.Prefix {
	out := make([]netip.Prefix, len(e.Errors))
	for i, pe := range e.Errors {
		out[i] = pe.Prefix
	}
	return out
}

// batchError turns per-item results into a *BatchError, or nil when every
// item succeeded.
func batchError(op string, prefixes []netip.Prefix, results []error) error {
	var errs []*PrefixError
	for i, err := range results {
		if err != nil {
			errs = append(errs, &PrefixError{Op: op, Prefix: prefixes[i], Err: err})
		}
	}
	if errs == nil {
		return nil
	}
	return &BatchError{Op: op, Total: len(prefixes), Errors: errs}
}

func checkPrefix(p netip.Prefix) error {
	if !p.IsValid() {
		return fmt.Errorf("%w: %q is not a valid prefix", ErrInvalidPrefix, p.String())
	}
	if m := p.Masked(); m != p {
		return fmt.Errorf("%w: host bits set, the network is %s", ErrInvalidPrefix, m)
	}
	return nil
}
