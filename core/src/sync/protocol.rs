//! The gridsync wire protocol, version 3 (see `docs/protocol.md`).
//!
//! Sync bodies are `gzip(postcard(message))`; enrolment and device calls are JSON.
//! Every size is bounded before anything is allocated.
//!
//! Each version appends fields to the end of the request and the response and changes
//! nothing else: version 2 appended `bare_docs` and `docs_digest`, version 3 `page_bytes`
//! and `server_time_ms`. An older message is therefore a newer message whose appended
//! fields take their defaults, which is how the server keeps serving version 1 and 2
//! devices ([`decode_request`], [`encode_response`]).

use std::io::Read;

use serde::{Deserialize, Serialize};

use crate::model::{GridNode, Person};
use crate::{Error, Result};

/// The protocol version this build speaks (header `x-gridsync-protocol`).
pub const PROTOCOL_VERSION: u16 = 3;
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

/// Error body (JSON) of every non-2xx answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Machine-readable code.
    pub error: String,
    /// Human-readable message.
    pub message: String,
}

/// Encodes a message as `gzip(postcard(msg))`.
pub fn encode<T: Serialize>(msg: &T) -> Result<Vec<u8>> {
    let raw = postcard::to_allocvec(msg).map_err(|e| Error::Protocol(format!("encode: {e}")))?;
    gzip(&raw)
}

/// Decodes `gzip(postcard(msg))`, refusing bodies over the limits.
pub fn decode<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T> {
    let raw = inflate(body)?;
    postcard::from_bytes(&raw).map_err(|e| Error::Protocol(format!("malformed message: {e}")))
}

/// Appends the postcard encoding of the default of each field that versions after
/// `version` appended (every such default encodes as one zero byte: `false`, `0`, `None`).
fn append_defaults(raw: &mut Vec<u8>, version: u16) {
    let missing = PROTOCOL_VERSION.saturating_sub(version.max(1));
    raw.extend(std::iter::repeat_n(0u8, missing as usize));
}

/// Decodes a sync request sent with protocol `version`: an older body is a newer body
/// without the fields later versions appended (v2 `bare_docs = false`, v3
/// `page_bytes = 0`).
pub fn decode_request(body: &[u8], version: u16) -> Result<SyncRequest> {
    let mut raw = inflate(body)?;
    append_defaults(&mut raw, version);
    postcard::from_bytes(&raw).map_err(|e| Error::Protocol(format!("malformed message: {e}")))
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
/// documents).
pub fn encode_response(resp: &SyncResponse, version: u16) -> Result<Vec<u8>> {
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
    gzip(&raw)
}

fn gzip(raw: &[u8]) -> Result<Vec<u8>> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
    std::io::Write::write_all(&mut gz, raw).map_err(|e| Error::Protocol(e.to_string()))?;
    gz.finish().map_err(|e| Error::Protocol(e.to_string()))
}

/// Inflates a gzip body, refusing bodies over the limits.
fn inflate(body: &[u8]) -> Result<Vec<u8>> {
    if body.len() > MAX_BODY_BYTES {
        return Err(Error::Protocol(format!(
            "body of {} bytes exceeds {MAX_BODY_BYTES}",
            body.len()
        )));
    }
    let mut raw = Vec::new();
    let gz = flate2::read::GzDecoder::new(body);
    gz.take(MAX_DECODED_BYTES as u64 + 1)
        .read_to_end(&mut raw)
        .map_err(|e| Error::Protocol(format!("body is not valid gzip: {e}")))?;
    if raw.len() > MAX_DECODED_BYTES {
        return Err(Error::Protocol(format!(
            "body decompresses to more than {MAX_DECODED_BYTES} bytes"
        )));
    }
    Ok(raw)
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
/// messages.
#[doc(hidden)]
pub fn encode_raw_for_tests(raw: &[u8]) -> Vec<u8> {
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    let _ = std::io::Write::write_all(&mut gz, raw);
    gz.finish().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(inflate(&v3).unwrap(), v3_body);
        assert_eq!(decode::<SyncResponse>(&v3).unwrap(), resp);
        assert_eq!(decode_response(&v3, 3).unwrap(), resp);
        // A version 2 device gets the same answer without the server's time.
        let v2 = encode_response(&resp, 2).unwrap();
        assert_eq!(inflate(&v2).unwrap(), v2_body);
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
    }
}
