//! Bare documents: whole Automerge documents sent without their hashes (protocol v2).
//!
//! A saved document chunk carries 36 bytes that no compressor can shrink: the 4-byte
//! chunk checksum and a 32-byte SHA-256 hash per head. Both are functions of the rest of
//! the chunk, so the server leaves them out of a bootstrap and the phone derives them
//! again: it puts placeholders back, loads the chunk without checking its heads,
//! computes the heads from the changes it reconstructed, and writes them and the checksum
//! into the bytes. The result is byte for byte the server's document (a test pins it),
//! stored as received; a digest per page (`SyncResponse::docs_digest`) checks every
//! derived head against the server's.
//!
//! Layout of a bare document (see `docs/protocol.md`):
//!
//! ```text
//! chunk type (1 byte, 0 = document) ‖ uleb128 data length of the whole chunk
//! ‖ actors (as in the chunk) ‖ uleb128 number of heads ‖ rest of the chunk body
//! ```
//!
//! that is, the chunk without its magic bytes, its checksum and its head hashes.

use automerge::{AutoCommit, ChangeHash, LoadOptions, VerificationMode};
use sha2::{Digest, Sha256};

use crate::doc::RecordDoc;
use crate::{Error, Result};

const MAGIC: [u8; 4] = [0x85, 0x6f, 0x4a, 0x83];
const DOCUMENT_CHUNK: u8 = 0;
const HASH: usize = 32;
/// Most heads a bare document may declare (a record merged from more concurrent
/// branches than this is sent whole).
pub const MAX_BARE_HEADS: u64 = 64;

/// Where the parts of a document chunk are.
struct Layout {
    /// Offset of the chunk type byte (after magic and checksum).
    type_at: usize,
    /// Offset of the first head hash.
    heads_at: usize,
    /// Number of heads.
    heads: usize,
}

/// Reads an unsigned LEB128 value of at most 10 bytes.
fn uleb(bytes: &[u8], at: usize) -> Option<(u64, usize)> {
    let mut value: u64 = 0;
    for i in 0..10 {
        let b = *bytes.get(at + i)?;
        let part = u64::from(b & 0x7f);
        if i == 9 && part > 1 {
            return None;
        }
        value |= part << (7 * i);
        if b & 0x80 == 0 {
            return Some((value, at + i + 1));
        }
    }
    None
}

fn write_uleb(out: &mut Vec<u8>, mut v: u64) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

/// Skips the actor table starting at `at`; returns the offset after it.
fn skip_actors(bytes: &[u8], at: usize) -> Option<usize> {
    let (count, mut at) = uleb(bytes, at)?;
    // Each actor takes at least one byte: a count beyond the input is malformed.
    if count > bytes.len() as u64 {
        return None;
    }
    for _ in 0..count {
        let (len, next) = uleb(bytes, at)?;
        let len = usize::try_from(len).ok()?;
        at = next.checked_add(len)?;
        if at > bytes.len() {
            return None;
        }
    }
    Some(at)
}

/// The layout of `doc` when it is exactly one document chunk.
fn layout(doc: &[u8]) -> Option<Layout> {
    if doc.len() < 9 || doc[..4] != MAGIC || doc[8] != DOCUMENT_CHUNK {
        return None;
    }
    let (len, body_at) = uleb(doc, 9)?;
    if usize::try_from(len).ok()?.checked_add(body_at)? != doc.len() {
        return None;
    }
    let heads_count_at = skip_actors(doc, body_at)?;
    let (heads, heads_at) = uleb(doc, heads_count_at)?;
    if heads == 0 || heads > MAX_BARE_HEADS {
        return None;
    }
    let heads = heads as usize;
    if heads_at + heads * HASH > doc.len() {
        return None;
    }
    Some(Layout {
        type_at: 8,
        heads_at,
        heads,
    })
}

/// The bare form of a saved document, or `None` when `doc` is not exactly one document
/// chunk with 1 to [`MAX_BARE_HEADS`] heads (such a record is sent whole, with its heads).
pub fn strip(doc: &[u8]) -> Option<Vec<u8>> {
    let l = layout(doc)?;
    let mut out = Vec::with_capacity(doc.len() - 4 - 4 - l.heads * HASH);
    out.extend_from_slice(&doc[l.type_at..l.heads_at]);
    out.extend_from_slice(&doc[l.heads_at + l.heads * HASH..]);
    Some(out)
}

