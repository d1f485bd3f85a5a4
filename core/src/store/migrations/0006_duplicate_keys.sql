-- Version 6: the keys of the likely-duplicate check made before a producer is saved
-- (`Store::likely_duplicates`, definitions in `crate::dedupe`), so that a phone holding a
-- whole banner answers it from indexes:
--   dup_credit_code, dup_id_number  the codes as compared (`dedupe::normalize_code`:
--                                   full-width folded, no spaces, upper case), NULL if none;
--   dup_phone                       the phone as compared (`dedupe::normalize_phone`:
--                                   digits, without +86), NULL if fewer than 7 digits;
--   name_core                       the name's identifying core (`dedupe::name_core`),
--                                   '' for none.
-- A tombstone (an entry merged into another) keeps NULL keys and an empty core: it is
-- never offered as a duplicate. A store upgraded to this version fills the columns from
-- the documents when it opens (the query tables are rebuilt).
ALTER TABLE producers ADD COLUMN dup_credit_code TEXT;
ALTER TABLE producers ADD COLUMN dup_id_number TEXT;
ALTER TABLE producers ADD COLUMN dup_phone TEXT;
ALTER TABLE producers ADD COLUMN name_core TEXT NOT NULL DEFAULT '';
CREATE INDEX producers_dup_credit_code ON producers(dup_credit_code) WHERE dup_credit_code IS NOT NULL;
CREATE INDEX producers_dup_id_number ON producers(dup_id_number) WHERE dup_id_number IS NOT NULL;
CREATE INDEX producers_dup_phone ON producers(dup_phone) WHERE dup_phone IS NOT NULL;
-- The names of a grid's neighbourhood are read from this index alone.
CREATE INDEX producers_grid_core ON producers(grid, name_core, id);
