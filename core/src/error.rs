//! The detailed internal error type of the core.

use crate::sync::protocol::ErrorCode;
use crate::validate::Invalid;

/// Everything that can go wrong in the core, with enough detail to act on.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A field failed validation; nothing was written.
    #[error("invalid {0}")]
    Invalid(#[from] Invalid),
    /// The actor may not do this.
    #[error("not permitted: {0}")]
    Forbidden(String),
    /// The workflow does not allow this step from the current state.
    #[error("workflow: {0}")]
    Workflow(String),
    /// No record with that id.
    #[error("no {kind} with id {id}")]
    NotFound {
        /// Record kind.
        kind: &'static str,
        /// The id asked for.
        id: String,
    },
    /// A stored document could not be loaded; the record is set aside.
    #[error("record {id} is corrupt: {detail}")]
    Corrupt {
        /// Record id.
        id: String,
        /// What failed.
        detail: String,
    },
    /// The local database failed. A stored value that does not read (an unknown enum
    /// identifier, a wrong type) comes here too, as a conversion failure whose source is a
    /// [`BadRow`] naming the table, the row and the column: see [`Error::bad_row`].
    #[error("storage: {0}")]
    Storage(#[from] rusqlite::Error),
    /// The database file was written by a newer version of the code.
    #[error("database schema version {found} is newer than this build supports ({supported})")]
    SchemaTooNew {
        /// Version in the file.
        found: i64,
        /// Newest version this build knows.
        supported: i64,
    },
    /// An Automerge operation failed.
    #[error("document: {0}")]
    Document(String),
    /// A wire message could not be decoded or encoded.
    #[error("protocol: {0}")]
    Protocol(String),
    /// The network or the server failed.
    #[error("transport: {0}")]
    Transport(String),
    /// The server refused the request: its status, its typed code and its message.
    #[error("server answered {status} {code}: {message}")]
    Server {
        /// HTTP status.
        status: u16,
        /// The server's error code; [`ErrorCode::Unknown`] for a code this build does not
        /// know or an answer without a readable error body.
        code: ErrorCode,
        /// Message from the server (or the start of an answer that was not an error body).
        message: String,
    },
    /// The operation was cancelled by the caller.
    #[error("cancelled")]
    Cancelled,
    /// The device is not enrolled with a server.
    #[error("not enrolled: {0}")]
    NotEnrolled(String),
    /// A file beside the database (an attachment's bytes) could not be written or read:
    /// a full disk, a directory that cannot be written. Nothing was recorded.
    #[error("{context}: {source}")]
    Io {
        /// What was being done (`writing attachment <sha256>`).
        context: String,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
}

/// A stored value that does not read: the row (table and key) and column it sits in.
/// Carried as the source of a [`rusqlite::Error::FromSqlConversionFailure`] inside
/// [`Error::Storage`]; never replaced by a default.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{table} row {key}, column {column}: {detail}")]
pub struct BadRow {
    /// Table (`grids`, `people`, `records`, `producers`, `visits`, `kept_edits`, ...).
    pub table: &'static str,
    /// The row's key: grid code, person id or record id.
    pub key: String,
    /// Column name.
    pub column: String,
    /// What is wrong with the value (e.g. `'planet' is not a grid level`).
    pub detail: String,
}

impl Error {
    /// The bad stored value behind this error, if that is what it is.
    pub fn bad_row(&self) -> Option<&BadRow> {
        match self {
            Error::Storage(rusqlite::Error::FromSqlConversionFailure(_, _, e)) => e.downcast_ref(),
            _ => None,
        }
    }
}

impl Error {
    /// An [`Error::Io`] for `source` while doing `context`.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }

    /// Whether this is a full disk (or a quota on it).
    pub fn is_disk_full(&self) -> bool {
        matches!(self, Error::Io { source, .. } if source.raw_os_error() == Some(28) || source.kind() == std::io::ErrorKind::StorageFull)
    }
}

impl From<automerge::AutomergeError> for Error {
    fn from(e: automerge::AutomergeError) -> Self {
        Error::Document(e.to_string())
    }
}

/// Result with the core's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;