/// The checksum of a chunk: the first 4 bytes of SHA-256 over type, length and body.
fn write_checksum(chunk: &mut [u8], type_at: usize) {
    let digest = Sha256::digest(&chunk[type_at..]);
    chunk[4..8].copy_from_slice(&digest[..4]);
}

/// Rebuilds a bare document: returns the loaded document and its saved bytes, equal to
/// the server's. Fails with a clear error when the bytes are not a bare document or the
/// document in them does not load.
pub fn rebuild(bare: &[u8]) -> Result<(RecordDoc, Vec<u8>)> {
    let bad = |what: &str| Error::Document(format!("bare document: {what}"));
    if bare.first() != Some(&DOCUMENT_CHUNK) {
        return Err(bad("does not start with a document chunk type"));
    }
    let (len, body_at) = uleb(bare, 1).ok_or_else(|| bad("bad length"))?;
    let heads_count_at = skip_actors(bare, body_at).ok_or_else(|| bad("bad actor table"))?;
    let (heads, heads_at) = uleb(bare, heads_count_at).ok_or_else(|| bad("bad head count"))?;
    if heads == 0 || heads > MAX_BARE_HEADS {
        return Err(bad(&format!(
            "{heads} heads (1 to {MAX_BARE_HEADS} allowed)"
        )));
    }
    let heads = heads as usize;
    // The declared length must be exactly what the placeholders restore: checked before
    // anything is allocated.
    let body_len = (bare.len() - body_at) + heads * HASH;
    if len != body_len as u64 {
        return Err(bad(&format!(
            "declares {len} bytes of body, the bytes give {body_len}"
        )));
    }
    let mut chunk = Vec::with_capacity(8 + bare.len() + heads * HASH);
    chunk.extend_from_slice(&MAGIC);
    chunk.extend_from_slice(&[0; 4]);
    chunk.extend_from_slice(&bare[..heads_at]);
    let hashes_at = chunk.len();
    chunk.resize(hashes_at + heads * HASH, 0);
    chunk.extend_from_slice(&bare[heads_at..]);
    write_checksum(&mut chunk, 8);
    let mut doc = AutoCommit::load_with_options(
        &chunk,
        LoadOptions::new().verification_mode(VerificationMode::DontCheck),
    )
    .map_err(|e| bad(&format!("does not load: {e}")))?;
    let derived = doc.get_heads();
    if derived.len() != heads {
        return Err(bad(&format!(
            "declares {heads} heads, its changes give {}",
            derived.len()
        )));
    }
    for (i, h) in derived.iter().enumerate() {
        chunk[hashes_at + i * HASH..hashes_at + (i + 1) * HASH].copy_from_slice(&h.0);
    }
    write_checksum(&mut chunk, 8);
    Ok((RecordDoc::from_doc(doc)?, chunk))
}

/// Running digest of a page's bare documents: every record's id and heads, in page order.
#[derive(Default)]
pub struct PageDigest(Sha256);

impl std::fmt::Debug for PageDigest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PageDigest")
    }
}

impl PageDigest {
    /// A new, empty digest.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one record.
    pub fn add(&mut self, id: &str, heads: &[ChangeHash]) {
        self.add_raw(id, heads.iter().map(|h| &h.0));
    }

