-- The web pages list a source's most recent blocks (see the PostgreSQL
-- store's 0006_source_index.sql).
CREATE INDEX blocks_source_id ON blocks (source, id);
