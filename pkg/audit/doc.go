// Package audit owns bhrd's audit log: one JSON line per state change
// (blocks, entries, lists, users, tokens, authentication failures, config
// reloads, BGP sessions), never sampled, with fixed keys on every line so
// that an auditor can reconstruct every decision from the log alone.
// docs/AUDIT.md documents each event; a test keeps the two in step.
//
// A nil *Logger is valid and records nothing, so callers need no checks.
package audit
