-- Server schema (sqlite) after sqlite_0010.sql: possible duplicates among producers (疑似重复,
-- issue 16). Derived from the documents like every q_ column: the normalised phone and the
-- name core the server's duplicate check looks up (gridsync_core::dedupe), the entry a
-- tombstone was merged into, and the number of open possible-duplicate marks.
ALTER TABLE q_producers ADD COLUMN phone_norm TEXT;
ALTER TABLE q_producers ADD COLUMN name_core TEXT NOT NULL DEFAULT '';
ALTER TABLE q_producers ADD COLUMN merged_into TEXT;
ALTER TABLE q_producers ADD COLUMN open_duplicates INTEGER NOT NULL DEFAULT 0;
CREATE INDEX q_producers_phone_norm ON q_producers (phone_norm) WHERE phone_norm IS NOT NULL;
CREATE INDEX q_producers_grid_core ON q_producers (grid, name_core);
CREATE INDEX q_producers_open_duplicates ON q_producers (grid) WHERE open_duplicates > 0;
CREATE INDEX q_producers_merged_into ON q_producers (merged_into) WHERE merged_into IS NOT NULL;
-- A server upgraded with records in it fills the new columns when it first opens.
INSERT INTO server_meta (key, value) VALUES ('query_tables', 'rebuild')
    ON CONFLICT (key) DO UPDATE SET value = excluded.value;
