//! Attachments (evidence photos, signatures, scanned notices): content-addressed blobs that
//! records refer to by a reference string. `docs/attachments.md` describes the upload and
//! download protocol.
//!
//! A reference is `att:<sha256>:<size>:<mime>`: the SHA-256 of the bytes (64 lowercase hex
//! digits), their length in bytes, and one of the allowed media types. It is stored in a
//! record's photo fields (a photo answer, a finding's photos, the signature of the
//! acknowledgement), so a record names exactly the bytes it was saved with, and the same
//! photo recorded by two phones is one attachment.
//!
//! Photo fields written before attachments existed hold free-text names; those are still
//! read (and shown) but are not attachments. Text that starts with `att:` must be a valid
//! reference.

use std::fmt;
use std::str::FromStr;

use sha2::{Digest, Sha256};

use crate::model::{AnswerValue, Record, Visit};

/// The prefix of a reference.
pub const PREFIX: &str = "att:";

/// The media types an attachment may have.
pub const ALLOWED_MIME: [&str; 4] = ["image/jpeg", "image/png", "image/webp", "application/pdf"];

/// The default largest attachment, in bytes (10 MB).
pub const DEFAULT_MAX_BYTES: u64 = 10 * 1024 * 1024;

/// A reference to an attachment.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AttachmentRef {
    /// SHA-256 of the bytes, lowercase hex.
    pub sha256: String,
    /// Length in bytes.
    pub size: u64,
    /// Media type (one of [`ALLOWED_MIME`]).
    pub mime: String,
}

/// Why a reference or an attachment's bytes are refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttachmentError {
    /// The text is not a reference.
    #[error("'{0}' is not an attachment reference (att:<sha256>:<size>:<mime>)")]
    BadReference(String),
    /// The media type is not allowed.
    #[error("media type '{0}' is not allowed (JPEG, PNG, WebP or PDF)")]
    MediaType(String),
    /// The bytes are not of the media type they claim (or of any allowed one).
    #[error("the bytes are not a {0} file")]
    Content(String),
    /// Too large.
    #[error("the attachment is {size} bytes; at most {max} are allowed")]
    TooLarge {
        /// Its size.
        size: u64,
        /// The limit.
        max: u64,
    },
    /// Empty.
    #[error("the attachment is empty")]
    Empty,
}

impl AttachmentRef {
    /// The reference of `bytes`, whose media type is sniffed from their first bytes
    /// (`declared`, when given, must agree).
    pub fn of_bytes(
        bytes: &[u8],
        declared: Option<&str>,
        max: u64,
    ) -> Result<Self, AttachmentError> {
        let size = bytes.len() as u64;
        if size == 0 {
            return Err(AttachmentError::Empty);
        }
        if size > max {
            return Err(AttachmentError::TooLarge { size, max });
        }
        let sniffed = sniff(bytes).ok_or_else(|| {
            AttachmentError::Content(declared.unwrap_or("JPEG, PNG, WebP or PDF").to_string())
        })?;
        if let Some(d) = declared {
            check_mime(d)?;
            if d != sniffed {
                return Err(AttachmentError::Content(d.to_string()));
            }
        }
        Ok(AttachmentRef {
            sha256: hex::encode(Sha256::digest(bytes)),
            size,
            mime: sniffed.to_string(),
        })
    }

    /// Whether `text` is meant as a reference (it may still be malformed).
    pub fn is_reference(text: &str) -> bool {
        text.starts_with(PREFIX)
    }
}

/// Refuses a media type that is not allowed.
pub fn check_mime(mime: &str) -> Result<(), AttachmentError> {
    if ALLOWED_MIME.contains(&mime) {
        Ok(())
    } else {
        Err(AttachmentError::MediaType(mime.to_string()))
    }
}

/// The allowed media type the first bytes of a file show, if any.
pub fn sniff(head: &[u8]) -> Option<&'static str> {
    if head.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some("image/jpeg")
    } else if head.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if head.len() >= 12 && &head[..4] == b"RIFF" && &head[8..12] == b"WEBP" {
        Some("image/webp")
    } else if head.starts_with(b"%PDF-") {
        Some("application/pdf")
    } else {
        None
    }
}

/// Whether `s` is a SHA-256 in lowercase hex.
pub fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl fmt::Display for AttachmentRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{PREFIX}{}:{}:{}", self.sha256, self.size, self.mime)
    }
}

impl FromStr for AttachmentRef {
    type Err = AttachmentError;

