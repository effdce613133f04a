package queue

import (
	"errors"
	"fmt"
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
