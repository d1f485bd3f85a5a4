//! The gridsync wire protocol, version 4 (see `docs/protocol.md`).
//!
//! Sync bodies are `compress(postcard(message))`: gzip for versions 1 to 3, zstd with the
//! trained dictionary `records-v1` for version 4 ([`super::compress`]). Enrolment and
//! device calls are JSON. Every size is bounded before anything is allocated.
//!
//! Each version appends fields to the end of the request and the response and changes
//! nothing else: version 2 appended `bare_docs` and `docs_digest`, version 3 `page_bytes`
//! and `server_time_ms`; version 4 appended none and changed only how bodies are
//! compressed. An older message is therefore a newer message whose appended fields take
//! their defaults, which is how the server keeps serving version 1 to 3 devices
//! ([`decode_request`], [`encode_response`]).

use serde::{Deserialize, Serialize};

use super::compress::{self, Codec};
use crate::model::{GridNode, Person};
use crate::{Error, Result};

/// The protocol version this build speaks (header `x-gridsync-protocol`).
pub const PROTOCOL_VERSION: u16 = 4;
/// The version the calls other than sync announce (rotate, codes): version 4 changed only
/// how sync bodies are compressed, so they are version 3 calls, which every server since
/// version 3 serves (a phone of this build can still rotate its secret on such a server).
pub const CALLS_PROTOCOL_VERSION: u16 = 3;
/// The last version that appended fields to the messages (version 4 appended none).
const LAST_FIELDS_VERSION: u16 = 3;
/// The oldest protocol version the server still serves.
pub const OLDEST_PROTOCOL_VERSION: u16 = 1;
/// Header that carries the protocol version.
pub const PROTOCOL_HEADER: &str = "x-gridsync-protocol";
/// Media type of sync bodies.
pub const CONTENT_TYPE: &str = "application/x-gridsync";
/// Largest compressed request or response body.
pub const MAX_BODY_BYTES: usize = 8 * 1024 * 1024;
/// Largest body once decompressed.
pub const MAX_DECODED_BYTES: usize = 32 * 1024 * 1024;
/// Most records in one push batch.
pub const MAX_PUSH_RECORDS: usize = 500;
/// Largest change payload of one pushed record.
pub const MAX_RECORD_CHANGE_BYTES: usize = 1024 * 1024;
/// Most records in one pull page.
pub const MAX_PAGE_RECORDS: u32 = 2000;
/// Soft limit of document bytes in one pull page (the largest `page_bytes` the server
/// honours, and what it uses when a request asks for 0).
pub const PAGE_BYTE_BUDGET: usize = 4 * 1024 * 1024;
/// The smallest byte budget of a page the server honours (a page always carries at least
/// one record, whatever its size).
pub const MIN_PAGE_BYTES: u32 = 1024;
/// Most cursors in one request.
pub const MAX_CURSORS: usize = 5000;
/// Largest grid code or record id on the wire.
pub const MAX_ID_LEN: usize = 64;

/// A device's position in one grid's feed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    /// Grid code.
    pub grid: String,
    /// Last sequence applied.
    pub seq: u64,
    /// Token of the feed entry at `seq` (0 at the start). A server whose entry at `seq`
    /// has another token is not the history the device followed: it was restored.
    pub token: u64,
}

/// Local changes of one record that the server has not acknowledged.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushRecord {
    /// Record id.
    pub id: String,
    /// Record kind tag ([`crate::model::RecordKind::tag`]).
    pub kind: u8,
    /// Automerge change chunks not reachable from what the server acknowledged.
    #[serde(with = "serde_bytes_compat")]
    pub changes: Vec<u8>,
    /// The device's heads after these changes (identify them, and become the acked heads).
    pub heads: Vec<[u8; 32]>,
}

/// Why a pushed record was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RejectCode {
    /// The result failed validation.
    Invalid,
    /// The person may not make this change.
    Forbidden,
    /// The workflow does not allow the change.
    Workflow,
    /// The changes depend on changes the server does not have: re-send everything.
    MissingDeps,
    /// The bytes are not a valid record document.
    BadDocument,
    /// The record is larger than the limits.
    TooLarge,
}

impl RejectCode {
    /// Stable identifier.
    pub fn as_str(self) -> &'static str {
        match self {
            RejectCode::Invalid => "invalid",
            RejectCode::Forbidden => "forbidden",
            RejectCode::Workflow => "workflow",
            RejectCode::MissingDeps => "missing_deps",
            RejectCode::BadDocument => "bad_document",
            RejectCode::TooLarge => "too_large",
        }
    }
}

/// The server's answer for one pushed record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum PushOutcome {
    /// Stored durably (or already there).
    Accepted,
    /// Refused; nothing was stored.
    Rejected {
        /// Machine-readable reason.
        code: RejectCode,
        /// Human-readable reason naming the field or rule.
        reason: String,
    },
}

/// Per-record result of a push.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PushResult {
    /// Record id.
    pub id: String,
    /// Outcome.
    pub outcome: PushOutcome,
}

/// One record in a pull page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PullRecord {
    /// Record id.
    pub id: String,
    /// Kind tag.
    pub kind: u8,
    /// Grid whose feed carries it.
    pub grid: String,
    /// Feed sequence of this entry.
    pub seq: u64,
    /// Whether `bytes` is a whole compact document rather than changes since the cursor.
    pub full: bool,
    /// The document or the change chunks.
    #[serde(with = "serde_bytes_compat")]
    pub bytes: Vec<u8>,
    /// The server's heads for the record.
    pub heads: Vec<[u8; 32]>,
}

