//! The attachment part of a sync against an in-process fake server: records go first,
//! the budget holds, uploads continue from the server's offset after a cut or a cancel, a
//! `409` moves the offset, a `422` starts again from 0 once, a `404` leaves it pending;
//! downloads continue from the bytes kept.
#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;

use sha2::{Digest, Sha256};

use super::engine::{CancelFlag, SyncEngine, SyncOptions, Transport};
use super::protocol::{
    self, EnrollRequest, EnrollResponse, PushOutcome, PushResult, RotateResponse, SyncRequest,
    SyncResponse, PROTOCOL_VERSION,
};
use super::UploadState;
use crate::attachment::AttachmentRef;
use crate::store::attachment_tests::{jpeg, Phone};
use crate::store::{AttachmentState, ServerLink};
use crate::{Error, Result};

#[derive(Default)]
struct Server {
    log: Vec<String>,
    held: HashMap<String, Vec<u8>>,
    complete: HashMap<String, Vec<u8>>,
    /// Uploads answered 404 (no accepted record refers to them).
    refused: HashSet<String>,
    /// Appends stored whose answers are lost from the n-th on (0: the next).
    cut_after: Option<u32>,
    /// Completions discarded as corrupt (count per attachment).
    corrupt: HashMap<String, u32>,
    /// HEAD answers 0 whatever is held (the phone learns the truth from a 409).
    head_says_zero: bool,
    /// Reads fail after this many more.
    reads_cut_after: Option<u32>,
}

#[derive(Default)]
struct Fake(Mutex<Server>);

impl Fake {
    fn with<T>(&self, f: impl FnOnce(&mut Server) -> T) -> T {
        f(&mut self.0.lock().unwrap())
    }
    fn log(&self) -> Vec<String> {
        self.with(|s| s.log.clone())
    }
    /// Bytes of appends the server received (logged `patch <offset> <len>`).
    fn patched(&self) -> Vec<(u64, u64)> {
        self.log()
            .iter()
            .filter_map(|l| {
                let mut p = l.split(' ');
                (p.next() == Some("patch")).then(|| {
                    let _sha = p.next();
                    (
                        p.next().unwrap().parse().unwrap(),
                        p.next().unwrap().parse().unwrap(),
                    )
                })
            })
            .collect()
    }
}

fn cut() -> Error {
    Error::Transport("connection reset".into())
}

impl Transport for Fake {
    fn sync(&self, _auth: &str, body: Vec<u8>) -> Result<Vec<u8>> {
        let req: SyncRequest = protocol::decode(&body)?;
        self.with(|s| s.log.push(format!("sync {}", req.push.len())));
        let resp = SyncResponse {
            epoch: "e1".into(),
            reset: false,
            results: req
                .push
                .iter()
                .map(|p| PushResult {
                    id: p.id.clone(),
                    outcome: PushOutcome::Accepted,
                })
                .collect(),
            records: Vec::new(),
            departures: Vec::new(),
            cursors: Vec::new(),
            more: false,
            reference: None,
            docs_digest: None,
            server_time_ms: 0,
        };
        protocol::encode_response(&resp, PROTOCOL_VERSION)
    }
    fn enroll(&self, _req: &EnrollRequest) -> Result<EnrollResponse> {
        Err(cut())
    }
    fn rotate(&self, _auth: &str) -> Result<RotateResponse> {
        Err(cut())
    }

    fn attachment_state(&self, _auth: &str, sha: &str) -> Result<Option<UploadState>> {
        self.with(|s| {
            s.log.push(format!("head {}", &sha[..8]));
            if let Some(b) = s.complete.get(sha) {
                return Ok(Some(UploadState {
                    offset: b.len() as u64,
                    length: Some(b.len() as u64),
                    complete: true,
                    discarded: false,
                }));
            }
            Ok(s.held.get(sha).map(|b| UploadState {
                offset: if s.head_says_zero { 0 } else { b.len() as u64 },
                length: None,
                complete: false,
                discarded: false,
            }))
        })
    }

