-- Version 4: attachments (docs/attachments.md). The bytes live in files beside the
-- database (`<store file>.attachments/<sha256>`); a row is written only once its file is
-- durable. `state`: pending (recorded here, not yet on the server), uploaded, cached
-- (downloaded). `server_offset` is a hint of the bytes the server confirmed (the server's
-- answer is the truth).
CREATE TABLE attachments (
    sha256 TEXT PRIMARY KEY NOT NULL,
    size INTEGER NOT NULL CHECK (size > 0),
    mime TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('pending', 'uploaded', 'cached')),
    created_at_ms INTEGER NOT NULL,
    last_read_ms INTEGER NOT NULL,
    server_offset INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE INDEX attachments_by_state ON attachments(state, created_at_ms);

-- Which record on this device refers to which attachment (kept by the query-table
-- refresh of every record write): uploads wait for a referring record, garbage collection
-- deletes an uploaded attachment no record refers to, downloads learn size and type.
CREATE TABLE attachment_refs (
    sha256 TEXT NOT NULL,
    record_id TEXT NOT NULL,
    size INTEGER NOT NULL,
    mime TEXT NOT NULL,
    PRIMARY KEY (sha256, record_id)
) WITHOUT ROWID;
CREATE INDEX attachment_refs_record ON attachment_refs(record_id);
