// Package queue is the heart of bhrd: the BHR domain (blocks, entries,
// idents, whitelist, source blacklist), the rules a block request must pass
// (durations, prefix lengths, whitelist overlap, autoscale, duplicates and
// extend), the per-ident block and unblock queues, and change notification
// for enforcers and long polls.
//
// It knows nothing of HTTP, BGP or netlink. Persistence is behind the Store
// interface; pkg/queue/pgstore and pkg/queue/sqlitestore implement it and
// pkg/queue/queuetest is the conformance suite both must pass.
package queue