/// A record that left a grid's feed (moved to another grid).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Departure {
    /// Record id.
    pub id: String,
    /// Grid it left.
    pub grid: String,
    /// Feed sequence of the departure.
    pub seq: u64,
    /// Grid it moved to.
    pub new_grid: String,
}

/// The reference data a device needs: who it is, the grid tree around its scope, people.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reference {
    /// Version tag; the device sends it back and gets nothing while it still matches.
    pub version: String,
    /// The person the device belongs to.
    pub me: Person,
    /// Grid nodes in scope and their ancestors.
    pub grids: Vec<GridNode>,
    /// Grids whose records the device may hold (its scope).
    pub readable: Vec<String>,
    /// Ancestor grids whose checklist templates the device may hold.
    pub template_grids: Vec<String>,
    /// People of the grids in scope (for grid charts).
    pub people: Vec<Person>,
}

/// One sync round trip: push, then pull a page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncRequest {
    /// Server epoch the device last saw (empty if none).
    pub epoch: String,
    /// Version of the reference data the device holds (empty if none).
    pub reference_version: String,
    /// Local changes to push (at most [`MAX_PUSH_RECORDS`]).
    pub push: Vec<PushRecord>,
    /// The device's cursors.
    pub cursors: Vec<Cursor>,
    /// Records whose whole document the device needs (a gap in its history).
    pub want_full: Vec<String>,
    /// Most records the device wants in this page.
    pub page_limit: u32,
    /// (v2) Whether the device takes whole documents bare, without their hashes
    /// ([`crate::sync::bare`]). Version 1 requests decode with `false`.
    pub bare_docs: bool,
    /// (v3) Document bytes the device wants in this page, as the server counts them (each
    /// record's bytes, heads and id); 0 asks for the server's default
    /// ([`PAGE_BYTE_BUDGET`]). Clamped to [`MIN_PAGE_BYTES`]..=[`PAGE_BYTE_BUDGET`].
    /// Version 1 and 2 requests decode with 0.
    pub page_bytes: u32,
}

/// The server's answer to a [`SyncRequest`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SyncResponse {
    /// The server's epoch.
    pub epoch: String,
    /// The device's cursors cannot belong to this server's history (restored from an older
    /// backup): reset cursors and re-send everything.
    pub reset: bool,
    /// Per-record push results, in request order.
    pub results: Vec<PushResult>,
    /// Records of the page, in feed order per grid.
    pub records: Vec<PullRecord>,
    /// Records that left a grid.
    pub departures: Vec<Departure>,
    /// Cursors after this page (only those that moved).
    pub cursors: Vec<Cursor>,
    /// Whether more pages wait.
    pub more: bool,
    /// New reference data, when the device's version is stale.
    pub reference: Option<Reference>,
    /// (v2) When the page holds bare documents: the digest of every bare record's id and
    /// heads in page order ([`crate::sync::bare::PageDigest`]), which the device checks
    /// against the heads it derives before it applies the page.
    pub docs_digest: Option<[u8; 32]>,
    /// (v3) The server's clock when it answered, in milliseconds since the Unix epoch (the
    /// device measures its clock's offset from it). Version 1 and 2 answers lack it and
    /// decode with 0.
    pub server_time_ms: i64,
}

/// Enrolment request (JSON): a one-time code for a device credential.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrollRequest {
    /// The one-time code.
    pub code: String,
    /// A name for the device (e.g. the phone model).
    pub device_name: String,
}

/// Enrolment answer (JSON).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EnrollResponse {
    /// Device id.
    pub device_id: String,
    /// Device secret; the server keeps only its hash.
    pub secret: String,
    /// The person enrolled.
    pub person: Person,
    /// The server's epoch.
    pub epoch: String,
}

/// Credential rotation answer (JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RotateResponse {
    /// The new secret; the old one keeps working until the new one is first used.
    pub secret: String,
}

/// Largest answer to `GET /v1/scale-thresholds` a device reads (a league's overrides are a
/// few hundred bytes).
pub const MAX_SCALE_THRESHOLDS_BYTES: usize = 64 * 1024;

/// Answer to `GET /v1/scale-thresholds` (JSON): the livestock scale thresholds of the
/// device's league ([`crate::scale`]). Not part of the sync messages: the engine asks for
/// it when the reference data it holds changes (`docs/protocol.md`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScaleThresholdsResponse {
    /// The reference version of the device's scope when the server answered (it covers
    /// these thresholds: a change of them changes the version).
    pub reference_version: String,
    /// The league of the device's person: the one league-level ancestor of all of its
    /// grids (`None`: its grids lie in no league or in several; the national table applies).
    pub league: Option<String>,
    /// The league's overrides in their JSON form ([`crate::scale::ScaleOverrides::to_json`];
    /// `{}`: none).
    pub overrides: serde_json::Value,
}

/// Error body (JSON) of every non-2xx answer that has a body: `{"error": CODE, "message":
/// TEXT}`, the same shape on every route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Machine-readable code (its wire identifier, e.g. `device_revoked`). An identifier
    /// this build does not know reads as [`ErrorCode::Unknown`].
    pub error: ErrorCode,
    /// Human-readable message.
    pub message: String,
}

