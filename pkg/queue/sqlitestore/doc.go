// Package sqlitestore is the embedded queue.Store (and auth.Store): one
// SQLite file through the pure-Go modernc.org/sqlite driver, so that a small
// site and "make run" need no database server.
//
// SQLite has a single writer. The store makes that explicit instead of
// letting connections fight over the lock: every write goes through one
// connection (BEGIN IMMEDIATE), so writers queue in Go, and reads use a
// separate pool of read-only connections that, in WAL mode, never block and
// are never blocked by the writer. Because every write transaction is
// serialised, ApplyBlocks needs no per-cidr lock to be race free.
//
// It is meant for one bhrd process: it implements no queue.ChangeListener,
// since the Service notifies its own enforcers in-process.
package sqlitestore
