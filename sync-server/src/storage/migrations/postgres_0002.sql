-- Server schema version 2 (PostgreSQL): attachments (docs/attachments.md). Same tables as
-- sqlite_0003.sql, and the bytes as chunk rows (as they arrived), so that several
-- instances serve the same attachments.
CREATE TABLE attachments (
    sha256          TEXT PRIMARY KEY,
    size            BIGINT NOT NULL,
    mime            TEXT NOT NULL,
    held            BIGINT NOT NULL,
    complete        BOOLEAN NOT NULL,
    uploaded_by     TEXT NOT NULL,
    created_at_ms   BIGINT NOT NULL,
    updated_at_ms   BIGINT NOT NULL,
    completed_at_ms BIGINT
);
CREATE INDEX attachments_uploader ON attachments (uploaded_by);
CREATE TABLE attachment_refs (
    sha256    TEXT NOT NULL,
    record_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    size      BIGINT NOT NULL,
    mime      TEXT NOT NULL,
    PRIMARY KEY (sha256, record_id, device_id)
);
CREATE INDEX attachment_refs_record ON attachment_refs (record_id);
CREATE TABLE attachment_chunks (
    sha256       TEXT NOT NULL,
    chunk_offset BIGINT NOT NULL,
    bytes        BYTEA NOT NULL,
    PRIMARY KEY (sha256, chunk_offset)
);
