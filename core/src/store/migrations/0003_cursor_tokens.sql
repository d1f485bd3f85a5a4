-- Version 3: a cursor remembers the token of the feed entry it stopped at, so that a server
-- restored from an older copy (whose entry at that sequence differs) is detected.
ALTER TABLE sync_cursors ADD COLUMN token INTEGER NOT NULL DEFAULT 0;
