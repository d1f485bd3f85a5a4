-- Server schema version 3 (SQLite): attachments (docs/attachments.md). Metadata and
-- references are rows; the bytes are files under <dir of the database>/attachments/.
CREATE TABLE attachments (
    sha256          TEXT PRIMARY KEY,
    size            INTEGER NOT NULL,
    mime            TEXT NOT NULL,
    held            INTEGER NOT NULL,
    complete        INTEGER NOT NULL,
    uploaded_by     TEXT NOT NULL,
    created_at_ms   INTEGER NOT NULL,
    updated_at_ms   INTEGER NOT NULL,
    completed_at_ms INTEGER
);
CREATE INDEX attachments_uploader ON attachments(uploaded_by);
-- One row per (attachment, record, device that pushed a version of the record naming it,
-- with the size and type the reference declares).
CREATE TABLE attachment_refs (
    sha256    TEXT NOT NULL,
    record_id TEXT NOT NULL,
    device_id TEXT NOT NULL,
    size      INTEGER NOT NULL,
    mime      TEXT NOT NULL,
    PRIMARY KEY (sha256, record_id, device_id)
) WITHOUT ROWID;
CREATE INDEX attachment_refs_record ON attachment_refs(record_id);