/// Why the server refused a request: the `error` of an [`ErrorBody`].
///
/// The wire identifiers (`snake_case`, [`ErrorCode::as_str`]) are stable: a code is never
/// renamed or reused. A newer server may send a code this build does not know; it reads as
/// [`ErrorCode::Unknown`] (never a decoding failure), and the HTTP status and the message
/// still tell what happened.
///
/// Apps see it under its own name, `ServerErrorCode` (derived through the `uniffi`
/// feature); the rest of the code calls it [`ErrorCode`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "uniffi", derive(uniffi::Enum))]
#[serde(rename_all = "snake_case")]
pub enum ServerErrorCode {
    /// `401`: the device was revoked; it must enrol again with a new code (the phone
    /// removes the server's data and keeps its unsynced edits).
    DeviceRevoked,
    /// `401`: the device's person (or the person of an enrolment code, or the issuer of
    /// one) is no longer active.
    PersonInactive,
    /// `401`: no `Authorization: Bearer DEVICE.SECRET` header.
    MissingCredentials,
    /// `401`: a malformed credential, an unknown device or a wrong secret.
    BadCredentials,
    /// `401`: the enrolment code is unknown, used or expired.
    InvalidCode,
    /// `403`: the person may not do this (issue enrolment codes, enrol an administrator).
    Forbidden,
    /// `429`: the device's request rate limit; `Retry-After` says when to retry.
    RateLimited,
    /// `429`: too many enrolment attempts from this address.
    EnrolRateLimited,
    /// `429`: too many enrolment attempts from this address range.
    EnrolRangeLimited,
    /// `503` (connection limit in total) or `429` (per address): the connection was
    /// closed at once.
    TooManyConnections,
    /// `403`: `/metrics` is served only to loopback and `--metrics-allow` addresses.
    MetricsForbidden,
    /// `400`: no protocol version header.
    MissingProtocol,
    /// `400`: a protocol version this server does not serve.
    UnsupportedProtocol,
    /// `415`: the wrong `Content-Type`.
    ContentType,
    /// `400`: a required header is missing.
    MissingHeader,
    /// `400`: a header's value is malformed.
    BadHeader,
    /// `400`: the body does not decode (not gzip, not the message, not JSON).
    MalformedBody,
    /// `400`: a value in the request is not acceptable (a field too long, an attachment
    /// reference that does not hold).
    Invalid,
    /// `413`: the body (compressed or decompressed) or its counts exceed the limits.
    TooLarge,
    /// `408`: the request body arrived too slowly.
    BodyTimeout,
    /// `400`: the request body could not be read (the link broke off).
    BodyRead,
    /// `503`: the request ran past the server's time limit; nothing of it was stored.
    TimedOut,
    /// `404`: no such thing in the person's scope.
    NotFound,
    /// `413`: the attachment is larger than the server takes.
    AttachmentTooLarge,
    /// `507`: the device's attachment quota would be exceeded.
    AttachmentQuota,
    /// `422`: the uploaded attachment does not match its reference; everything held was
    /// discarded, start again from byte 0.
    AttachmentCorrupt,
    /// `409`: an upload of the same attachment with another size or type is under way.
    AttachmentDeclaredOtherwise,
    /// `400`: the bytes run past the attachment's declared length.
    PastEnd,
    /// `409`: the server holds another number of bytes; continue from its `Upload-Offset`.
    OffsetMismatch,
    /// `500`: the server's database failed.
    Storage,
    /// `500`: the request failed inside the server.
    Internal,
    /// A code this build does not know (sent by a newer server), or an answer without a
    /// readable error body; the status tells what kind of failure it is.
    #[serde(other)]
    Unknown,
}

/// The server's error codes ([`ServerErrorCode`]) by their name in the protocol.
pub type ErrorCode = ServerErrorCode;

impl ErrorCode {
    /// Every code, [`ErrorCode::Unknown`] last.
    pub const ALL: [ErrorCode; 32] = [
        ErrorCode::DeviceRevoked,
        ErrorCode::PersonInactive,
        ErrorCode::MissingCredentials,
        ErrorCode::BadCredentials,
        ErrorCode::InvalidCode,
        ErrorCode::Forbidden,
        ErrorCode::RateLimited,
        ErrorCode::EnrolRateLimited,
        ErrorCode::EnrolRangeLimited,
        ErrorCode::TooManyConnections,
        ErrorCode::MetricsForbidden,
        ErrorCode::MissingProtocol,
        ErrorCode::UnsupportedProtocol,
        ErrorCode::ContentType,
        ErrorCode::MissingHeader,
        ErrorCode::BadHeader,
        ErrorCode::MalformedBody,
        ErrorCode::Invalid,
        ErrorCode::TooLarge,
        ErrorCode::BodyTimeout,
        ErrorCode::BodyRead,
        ErrorCode::TimedOut,
        ErrorCode::NotFound,
        ErrorCode::AttachmentTooLarge,
        ErrorCode::AttachmentQuota,
        ErrorCode::AttachmentCorrupt,
        ErrorCode::AttachmentDeclaredOtherwise,
        ErrorCode::PastEnd,
        ErrorCode::OffsetMismatch,
        ErrorCode::Storage,
        ErrorCode::Internal,
        ErrorCode::Unknown,
    ];

