-- Server schema version 3 (PostgreSQL): query tables, the same as sqlite_0004.sql. Text
-- that pages sort by is in the "C" collation (code point order, as SQLite sorts), so both
-- backends answer every page in the same order.
CREATE TABLE q_producers (
    id            TEXT COLLATE "C" PRIMARY KEY,
    grid          TEXT NOT NULL,
    name          TEXT COLLATE "C" NOT NULL,
    owner         TEXT NOT NULL,
    phone         TEXT NOT NULL,
    credit_code   TEXT,
    id_number     TEXT,
    producer_type TEXT NOT NULL,
    status        TEXT NOT NULL,
    review_state  TEXT NOT NULL,
    review_at_ms  BIGINT,
    risk          TEXT NOT NULL,
    created_by    TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    last_visit_ms BIGINT
);
CREATE INDEX q_producers_grid_name ON q_producers (grid, name);
CREATE INDEX q_producers_grid_updated ON q_producers (grid, updated_at_ms);
CREATE INDEX q_producers_review ON q_producers (review_state, grid, review_at_ms);
CREATE INDEX q_producers_credit_code ON q_producers (credit_code) WHERE credit_code IS NOT NULL;
CREATE INDEX q_producers_id_number ON q_producers (id_number) WHERE id_number IS NOT NULL;
CREATE TABLE q_reviews (
    producer_id TEXT COLLATE "C" NOT NULL,
    step        BIGINT NOT NULL,
    event_id    TEXT NOT NULL,
    grid        TEXT NOT NULL,
    action      TEXT NOT NULL,
    by_person   TEXT NOT NULL,
    at_ms       BIGINT NOT NULL,
    state_after TEXT NOT NULL,
    reason      TEXT,
    PRIMARY KEY (producer_id, step)
);
CREATE INDEX q_reviews_by ON q_reviews (by_person, at_ms);
CREATE TABLE q_visits (
    id                  TEXT COLLATE "C" PRIMARY KEY,
    producer_id         TEXT COLLATE "C" NOT NULL,
    grid                TEXT NOT NULL,
    inspector           TEXT NOT NULL,
    started_at_ms       BIGINT NOT NULL,
    ended_at_ms         BIGINT,
    status              TEXT NOT NULL,
    findings            BIGINT NOT NULL,
    serious_findings    BIGINT NOT NULL,
    rapid_tests         BIGINT NOT NULL,
    failed_tests        BIGINT NOT NULL,
    reviewed_at_ms      BIGINT,
    follow_up_of        TEXT,
    rect_required       BOOLEAN NOT NULL,
    rect_open           BOOLEAN NOT NULL,
    rect_deadline       TEXT COLLATE "C",
    rect_notice         TEXT,
    rect_resolved_at_ms BIGINT,
    updated_at_ms       BIGINT NOT NULL
);
CREATE INDEX q_visits_producer ON q_visits (producer_id, started_at_ms);
CREATE INDEX q_visits_grid ON q_visits (grid, started_at_ms);
CREATE INDEX q_visits_inspector ON q_visits (inspector, started_at_ms);
CREATE INDEX q_visits_rect_open ON q_visits (rect_open, grid, rect_deadline) WHERE rect_open = TRUE;
INSERT INTO server_meta (key, value) VALUES ('query_tables', 'rebuild')
    ON CONFLICT (key) DO UPDATE SET value = excluded.value;
