//! How sync bodies are compressed, by protocol version (`docs/protocol.md`, "Body
//! encoding"):
//!
//! - versions 1 to 3: gzip (level 6), byte for byte as those versions always were;
//! - version 4: zstd with the dictionary `records-v1`, trained on bare record documents as
//!   pull pages carry them (`scripts/train-dictionary.sh`) and shipped in this crate, so
//!   phone and server hold the same bytes. A new dictionary is a new protocol version: the
//!   version number alone says how a body is compressed.
//!
//! A zstd body's frame names the dictionary's id; a frame that names none is read without
//! a dictionary, one that names another id is refused by name.
//!
//! Decompression is bounded the same way for both: at most [`MAX_BODY_BYTES`] in and
//! [`MAX_DECODED_BYTES`] out, read through a limit, so a bomb is refused after the limit
//! and never allocated whole; a zstd frame may not ask for a window larger than the
//! decoded limit; every refusal is a typed [`BodyError`] naming what is wrong.

use std::io::Read;
use std::num::NonZeroU32;
use std::sync::OnceLock;

use super::protocol::{BodyError, ErrorCode, MAX_BODY_BYTES, MAX_DECODED_BYTES};

/// The first protocol version whose bodies are zstd with [`RECORDS_V1`].
pub const ZSTD_VERSION: u16 = 4;

/// zstd level of bodies a phone sends (pushes are small: any level is cheap there).
pub const PHONE_ZSTD_LEVEL: i32 = 9;

/// zstd level of the server's answers ([`crate::sync::protocol::encode_response`]).
pub const SERVER_ZSTD_LEVEL: i32 = 15;

/// gzip level of versions 1 to 3 (unchanged since version 1).
const GZIP_LEVEL: u32 = 6;

/// Largest zstd window a body may ask for: 2^25 bytes, the decoded limit (a frame never
/// needs to look back further than its whole content).
const ZSTD_WINDOW_LOG_MAX: u32 = 25;

/// A zstd dictionary shipped with both sides.
#[derive(Debug)]
pub struct Dictionary {
    /// Its name, which its file carries (`core/src/sync/dict/NAME.zdict`).
    pub name: &'static str,
    /// The dictionary as zstd's trainer wrote it (its header carries its id).
    pub bytes: &'static [u8],
}

impl Dictionary {
    /// The dictionary id its header declares (written into every frame compressed with it).
    pub fn id(&self) -> Option<NonZeroU32> {
        zstd::zstd_safe::get_dict_id_from_dict(self.bytes)
    }
}

/// The dictionary of protocol version 4.
pub static RECORDS_V1: Dictionary = Dictionary {
    name: "records-v1",
    bytes: include_bytes!("dict/records-v1.zdict"),
};

/// How the bodies of one protocol version are compressed.
#[derive(Debug, Clone, Copy)]
pub enum Codec {
    /// gzip (versions 1 to 3).
    Gzip,
    /// zstd with a dictionary (version 4).
    Zstd(&'static Dictionary),
}

impl Codec {
    /// The codec of protocol `version`.
    pub fn of(version: u16) -> Codec {
        if version >= ZSTD_VERSION {
            Codec::Zstd(&RECORDS_V1)
        } else {
            Codec::Gzip
        }
    }

    /// The codec a body's first bytes show (gzip's or zstd's magic number), for code that
    /// holds a body without its version (tests, fuzzing). `None` for neither.
    pub fn sniff(body: &[u8]) -> Option<Codec> {
        match body {
            [0x1f, 0x8b, ..] => Some(Codec::Gzip),
            [0x28, 0xb5, 0x2f, 0xfd, ..] => Some(Codec::Zstd(&RECORDS_V1)),
            _ => None,
        }
    }