    /// The stable wire identifier (what the `error` field of an [`ErrorBody`] carries).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::DeviceRevoked => "device_revoked",
            ErrorCode::PersonInactive => "person_inactive",
            ErrorCode::MissingCredentials => "missing_credentials",
            ErrorCode::BadCredentials => "bad_credentials",
            ErrorCode::InvalidCode => "invalid_code",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::EnrolRateLimited => "enrol_rate_limited",
            ErrorCode::EnrolRangeLimited => "enrol_range_limited",
            ErrorCode::TooManyConnections => "too_many_connections",
            ErrorCode::MetricsForbidden => "metrics_forbidden",
            ErrorCode::MissingProtocol => "missing_protocol",
            ErrorCode::UnsupportedProtocol => "unsupported_protocol",
            ErrorCode::ContentType => "content_type",
            ErrorCode::MissingHeader => "missing_header",
            ErrorCode::BadHeader => "bad_header",
            ErrorCode::MalformedBody => "malformed_body",
            ErrorCode::Invalid => "invalid",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::BodyTimeout => "body_timeout",
            ErrorCode::BodyRead => "body_read",
            ErrorCode::TimedOut => "timed_out",
            ErrorCode::NotFound => "not_found",
            ErrorCode::AttachmentTooLarge => "attachment_too_large",
            ErrorCode::AttachmentQuota => "attachment_quota",
            ErrorCode::AttachmentCorrupt => "attachment_corrupt",
            ErrorCode::AttachmentDeclaredOtherwise => "attachment_declared_otherwise",
            ErrorCode::PastEnd => "past_end",
            ErrorCode::OffsetMismatch => "offset_mismatch",
            ErrorCode::Storage => "storage",
            ErrorCode::Internal => "internal",
            ErrorCode::Unknown => "unknown",
        }
    }

    /// The code a wire identifier names; [`ErrorCode::Unknown`] for one this build does
    /// not know.
    pub fn from_wire(id: &str) -> ErrorCode {
        ErrorCode::ALL
            .into_iter()
            .find(|c| c.as_str() == id)
            .unwrap_or(ErrorCode::Unknown)
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A sync request body the server refuses before acting on it: the code says which
/// answer it gets ([`ErrorCode::TooLarge`] or [`ErrorCode::MalformedBody`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct BodyError {
    /// [`ErrorCode::TooLarge`] (over the compressed or decompressed limit) or
    /// [`ErrorCode::MalformedBody`].
    pub code: ErrorCode,
    /// What is wrong with it.
    pub message: String,
}

impl From<BodyError> for Error {
    fn from(e: BodyError) -> Self {
        Error::Protocol(e.message)
    }
}

/// Encodes a message as this build's phone sends it: `zstd(postcard(msg))` with the
/// dictionary of [`PROTOCOL_VERSION`] ([`encode_at`]).
pub fn encode<T: Serialize>(msg: &T) -> Result<Vec<u8>> {
    encode_at(msg, PROTOCOL_VERSION)
}

/// Encodes a message compressed as protocol `version` compresses bodies (gzip for 1 to 3,
/// zstd with its dictionary for 4), at the phone's zstd level.
pub fn encode_at<T: Serialize>(msg: &T, version: u16) -> Result<Vec<u8>> {
    let raw = postcard::to_allocvec(msg).map_err(|e| Error::Protocol(format!("encode: {e}")))?;
    compress_body(&raw, version, compress::PHONE_ZSTD_LEVEL)
}

fn compress_body(raw: &[u8], version: u16, zstd_level: i32) -> Result<Vec<u8>> {
    Codec::of(version)
        .compress(raw, zstd_level)
        .map_err(|e| Error::Protocol(format!("compress: {e}")))
}

/// Decodes a body of any version (gzip or zstd, told by its magic number), refusing bodies
/// over the limits. A version 1 to 3 message decodes as one with its appended fields
/// only when they are present: use [`decode_request`] and [`decode_response`] for those.
pub fn decode<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T> {
    let raw = inflate(body)?;
    postcard::from_bytes(&raw).map_err(|e| Error::Protocol(format!("malformed message: {e}")))
}

/// Appends the postcard encoding of the default of each field that versions after
/// `version` appended (every such default encodes as one zero byte: `false`, `0`, `None`).
fn append_defaults(raw: &mut Vec<u8>, version: u16) {
    let missing = LAST_FIELDS_VERSION.saturating_sub(version.max(1));
    raw.extend(std::iter::repeat_n(0u8, missing as usize));
}

/// Encodes a sync request for protocol `version`: without the fields later versions
/// appended (version 2 has no `page_bytes`, version 1 neither that nor `bare_docs`),
/// compressed as that version compresses. A phone that falls back to an older server's
/// version sends this.
pub fn encode_request(req: &SyncRequest, version: u16) -> Result<Vec<u8>> {
    let mut raw =
        postcard::to_allocvec(req).map_err(|e| Error::Protocol(format!("encode: {e}")))?;
    if version < 3 {
        // The last field is a varint of 1 to 5 bytes: drop exactly its encoding.
        let n = postcard::to_allocvec(&req.page_bytes)
            .map_err(|e| Error::Protocol(format!("encode: {e}")))?
            .len();
        raw.truncate(raw.len() - n);
    }
    if version < 2 {
        // `bare_docs` is the single last byte.
        raw.pop();
    }
    compress_body(&raw, version, compress::PHONE_ZSTD_LEVEL)
}

/// Decodes a sync request sent with protocol `version`: an older body is a newer body
/// without the fields later versions appended (v2 `bare_docs = false`, v3
/// `page_bytes = 0`).
pub fn decode_request(body: &[u8], version: u16) -> Result<SyncRequest> {
    Ok(decode_request_body(body, version)?)
}

