//! The server's own changes, signed.
//!
//! The server writes some changes itself (the duplicate bookkeeping of
//! [`crate::duplicates`]), signed by its own actor ([`crate::duplicates::SERVER_DEVICE`]).
//! Phones receive them and build on them. When the server is restored from an older backup
//! it loses those it made since; a phone then pushes its records back with the server's
//! changes inside their history, and a change of an actor that is not the pushing device's
//! is refused as "only that device can deliver it": the author is the server, which can no
//! longer deliver it, so the phone's own edits of that record would wait for ever.
//!
//! So each server change carries a tag in its message: `gridsync-server#<hex>`, an
//! HMAC-SHA256, under a key kept in `server_meta` (made on first use; a backup and a dump
//! carry it), of the record id and the change's bytes as they would be with the plain
//! message `gridsync-server`. A device may deliver a change of the server's actor whose tag
//! verifies: it is the server's own, and is not judged as the pushing person's. Anything
//! else under the server's actor is refused as before. The tag names the record, so a
//! change cannot be moved to another record.

use automerge::Change;
use sha2::{Digest, Sha256};

use crate::duplicates::{SERVER_DEVICE, SERVER_PERSON};

/// Separates the person from the tag in a signed change's message.
const TAG_SEPARATOR: char = '#';

/// HMAC-SHA256 of `parts` (each length-prefixed) under `key`.
fn hmac(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut k = [0u8; BLOCK];
    if key.len() > BLOCK {
        k[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(k.map(|b| b ^ 0x36));
    for p in parts {
        inner.update((p.len() as u64).to_be_bytes());
        inner.update(p);
    }
    let mut outer = Sha256::new();
    outer.update(k.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

/// The message of a server change on `record_id` whose bytes with the plain message
/// [`SERVER_PERSON`] are `unsigned`.
pub fn signed_message(key: &[u8], record_id: &str, unsigned: &Change) -> String {
    let tag = hmac(key, &[record_id.as_bytes(), unsigned.raw_bytes()]);
    format!("{SERVER_PERSON}{TAG_SEPARATOR}{}", hex::encode(tag))
}

/// Whether `c` is a change the server made on `record_id`: its actor is the server's and
/// its message's tag verifies under `key`.
pub fn verify(key: &[u8], record_id: &str, c: &Change) -> bool {
    if *c.actor_id() != gridsync_core::device_actor(SERVER_DEVICE) {
        return false;
    }
    let Some(tag) = c
        .message()
        .and_then(|m| m.strip_prefix(SERVER_PERSON))
        .and_then(|m| m.strip_prefix(TAG_SEPARATOR))
        .and_then(|t| hex::decode(t).ok())
    else {
        return false;
    };
    let mut plain = c.decode();
    plain.message = Some(SERVER_PERSON.to_string());
    let plain = Change::from(plain);
    let want = hmac(key, &[record_id.as_bytes(), plain.raw_bytes()]);
    // Constant-time comparison.
    tag.len() == want.len() && tag.iter().zip(want).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use gridsync_core::doc::RecordDoc;
    use gridsync_core::model::{Producer, ProducerType, Record};

    fn doc() -> (RecordDoc, Record) {
        let p = Producer::new(
            "浩日沁牧业合作社",
            ProducerType::Cooperative,
            "其其格",
            "13900000002",
            "G1",
            "liaison",
            1_767_225_600_000,
        );
        let rec = Record::Producer(p);
        let d =
            RecordDoc::create(&rec, &gridsync_core::device_actor("phone"), "liaison", 1).unwrap();
        (d, rec)
    }

    /// A server change made as `server_write` makes it: the plain change in a fork, then
    /// the same edit with the signed message.
    fn server_change(key: &[u8], d: &mut RecordDoc, rec: &Record, id: &str) -> Change {
        let actor = gridsync_core::device_actor(SERVER_DEVICE);
        let mut probe = RecordDoc::from_doc(d.inner().fork()).unwrap();
        probe.set_actor(&actor);
        probe.update(rec, SERVER_PERSON, 42).unwrap();
        let plain = probe.inner().get_last_local_change().unwrap().clone();
        let msg = signed_message(key, id, &plain);
        d.set_actor(&actor);
        d.update(rec, &msg, 42).unwrap();
        d.inner().get_last_local_change().unwrap().clone()
    }

    #[test]
    fn a_server_change_verifies_and_nothing_else_does() {
        let (mut d, rec) = doc();
        let Record::Producer(mut p) = rec else {
            unreachable!()
        };
        p.address = "别力古台镇".into();
        let rec = Record::Producer(p);
        let key = b"0123456789abcdef0123456789abcdef";
        let c = server_change(key, &mut d, &rec, rec.id());
        assert!(verify(key, rec.id(), &c));
        // Another key, another record: refused.
        assert!(!verify(b"another key", rec.id(), &c));
        assert!(!verify(key, "another-record", &c));
        // The same tag on other ops (a crafted change under the server's actor): refused.
        let mut forged = c.decode();
        forged
            .operations
            .truncate(forged.operations.len().saturating_sub(1));
        let forged = Change::from(forged);
        assert!(!verify(key, rec.id(), &forged));
        // A phone's own change: not the server's.
        let (mut d2, rec2) = doc();
        d2.update(&rec2, "liaison", 3).unwrap();
        for c in d2.inner().get_changes(&[]) {
            assert!(!verify(key, rec2.id(), c));
        }
    }
}
