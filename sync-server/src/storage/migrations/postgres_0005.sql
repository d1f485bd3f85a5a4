-- Server schema version 5 (PostgreSQL), the same as sqlite_0006.sql: query tables of the
-- rapid tests and findings of visits, for the dashboard's figures and exports. Derived
-- data, written with q_visits and rebuilt with it.
CREATE TABLE q_tests (
    visit_id     TEXT COLLATE "C" NOT NULL,
    pos          BIGINT NOT NULL,
    grid         TEXT NOT NULL,
    item         TEXT COLLATE "C" NOT NULL,
    verdict      TEXT NOT NULL,
    tested_at_ms BIGINT NOT NULL,
    PRIMARY KEY (visit_id, pos)
);
CREATE INDEX q_tests_grid ON q_tests (grid, tested_at_ms);
CREATE TABLE q_findings (
    visit_id       TEXT COLLATE "C" NOT NULL,
    pos            BIGINT NOT NULL,
    grid           TEXT NOT NULL,
    item_id        TEXT COLLATE "C",
    severity       TEXT NOT NULL,
    recorded_at_ms BIGINT NOT NULL,
    PRIMARY KEY (visit_id, pos)
);
CREATE INDEX q_findings_grid ON q_findings (grid, recorded_at_ms);
INSERT INTO server_meta (key, value) VALUES ('query_tables', 'rebuild')
    ON CONFLICT (key) DO UPDATE SET value = excluded.value;
