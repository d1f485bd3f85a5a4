-- Server schema version 6 (PostgreSQL), the same as sqlite_0007.sql: the query table of
-- township acceptance (达标验收), one row per township and year, as its record holds it now.
CREATE TABLE q_acceptances (
    id            TEXT COLLATE "C" PRIMARY KEY,
    grid          TEXT COLLATE "C" NOT NULL,
    year          BIGINT NOT NULL,
    decision      TEXT NOT NULL,
    decided_on    TEXT COLLATE "C" NOT NULL,
    decided_by    TEXT NOT NULL,
    note          TEXT NOT NULL,
    updated_at_ms BIGINT NOT NULL
);
CREATE UNIQUE INDEX q_acceptances_grid_year ON q_acceptances (grid, year);
INSERT INTO server_meta (key, value) VALUES ('query_tables', 'rebuild')
    ON CONFLICT (key) DO UPDATE SET value = excluded.value;
