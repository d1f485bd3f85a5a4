-- Version 7: producers merged into another as duplicates (tombstones, issue 16). The entry a
-- tombstone points to, NULL for a live entry: lists of the directory, due patrols and the
-- not-confirmed query leave tombstones out, and a surviving entry's visit history holds the
-- visits of the entries merged into it (nothing is rewritten: the visits keep naming the
-- tombstone). A store upgraded to this version fills the column when it opens (the query
-- tables are rebuilt).
ALTER TABLE producers ADD COLUMN merged_into TEXT;
CREATE INDEX producers_merged_into ON producers(merged_into) WHERE merged_into IS NOT NULL;