    fn attachment_append(
        &self,
        _auth: &str,
        r: &AttachmentRef,
        offset: u64,
        bytes: &[u8],
    ) -> Result<UploadState> {
        self.with(|s| {
            s.log
                .push(format!("patch {} {offset} {}", &r.sha256[..8], bytes.len()));
            if s.refused.contains(&r.sha256) {
                return Err(Error::Server {
                    status: 404,
                    code: crate::sync::protocol::ErrorCode::Unknown,
                    message: String::new(),
                });
            }
            let state = |offset: u64, complete, discarded| UploadState {
                offset,
                length: Some(r.size),
                complete,
                discarded,
            };
            if s.complete.contains_key(&r.sha256) {
                return Ok(state(r.size, true, false));
            }
            let held = s.held.entry(r.sha256.clone()).or_default();
            if held.len() as u64 != offset {
                return Ok(state(held.len() as u64, false, false));
            }
            held.extend_from_slice(bytes);
            let n = held.len() as u64;
            let answer = if n == r.size {
                let whole = s.held.remove(&r.sha256).unwrap();
                let bad = s.corrupt.get_mut(&r.sha256).filter(|c| **c > 0);
                if let Some(c) = bad {
                    *c -= 1;
                    state(0, false, true)
                } else {
                    assert_eq!(hex::encode(Sha256::digest(&whole)), r.sha256);
                    s.complete.insert(r.sha256.clone(), whole);
                    state(n, true, false)
                }
            } else {
                state(n, false, false)
            };
            match &mut s.cut_after {
                Some(0) => Err(cut()),
                Some(k) => {
                    *k -= 1;
                    Ok(answer)
                }
                None => Ok(answer),
            }
        })
    }

    fn attachment_read(&self, _auth: &str, sha: &str, offset: u64, max: u64) -> Result<Vec<u8>> {
        self.with(|s| {
            s.log.push(format!("get {} {offset}", &sha[..8]));
            match &mut s.reads_cut_after {
                Some(0) => return Err(cut()),
                Some(k) => *k -= 1,
                None => {}
            }
            let b = s.complete.get(sha).ok_or(Error::Server {
                status: 404,
                code: crate::sync::protocol::ErrorCode::Unknown,
                message: String::new(),
            })?;
            let from = offset as usize;
            let to = (from + max as usize).min(b.len());
            Ok(b[from..to].to_vec())
        })
    }
}

fn enrolled() -> Phone {
    let ph = Phone::new();
    ph.s.set_server_link(&ServerLink {
        url: "http://fake".into(),
        device_id: "dev-1".into(),
        secret: "secret".into(),
        pending_secret: None,
        epoch: String::new(),
        reference_version: String::new(),
    })
    .unwrap();
    ph
}

/// Adds attachments of `sizes` bytes and a visit naming them all.
fn photos(ph: &Phone, sizes: &[usize]) -> Vec<AttachmentRef> {
    let refs: Vec<AttachmentRef> = sizes
        .iter()
        .enumerate()
        .map(|(i, n)| ph.s.add_attachment(&jpeg(*n, i as u8), None).unwrap())
        .collect();
    ph.visit_with(&refs.iter().map(ToString::to_string).collect::<Vec<_>>())
        .unwrap();
    refs
}

fn engine<'a>(ph: &'a Phone, t: &'a Fake) -> SyncEngine<'a> {
    let mut e = SyncEngine::new(&ph.s, t);
    e.attachment_chunk = 1000;
    // Appends of exactly 1000 bytes (a zero target never grows them).
    e.attachment_chunk_target = std::time::Duration::ZERO;
    e.download_chunk = 700;
    e
}

fn budget(bytes: u64) -> SyncOptions {
    SyncOptions {
        attachment_budget_bytes: bytes,
        attachment_budget_ms: 0,
    }
}

fn state(ph: &Phone, r: &AttachmentRef) -> Option<AttachmentState> {
    ph.s.attachment_info(&r.sha256).unwrap().map(|i| i.state)
}

