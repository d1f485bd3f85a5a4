-- Server schema version 1 (PostgreSQL). Same tables and meaning as sqlite_0001.sql.
CREATE TABLE server_meta (
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
    id     TEXT PRIMARY KEY,
    name   TEXT NOT NULL,
    phone  TEXT NOT NULL,
    role   TEXT NOT NULL,
    grids  TEXT NOT NULL,
    active BOOLEAN NOT NULL DEFAULT TRUE
);
CREATE TABLE enrol_codes (
    code_hash     TEXT PRIMARY KEY,
    person_id     TEXT NOT NULL,
    created_by    TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    expires_at_ms BIGINT NOT NULL,
    used_at_ms    BIGINT
);
CREATE TABLE devices (
    id             TEXT PRIMARY KEY,
    person_id      TEXT NOT NULL,
    name           TEXT NOT NULL,
    secret_hash    TEXT NOT NULL,
    pending_hash   TEXT,
    created_at_ms  BIGINT NOT NULL,
    last_seen_ms   BIGINT,
    revoked_at_ms  BIGINT,
    revoked_reason TEXT
);
CREATE TABLE records (
    id            TEXT PRIMARY KEY,
    kind          TEXT NOT NULL,
    grid          TEXT NOT NULL,
    doc           BYTEA NOT NULL,
    heads         BYTEA NOT NULL,
    seq           BIGINT NOT NULL,
    grid_since    BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL
);
CREATE INDEX records_feed ON records (grid, seq);
-- Keyed by grid too: sequences are per grid, and a record may move between grids.
CREATE TABLE changes (
    record_id TEXT NOT NULL,
    grid      TEXT NOT NULL,
    seq       BIGINT NOT NULL,
    bytes     BYTEA NOT NULL,
    PRIMARY KEY (record_id, grid, seq)
);
CREATE TABLE departures (
    grid      TEXT NOT NULL,
    seq       BIGINT NOT NULL,
    record_id TEXT NOT NULL,
    new_grid  TEXT NOT NULL,
    PRIMARY KEY (grid, seq)
);
-- The head sequence of each grid's feed. A push takes its sequences by updating this row,
-- which row-locks it until the push commits: commit order equals sequence order per grid.
CREATE TABLE feed_heads (
    grid TEXT PRIMARY KEY,
    seq  BIGINT NOT NULL
);
-- One random token per feed entry: a cursor names the entry it stopped at.
CREATE TABLE feed_log (
    grid  TEXT NOT NULL,
    seq   BIGINT NOT NULL,
    token BIGINT NOT NULL,
    PRIMARY KEY (grid, seq)
);
CREATE TABLE audit (
    id        BIGSERIAL PRIMARY KEY,
    at_ms     BIGINT NOT NULL,
    person_id TEXT NOT NULL,
    device_id TEXT,
    record_id TEXT,
    kind      TEXT,
    grid      TEXT,
    action    TEXT NOT NULL,
    detail    TEXT NOT NULL
);
CREATE INDEX audit_record ON audit (record_id, id);
CREATE INDEX audit_person ON audit (person_id, id);
CREATE INDEX audit_grid ON audit (grid, id);