    /// Compresses `raw`; `zstd_level` is the level of a zstd body (gzip is always level
    /// 6).
    pub fn compress(self, raw: &[u8], zstd_level: i32) -> std::io::Result<Vec<u8>> {
        match self {
            Codec::Gzip => {
                let mut gz =
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(GZIP_LEVEL));
                std::io::Write::write_all(&mut gz, raw)?;
                gz.finish()
            }
            Codec::Zstd(dict) => {
                // Loaded per body (about a millisecond for 64 KiB): zstd then picks its
                // parameters for this body's size, which a dictionary prepared once for all
                // sizes would not.
                let mut c = zstd::bulk::Compressor::with_dictionary(zstd_level, dict.bytes)?;
                c.include_checksum(true)?;
                c.include_contentsize(true)?;
                c.include_dictid(true)?;
                c.compress(raw)
            }
        }
    }

    /// Decompresses a body within the limits.
    pub fn decompress(self, body: &[u8]) -> Result<Vec<u8>, BodyError> {
        if body.len() > MAX_BODY_BYTES {
            return Err(BodyError {
                code: ErrorCode::TooLarge,
                message: format!("body of {} bytes exceeds {MAX_BODY_BYTES}", body.len()),
            });
        }
        let mut raw = Vec::new();
        let read = match self {
            Codec::Gzip => flate2::read::GzDecoder::new(body)
                .take(MAX_DECODED_BYTES as u64 + 1)
                .read_to_end(&mut raw)
                .map(|_| ())
                .map_err(|e| malformed(format!("body is not valid gzip: {e}"))),
            Codec::Zstd(dict) => unzstd(dict, body, &mut raw),
        };
        read?;
        if raw.len() > MAX_DECODED_BYTES {
            return Err(BodyError {
                code: ErrorCode::TooLarge,
                message: format!("body decompresses to more than {MAX_DECODED_BYTES} bytes"),
            });
        }
        Ok(raw)
    }
}

fn malformed(message: String) -> BodyError {
    BodyError {
        code: ErrorCode::MalformedBody,
        message,
    }
}

/// Reads a zstd body compressed with `dict` into `raw`, at most one byte past the decoded
/// limit.
fn unzstd(dict: &'static Dictionary, body: &[u8], raw: &mut Vec<u8>) -> Result<(), BodyError> {
    let not_zstd = |e: std::io::Error| {
        malformed(format!(
            "body is not valid zstd with dictionary {}: {e}",
            dict.name
        ))
    };
    if !body.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        return Err(malformed(format!(
            "body is not a zstd frame (protocol {ZSTD_VERSION} bodies are zstd with dictionary {})",
            dict.name
        )));
    }
    // A frame names the dictionary it was compressed with: one this build does not hold
    // is refused by name rather than decoded into garbage. A frame that names none was
    // compressed without one and is read without one.
    let named = zstd::zstd_safe::get_dict_id_from_frame(body);
    if let Some(theirs) = named {
        if Some(theirs) != dict.id() {
            return Err(malformed(format!(
                "body is compressed with zstd dictionary id {theirs}; protocol {ZSTD_VERSION} uses dictionary {} (id {})",
                dict.name,
                dict.id().map_or(0, NonZeroU32::get)
            )));
        }
    }
    let mut decoder = match named {
        Some(_) => {
            zstd::stream::read::Decoder::with_prepared_dictionary(body, decoder_dictionary(dict)?)
        }
        None => zstd::stream::read::Decoder::with_buffer(body),
    }
    .map_err(not_zstd)?;
    decoder
        .window_log_max(ZSTD_WINDOW_LOG_MAX)
        .map_err(not_zstd)?;
    decoder
        .take(MAX_DECODED_BYTES as u64 + 1)
        .read_to_end(raw)
        .map_err(not_zstd)?;
    Ok(())
}

fn unloadable(dict: &Dictionary) -> BodyError {
    BodyError {
        code: ErrorCode::Internal,
        message: format!("the built-in zstd dictionary {} does not load", dict.name),
    }
}

/// The prepared decoding dictionary (digested once per process).
fn decoder_dictionary(
    dict: &'static Dictionary,
) -> Result<&'static zstd::dict::DecoderDictionary<'static>, BodyError> {
    static V1: OnceLock<Option<zstd::dict::DecoderDictionary<'static>>> = OnceLock::new();
    V1.get_or_init(|| zstd::dict::DecoderDictionary::try_copy(dict.bytes).ok())
        .as_ref()
        .ok_or_else(|| unloadable(dict))
}
