-- Server schema version 4 (SQLite): query tables, the materialized rows of producers, their
-- review steps and visits (with their rectifications) that the desk console's pages read.
-- Derived data: written in the transaction of each accepted push (storage/query.rs), rebuilt
-- from the documents by `gridsync-server admin rebuild-query-tables`. Templates have none.
CREATE TABLE q_producers (
    id            TEXT PRIMARY KEY,
    grid          TEXT NOT NULL,
    name          TEXT NOT NULL,
    owner         TEXT NOT NULL,
    phone         TEXT NOT NULL,
    credit_code   TEXT,
    id_number     TEXT,
    producer_type TEXT NOT NULL,
    status        TEXT NOT NULL,
    -- The effective state (an approval whose fingerprint no longer matches: submitted).
    review_state  TEXT NOT NULL,
    -- When the last review step was taken (how long an entry has waited in a queue).
    review_at_ms  INTEGER,
    risk          TEXT NOT NULL,
    created_by    TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL,
    -- Start of its latest visit (kept by every write of a visit of it).
    last_visit_ms INTEGER
);
CREATE INDEX q_producers_grid_name ON q_producers(grid, name);
CREATE INDEX q_producers_grid_updated ON q_producers(grid, updated_at_ms);
CREATE INDEX q_producers_review ON q_producers(review_state, grid, review_at_ms);
CREATE INDEX q_producers_credit_code ON q_producers(credit_code) WHERE credit_code IS NOT NULL;
CREATE INDEX q_producers_id_number ON q_producers(id_number) WHERE id_number IS NOT NULL;
-- Every step of a producer's review history, in order.
CREATE TABLE q_reviews (
    producer_id TEXT NOT NULL,
    step        INTEGER NOT NULL,
    event_id    TEXT NOT NULL,
    grid        TEXT NOT NULL,
    action      TEXT NOT NULL,
    by_person   TEXT NOT NULL,
    at_ms       INTEGER NOT NULL,
    state_after TEXT NOT NULL,
    reason      TEXT,
    PRIMARY KEY (producer_id, step)
) WITHOUT ROWID;
CREATE INDEX q_reviews_by ON q_reviews(by_person, at_ms);
CREATE TABLE q_visits (
    id                  TEXT PRIMARY KEY,
    producer_id         TEXT NOT NULL,
    grid                TEXT NOT NULL,
    inspector           TEXT NOT NULL,
    started_at_ms       INTEGER NOT NULL,
    ended_at_ms         INTEGER,
    status              TEXT NOT NULL,
    findings            INTEGER NOT NULL,
    serious_findings    INTEGER NOT NULL,
    rapid_tests         INTEGER NOT NULL,
    failed_tests        INTEGER NOT NULL,
    reviewed_at_ms      INTEGER,
    follow_up_of        TEXT,
    -- The rectification ordered by the visit (one per visit), if any.
    rect_required       INTEGER NOT NULL,
    rect_open           INTEGER NOT NULL,
    rect_deadline       TEXT,
    rect_notice         TEXT,
    rect_resolved_at_ms INTEGER,
    updated_at_ms       INTEGER NOT NULL
);
CREATE INDEX q_visits_producer ON q_visits(producer_id, started_at_ms);
CREATE INDEX q_visits_grid ON q_visits(grid, started_at_ms);
CREATE INDEX q_visits_inspector ON q_visits(inspector, started_at_ms);
CREATE INDEX q_visits_rect_open ON q_visits(rect_open, grid, rect_deadline) WHERE rect_open = TRUE;
-- A server upgraded with records in it fills the tables when it first opens the database.
INSERT INTO server_meta (key, value) VALUES ('query_tables', 'rebuild')
    ON CONFLICT (key) DO UPDATE SET value = excluded.value;