/// [`decode_request`] with the refusal typed: [`ErrorCode::TooLarge`] for a body over the
/// compressed or decompressed limit, [`ErrorCode::MalformedBody`] for anything else.
///
/// The body's compression is told by its magic number, whatever the version: gzip or zstd
/// with this build's dictionary (a frame naming another dictionary is refused). Answers
/// are compressed strictly as the request's version compresses ([`encode_response`]).
pub fn decode_request_body(
    body: &[u8],
    version: u16,
) -> std::result::Result<SyncRequest, BodyError> {
    let mut raw = inflate_body(body)?;
    append_defaults(&mut raw, version);
    postcard::from_bytes(&raw).map_err(|e| BodyError {
        code: ErrorCode::MalformedBody,
        message: format!("malformed message: {e}"),
    })
}

/// Decodes a sync response sent for protocol `version` (a version 1 body lacks
/// `docs_digest` and `server_time_ms`, a version 2 body `server_time_ms`).
pub fn decode_response(body: &[u8], version: u16) -> Result<SyncResponse> {
    let mut raw = inflate(body)?;
    append_defaults(&mut raw, version);
    postcard::from_bytes(&raw).map_err(|e| Error::Protocol(format!("malformed message: {e}")))
}

/// Encodes a sync response for a device that speaks protocol `version`: version 2 has no
/// `server_time_ms`; version 1 has neither that nor `docs_digest` (and never receives bare
/// documents). Versions 1 to 3 are gzip'd exactly as they always were; version 4 is zstd
/// with its dictionary at the server's level ([`compress::SERVER_ZSTD_LEVEL`]).
pub fn encode_response(resp: &SyncResponse, version: u16) -> Result<Vec<u8>> {
    encode_response_at_level(resp, version, compress::SERVER_ZSTD_LEVEL)
}

/// [`encode_response`] at another zstd level (a gzip'd answer ignores it).
pub fn encode_response_at_level(
    resp: &SyncResponse,
    version: u16,
    zstd_level: i32,
) -> Result<Vec<u8>> {
    let mut raw =
        postcard::to_allocvec(resp).map_err(|e| Error::Protocol(format!("encode: {e}")))?;
    if version < 3 {
        // The last field is a zigzag varint of 1 to 10 bytes: drop exactly its encoding.
        let time = postcard::to_allocvec(&resp.server_time_ms)
            .map_err(|e| Error::Protocol(format!("encode: {e}")))?;
        raw.truncate(raw.len() - time.len());
    }
    if version < 2 {
        if resp.docs_digest.is_some() {
            return Err(Error::Protocol(
                "a version 1 response cannot carry bare documents".into(),
            ));
        }
        // `None` is the single last byte.
        raw.pop();
    }
    compress_body(&raw, version, zstd_level)
}

/// Decompresses a body, refusing bodies over the limits.
fn inflate(body: &[u8]) -> Result<Vec<u8>> {
    Ok(inflate_body(body)?)
}

/// [`inflate`] with the refusal typed. The codec is the one the body's magic number shows;
/// a body with neither magic number is read as gzip, which refuses it as not gzip.
fn inflate_body(body: &[u8]) -> std::result::Result<Vec<u8>, BodyError> {
    Codec::sniff(body).unwrap_or(Codec::Gzip).decompress(body)
}

/// Checks the sizes and identifiers of a request before the server acts on it.
pub fn check_request(req: &SyncRequest) -> std::result::Result<(), String> {
    if req.push.len() > MAX_PUSH_RECORDS {
        return Err(format!(
            "{} records pushed, at most {MAX_PUSH_RECORDS} per request",
            req.push.len()
        ));
    }
    if req.cursors.len() > MAX_CURSORS {
        return Err(format!(
            "{} cursors, at most {MAX_CURSORS}",
            req.cursors.len()
        ));
    }
    if req.want_full.len() > MAX_PAGE_RECORDS as usize {
        return Err(format!(
            "want_full lists {} ids, at most {MAX_PAGE_RECORDS}",
            req.want_full.len()
        ));
    }
    for p in &req.push {
        if p.id.is_empty() || p.id.len() > MAX_ID_LEN {
            return Err("a pushed record id is empty or too long".into());
        }
        if p.changes.len() > MAX_RECORD_CHANGE_BYTES {
            return Err(format!(
                "record {} carries {} bytes of changes, at most {MAX_RECORD_CHANGE_BYTES}",
                p.id,
                p.changes.len()
            ));
        }
        if p.heads.is_empty() || p.heads.len() > 64 {
            return Err(format!("record {} has {} heads", p.id, p.heads.len()));
        }
    }
    for c in &req.cursors {
        if c.grid.is_empty() || c.grid.len() > MAX_ID_LEN {
            return Err("a cursor grid code is empty or too long".into());
        }
    }
    Ok(())
}

/// Serializes byte vectors as one length-prefixed run (postcard's native `bytes`).
mod serde_bytes_compat {
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(v)
            }
        }
        d.deserialize_byte_buf(V)
    }
}

/// gzip of arbitrary bytes, for tests that need bodies that are valid gzip but not valid
/// messages ([`encode_raw_at_for_tests`] for another version's compression).
#[doc(hidden)]
pub fn encode_raw_for_tests(raw: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let _ = std::io::Write::write_all(&mut gz, raw);
    gz.finish().unwrap_or_default()
}

