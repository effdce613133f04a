-- bhrd embedded schema, version 1.
--
-- Times are INTEGER unix microseconds UTC: sortable, exact, and the same
-- precision the Store interface promises. NULL unblock_at means indefinite;
-- NULL removed means the entry is still installed.
--
-- AUTOINCREMENT (not plain rowid) because block and entry ids are handed to
-- enforcers and API clients: an id must never be reused after Prune deletes
-- the highest rows.

CREATE TABLE blocks (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    cidr           TEXT    NOT NULL,  -- canonical, masked (netip.Prefix.String)
    family         INTEGER NOT NULL,  -- 4 or 6
    net_lo         BLOB    NOT NULL,  -- first address, 16 bytes (IPv4 as 4-in-6)
    net_hi         BLOB    NOT NULL,  -- last address, 16 bytes
    who            TEXT    NOT NULL,
    source         TEXT    NOT NULL,
    why            TEXT    NOT NULL,
    added          INTEGER NOT NULL,
    unblock_at     INTEGER,
    skip_whitelist INTEGER NOT NULL DEFAULT 0,
    forced_unblock INTEGER NOT NULL DEFAULT 0,
    unblock_who    TEXT    NOT NULL DEFAULT '',
    unblock_why    TEXT    NOT NULL DEFAULT ''
);

-- Exact-cidr lookups (expected / latest block of a cidr, stale entries).
CREATE INDEX blocks_cidr_added ON blocks (cidr, added);
-- Containment queries: a range scan on net_lo within the query network.
CREATE INDEX blocks_family_net_lo ON blocks (family, net_lo);
-- Expected blocks (unblock_at NULL or in the future) without scanning history,
-- and Prune's "ended before cutoff".
CREATE INDEX blocks_unblock_at ON blocks (unblock_at);

CREATE TABLE entries (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    block_id   INTEGER NOT NULL REFERENCES blocks (id) ON DELETE CASCADE,
    ident      TEXT    NOT NULL,
    added      INTEGER NOT NULL,
    removed    INTEGER,
    unblock_at INTEGER,  -- copy of the block's unblock_at
    UNIQUE (block_id, ident)
);

-- The unblock queue of one ident, in unblock_at order.
CREATE INDEX entries_unblock_queue ON entries (ident, unblock_at) WHERE removed IS NULL;
-- "current" blocks and the stale-entry closing of ApplyBlocks.
CREATE INDEX entries_current ON entries (block_id) WHERE removed IS NULL;
-- NextUnblockAt across all idents.
CREATE INDEX entries_next_unblock ON entries (unblock_at) WHERE removed IS NULL AND unblock_at IS NOT NULL;

-- Block-queue bookkeeping. An ident is registered by its first BlockQueue
-- call; from then on every new block gets a pending row for it, which
-- SetBlocked deletes. The block queue is then a walk of the pending rows of
-- one ident instead of an anti-join of every expected block against the
-- entries, which stays fast however many blocks are already set blocked.
--
-- pending has no foreign key and no index on block_id on purpose: both
-- would cost every insert, and the rare deletes by block (UnblockNow) go
-- through the primary key once per ident. Rows of blocks that are no longer
-- expected are dead (such a block never becomes expected again); Prune
-- deletes them before it deletes any block, so no row outlives its block.
CREATE TABLE idents (
    name TEXT PRIMARY KEY
) WITHOUT ROWID;

CREATE TABLE pending (
    ident    TEXT    NOT NULL,
    block_id INTEGER NOT NULL,
    PRIMARY KEY (ident, block_id)
) WITHOUT ROWID;


CREATE TABLE whitelist (
    id    INTEGER PRIMARY KEY AUTOINCREMENT,
    cidr  TEXT    NOT NULL,
    who   TEXT    NOT NULL,
    why   TEXT    NOT NULL,
    added INTEGER NOT NULL
);

CREATE TABLE source_blacklist (
    id     INTEGER PRIMARY KEY AUTOINCREMENT,
    source TEXT    NOT NULL UNIQUE,
    who    TEXT    NOT NULL,
    why    TEXT    NOT NULL,
    added  INTEGER NOT NULL
);

CREATE TABLE users (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    username      TEXT    NOT NULL UNIQUE,
    password_hash TEXT    NOT NULL DEFAULT '',
    roles         TEXT    NOT NULL DEFAULT '[]',  -- JSON array of role names
    disabled      INTEGER NOT NULL DEFAULT 0,
    created       INTEGER NOT NULL
);

CREATE TABLE tokens (
    id      INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,
    name    TEXT    NOT NULL,
    hash    TEXT    NOT NULL UNIQUE,
    created INTEGER NOT NULL,
    revoked INTEGER
);

CREATE INDEX tokens_user ON tokens (user_id);