#[test]
fn records_go_first_and_the_budget_holds_then_the_next_sync_continues() {
    let ph = enrolled();
    let refs = photos(&ph, &[2500, 2500, 2500]);
    let t = Fake::default();
    let mut seen = Vec::new();
    let report = engine(&ph, &t)
        .sync_with(
            &budget(4000),
            &mut |p| seen.push(p.clone()),
            &CancelFlag::new(),
        )
        .unwrap();
    let log = t.log();
    assert!(log[0].starts_with("sync "), "{log:?}");
    let first_att = log.iter().position(|l| !l.starts_with("sync")).unwrap();
    assert!(log[..first_att].iter().all(|l| l.starts_with("sync")));
    assert_eq!(report.pushed, 2, "producer and visit");
    assert_eq!(report.attachment_bytes_up, 4000);
    assert_eq!(report.attachments_completed, 1);
    assert_eq!(report.attachments_left, 2);
    assert!(
        report.attachment_errors.is_empty(),
        "{:?}",
        report.attachment_errors
    );
    assert_eq!(state(&ph, &refs[0]), Some(AttachmentState::Uploaded));
    assert_eq!(state(&ph, &refs[1]), Some(AttachmentState::Pending));
    assert_eq!(
        ph.s.attachment_info(&refs[1].sha256)
            .unwrap()
            .unwrap()
            .server_offset,
        1500
    );
    assert_eq!(t.with(|s| s.held[&refs[1].sha256].len()), 1500);
    assert_eq!(seen.last().unwrap().attachment_bytes_up, 4000);
    assert_eq!(seen.last().unwrap().attachments_completed, 1);

    // Without a budget the rest goes, from the server's offset: nothing is sent twice.
    let before = t.patched().len();
    let report = engine(&ph, &t)
        .sync(&mut |_| {}, &CancelFlag::new())
        .unwrap();
    assert_eq!(report.attachment_bytes_up, 1000 + 2500);
    assert_eq!(report.attachments_completed, 2);
    assert_eq!(report.attachments_left, 0);
    assert_eq!(t.patched()[before], (1500, 1000));
    for r in &refs {
        assert_eq!(state(&ph, r), Some(AttachmentState::Uploaded));
        assert_eq!(t.with(|s| s.complete[&r.sha256].len()), 2500);
    }
    // Nothing pending: a sync makes no attachment request.
    let n = t.log().len();
    engine(&ph, &t)
        .sync(&mut |_| {}, &CancelFlag::new())
        .unwrap();
    assert!(t.log()[n..].iter().all(|l| l.starts_with("sync")));
}

#[test]
fn a_cut_upload_continues_from_what_the_server_holds() {
    let ph = enrolled();
    let refs = photos(&ph, &[2500]);
    let t = Fake::default();
    // The answer to the second append is lost (the server stored its bytes).
    t.with(|s| s.cut_after = Some(1));
    let report = engine(&ph, &t)
        .sync(&mut |_| {}, &CancelFlag::new())
        .unwrap();
    assert_eq!(report.pushed, 2, "the records part stands");
    assert_eq!(report.attachment_errors.len(), 1, "{report:?}");
    assert!(report.attachment_errors[0].1.contains("connection reset"));
    assert_eq!(report.attachments_left, 1);
    assert_eq!(t.with(|s| s.held[&refs[0].sha256].len()), 2000);
    t.with(|s| s.cut_after = None);
    // A new engine (the app restarted): HEAD says 2000, 500 bytes go.
    let report = engine(&ph, &t)
        .sync(&mut |_| {}, &CancelFlag::new())
        .unwrap();
    assert_eq!(report.attachment_bytes_up, 500);
    assert_eq!(report.attachments_completed, 1);
    assert_eq!(state(&ph, &refs[0]), Some(AttachmentState::Uploaded));
}

