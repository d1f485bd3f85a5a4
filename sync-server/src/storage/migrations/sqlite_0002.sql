-- Server schema version 2 (SQLite): change chunks are keyed by grid too. Sequences are per
-- grid, so a record that moved to another grid could meet one of its own old sequence
-- numbers there (a unique-key failure on push), and a pull after a cursor could pick up
-- changes the record got while it was in another grid. Old rows take the record's grid.
CREATE TABLE changes_v2 (
    record_id TEXT NOT NULL,
    grid      TEXT NOT NULL,
    seq       INTEGER NOT NULL,
    bytes     BLOB NOT NULL,
    PRIMARY KEY (record_id, grid, seq)
) WITHOUT ROWID;
INSERT INTO changes_v2 (record_id, grid, seq, bytes)
    SELECT c.record_id, COALESCE(r.grid, ''), c.seq, c.bytes
    FROM changes c LEFT JOIN records r ON r.id = c.record_id;
DROP TABLE changes;
ALTER TABLE changes_v2 RENAME TO changes;
