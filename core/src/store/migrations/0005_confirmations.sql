-- Version 5: yearly confirmations (年度确认). `confirmed_year` is the latest year a
-- producer was confirmed for, 0 when never (so "not confirmed for year Y" is one index
-- range: `confirmed_year < Y`). A store upgraded to this version refills the column from
-- the documents when it opens (documents may already carry confirmations).
ALTER TABLE producers ADD COLUMN confirmed_year INTEGER NOT NULL DEFAULT 0;
CREATE INDEX producers_confirmed ON producers(grid, status, confirmed_year);
