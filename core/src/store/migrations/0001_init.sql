-- Version 1: records as Automerge documents with materialized query tables.
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE grids (
    code   TEXT PRIMARY KEY,
    name   TEXT NOT NULL,
    level  TEXT NOT NULL,
    kind   TEXT NOT NULL,
    parent TEXT
);
CREATE TABLE people (
    id    TEXT PRIMARY KEY,
    name  TEXT NOT NULL,
    phone TEXT NOT NULL,
    role  TEXT NOT NULL,
    grids TEXT NOT NULL
);
CREATE TABLE records (
    id            TEXT PRIMARY KEY,
    kind          TEXT NOT NULL,
    grid          TEXT NOT NULL,
    doc           BLOB NOT NULL,
    chunk_count   INTEGER NOT NULL DEFAULT 0,
    heads         BLOB NOT NULL,
    server_heads  BLOB NOT NULL DEFAULT x'',
    local_rev     INTEGER NOT NULL DEFAULT 0,
    acked_rev     INTEGER NOT NULL DEFAULT 0,
    rejected_rev  INTEGER,
    rejected_code TEXT,
    rejected_reason TEXT,
    corrupt       TEXT,
    updated_at_ms INTEGER NOT NULL
);
CREATE INDEX records_dirty ON records(local_rev, acked_rev) WHERE local_rev > acked_rev;
CREATE INDEX records_grid ON records(grid);
CREATE TABLE record_chunks (
    id    TEXT NOT NULL,
    n     INTEGER NOT NULL,
    bytes BLOB NOT NULL,
    PRIMARY KEY (id, n)
) WITHOUT ROWID;
CREATE TABLE producers (
    id            TEXT PRIMARY KEY,
    grid          TEXT NOT NULL,
    name          TEXT NOT NULL,
    owner         TEXT NOT NULL,
    phone         TEXT NOT NULL,
    producer_type TEXT NOT NULL,
    status        TEXT NOT NULL,
    review_state  TEXT NOT NULL,
    risk          TEXT NOT NULL,
    last_visit_ms INTEGER,
    updated_at_ms INTEGER NOT NULL
);
CREATE INDEX producers_grid_name ON producers(grid, name);
CREATE TABLE visits (
    id            TEXT PRIMARY KEY,
    producer_id   TEXT NOT NULL,
    grid          TEXT NOT NULL,
    inspector     TEXT NOT NULL,
    started_at_ms INTEGER NOT NULL,
    status        TEXT NOT NULL,
    rect_open     INTEGER NOT NULL,
    rect_deadline TEXT,
    rect_notice   TEXT
);
CREATE INDEX visits_producer ON visits(producer_id, started_at_ms);
CREATE INDEX visits_rect ON visits(rect_open, rect_deadline) WHERE rect_open = 1;
CREATE TABLE templates (
    id          TEXT PRIMARY KEY,
    template_id TEXT NOT NULL,
    version     INTEGER NOT NULL,
    grid        TEXT NOT NULL
);
CREATE TABLE sync_cursors (
    grid TEXT PRIMARY KEY,
    seq  INTEGER NOT NULL
);