/// Arbitrary bytes compressed as protocol `version` compresses bodies, for tests.
#[doc(hidden)]
pub fn encode_raw_at_for_tests(raw: &[u8], version: u16) -> Vec<u8> {
    compress_body(raw, version, compress::PHONE_ZSTD_LEVEL).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// gzip level 6, as versions 1 to 3 compress.
    fn gzip(raw: &[u8]) -> Result<Vec<u8>> {
        compress_body(raw, 3, 0)
    }

    fn zstd_v4(raw: &[u8]) -> Vec<u8> {
        compress_body(raw, 4, compress::PHONE_ZSTD_LEVEL).unwrap()
    }

    #[test]
    fn request_layout_is_pinned() {
        // Pins the postcard layout of versions 1 to 3: changing it needs a new version.
        let mut req = SyncRequest {
            epoch: "e1".into(),
            reference_version: String::new(),
            push: vec![PushRecord {
                id: "r".into(),
                kind: 1,
                changes: vec![7, 8],
                heads: vec![[1; 32]],
            }],
            cursors: vec![Cursor {
                grid: "g".into(),
                seq: 300,
                token: 5,
            }],
            want_full: vec![],
            page_limit: 2000,
            bare_docs: true,
            page_bytes: 65536,
        };
        let raw = postcard::to_allocvec(&req).unwrap();
        let mut v1 = vec![2, b'e', b'1', 0, 1, 1, b'r', 1, 2, 7, 8, 1];
        v1.extend([1u8; 32]);
        v1.extend([1, 1, b'g', 0xac, 0x02, 5, 0, 0xd0, 0x0f]);
        let mut v2 = v1.clone();
        v2.push(1);
        let mut v3 = v2.clone();
        // page_bytes 65,536 as a varint.
        v3.extend([0x80, 0x80, 0x04]);
        assert_eq!(raw, v3);
        assert_eq!(decode_request(&encode(&req).unwrap(), 3).unwrap(), req);
        // A version 2 device's body decodes with page_bytes = 0 (the server's default).
        req.page_bytes = 0;
        assert_eq!(decode_request(&gzip(&v2).unwrap(), 2).unwrap(), req);
        // A version 1 device's body decodes with bare_docs = false as well.
        req.bare_docs = false;
        assert_eq!(decode_request(&gzip(&v1).unwrap(), 1).unwrap(), req);
        // A body shorter than its version's layout is refused.
        assert!(decode_request(&gzip(&v1).unwrap(), 2).is_err());
        assert!(decode_request(&gzip(&v2).unwrap(), 3).is_err());
        // Version 4 appended no field: its message is version 3's, compressed with zstd.
        req.bare_docs = true;
        req.page_bytes = 65536;
        let v4 = encode_request(&req, 4).unwrap();
        assert!(v4.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]));
        assert_eq!(inflate(&v4).unwrap(), v3);
        assert_eq!(decode_request(&v4, 4).unwrap(), req);
        assert_eq!(encode(&req).unwrap(), v4);
        // A phone that falls back to an older server sends exactly that version's body.
        assert_eq!(encode_request(&req, 3).unwrap(), gzip(&v3).unwrap());
        assert_eq!(encode_request(&req, 2).unwrap(), gzip(&v2).unwrap());
        assert_eq!(encode_request(&req, 1).unwrap(), gzip(&v1).unwrap());
        // The server tells a request's compression by its magic number.
        assert_eq!(decode_request(&gzip(&v3).unwrap(), 4).unwrap(), req);
        assert_eq!(decode_request(&zstd_v4(&v3), 3).unwrap(), req);
    }

    #[test]
    fn response_layout_is_pinned_for_every_version() {
        let mut resp = SyncResponse {
            epoch: "e".into(),
            reset: false,
            results: vec![],
            records: vec![PullRecord {
                id: "p".into(),
                kind: 1,
                grid: "g".into(),
                seq: 3,
                full: true,
                bytes: vec![9],
                heads: vec![],
            }],
            departures: vec![],
            cursors: vec![],
            more: true,
            reference: None,
            docs_digest: Some([4; 32]),
            server_time_ms: 1_764_000_000_123,
        };
        let v1_body = [
            1, b'e', 0, 0, 1, 1, b'p', 1, 1, b'g', 3, 1, 1, 9, 0, 0, 0, 1, 0,
        ];
        let mut v2_body = v1_body.to_vec();
        v2_body.push(1);
        v2_body.extend([4u8; 32]);
        let mut v3_body = v2_body.clone();
        // server_time_ms as a zigzag varint.
        v3_body.extend([0xf6, 0xa1, 0xbf, 0xe9, 0xd6, 0x66]);
        let v3 = encode_response(&resp, 3).unwrap();
        // Versions 1 to 3 are served byte for byte as before version 4: gzip level 6.
        assert_eq!(v3, gzip(&v3_body).unwrap());
        assert_eq!(inflate(&v3).unwrap(), v3_body);
        // Version 4 is the same message in zstd with the dictionary, which names it.
        let v4 = encode_response(&resp, 4).unwrap();
        assert!(v4.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]));
        assert_eq!(
            zstd::zstd_safe::get_dict_id_from_frame(&v4),
            compress::RECORDS_V1.id()
        );
        assert_eq!(inflate(&v4).unwrap(), v3_body);
        assert_eq!(decode_response(&v4, 4).unwrap(), resp);
        assert_eq!(decode::<SyncResponse>(&v3).unwrap(), resp);
        assert_eq!(decode_response(&v3, 3).unwrap(), resp);
        // A version 2 device gets the same answer without the server's time.
        let v2 = encode_response(&resp, 2).unwrap();
        assert_eq!(v2, gzip(&v2_body).unwrap());
        let mut as_v2 = resp.clone();
        as_v2.server_time_ms = 0;
        assert_eq!(decode_response(&v2, 2).unwrap(), as_v2);
        // A negative time (a clock before 1970) drops just as exactly.
        resp.server_time_ms = -5;
        assert_eq!(
            inflate(&encode_response(&resp, 2).unwrap()).unwrap(),
            v2_body
        );
        let mut v3_negative = v2_body.clone();
        v3_negative.push(0x09);
        assert_eq!(
            inflate(&encode_response(&resp, 3).unwrap()).unwrap(),
            v3_negative
        );
        // Bare documents cannot go to a version 1 device.
        assert!(encode_response(&resp, 1).is_err());
        resp.docs_digest = None;
        assert_eq!(
            inflate(&encode_response(&resp, 1).unwrap()).unwrap(),
            v1_body
        );
        let mut as_v1 = resp.clone();
        as_v1.server_time_ms = 0;
        assert_eq!(
            decode_response(&encode_response(&resp, 1).unwrap(), 1).unwrap(),
            as_v1
        );
    }

    #[test]
    fn decode_refuses_garbage_and_bombs() {
        assert!(matches!(
            decode::<SyncRequest>(b"not gzip"),
            Err(Error::Protocol(_))
        ));
        // 40 MB of zeros compresses to a few kB but must not be inflated past the limit.
        let zeros = vec![0u8; MAX_DECODED_BYTES + 1024];
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        std::io::Write::write_all(&mut gz, &zeros).unwrap();
        let bomb = gz.finish().unwrap();
        let e = decode::<SyncRequest>(&bomb).unwrap_err();
        assert!(e.to_string().contains("decompresses"), "{e}");
        // A declared length far beyond the body is refused without allocating it.
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, &[0xff, 0xff, 0xff, 0xff, 0x0f]).unwrap();
        assert!(decode::<SyncRequest>(&gz.finish().unwrap()).is_err());
        // The server's typed refusals: too large before or after inflating, else malformed.
        let code = |body: &[u8]| {
            decode_request_body(body, PROTOCOL_VERSION)
                .unwrap_err()
                .code
        };
        assert_eq!(code(&bomb), ErrorCode::TooLarge);
        assert_eq!(code(&vec![0u8; MAX_BODY_BYTES + 1]), ErrorCode::TooLarge);
        assert_eq!(code(b"not gzip"), ErrorCode::MalformedBody);
        assert_eq!(
            code(&encode_raw_for_tests(&[0xff; 40])),
            ErrorCode::MalformedBody
        );
        let e = decode_request(b"not gzip", PROTOCOL_VERSION).unwrap_err();
        assert!(
            matches!(&e, Error::Protocol(m) if m.starts_with("body is not valid gzip")),
            "{e}"
        );
    }

    /// The refusal of a body as the server types it, at version 4.
    fn refusal(body: &[u8]) -> BodyError {
        decode_request_body(body, 4).unwrap_err()
    }

    #[test]
    fn zstd_bodies_are_bounded_like_gzip_bodies() {
        // 40 MB of zeros compress to a few kB; decoding stops one byte past the limit.
        let zeros = vec![0u8; MAX_DECODED_BYTES + 1024];
        let bomb = zstd_v4(&zeros);
        assert!(bomb.len() < 64 * 1024, "{}", bomb.len());
        let e = refusal(&bomb);
        assert_eq!(e.code, ErrorCode::TooLarge);
        assert!(e.message.contains("decompresses to more than"), "{e}");
        // The same through a frame that does not declare its size.
        let mut enc = zstd::stream::write::Encoder::with_dictionary(
            Vec::new(),
            3,
            compress::RECORDS_V1.bytes,
        )
        .unwrap();
        std::io::Write::write_all(&mut enc, &zeros).unwrap();
        assert_eq!(refusal(&enc.finish().unwrap()).code, ErrorCode::TooLarge);
        // Over the compressed limit before anything is decompressed.
        let mut big = vec![0x28, 0xb5, 0x2f, 0xfd];
        big.resize(MAX_BODY_BYTES + 1, 0);
        assert_eq!(refusal(&big).code, ErrorCode::TooLarge);
    }

    #[test]
    fn zstd_bodies_that_do_not_decode_are_malformed_and_say_why() {
        let good = encode(&SyncRequest {
            epoch: "e".into(),
            reference_version: String::new(),
            push: vec![],
            cursors: vec![],
            want_full: vec![],
            page_limit: 10,
            bare_docs: true,
            page_bytes: 0,
        })
        .unwrap();
        assert!(decode_request_body(&good, 4).is_ok());
        // Compressed with a dictionary this build does not hold (another id in the frame
        // header): named, not decoded.
        let ours = compress::RECORDS_V1.id().unwrap().get().to_le_bytes();
        let at = 5 + good[5..12]
            .windows(4)
            .position(|w| w == ours)
            .expect("the frame names its dictionary");
        let mut foreign = good.clone();
        foreign[at..at + 4].copy_from_slice(&12345u32.to_le_bytes());
        let e = refusal(&foreign);
        assert_eq!(e.code, ErrorCode::MalformedBody);
        assert!(e.message.contains("dictionary id 12345"), "{e}");
        assert!(e.message.contains("records-v1"), "{e}");
        // Truncated anywhere: the frame is incomplete, never a partial message.
        for cut in [4, 6, good.len() / 2, good.len() - 4, good.len() - 1] {
            let e = refusal(&good[..cut]);
            assert_eq!(e.code, ErrorCode::MalformedBody, "cut at {cut}: {e}");
        }
        // A flipped byte fails the frame's checksum (or its structure).
        for i in 6..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x55;
            if let Err(e) = decode_request_body(&bad, 4) {
                assert!(
                    matches!(e.code, ErrorCode::MalformedBody | ErrorCode::TooLarge),
                    "{e}"
                );
            }
        }
        // Garbage after the frame.
        let mut trailing = good.clone();
        trailing.extend(b"trailing");
        assert_eq!(refusal(&trailing).code, ErrorCode::MalformedBody);
        // A frame that asks for a window of 2^31 bytes is refused, not allocated.
        let mut header = vec![0x28, 0xb5, 0x2f, 0xfd, 0x00, (31 - 10) << 3];
        header.extend([0u8; 16]);
        let e = refusal(&header);
        assert_eq!(e.code, ErrorCode::MalformedBody, "{e}");
        assert!(e.message.starts_with("body is not valid zstd"), "{e}");
        // Valid zstd of something that is not a message.
        let e = refusal(&zstd_v4(&[0xff; 40]));
        assert_eq!(e.code, ErrorCode::MalformedBody);
        assert!(e.message.starts_with("malformed message"), "{e}");
        // A frame compressed without a dictionary (it names none) is read without one.
        let plain = zstd::bulk::compress(&inflate(&good).unwrap(), 3).unwrap();
        assert_eq!(zstd::zstd_safe::get_dict_id_from_frame(&plain), None);
        assert!(decode_request_body(&plain, 4).is_ok());
        // Neither gzip nor zstd.
        assert!(refusal(b"\x28\xb5 almost").message.contains("gzip"));
    }

    #[test]
    fn the_dictionary_is_shipped_small_and_loads() {
        let d = &compress::RECORDS_V1;
        assert!(d.bytes.len() <= 112 * 1024, "{} bytes", d.bytes.len());
        assert!(d.id().is_some(), "the dictionary declares no id");
        // It compresses a page of records better than no dictionary at all.
        let page: Vec<u8> = (0..40)
            .flat_map(|i| {
                postcard::to_allocvec(&PullRecord {
                    id: format!("0190e4c2-7a1b-7c3d-9e8f-{i:012}"),
                    kind: 1,
                    grid: "152522-T01-V03".into(),
                    seq: i,
                    full: true,
                    bytes: vec![],
                    heads: vec![],
                })
                .unwrap()
            })
            .collect();
        let plain = zstd::bulk::compress(&page, compress::PHONE_ZSTD_LEVEL).unwrap();
        assert!(zstd_v4(&page).len() <= plain.len());
    }

    #[test]
    fn error_codes_round_trip_with_their_stable_identifiers() {
        // The identifiers servers and phones in the field send today: never renamed.
        let pinned = [
            "device_revoked",
            "person_inactive",
            "missing_credentials",
            "bad_credentials",
            "invalid_code",
            "forbidden",
            "rate_limited",
            "enrol_rate_limited",
            "enrol_range_limited",
            "too_many_connections",
            "metrics_forbidden",
            "missing_protocol",
            "unsupported_protocol",
            "content_type",
            "missing_header",
            "bad_header",
            "malformed_body",
            "invalid",
            "too_large",
            "body_timeout",
            "body_read",
            "timed_out",
            "not_found",
            "attachment_too_large",
            "attachment_quota",
            "attachment_corrupt",
            "attachment_declared_otherwise",
            "past_end",
            "offset_mismatch",
            "storage",
            "internal",
            "unknown",
        ];
        assert_eq!(pinned.len(), ErrorCode::ALL.len());
        let mut seen = std::collections::HashSet::new();
        for (code, id) in ErrorCode::ALL.into_iter().zip(pinned) {
            assert_eq!(code.as_str(), id);
            assert!(seen.insert(id), "{id} twice");
            assert_eq!(ErrorCode::from_wire(id), code);
            assert_eq!(code.to_string(), id);
            // serde's identifier is the same as `as_str`, both ways.
            assert_eq!(serde_json::to_value(code).unwrap(), serde_json::json!(id));
            let body = ErrorBody {
                error: code,
                message: format!("about {id}"),
            };
            let json = serde_json::to_string(&body).unwrap();
            assert_eq!(
                json,
                format!(r#"{{"error":"{id}","message":"about {id}"}}"#)
            );
            assert_eq!(serde_json::from_str::<ErrorBody>(&json).unwrap(), body);
        }
    }

    #[test]
    fn an_error_code_from_a_newer_server_reads_as_unknown() {
        let body: ErrorBody = serde_json::from_str(
            r#"{"error":"quantum_flux","message":"a code from a later version","hint":1}"#,
        )
        .unwrap();
        assert_eq!(body.error, ErrorCode::Unknown);
        assert_eq!(body.message, "a code from a later version");
        assert_eq!(ErrorCode::from_wire("quantum_flux"), ErrorCode::Unknown);
        assert_eq!(ErrorCode::from_wire("Device_Revoked"), ErrorCode::Unknown);
        assert_eq!(ErrorCode::from_wire(""), ErrorCode::Unknown);
        // The body attachment refusals sent before it had one shape (`code` beside `error`).
        let old: ErrorBody = serde_json::from_str(
            r#"{"error":"attachment_corrupt","code":"attachment_corrupt","message":"m"}"#,
        )
        .unwrap();
        assert_eq!(old.error, ErrorCode::AttachmentCorrupt);
    }
}
