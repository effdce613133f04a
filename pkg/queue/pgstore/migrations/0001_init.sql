-- Queue schema: blocks (history, never changed except to move their end
-- or force them off), entries (one per ident enforcing a block), the
-- per-ident block-queue bookkeeping, whitelist and source blacklist.

CREATE TABLE blocks (
    id             bigserial   PRIMARY KEY,
    cidr           cidr        NOT NULL,
    who            text        NOT NULL DEFAULT '',
    source         text        NOT NULL DEFAULT '',
    why            text        NOT NULL DEFAULT '',
    added          timestamptz NOT NULL,
    unblock_at     timestamptz,            -- NULL: indefinite
    skip_whitelist boolean     NOT NULL DEFAULT false,
    forced_unblock boolean     NOT NULL DEFAULT false,
    unblock_who    text        NOT NULL DEFAULT '',
    unblock_why    text        NOT NULL DEFAULT ''
);

-- Exact-cidr lookups (the expected and the latest block of a cidr, newest
-- first) and containment (cidr <<= x): the planner turns <<= into a range
-- scan of a btree on inet/cidr, which measured faster than GiST inet_ops
-- for both (see BenchmarkPGListWithin).
CREATE INDEX blocks_cidr ON blocks (cidr, id);

-- Expected blocks are "not forced and unblock_at NULL or after now": a
-- bitmap OR of the NULL and the range part of this index finds them
-- without reading the history.
CREATE INDEX blocks_expected ON blocks (unblock_at) WHERE NOT forced_unblock;

CREATE TABLE entries (
    id         bigserial   PRIMARY KEY,
    block_id   bigint      NOT NULL REFERENCES blocks (id) ON DELETE CASCADE,
    ident      text        NOT NULL,
    added      timestamptz NOT NULL,
    removed    timestamptz,                -- NULL: still installed
    unblock_at timestamptz,                -- copy of the block's
    UNIQUE (block_id, ident)
);

-- The unblock queue of an ident, in order. It also serves the next
-- unblock_at over every ident (one probe per ident). A second index on
-- unblock_at alone would tempt the planner into scanning every ident's due
-- entries for one ident's queue.
CREATE INDEX entries_unblock_queue ON entries (ident, unblock_at, id) WHERE removed IS NULL;
-- "Current": blocks with an open entry.
CREATE INDEX entries_open ON entries (block_id) WHERE removed IS NULL;

-- Idents that have asked for their block queue. A block is queued for an
-- ident by a pending row, written when the block is inserted (for every
-- known ident) or when the ident first asks (for every expected block it
-- has no entry for), and deleted by set_blocked or unblock_now. The queue
-- is then an index range scan of pending instead of an anti-join of every
-- expected block against the ident's entries. ready: the first-time
-- backfill has committed.
CREATE TABLE idents (
    name  text        PRIMARY KEY,
    added timestamptz NOT NULL DEFAULT now(),
    ready boolean     NOT NULL DEFAULT false
);

-- No index on block_id alone: every block insert writes a row per ident,
-- so each index costs on the hottest path; deletes by block probe the
-- primary key once per (few) ident instead.
CREATE TABLE pending (
    ident    text   NOT NULL,
    block_id bigint NOT NULL,
    PRIMARY KEY (ident, block_id)
);

CREATE TABLE whitelist (
    id    bigserial   PRIMARY KEY,
    cidr  cidr        NOT NULL,
    who   text        NOT NULL DEFAULT '',
    why   text        NOT NULL DEFAULT '',
    added timestamptz NOT NULL
);

CREATE TABLE source_blacklist (
    id     bigserial   PRIMARY KEY,
    source text        NOT NULL UNIQUE,
    who    text        NOT NULL DEFAULT '',
    why    text        NOT NULL DEFAULT '',
    added  timestamptz NOT NULL
);

-- bhrd_not_found aborts the statement with SQLSTATE P0002 (no_data_found),
-- which the store maps to queue.ErrNotFound. It lets a single statement
-- check that every id it was given exists and write nothing otherwise,
-- without a round trip to check first.
CREATE FUNCTION bhrd_not_found(msg text) RETURNS boolean
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION USING ERRCODE = 'P0002', MESSAGE = msg;
END
$$;
