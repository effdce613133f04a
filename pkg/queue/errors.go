package queue

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// Sentinel errors. Every error the Service returns for bad input wraps one
// of these, so callers (the API) map them with errors.Is / errors.As.
var (
	// Field errors: the request itself is malformed.
	ErrInvalidCIDR     = errors.New("invalid cidr")
	ErrHostBitsSet     = errors.New("host bits set")
	ErrInvalidDuration = errors.New("invalid duration")
	ErrFieldTooLong    = errors.New("field too long")
	ErrFieldRequired   = errors.New("field required")
	ErrConflictingEnd  = errors.New("unblock_at conflicts with duration")
	ErrInvalidTime     = errors.New("invalid time")
	ErrInvalidBool     = errors.New("invalid boolean")
	ErrPastEnd         = errors.New("unblock_at in the past")
	ErrInvalidField    = errors.New("invalid field") // found while decoding
	ErrInvalidText     = errors.New("invalid text")  // not UTF-8, or a NUL
	ErrTooMany         = errors.New("too many items")

	// Policy rejections: the request is well formed but refused.
	ErrWhitelisted        = errors.New("whitelisted")
	ErrPrefixTooShort     = errors.New("prefix too short")
	ErrSourceBlacklisted  = errors.New("source blacklisted")
	ErrSkipNotPermitted   = errors.New("skip_whitelist not permitted")
	ErrProtectedAddresses = errors.New("overlaps a protected address")

	// State errors.
	ErrNotBlocked = errors.New("not currently blocked")
	ErrNotFound   = errors.New("not found")
	ErrDuplicate  = errors.New("already exists")
	// ErrReservedIdent: the ident belongs to an internal enforcer, and
	// only that enforcer may report for it (HTTP 409).
	ErrReservedIdent = errors.New("ident reserved for an internal enforcer")
	// ErrUnknownIdent: the store has not registered the ident (yet).
	ErrUnknownIdent = errors.New("unknown ident")
	// ErrTooManyIdents: the store holds max_idents idents already.
	ErrTooManyIdents = errors.New("too many idents")
)

// FieldError is a problem with one field of a request. BHR shows it as
// {"<field>": ["<message>"]}.
type FieldError struct {
	Field   string
	Message string
	Err     error // one of the sentinels above
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Message }
func (e *FieldError) Unwrap() error { return e.Err }

// FieldErrors is every field problem of one request, in the order found.
// BHR shows it as {"<field>": ["<message>"], "<other>": [...]}.
type FieldErrors []*FieldError

func (e FieldErrors) Error() string {
	parts := make([]string, len(e))
	for i, fe := range e {
		parts[i] = fe.Error()
	}
	return strings.Join(parts, "; ")
}

// Unwrap lets errors.Is and errors.As see each field's error.
func (e FieldErrors) Unwrap() []error {
	out := make([]error, len(e))
	for i, fe := range e {
		out[i] = fe
	}
	return out
}

// Has reports whether field already has an error.
func (e FieldErrors) Has(field string) bool {
	for _, fe := range e {
		if fe.Field == field {
			return true
		}
	}
	return false
}

// add appends err when it is a field error.
func (e FieldErrors) add(err error) FieldErrors {
	var fe *FieldError
	if errors.As(err, &fe) {
		return append(e, fe)
	}
	return e
}

// err is nil, the one field error, or all of them.
func (e FieldErrors) err() error {
	switch len(e) {
	case 0:
		return nil
	case 1:
		return e[0]
	}
	return e
}

// NewFieldError is a field error found by a front end while decoding (a
// boolean that is no boolean), for BlockRequest.DecodeErrors.
func NewFieldError(field, message string) *FieldError {
	return &FieldError{Field: field, Message: message, Err: ErrInvalidField}
}

// ReservedIdentError refuses a report for an internal enforcer's ident
// by anyone but that enforcer. It wraps ErrReservedIdent.
type ReservedIdentError struct{ Ident string }

func (e *ReservedIdentError) Error() string {
	return "ident " + e.Ident + " is enforced inside bhrd (enforcers in its config); a remote enforcer needs an ident of its own"
}

func (e *ReservedIdentError) Unwrap() error { return ErrReservedIdent }

// PolicyError is a refusal of a whole request. BHR shows it as
// {"non_field_errors": ["<message>"]}.
type PolicyError struct {
	Message string
	Err     error
}

func (e *PolicyError) Error() string { return e.Message }
func (e *PolicyError) Unwrap() error { return e.Err }

// BatchError reports the per-item errors of an all-or-nothing batch
// (mblock). Items is as long as the batch; nil means that item was valid.
type BatchError struct {
	Items []error
}

func (e *BatchError) Error() string {
	n := 0
	first := -1
	for i, err := range e.Items {
		if err != nil {
			n++
			if first < 0 {
				first = i
			}
		}
	}
	if n == 0 {
		return "batch rejected"
	}
	return fmt.Sprintf("%d of %d items invalid; item %d: %v", n, len(e.Items), first, e.Items[first])
}

func fieldErr(field string, sentinel error, format string, args ...any) error {
	return &FieldError{Field: field, Message: fmt.Sprintf(format, args...), Err: sentinel}
}

func policyErr(sentinel error, format string, args ...any) error {
	return &PolicyError{Message: fmt.Sprintf(format, args...), Err: sentinel}
}

// NotBlockedError names the cidrs of a bulk unblock that have no expected
// block; it wraps ErrNotBlocked.
type NotBlockedError struct {
	CIDRs []netip.Prefix
}

func (e *NotBlockedError) Error() string {
	parts := make([]string, len(e.CIDRs))
	for i, c := range e.CIDRs {
		parts[i] = c.String()
	}
	return strings.Join(parts, ", ") + ": not currently blocked"
}

func (e *NotBlockedError) Unwrap() error { return ErrNotBlocked }
