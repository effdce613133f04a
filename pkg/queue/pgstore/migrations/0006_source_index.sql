-- The web pages list a source's most recent blocks (and the manual ones,
-- sources web and cli): without this index such a page scans the table
-- backwards until it has found a page of them, which for a rare source is
-- the whole table.
CREATE INDEX blocks_source_id ON blocks (source, id);
