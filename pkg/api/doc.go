// Package api serves BHR's HTTP API (see docs/API.md and BHR-COMPAT.md)
// over pkg/queue, with gin: one handler file per resource, one middleware
// per concern, and errors.go mapping domain errors to the bodies BHR
// clients expect ({"field": ["msg"]}, {"non_field_errors": [...]},
// {"detail": "..."}).
//
// Lists and CSV exports are streamed from the store as they are read, so
// that a million blocks never sit in memory; the block queue long-polls on
// the queue's change notification instead of re-querying.
package api
