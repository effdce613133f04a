// Package pgstore is the PostgreSQL queue.Store (and auth.Store), the
// production store: several bhrd processes may share one database.
//
// Concurrency. ApplyBlocks serialises writers per cidr with transaction
// advisory locks on a hash of each cidr, taken in sorted order so that
// overlapping batches cannot deadlock; writers on different cidrs never
// wait for each other. A block is queued for an ident by a row in pending.
// Block-creating transactions hold a shared advisory lock while they add
// pending rows for the known idents; the registration of a new ident takes
// it exclusively, then backfills once it is visible to every later block
// writer, so a block is never missed by an ident that registers at the same
// moment, and block creation stalls only for the registration's insert.
//
// Plans. Sessions run with plan_cache_mode=force_generic_plan (the hot
// statements are planned once per connection) and without parallel
// workers; statements whose plan must fit their values are sent with the
// values inlined. See Open.
//
// Round trips. A batch of cidrs never blocked before (the usual block)
// is written in one round trip: the plan for empty states, then the locks
// and an insert that writes only if none of the cidrs has a block, in one
// implicit transaction. Otherwise each ApplyBlocks is two round trips,
// however large the batch: BEGIN, the locks and the reads of every cidr's
// state are pipelined in one; the set-based writes and COMMIT in the
// other. Batches of more than 1024 cidrs take one exclusive lock
// instead of a lock per cidr, not to exhaust PostgreSQL's lock table.
// Operations that must check ids (SetBlocked, SetUnblocked) check and
// write in a single statement.
//
// Change notification. Writes that may give an enforcer work notify
// channel bhrd_changes with payload "blocks" (the frequent ones, ApplyBlocks
// and SetBlocked, after their commit, from a goroutine that sends at most
// one per 2 ms: see runNotifier;
// UnblockNow in its transaction); whitelist and source blacklist writes
// notify "whitelist" in theirs.
// ListenChanges delivers them.
//
// Schema. Versioned SQL files in migrations/, applied by Migrate through
// internal/migrate; the applied versions are in bhrd_schema_migrations.
package pgstore