    fn from_str(s: &str) -> Result<Self, AttachmentError> {
        let bad = || AttachmentError::BadReference(s.chars().take(120).collect());
        let rest = s.strip_prefix(PREFIX).ok_or_else(bad)?;
        let mut parts = rest.splitn(3, ':');
        let (Some(sha), Some(size), Some(mime)) = (parts.next(), parts.next(), parts.next()) else {
            return Err(bad());
        };
        if !is_sha256_hex(sha) {
            return Err(bad());
        }
        let size: u64 = size
            .parse()
            .ok()
            .filter(|n| *n > 0 && size.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(bad)?;
        check_mime(mime)?;
        Ok(AttachmentRef {
            sha256: sha.to_string(),
            size,
            mime: mime.to_string(),
        })
    }
}

/// Every photo field of a visit, with its field path (for errors).
pub fn photo_fields(v: &Visit) -> Vec<(String, &str)> {
    let mut out = Vec::new();
    for (item, a) in &v.answers {
        if let AnswerValue::Photos(ps) = &a.value {
            for (j, p) in ps.iter().enumerate() {
                out.push((format!("answers.{item}[{j}]"), p.as_str()));
            }
        }
    }
    for (i, f) in v.findings.iter().enumerate() {
        for (j, p) in f.photos.iter().enumerate() {
            out.push((format!("findings[{i}].photos[{j}]"), p.as_str()));
        }
    }
    if let Some(ack) = &v.acknowledgement {
        if let Some(p) = &ack.signature_photo {
            out.push(("acknowledgement.signature_photo".into(), p.as_str()));
        }
    }
    out
}

/// The attachments a record refers to, each once, sorted. Malformed references are
/// skipped here (validation refuses them).
pub fn refs_of(record: &Record) -> Vec<AttachmentRef> {
    let Record::Visit(v) = record else {
        return Vec::new();
    };
    let mut out: Vec<AttachmentRef> = photo_fields(v)
        .into_iter()
        .filter(|(_, p)| AttachmentRef::is_reference(p))
        .filter_map(|(_, p)| p.parse().ok())
        .collect();
    out.sort();
    out.dedup();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const JPEG: &[u8] = &[0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10, b'J', b'F', b'I', b'F'];

    #[test]
    fn references_round_trip_and_name_what_is_wrong() {
        let r = AttachmentRef::of_bytes(JPEG, Some("image/jpeg"), DEFAULT_MAX_BYTES).unwrap();
        assert_eq!(r.size, JPEG.len() as u64);
        let text = r.to_string();
        assert!(
            text.starts_with("att:") && text.ends_with(":10:image/jpeg"),
            "{text}"
        );
        assert_eq!(text.parse::<AttachmentRef>().unwrap(), r);
        for bad in [
            "att:xyz:10:image/jpeg",
            "att:",
            &format!("att:{}:0:image/jpeg", r.sha256),
            &format!("att:{}:+5:image/jpeg", r.sha256),
            &format!("att:{}:10", r.sha256),
            &format!("att:{}:10:image/jpeg", r.sha256.to_uppercase()),
        ] {
            assert!(
                matches!(
                    bad.parse::<AttachmentRef>(),
                    Err(AttachmentError::BadReference(_))
                ),
                "{bad}"
            );
        }
        assert_eq!(
            format!("att:{}:10:text/html", r.sha256).parse::<AttachmentRef>(),
            Err(AttachmentError::MediaType("text/html".into()))
        );
    }

    #[test]
    fn content_must_be_what_it_claims() {
        assert_eq!(
            AttachmentRef::of_bytes(b"<html>", None, 100),
            Err(AttachmentError::Content("JPEG, PNG, WebP or PDF".into()))
        );
        assert_eq!(
            AttachmentRef::of_bytes(JPEG, Some("image/png"), 100),
            Err(AttachmentError::Content("image/png".into()))
        );
        assert_eq!(
            AttachmentRef::of_bytes(JPEG, None, 5),
            Err(AttachmentError::TooLarge { size: 10, max: 5 })
        );
        assert_eq!(
            AttachmentRef::of_bytes(b"", None, 5),
            Err(AttachmentError::Empty)
        );
        assert_eq!(sniff(b"%PDF-1.7"), Some("application/pdf"));
        assert_eq!(sniff(b"RIFF\0\0\0\0WEBPVP8 "), Some("image/webp"));
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\n...."), Some("image/png"));
    }
}
