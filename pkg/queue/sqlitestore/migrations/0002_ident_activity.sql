-- Idents that stop asking stop costing block writes (see the PostgreSQL
-- store's 0005_ident_activity.sql): last_seen is refreshed by block-queue
-- calls at most every few seconds; an ident not seen for
-- store.ident_idle_after is marked inactive and new blocks are not queued
-- for it; when it asks again, the blocks with ids in
-- (backfill_after, backfill_upto] are queued for it a chunk per write.
-- Times are microseconds since the epoch; last_seen 0 (idents from before
-- this migration) makes an ident idle at the first sweep.
ALTER TABLE idents ADD COLUMN added INTEGER NOT NULL DEFAULT 0;
ALTER TABLE idents ADD COLUMN last_seen INTEGER NOT NULL DEFAULT 0;
ALTER TABLE idents ADD COLUMN active INTEGER NOT NULL DEFAULT 1;
ALTER TABLE idents ADD COLUMN backfill_after INTEGER NOT NULL DEFAULT 0;
ALTER TABLE idents ADD COLUMN backfill_upto INTEGER;
