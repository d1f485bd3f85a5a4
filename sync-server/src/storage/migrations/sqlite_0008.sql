-- Server schema version 8 (SQLite): what the public grid chart (网格化管理公示牌) shows
-- beyond grids and people. Server-only data: never synced to phones.
-- The supervising body of a township-level grid: name, address, phones.
CREATE TABLE grid_charts (
    code            TEXT PRIMARY KEY,
    agency          TEXT NOT NULL,
    agency_address  TEXT NOT NULL DEFAULT '',
    agency_phone    TEXT NOT NULL,
    -- Complaint and report line (e.g. 12316); empty when none is published.
    complaint_phone TEXT NOT NULL DEFAULT '',
    updated_at_ms   INTEGER NOT NULL
);
-- A person's duties as the chart publishes them; no row: the standard text of the role.
CREATE TABLE person_duties (
    person_id     TEXT PRIMARY KEY,
    duties        TEXT NOT NULL,
    updated_at_ms INTEGER NOT NULL
);
