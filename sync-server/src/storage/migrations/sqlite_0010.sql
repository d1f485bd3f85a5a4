-- Server schema (SQLite) after sqlite_0009.sql: livestock scale thresholds per league
-- (规模养殖场标准, issue 16). Server-only configuration: phones use the national MARA
-- table of gridsync_core::scale. One row per league grid code with the league's overrides
-- of that table as JSON (gridsync_core::scale::ScaleOverrides::to_json).
CREATE TABLE scale_thresholds (
    league        TEXT PRIMARY KEY,
    overrides     TEXT NOT NULL,
    updated_at_ms INTEGER NOT NULL
);
-- The producer's assessment against its league's thresholds (derived, like every q_ column):
-- a herd at or above a threshold, and such a herd under a type that is not a farm.
ALTER TABLE q_producers ADD COLUMN scale_farm INTEGER NOT NULL DEFAULT 0;
ALTER TABLE q_producers ADD COLUMN scale_mismatch INTEGER NOT NULL DEFAULT 0;
-- A server upgraded with records in it fills the new columns when it first opens.
INSERT INTO server_meta (key, value) VALUES ('query_tables', 'rebuild')
    ON CONFLICT (key) DO UPDATE SET value = excluded.value;
