-- Version 2: configurable patrol intervals and edits kept after a grid was lost.
CREATE TABLE patrol_intervals (
    producer_type TEXT NOT NULL,
    risk          TEXT NOT NULL,
    days          INTEGER NOT NULL CHECK (days > 0),
    PRIMARY KEY (producer_type, risk)
) WITHOUT ROWID;
CREATE TABLE kept_edits (
    id        TEXT PRIMARY KEY,
    kind      TEXT NOT NULL,
    grid      TEXT NOT NULL,
    doc       BLOB NOT NULL,
    reason    TEXT NOT NULL,
    kept_at_ms INTEGER NOT NULL
);
CREATE INDEX producers_due ON producers(status, last_visit_ms);
