//! The one error type apps see, mapped from the core's detailed error in one place.
//!
//! It carries field names, record kinds and ids, server status codes and reasons, never
//! the values a person typed (a bad phone number is reported as `Invalid{field: "phone"}`).

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};

#[cfg(test)]
use gridsync_core::sync::protocol::ErrorCode;
pub use gridsync_core::sync::protocol::ServerErrorCode;

/// Everything an app call can fail with. Kotlin: `ApiException.*`; Swift and Python:
/// `ApiError.*`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error, uniffi::Error)]
pub enum ApiError {
    /// A field failed validation; nothing was written.
    #[error("invalid {field}: {problem}")]
    Invalid {
        /// Dotted path of the field (e.g. `phone`, `answers.drug_use`).
        field: String,
        /// What is wrong with it.
        problem: String,
    },
    /// The person using the device may not do this.
    #[error("not permitted: {reason}")]
    Forbidden {
        /// Why not.
        reason: String,
    },
    /// The workflow does not allow this step from the current state.
    #[error("workflow: {reason}")]
    Workflow {
        /// Why not.
        reason: String,
    },
    /// No such record (or other thing) on the device.
    #[error("no such {what}")]
    NotFound {
        /// What was looked for (`producer`, `visit`, `template`, `rejected edit`, ...).
        what: String,
    },
    /// A stored record could not be read and was set aside.
    #[error("record {id} is corrupt and was set aside")]
    Corrupt {
        /// Record id.
        id: String,
    },
    /// The local database failed (disk full, file locked, newer schema, ...).
    #[error("storage: {detail}")]
    Storage {
        /// What failed.
        detail: String,
    },
    /// The server could not be reached or its answer could not be read.
    #[error("network: {detail}")]
    Network {
        /// What failed.
        detail: String,
    },
    /// The server refused the request. Decide on `code` (e.g. `DEVICE_REVOKED`: the device
    /// must enrol again; its server data is gone, its unsynced edits are kept), never on
    /// the text of `detail`.
    #[error("server answered {status} {code:?}: {detail}")]
    Server {
        /// HTTP status.
        status: u16,
        /// Why the server refused, typed; `UNKNOWN` for a code this app version does not
        /// know (a newer server) or an answer without an error body.
        code: ServerErrorCode,
        /// The server's message, for people and logs. (Named `detail`, not `message`: a
        /// field named `message` clashes with `Throwable.message` in the generated
        /// Kotlin.)
        detail: String,
    },
    /// The device has no person set up or is not enrolled with a server.
    #[error("this device is not enrolled")]
    NotEnrolled,
    /// The operation was cancelled through its `SyncHandle`.
    #[error("cancelled")]
    Cancelled,
    /// A bug: an internal error or a panic caught at the boundary.
    #[error("internal error: {detail}")]
    Internal {
        /// What went wrong.
        detail: String,
    },
}

impl From<gridsync_core::Error> for ApiError {
    fn from(e: gridsync_core::Error) -> Self {
        use gridsync_core::Error as E;
        match e {
            E::Invalid(i) => ApiError::Invalid {
                field: i.field,
                problem: i.problem,
            },
            E::Forbidden(reason) => ApiError::Forbidden { reason },
            E::Workflow(reason) => ApiError::Workflow { reason },
            E::NotFound { kind, .. } => ApiError::NotFound {
                what: kind.to_string(),
            },
            E::Corrupt { id, .. } => ApiError::Corrupt { id },
            E::Storage(e) => ApiError::Storage {
                detail: e.to_string(),
            },
            E::SchemaTooNew { found, supported } => ApiError::Storage {
                detail: format!(
                    "the database was written by a newer app (schema {found}, this app reads up to {supported})"
                ),
            },
            E::Document(d) => ApiError::Internal {
                detail: format!("document: {d}"),
            },
            E::Protocol(d) => ApiError::Network {
                detail: format!("protocol: {d}"),
            },
            E::Transport(d) => ApiError::Network { detail: d },
            E::Server {
                status,
                code,
                message,
            } => ApiError::Server {
                status,
                code,
                detail: message,
            },
            E::Cancelled => ApiError::Cancelled,
            E::NotEnrolled(_) => ApiError::NotEnrolled,
            e @ E::Io { .. } => ApiError::Storage {
                detail: e.to_string(),
            },
        }
    }
}

/// Runs one exported call so that a panic inside it becomes `ApiError::Internal` instead
/// of crossing the FFI boundary. Every exported function and method goes through here.
pub(crate) fn guard<T>(f: impl FnOnce() -> Result<T, ApiError>) -> Result<T, ApiError> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(result) => result,
        Err(payload) => Err(ApiError::Internal {
            detail: format!("panic: {}", panic_text(payload.as_ref())),
        }),
    }
}

/// The message of a panic payload, cut to a sane length.
fn panic_text(payload: &(dyn Any + Send)) -> String {
    let text = if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic payload".to_string()
    };
    text.chars().take(300).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_errors_map_without_values() {
        let e: ApiError =
            gridsync_core::Error::from(gridsync_core::validate::Invalid::new("phone", "bad"))
                .into();
        assert_eq!(
            e,
            ApiError::Invalid {
                field: "phone".into(),
                problem: "bad".into()
            }
        );
        let e: ApiError = gridsync_core::Error::NotFound {
            kind: "producer",
            id: "p1".into(),
        }
        .into();
        assert_eq!(
            e,
            ApiError::NotFound {
                what: "producer".into()
            }
        );
        let e: ApiError = gridsync_core::Error::Corrupt {
            id: "r1".into(),
            detail: "bytes of 张三".into(),
        }
        .into();
        assert!(!e.to_string().contains("张三"), "{e}");
        let e: ApiError = gridsync_core::Error::NotEnrolled("no person".into()).into();
        assert_eq!(e, ApiError::NotEnrolled);
        let e: ApiError = gridsync_core::Error::io(
            "writing attachment ab",
            std::io::Error::from_raw_os_error(28),
        )
        .into();
        assert!(
            matches!(&e, ApiError::Storage { detail } if detail.starts_with("writing attachment ab: ")),
            "{e}"
        );
    }

    #[test]
    fn server_errors_keep_their_typed_code() {
        let e: ApiError = gridsync_core::Error::Server {
            status: 401,
            code: ErrorCode::DeviceRevoked,
            message: "this device was revoked at 5 ms: lost".into(),
        }
        .into();
        assert_eq!(
            e,
            ApiError::Server {
                status: 401,
                code: ServerErrorCode::DeviceRevoked,
                detail: "this device was revoked at 5 ms: lost".into(),
            }
        );
    }

    #[test]
    fn guard_turns_a_panic_into_internal() {
        let r: Result<(), ApiError> = guard(|| panic!("boom {}", 42));
        match r {
            Err(ApiError::Internal { detail }) => assert!(detail.contains("boom 42"), "{detail}"),
            other => panic!("expected Internal, got {other:?}"),
        }
        assert_eq!(guard(|| Ok(7)), Ok(7));
    }
}
