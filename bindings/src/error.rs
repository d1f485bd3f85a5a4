//! The one error type apps see, mapped from the core's detailed error in one place.
//!
//! It carries field names, record kinds and ids, server status codes and reasons, never
//! the values a person typed (a bad phone number is reported as `Invalid{field: "phone"}`).

use std::any::Any;
use std::panic::{catch_unwind, AssertUnwindSafe};

use gridsync_core::sync::protocol::ErrorCode;

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
                code: code.into(),
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

/// Why the server refused a request: the core's `ErrorCode`, one to one. Kotlin, Swift and
/// Python see it as an enum (`ServerErrorCode.DEVICE_REVOKED`, `.deviceRevoked`); the
/// server's wire identifiers are in `docs/protocol.md`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, uniffi::Enum)]
pub enum ServerErrorCode {
    /// `401`: the device was revoked; enrol again with a new code. Its server data was
    /// removed from the device; its unsynced edits are kept (`kept_edits`).
    DeviceRevoked,
    /// `401`: the person of this device (or of the enrolment code) is no longer active.
    PersonInactive,
    /// `401`: no credential was sent.
    MissingCredentials,
    /// `401`: a malformed credential, an unknown device or a wrong secret.
    BadCredentials,
    /// `401`: the enrolment code is unknown, used or expired.
    InvalidCode,
    /// `403`: the person may not do this.
    Forbidden,
    /// `429`: the device's request rate limit; the sync waited and tried again already.
    RateLimited,
    /// `429`: too many enrolment attempts from this address; wait a minute.
    EnrolRateLimited,
    /// `429`: too many enrolment attempts from this network; wait a minute.
    EnrolRangeLimited,
    /// `503` or `429`: the server's connection limit.
    TooManyConnections,
    /// `403`: metrics are not served to this address.
    MetricsForbidden,
    /// `400`: no protocol version was sent.
    MissingProtocol,
    /// `400`: the server does not serve this app's protocol version.
    UnsupportedProtocol,
    /// `415`: the wrong content type.
    ContentType,
    /// `400`: a required header is missing.
    MissingHeader,
    /// `400`: a header's value is malformed.
    BadHeader,
    /// `400`: the request body does not decode.
    MalformedBody,
    /// `400`: a value in the request is not acceptable.
    Invalid,
    /// `413`: the request is over the server's limits.
    TooLarge,
    /// `408`: the request body arrived too slowly.
    BodyTimeout,
    /// `400`: the request body broke off.
    BodyRead,
    /// `503`: the request ran out of time on the server; nothing of it was stored.
    TimedOut,
    /// `404`: no such thing in the person's scope.
    NotFound,
    /// `413`: the attachment is larger than the server takes.
    AttachmentTooLarge,
    /// `507`: the device's attachment quota is used up.
    AttachmentQuota,
    /// `422`: the uploaded attachment did not match its reference.
    AttachmentCorrupt,
    /// `409`: the same attachment is being uploaded with another size or type.
    AttachmentDeclaredOtherwise,
    /// `400`: the bytes run past the attachment's length.
    PastEnd,
    /// `409`: the server holds another number of bytes of the attachment.
    OffsetMismatch,
    /// `500`: the server's database failed.
    Storage,
    /// `500`: the request failed inside the server.
    Internal,
    /// A code this app version does not know (a newer server), or an answer without an
    /// error body (a proxy's page): go by `status`.
    Unknown,
}

impl From<ErrorCode> for ServerErrorCode {
    fn from(c: ErrorCode) -> Self {
        use ServerErrorCode as S;
        match c {
            ErrorCode::DeviceRevoked => S::DeviceRevoked,
            ErrorCode::PersonInactive => S::PersonInactive,
            ErrorCode::MissingCredentials => S::MissingCredentials,
            ErrorCode::BadCredentials => S::BadCredentials,
            ErrorCode::InvalidCode => S::InvalidCode,
            ErrorCode::Forbidden => S::Forbidden,
            ErrorCode::RateLimited => S::RateLimited,
            ErrorCode::EnrolRateLimited => S::EnrolRateLimited,
            ErrorCode::EnrolRangeLimited => S::EnrolRangeLimited,
            ErrorCode::TooManyConnections => S::TooManyConnections,
            ErrorCode::MetricsForbidden => S::MetricsForbidden,
            ErrorCode::MissingProtocol => S::MissingProtocol,
            ErrorCode::UnsupportedProtocol => S::UnsupportedProtocol,
            ErrorCode::ContentType => S::ContentType,
            ErrorCode::MissingHeader => S::MissingHeader,
            ErrorCode::BadHeader => S::BadHeader,
            ErrorCode::MalformedBody => S::MalformedBody,
            ErrorCode::Invalid => S::Invalid,
            ErrorCode::TooLarge => S::TooLarge,
            ErrorCode::BodyTimeout => S::BodyTimeout,
            ErrorCode::BodyRead => S::BodyRead,
            ErrorCode::TimedOut => S::TimedOut,
            ErrorCode::NotFound => S::NotFound,
            ErrorCode::AttachmentTooLarge => S::AttachmentTooLarge,
            ErrorCode::AttachmentQuota => S::AttachmentQuota,
            ErrorCode::AttachmentCorrupt => S::AttachmentCorrupt,
            ErrorCode::AttachmentDeclaredOtherwise => S::AttachmentDeclaredOtherwise,
            ErrorCode::PastEnd => S::PastEnd,
            ErrorCode::OffsetMismatch => S::OffsetMismatch,
            ErrorCode::Storage => S::Storage,
            ErrorCode::Internal => S::Internal,
            ErrorCode::Unknown => S::Unknown,
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
        // Every core code has its own binding code, named alike (checked through the
        // derived names, so a new core code without a binding one fails here).
        let mut seen = std::collections::HashSet::new();
        for c in ErrorCode::ALL {
            let b = ServerErrorCode::from(c);
            assert!(seen.insert(b), "{c} and another code map to {b:?}");
            let snake: String = format!("{b:?}")
                .chars()
                .enumerate()
                .flat_map(|(i, ch)| {
                    let lower = ch.to_ascii_lowercase();
                    if ch.is_ascii_uppercase() && i > 0 {
                        vec!['_', lower]
                    } else {
                        vec![lower]
                    }
                })
                .collect();
            assert_eq!(snake, c.as_str());
        }
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
