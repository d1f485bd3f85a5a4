-- Server schema version 7 (SQLite): the query table of township acceptance (达标验收), the
-- county's decision on a township-level grid for a year: one row per township and year,
-- as its record holds it now (a later decision for the same year changes that record, so
-- the row is the latest; the document keeps the earlier ones). Derived data, written in
-- the transaction of each accepted push (storage/query.rs) and rebuilt with the others.
CREATE TABLE q_acceptances (
    id            TEXT PRIMARY KEY,
    grid          TEXT NOT NULL,
    year          INTEGER NOT NULL,
    -- accepted / not_accepted / withdrawn
    decision      TEXT NOT NULL,
    -- YYYY-MM-DD
    decided_on    TEXT NOT NULL,
    decided_by    TEXT NOT NULL,
    note          TEXT NOT NULL,
    updated_at_ms INTEGER NOT NULL
);
CREATE UNIQUE INDEX q_acceptances_grid_year ON q_acceptances(grid, year);
-- A server upgraded with records in it fills the table when it first opens the database.
INSERT INTO server_meta (key, value) VALUES ('query_tables', 'rebuild')
    ON CONFLICT (key) DO UPDATE SET value = excluded.value;
