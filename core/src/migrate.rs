//! The one migration runner of the project: the phone store and both server backends keep
//! their schema steps as lists of SQL scripts and run them through [`Steps::migrate`].
//!
//! Step `i` (0-based) moves a schema from version `i` to `i + 1`. A database reports its
//! version through [`Versioned`] (SQLite files in `PRAGMA user_version`, PostgreSQL in a
//! table of applied versions); the caller opens the transaction, the runner reads the
//! version, refuses a newer schema and runs the missing steps, and the caller commits. So a
//! migration is all or nothing on every backend.

/// A database inside the transaction that migrates it.
pub trait Versioned {
    /// The database's own error.
    type Error;
    /// The schema version recorded (0 for a fresh database).
    fn version(&mut self) -> Result<i64, Self::Error>;
    /// Runs one step's script and records `to_version` as the schema version.
    fn run_step(&mut self, to_version: i64, script: &str) -> Result<(), Self::Error>;
}

/// Why a migration failed.
#[derive(Debug, thiserror::Error)]
pub enum MigrateError<E> {
    /// The database was written by a newer build.
    #[error("{what} schema version {found} is newer than this build supports ({supported})")]
    TooNew {
        /// Which schema (for the message).
        what: &'static str,
        /// Version found.
        found: i64,
        /// Newest version this build knows.
        supported: i64,
    },
    /// The database failed.
    #[error(transparent)]
    Database(E),
}

/// The ordered schema steps of one database family.
#[derive(Debug, Clone, Copy)]
pub struct Steps {
    /// Which schema (named in errors): "phone", "server SQLite", "server PostgreSQL".
    pub what: &'static str,
    /// The scripts, oldest first.
    pub scripts: &'static [&'static str],
}

/// What a migration did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Migrated {
    /// Version found.
    pub from: i64,
    /// Version left.
    pub to: i64,
}

impl Steps {
    /// The newest version.
    pub const fn latest(&self) -> i64 {
        self.scripts.len() as i64
    }

    /// Brings `db` up to the newest version.
    pub fn migrate<V: Versioned>(&self, db: &mut V) -> Result<Migrated, MigrateError<V::Error>> {
        self.migrate_to(db, self.latest())
    }

    /// Brings `db` up to `target` (at most the newest; tests build old schemas with it).
    /// A database already at or past `target` is left alone; one newer than this build is
    /// refused.
    pub fn migrate_to<V: Versioned>(
        &self,
        db: &mut V,
        target: i64,
    ) -> Result<Migrated, MigrateError<V::Error>> {
        let from = db.version().map_err(MigrateError::Database)?;
        if from > self.latest() {
            return Err(MigrateError::TooNew {
                what: self.what,
                found: from,
                supported: self.latest(),
            });
        }
        let to = target.clamp(from, self.latest());
        for v in from..to {
            db.run_step(v + 1, self.scripts[v as usize])
                .map_err(MigrateError::Database)?;
        }
        Ok(Migrated { from, to })
    }
}

/// A SQLite transaction whose schema version lives in `PRAGMA user_version`.
#[derive(Debug)]
pub struct UserVersion<'a>(pub &'a rusqlite::Transaction<'a>);

impl Versioned for UserVersion<'_> {
    type Error = rusqlite::Error;

    fn version(&mut self) -> Result<i64, rusqlite::Error> {
        self.0.query_row("PRAGMA user_version", [], |r| r.get(0))
    }

    fn run_step(&mut self, to_version: i64, script: &str) -> Result<(), rusqlite::Error> {
        self.0.execute_batch(script)?;
        self.0.pragma_update(None, "user_version", to_version)
    }
}

/// Every table, index and trigger of a SQLite database with its SQL, by name: two databases
/// with equal lists have equal schemas ("an upgraded file equals a fresh one").
pub fn sqlite_schema(c: &rusqlite::Connection) -> rusqlite::Result<Vec<(String, String)>> {
    let mut st = c.prepare(
        "SELECT type || ' ' || name, sql FROM sqlite_master WHERE sql IS NOT NULL ORDER BY 1",
    )?;
    let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    rows.collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const STEPS: Steps = Steps {
        what: "test",
        scripts: &[
            "CREATE TABLE a (x INTEGER);",
            "ALTER TABLE a ADD COLUMN y TEXT;",
            "CREATE INDEX a_y ON a (y);",
        ],
    };

    fn at(version: i64) -> rusqlite::Connection {
        let mut c = rusqlite::Connection::open_in_memory().unwrap();
        let tx = c.transaction().unwrap();
        STEPS.migrate_to(&mut UserVersion(&tx), version).unwrap();
        tx.commit().unwrap();
        c
    }

    #[test]
    fn runs_only_the_missing_steps_and_records_the_version() {
        let mut c = at(1);
        c.execute("INSERT INTO a (x) VALUES (7)", []).unwrap();
        let tx = c.transaction().unwrap();
        let m = STEPS.migrate(&mut UserVersion(&tx)).unwrap();
        tx.commit().unwrap();
        assert_eq!(m, Migrated { from: 1, to: 3 });
        assert_eq!(sqlite_schema(&c).unwrap(), sqlite_schema(&at(3)).unwrap());
        let x: i64 = c.query_row("SELECT x FROM a", [], |r| r.get(0)).unwrap();
        assert_eq!(x, 7);
        // Running again does nothing.
        let tx = c.transaction().unwrap();
        let m = STEPS.migrate(&mut UserVersion(&tx)).unwrap();
        assert_eq!(m, Migrated { from: 3, to: 3 });
    }

    #[test]
    fn a_failing_step_leaves_nothing_and_a_newer_schema_is_refused() {
        const BAD: Steps = Steps {
            what: "test",
            scripts: &["CREATE TABLE a (x INTEGER);", "CREATE TABLE a (x INTEGER);"],
        };
        let mut c = rusqlite::Connection::open_in_memory().unwrap();
        {
            let tx = c.transaction().unwrap();
            assert!(matches!(
                BAD.migrate(&mut UserVersion(&tx)),
                Err(MigrateError::Database(_))
            ));
            // Dropped: rolled back.
        }
        assert!(sqlite_schema(&c).unwrap().is_empty());
        c.pragma_update(None, "user_version", 9).unwrap();
        let tx = c.transaction().unwrap();
        match STEPS.migrate(&mut UserVersion(&tx)) {
            Err(MigrateError::TooNew {
                found, supported, ..
            }) => assert_eq!((found, supported), (9, 3)),
            other => panic!("expected TooNew, got {other:?}"),
        }
    }
}
