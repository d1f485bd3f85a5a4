-- Server schema version 1 (SQLite).
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
    active INTEGER NOT NULL DEFAULT 1
);
CREATE TABLE enrol_codes (
    code_hash     TEXT PRIMARY KEY,
    person_id     TEXT NOT NULL,
    created_by    TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    expires_at_ms INTEGER NOT NULL,
    used_at_ms    INTEGER
);
CREATE TABLE devices (
    id             TEXT PRIMARY KEY,
    person_id      TEXT NOT NULL,
    name           TEXT NOT NULL,
    secret_hash    TEXT NOT NULL,
    pending_hash   TEXT,
    created_at_ms  INTEGER NOT NULL,
    last_seen_ms   INTEGER,
    revoked_at_ms  INTEGER,
    revoked_reason TEXT
);
CREATE TABLE records (
    id            TEXT PRIMARY KEY,
    kind          TEXT NOT NULL,
    grid          TEXT NOT NULL,
    doc           BLOB NOT NULL,
    heads         BLOB NOT NULL,
    seq           INTEGER NOT NULL,
    grid_since    INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL
);
CREATE INDEX records_feed ON records(grid, seq);
CREATE TABLE changes (
    record_id TEXT NOT NULL,
    seq       INTEGER NOT NULL,
    bytes     BLOB NOT NULL,
    PRIMARY KEY (record_id, seq)
) WITHOUT ROWID;
CREATE TABLE departures (
    grid      TEXT NOT NULL,
    seq       INTEGER NOT NULL,
    record_id TEXT NOT NULL,
    new_grid  TEXT NOT NULL,
    PRIMARY KEY (grid, seq)
) WITHOUT ROWID;
CREATE TABLE feed_heads (
    grid TEXT PRIMARY KEY,
    seq  INTEGER NOT NULL
);
-- One random token per feed entry: a cursor names the entry it stopped at.
CREATE TABLE feed_log (
    grid  TEXT NOT NULL,
    seq   INTEGER NOT NULL,
    token INTEGER NOT NULL,
    PRIMARY KEY (grid, seq)
) WITHOUT ROWID;
CREATE TABLE audit (
    id        INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms     INTEGER NOT NULL,
    person_id TEXT NOT NULL,
    device_id TEXT,
    record_id TEXT,
    kind      TEXT,
    grid      TEXT,
    action    TEXT NOT NULL,
    detail    TEXT NOT NULL
);
CREATE INDEX audit_record ON audit(record_id, id);
CREATE INDEX audit_person ON audit(person_id, id);
CREATE INDEX audit_grid ON audit(grid, id);
