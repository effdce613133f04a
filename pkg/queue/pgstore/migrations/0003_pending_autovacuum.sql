-- pending is a queue table: every block is inserted once per ident and
-- deleted when that ident reports it installed. The default autovacuum
-- trigger (50 rows + 20 % of the table) lets dead rows pile up behind a
-- table that is usually almost empty; vacuum it after every 1,000 dead
-- rows and without cost-based throttling.
ALTER TABLE pending SET (
    autovacuum_vacuum_scale_factor = 0.0,
    autovacuum_vacuum_threshold = 1000,
    autovacuum_vacuum_cost_delay = 0
);
