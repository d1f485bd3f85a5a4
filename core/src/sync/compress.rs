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
                // A small body (a push's answer, an idle sync, an incremental page) uses
                // the dictionary prepared once per level: loading 64 KiB into the match
                // finder of a high level costs milliseconds, far more than compressing the
                // body. A large one (a bootstrap page) loads it per body, so that zstd
                // picks its parameters for this body's size, which a dictionary prepared
                // for all sizes would not (the load is small beside the compression there).
                let prepared = (raw.len() <= PREPARED_MAX_BYTES)
                    .then(|| encoder_dictionary(dict, zstd_level))
                    .flatten();
                let mut c = match prepared {
                    Some(d) => zstd::bulk::Compressor::with_prepared_dictionary(d)?,
                    None => zstd::bulk::Compressor::with_dictionary(zstd_level, dict.bytes)?,
                };
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

/// Bodies up to this size are compressed with the dictionary prepared once per level.
const PREPARED_MAX_BYTES: usize = 64 * 1024;

/// The prepared encoding dictionary of `level` (digested once per process and level;
/// `None` for a level outside zstd's or a dictionary that does not load, which then
/// loads per body and fails there with zstd's error).
fn encoder_dictionary(
    dict: &'static Dictionary,
    level: i32,
) -> Option<&'static zstd::dict::EncoderDictionary<'static>> {
    const LEVELS: usize = 23;
    static V1: [OnceLock<Option<zstd::dict::EncoderDictionary<'static>>>; LEVELS] =
        [const { OnceLock::new() }; LEVELS];
    if !std::ptr::eq(dict, &RECORDS_V1) {
        return None;
    }
    let slot = V1.get(usize::try_from(level).ok()?)?;
    slot.get_or_init(|| zstd::dict::EncoderDictionary::try_copy(dict.bytes, level).ok())
        .as_ref()
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Bodies alike records (what the dictionary was trained on): ids, kinds, grids.
    fn body(records: usize) -> Vec<u8> {
        let mut raw = Vec::new();
        for i in 0..records {
            raw.extend_from_slice(
                format!("{{\"id\":\"p-{i:05}\",\"grid\":\"152502001\",\"name\":\"巴特尔家庭牧场\",\"status\":\"active\"}}")
                    .as_bytes(),
            );
        }
        raw
    }

    #[test]
    fn small_and_large_bodies_round_trip_through_both_dictionary_paths() {
        let codec = Codec::of(ZSTD_VERSION);
        for records in [0, 1, 10, 700, 2_000] {
            let raw = body(records);
            for level in [PHONE_ZSTD_LEVEL, SERVER_ZSTD_LEVEL] {
                let z = codec.compress(&raw, level).unwrap();
                // Both paths name the dictionary in the frame, so either decodes.
                assert_eq!(
                    zstd::zstd_safe::get_dict_id_from_frame(&z),
                    RECORDS_V1.id(),
                    "{records} records at level {level}"
                );
                assert_eq!(codec.decompress(&z).unwrap(), raw);
            }
        }
        // The prepared dictionary serves only bodies up to the bound, at zstd's levels.
        assert!(body(700).len() <= PREPARED_MAX_BYTES);
        assert!(body(2_000).len() > PREPARED_MAX_BYTES);
        assert!(encoder_dictionary(&RECORDS_V1, SERVER_ZSTD_LEVEL).is_some());
        assert!(encoder_dictionary(&RECORDS_V1, 99).is_none());
        assert!(encoder_dictionary(&RECORDS_V1, -1).is_none());
    }

    #[test]
    fn the_prepared_dictionary_compresses_small_bodies_about_as_well() {
        // Loading the dictionary per body lets zstd size its tables to the body; the
        // prepared one is sized for any body. On small bodies the two must stay close
        // (the prepared path is there only to save the load).
        for records in [1, 10, 100] {
            let raw = body(records);
            let prepared = Codec::of(ZSTD_VERSION)
                .compress(&raw, SERVER_ZSTD_LEVEL)
                .unwrap();
            let mut c =
                zstd::bulk::Compressor::with_dictionary(SERVER_ZSTD_LEVEL, RECORDS_V1.bytes)
                    .unwrap();
            c.include_checksum(true).unwrap();
            c.include_contentsize(true).unwrap();
            c.include_dictid(true).unwrap();
            let per_body = c.compress(&raw).unwrap();
            assert!(
                prepared.len() <= per_body.len() + per_body.len() / 10 + 8,
                "{records} records: prepared {} B, per body {} B",
                prepared.len(),
                per_body.len()
            );
        }
    }
}