#[test]
fn a_409_moves_the_upload_to_the_servers_offset() {
    let ph = enrolled();
    let refs = photos(&ph, &[2500]);
    let t = Fake::default();
    t.with(|s| {
        s.held
            .insert(refs[0].sha256.clone(), jpeg(2500, 0)[..1000].to_vec());
        s.head_says_zero = true;
    });
    let report = engine(&ph, &t)
        .sync(&mut |_| {}, &CancelFlag::new())
        .unwrap();
    assert_eq!(t.patched(), vec![(0, 1000), (1000, 1000), (2000, 500)]);
    assert_eq!(report.attachments_completed, 1);
    assert_eq!(state(&ph, &refs[0]), Some(AttachmentState::Uploaded));
}

#[test]
fn a_discarded_upload_starts_again_once_per_sync() {
    let ph = enrolled();
    let refs = photos(&ph, &[1500, 1200]);
    let t = Fake::default();
    t.with(|s| {
        s.corrupt.insert(refs[0].sha256.clone(), 1);
        s.corrupt.insert(refs[1].sha256.clone(), 5);
    });
    let report = engine(&ph, &t)
        .sync(&mut |_| {}, &CancelFlag::new())
        .unwrap();
    assert_eq!(state(&ph, &refs[0]), Some(AttachmentState::Uploaded));
    assert_eq!(state(&ph, &refs[1]), Some(AttachmentState::Pending));
    assert_eq!(report.attachments_completed, 1);
    assert_eq!(report.attachment_bytes_up, 2 * 1500 + 2 * 1200);
    assert_eq!(report.attachment_errors.len(), 1);
    assert_eq!(report.attachment_errors[0].0, refs[1].sha256);
    assert_eq!(report.attachments_left, 1);
}

#[test]
fn an_upload_refused_with_404_stays_pending_and_the_others_go() {
    let ph = enrolled();
    let refs = photos(&ph, &[800, 900]);
    let t = Fake::default();
    t.with(|s| {
        s.refused.insert(refs[0].sha256.clone());
    });
    let report = engine(&ph, &t)
        .sync(&mut |_| {}, &CancelFlag::new())
        .unwrap();
    assert_eq!(state(&ph, &refs[0]), Some(AttachmentState::Pending));
    assert_eq!(state(&ph, &refs[1]), Some(AttachmentState::Uploaded));
    assert!(report.attachment_errors.is_empty());
    assert_eq!(report.attachments_left, 1);
}

#[test]
fn a_pending_attachment_no_record_refers_to_is_not_sent() {
    let ph = enrolled();
    let orphan = ph.s.add_attachment(&jpeg(500, 7), None).unwrap();
    let t = Fake::default();
    let report = engine(&ph, &t)
        .sync(&mut |_| {}, &CancelFlag::new())
        .unwrap();
    assert!(t.log().iter().all(|l| l.starts_with("sync")));
    assert_eq!(state(&ph, &orphan), Some(AttachmentState::Pending));
    assert_eq!(report.attachments_left, 1);
}

#[test]
fn cancelling_between_chunks_keeps_the_offsets() {
    let ph = enrolled();
    let refs = photos(&ph, &[2500]);
    let t = Fake::default();
    let cancel = CancelFlag::new();
    let e = engine(&ph, &t)
        .sync(
            &mut |p| {
                if p.attachment_bytes_up > 0 {
                    cancel.cancel();
                }
            },
            &cancel,
        )
        .unwrap_err();
    assert!(matches!(e, Error::Cancelled), "{e}");
    assert_eq!(t.with(|s| s.held[&refs[0].sha256].len()), 1000);
    assert_eq!(
        ph.s.attachment_info(&refs[0].sha256)
            .unwrap()
            .unwrap()
            .server_offset,
        1000
    );
    let report = engine(&ph, &t)
        .sync(&mut |_| {}, &CancelFlag::new())
        .unwrap();
    assert_eq!(report.attachment_bytes_up, 1500);
    assert_eq!(state(&ph, &refs[0]), Some(AttachmentState::Uploaded));
}

