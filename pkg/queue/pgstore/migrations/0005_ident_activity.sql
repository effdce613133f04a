-- Idents that stop asking stop costing block writes. An ident is active
-- while it polls its block queue (last_seen, refreshed at most every few
-- seconds); one that has not asked for store.ident_idle_after is marked
-- inactive, and new blocks are no longer queued for it. When it asks
-- again it is active again, and the blocks it may have missed, those with
-- ids in (backfill_after, backfill_upto], are queued for it a chunk per
-- call. A new ident starts with the whole table in that range. Both
-- switches take the idents lock exclusively, so no block insert is in
-- flight while the range is fixed. backfill_upto NULL: nothing to catch
-- up (this replaces ready).
ALTER TABLE idents
    ADD COLUMN last_seen timestamptz,
    ADD COLUMN active boolean NOT NULL DEFAULT true,
    ADD COLUMN backfill_after bigint NOT NULL DEFAULT 0,
    ADD COLUMN backfill_upto bigint;
UPDATE idents SET last_seen = added;
UPDATE idents SET backfill_upto = (SELECT coalesce(max(id), 0) FROM blocks) WHERE NOT ready;
ALTER TABLE idents DROP COLUMN ready;
ALTER TABLE idents ALTER COLUMN last_seen SET NOT NULL;
ALTER TABLE idents ALTER COLUMN last_seen SET DEFAULT now();
