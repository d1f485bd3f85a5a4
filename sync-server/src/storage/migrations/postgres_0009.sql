-- Server schema (PostgreSQL) after postgres_0008.sql, the same as sqlite_0010.sql:
-- livestock scale thresholds per league (规模养殖场标准, issue 16), and the producers'
-- assessment against them in q_producers.
CREATE TABLE scale_thresholds (
    league        TEXT COLLATE "C" PRIMARY KEY,
    overrides     TEXT NOT NULL,
    updated_at_ms BIGINT NOT NULL
);
ALTER TABLE q_producers ADD COLUMN scale_farm BOOLEAN NOT NULL DEFAULT false;
ALTER TABLE q_producers ADD COLUMN scale_mismatch BOOLEAN NOT NULL DEFAULT false;
INSERT INTO server_meta (key, value) VALUES ('query_tables', 'rebuild')
    ON CONFLICT (key) DO UPDATE SET value = excluded.value;