#[test]
fn a_time_budget_of_one_millisecond_stops_after_a_chunk_at_most() {
    let ph = enrolled();
    let _refs = photos(&ph, &[2500, 2500]);
    let t = Fake::default();
    std::thread::sleep(std::time::Duration::from_millis(2));
    let report = engine(&ph, &t)
        .sync_with(
            &SyncOptions {
                attachment_budget_bytes: 0,
                attachment_budget_ms: 1,
            },
            &mut |_| std::thread::sleep(std::time::Duration::from_millis(2)),
            &CancelFlag::new(),
        )
        .unwrap();
    assert!(report.attachment_bytes_up <= 1000, "{report:?}");
    assert_eq!(report.attachments_left, 2);
}

#[test]
fn a_cut_download_continues_from_the_bytes_kept() {
    let ph = enrolled();
    let refs = photos(&ph, &[2500, 1800]);
    let t = Fake::default();
    engine(&ph, &t)
        .sync(&mut |_| {}, &CancelFlag::new())
        .unwrap();
    // Evicted from the phone (still referred to); the server has both.
    ph.s.set_attachment_cache_budget(0).unwrap();
    assert_eq!(state(&ph, &refs[0]), None);
    ph.s.set_attachment_cache_budget(10_000).unwrap();
    t.with(|s| s.reads_cut_after = Some(2));
    let e = engine(&ph, &t)
        .fetch_attachment(&refs[0].sha256)
        .unwrap_err();
    assert!(matches!(e, Error::Transport(_)), "{e}");
    t.with(|s| s.reads_cut_after = None);
    let n = t.log().len();
    let bytes = engine(&ph, &t).fetch_attachment(&refs[0].sha256).unwrap();
    assert_eq!(bytes, jpeg(2500, 0));
    assert_eq!(
        t.log()[n..],
        [
            "get ".to_string() + &refs[0].sha256[..8] + " 1400",
            format!("get {} 2100", &refs[0].sha256[..8])
        ]
    );
    assert_eq!(state(&ph, &refs[0]), Some(AttachmentState::Cached));
    assert!(!ph
        .s
        .attachment_dir()
        .join(format!("{}.part", refs[0].sha256))
        .exists());
    // Held now: no request.
    let n = t.log().len();
    engine(&ph, &t).fetch_attachment(&refs[0].sha256).unwrap();
    assert_eq!(t.log().len(), n);
    // Prefetch brings the other.
    let pre = engine(&ph, &t)
        .prefetch_attachments(0, &CancelFlag::new())
        .unwrap();
    assert_eq!((pre.fetched, pre.bytes_down), (1, 1800));
    assert_eq!(ph.s.attachment(&refs[1].sha256).unwrap(), jpeg(1800, 1));
    // An attachment no record here names is not fetched.
    let e = engine(&ph, &t)
        .fetch_attachment(&"b".repeat(64))
        .unwrap_err();
    assert!(
        matches!(
            e,
            Error::NotFound {
                kind: "attachment",
                ..
            }
        ),
        "{e}"
    );
}

#[test]
fn transports_without_attachments_say_so() {
    struct Bare;
    impl Transport for Bare {
        fn sync(&self, _: &str, _: Vec<u8>) -> Result<Vec<u8>> {
            Err(cut())
        }
        fn enroll(&self, _: &EnrollRequest) -> Result<EnrollResponse> {
            Err(cut())
        }
        fn rotate(&self, _: &str) -> Result<RotateResponse> {
            Err(cut())
        }
    }
    let e = Bare.attachment_state("a", "b").unwrap_err();
    assert!(e.to_string().contains("attachments not supported"), "{e}");
}

#[test]
fn appends_grow_to_the_target_time_on_the_link_as_measured() {
    use std::time::Duration;
    let target = Duration::from_secs(20);
    // 8 KB/s (64 kbit/s): 20 s carry 160 KB.
    let n = super::attachments::next_chunk(8_000, Duration::from_secs(1), target, 1000);
    assert_eq!(n, 160_000);
    // Never below the first append's size, never above the largest.
    let n = super::attachments::next_chunk(100, Duration::from_secs(10), target, 1000);
    assert_eq!(n, 1000);
    let n = super::attachments::next_chunk(1 << 30, Duration::from_millis(1), target, 1000);
    assert_eq!(n, crate::sync::MAX_ATTACHMENT_CHUNK as u64);
}
