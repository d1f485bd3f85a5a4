-- Server schema (SQLite) after sqlite_0008.sql: yearly confirmation (年度确认, issue 16).
-- The latest year a producer was confirmed for, 0 when never (derived from the document's
-- `_confirmations`, like every q_ column), and the index of "not confirmed for year Y" per
-- grid.
ALTER TABLE q_producers ADD COLUMN confirmed_year INTEGER NOT NULL DEFAULT 0;
CREATE INDEX q_producers_confirmed ON q_producers (grid, status, confirmed_year);
-- A server upgraded with records in it fills the new column when it first opens.
INSERT INTO server_meta (key, value) VALUES ('query_tables', 'rebuild')
    ON CONFLICT (key) DO UPDATE SET value = excluded.value;