    /// Adds one record whose heads are raw hashes (in any order: they are sorted first).
    pub fn add_raw<'a>(&mut self, id: &str, heads: impl Iterator<Item = &'a [u8; 32]>) {
        let mut heads: Vec<&[u8; 32]> = heads.collect();
        heads.sort_unstable();
        let mut prefix = Vec::with_capacity(12);
        write_uleb(&mut prefix, id.len() as u64);
        self.0.update(&prefix);
        self.0.update(id.as_bytes());
        prefix.clear();
        write_uleb(&mut prefix, heads.len() as u64);
        self.0.update(&prefix);
        for h in heads {
            self.0.update(h);
        }
    }

    /// The digest.
    pub fn finish(self) -> [u8; 32] {
        self.0.finalize().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use automerge::transaction::Transactable;
    use automerge::{ActorId, ROOT};

    fn doc_with(values: &[(&str, i64)], actor: u8) -> AutoCommit {
        let mut d = AutoCommit::new().with_actor(ActorId::from(vec![actor; 16]));
        d.put(ROOT, "_schema", 1u64).unwrap();
        d.put(ROOT, "_kind", "producer").unwrap();
        for (k, v) in values {
            d.put(ROOT, *k, *v).unwrap();
        }
        d.commit();
        d
    }

    #[test]
    fn strip_and_rebuild_give_back_the_same_bytes() {
        let mut a = doc_with(&[("x", 1)], 1);
        let mut b = a.fork().with_actor(ActorId::from(vec![2; 16]));
        a.put(ROOT, "x", 2).unwrap();
        a.commit();
        b.put(ROOT, "y", 3).unwrap();
        b.commit();
        a.merge(&mut b).unwrap();
        for mut d in [doc_with(&[("x", 1)], 1), a] {
            let saved = d.save_nocompress();
            let bare = strip(&saved).expect("one document chunk");
            assert_eq!(bare.len(), saved.len() - 8 - 32 * d.get_heads().len());
            let (_, rebuilt) = rebuild(&bare).unwrap();
            assert_eq!(rebuilt, saved);
            let mut back = AutoCommit::load(&rebuilt).unwrap();
            assert_eq!(back.get_heads(), d.get_heads());
        }
    }

    #[test]
    fn strip_leaves_other_bytes_alone() {
        let mut d = doc_with(&[("x", 1)], 1);
        let saved = d.save_nocompress();
        // A document followed by an incremental chunk is not one chunk.
        d.put(ROOT, "x", 5).unwrap();
        let mut two = saved.clone();
        two.extend(d.save_incremental());
        assert!(strip(&two).is_none());
        assert!(strip(&saved[..saved.len() - 1]).is_none());
        assert!(strip(b"").is_none());
        assert!(strip(&d.save_incremental()).is_none());
    }

    #[test]
    fn rebuild_names_what_is_wrong() {
        let saved = doc_with(&[("x", 1)], 1).save_nocompress();
        let bare = strip(&saved).unwrap();
        let err = |b: &[u8]| rebuild(b).unwrap_err().to_string();
        assert!(err(&bare[..bare.len() - 1]).contains("declares"));
        assert!(err(&[1, 2, 3]).contains("document chunk type"));
        let mut lying = bare.clone();
        lying.push(0);
        assert!(err(&lying).contains("declares"));
        // A body flipped inside still has to load.
        let mut flipped = bare.clone();
        let last = flipped.len() - 3;
        flipped[last] ^= 0xff;
        assert!(rebuild(&flipped).is_err());
        // A huge declared length is refused before allocating it.
        let mut huge = vec![0u8];
        huge.extend([0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f]);
        let (_, body_at) = uleb(&bare, 1).unwrap();
        huge.extend(&bare[body_at..]);
        assert!(rebuild(&huge).is_err());
    }

    #[test]
    fn digest_depends_on_ids_heads_and_order() {
        let h1 = ChangeHash([1; 32]);
        let h2 = ChangeHash([2; 32]);
        let digest = |recs: &[(&str, &[ChangeHash])]| {
            let mut d = PageDigest::new();
            for (id, heads) in recs {
                d.add(id, heads);
            }
            d.finish()
        };
        let base = digest(&[("a", &[h1]), ("b", &[h2])]);
        assert_eq!(base, digest(&[("a", &[h1]), ("b", &[h2])]));
        assert_ne!(base, digest(&[("b", &[h2]), ("a", &[h1])]));
        assert_ne!(base, digest(&[("a", &[h2]), ("b", &[h2])]));
        assert_ne!(base, digest(&[("a", &[h1, h2]), ("b", &[])]));
        // The order of one record's heads does not matter.
        assert_eq!(digest(&[("a", &[h1, h2])]), digest(&[("a", &[h2, h1])]));
    }
}
