-- Server schema version 6 (SQLite): query tables of the rapid tests and findings of visits,
-- for the dashboard's figures (tests by item and verdict, findings by checklist item,
-- referrals to enforcement) and exports. Derived data, written with q_visits in the
-- transaction of each accepted push (storage/query.rs) and rebuilt with it; a row's
-- position is its place in the visit's list (ids inside a document are not trusted to be
-- unique).
CREATE TABLE q_tests (
    visit_id     TEXT NOT NULL,
    pos          INTEGER NOT NULL,
    grid         TEXT NOT NULL,
    item         TEXT NOT NULL,
    verdict      TEXT NOT NULL,
    tested_at_ms INTEGER NOT NULL,
    PRIMARY KEY (visit_id, pos)
) WITHOUT ROWID;
CREATE INDEX q_tests_grid ON q_tests(grid, tested_at_ms);
CREATE TABLE q_findings (
    visit_id       TEXT NOT NULL,
    pos            INTEGER NOT NULL,
    grid           TEXT NOT NULL,
    item_id        TEXT,
    severity       TEXT NOT NULL,
    recorded_at_ms INTEGER NOT NULL,
    PRIMARY KEY (visit_id, pos)
) WITHOUT ROWID;
CREATE INDEX q_findings_grid ON q_findings(grid, recorded_at_ms);
-- A server upgraded with visits in it fills the new tables when it first opens.
INSERT INTO server_meta (key, value) VALUES ('query_tables', 'rebuild')
    ON CONFLICT (key) DO UPDATE SET value = excluded.value;
