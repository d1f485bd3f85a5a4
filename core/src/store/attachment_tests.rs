//! Attachments on the phone: durable adds, the same bytes twice, records refused for an
//! attachment the phone does not hold, the cache's budget and order, garbage collection
//! after upload, and a full disk.
#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use std::path::PathBuf;

use super::{AttachmentState, Store};
use crate::attachment::AttachmentRef;
use crate::model::{
    default_template, Finding, GridKind, GridLevel, GridNode, Person, Producer, ProducerType, Role,
    Severity, Visit,
};
use crate::Error;

const REGION: &str = "15";
const VILLAGE: &str = "152522101201";

/// A JPEG-looking blob of `n` bytes (n ≥ 12), distinct per `seed`.
pub(crate) fn jpeg(n: usize, seed: u8) -> Vec<u8> {
    let mut b = vec![0xFF, 0xD8, 0xFF, 0xE0];
    b.extend((0..n - 4).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)));
    b
}

fn node(code: &str, level: GridLevel, parent: Option<&str>) -> GridNode {
    GridNode {
        code: code.into(),
        name: format!("网格{code}"),
        level,
        kind: GridKind::Pastoral,
        parent: parent.map(Into::into),
    }
}

/// A store file with a grid tree, a person and a producer.
pub(crate) struct Phone {
    pub(crate) s: Store,
    pub(crate) pid: String,
    pub(crate) path: PathBuf,
    pub(crate) _dir: tempfile::TempDir,
}

impl Phone {
    pub(crate) fn new() -> Phone {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("phone.db");
        let s = Store::open_unchecked(&path).unwrap();
        let me = Person {
            id: "liaison-1".into(),
            name: "巴特尔".into(),
            phone: "13904791111".into(),
            role: Role::Liaison,
            grids: vec![VILLAGE.into()],
        };
        s.upsert_grids(&[
            node(REGION, GridLevel::Region, None),
            node("1525", GridLevel::League, Some(REGION)),
            node("152522", GridLevel::Banner, Some("1525")),
            node("152522101", GridLevel::Township, Some("152522")),
            node(VILLAGE, GridLevel::Village, Some("152522101")),
        ])
        .unwrap();
        s.set_profile(&me).unwrap();
        s.upsert_people(&[me]).unwrap();
        let mut p = Producer::new(
            "苏和合作社",
            ProducerType::Cooperative,
            "苏和",
            "0479-8221234",
            VILLAGE,
            "",
            crate::now_ms(),
        );
        let first = "93152522MA0000001";
        let check = crate::validate::uscc_check_char(first).unwrap();
        p.credit_code = Some(format!("{first}{check}"));
        let p = s.create_producer(p).unwrap();
        Phone {
            s,
            pid: p.id,
            path,
            _dir: dir,
        }
    }

    /// A new visit with one finding whose photos are `photos`.
    pub(crate) fn visit_with(&self, photos: &[String]) -> crate::Result<Visit> {
        let tpl = default_template(REGION);
        let mut v = Visit::new(&self.pid, VILLAGE, "liaison-1", &tpl, crate::now_ms());
        v.findings.push(Finding {
            id: crate::new_id(),
            item_id: None,
            description: "饲料间存放兽药".into(),
            severity: Severity::Minor,
            photos: photos.to_vec(),
            recorded_by: "liaison-1".into(),
            recorded_at_ms: crate::now_ms(),
        });
        self.s.save_visit(v)
    }

    fn file(&self, sha: &str) -> PathBuf {
        self.s.attachment_dir().join(sha)
    }

    /// Files in the attachment directory (temporary and partial ones included).
    fn files(&self) -> Vec<String> {
        let mut out: Vec<String> = std::fs::read_dir(self.s.attachment_dir())
            .map(|d| {
                d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        out.sort();
        out
    }
}

fn state(s: &Store, sha: &str) -> Option<AttachmentState> {
    s.attachment_info(sha).unwrap().map(|i| i.state)
}

#[test]
fn an_added_attachment_is_on_disk_and_in_its_row_before_add_returns() {
    let ph = Phone::new();
    let bytes = jpeg(5000, 1);
    let r = ph.s.add_attachment(&bytes, Some("image/jpeg")).unwrap();
    assert_eq!(r, AttachmentRef::of_bytes(&bytes, None, u64::MAX).unwrap());
    assert_eq!(
        ph.s.attachment_dir(),
        PathBuf::from(format!("{}.attachments", ph.path.display()))
    );
    assert_eq!(std::fs::read(ph.file(&r.sha256)).unwrap(), bytes);
    assert_eq!(ph.files(), vec![r.sha256.clone()], "no temporary file left");
    let info = ph.s.attachment_info(&r.sha256).unwrap().unwrap();
    assert_eq!(info.state, AttachmentState::Pending);
    assert_eq!(info.reference, r);
    assert!(!info.referenced);
    // Reopened, the row and the bytes are there.
    let path = ph.path.clone();
    let Phone { s, _dir, .. } = ph;
    drop(s);
    let s = Store::open_unchecked(&path).unwrap();
    assert_eq!(s.attachment(&r.sha256).unwrap(), bytes);
    assert_eq!(s.pending_attachments().unwrap().len(), 1);
}

#[test]
fn the_same_bytes_twice_are_one_attachment() {
    let ph = Phone::new();
    let bytes = jpeg(300, 2);
    let a = ph.s.add_attachment(&bytes, None).unwrap();
    let b = ph.s.add_attachment(&bytes, Some("image/jpeg")).unwrap();
    assert_eq!(a, b);
    assert_eq!(ph.s.attachments().unwrap().len(), 1);
    let file = std::env::temp_dir().join(format!("gridsync-att-{}.jpg", a.sha256));
    std::fs::write(&file, &bytes).unwrap();
    assert_eq!(ph.s.add_attachment_file(&file, None).unwrap(), a);
    std::fs::remove_file(&file).unwrap();
    assert_eq!(ph.s.attachments().unwrap().len(), 1);
    // A file written but whose row was lost (a crash between them) is written again.
    let c = ph.s.add_attachment(&jpeg(400, 3), None).unwrap();
    ph.s.write(|tx| {
        tx.execute("DELETE FROM attachments WHERE sha256 = ?1", [&c.sha256])?;
        Ok(())
    })
    .unwrap();
    assert_eq!(ph.s.add_attachment(&jpeg(400, 3), None).unwrap(), c);
    assert_eq!(ph.s.attachment(&c.sha256).unwrap(), jpeg(400, 3));
}

#[test]
fn bad_attachments_are_refused_naming_what_is_wrong() {
    let ph = Phone::new();
    let e = ph.s.add_attachment(b"<html>", None).unwrap_err();
    assert!(
        matches!(&e, Error::Invalid(i) if i.field == "attachment"),
        "{e}"
    );
    let e =
        ph.s.add_attachment(&jpeg(100, 1), Some("image/png"))
            .unwrap_err();
    assert!(e.to_string().contains("not a image/png"), "{e}");
    ph.s.set_attachment_max_bytes(50);
    let e = ph.s.add_attachment(&jpeg(100, 1), None).unwrap_err();
    assert!(e.to_string().contains("at most 50"), "{e}");
    let file = ph._dir.path().join("big.jpg");
    std::fs::write(&file, jpeg(100, 1)).unwrap();
    let e = ph.s.add_attachment_file(&file, None).unwrap_err();
    assert!(e.to_string().contains("at most 50"), "{e}");
    let e =
        ph.s.add_attachment_file(ph._dir.path().join("missing.jpg"), None)
            .unwrap_err();
    assert!(matches!(e, Error::Io { .. }), "{e}");
    assert!(ph.s.attachments().unwrap().is_empty());
    let e = ph.s.attachment("nothex").unwrap_err();
    assert!(
        matches!(&e, Error::Invalid(i) if i.field == "sha256"),
        "{e}"
    );
    let e = ph.s.attachment(&"a".repeat(64)).unwrap_err();
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
fn a_record_naming_an_attachment_the_phone_does_not_hold_is_refused() {
    let ph = Phone::new();
    let held = ph.s.add_attachment(&jpeg(200, 1), None).unwrap();
    let absent = AttachmentRef::of_bytes(&jpeg(200, 2), None, u64::MAX).unwrap();
    let e = ph
        .visit_with(&[held.to_string(), absent.to_string()])
        .unwrap_err();
    match &e {
        Error::Invalid(i) => {
            assert_eq!(i.field, "findings[0].photos[1]");
            assert!(i.problem.contains("does not hold"), "{}", i.problem);
        }
        other => panic!("expected Invalid, got {other:?}"),
    }
    // Another size for held bytes is refused too.
    let wrong = AttachmentRef {
        size: held.size + 1,
        ..held.clone()
    };
    let e = ph.visit_with(&[wrong.to_string()]).unwrap_err();
    assert!(
        matches!(&e, Error::Invalid(i) if i.field == "findings[0].photos[0]"),
        "{e}"
    );
    // Free text (written before attachments existed) is not an attachment.
    let v = ph
        .visit_with(&[held.to_string(), "IMG_0001.jpg".into()])
        .unwrap();
    assert!(
        ph.s.attachment_info(&held.sha256)
            .unwrap()
            .unwrap()
            .referenced
    );
    // Editing a record that already names an attachment not held (pulled from another
    // phone) is allowed: only new references are checked.
    ph.s.write(|tx| {
        tx.execute("DELETE FROM attachments WHERE sha256 = ?1", [&held.sha256])?;
        Ok(())
    })
    .unwrap();
    let mut v = ph.s.visit(&v.id).unwrap();
    v.findings[0].description = "已整改".into();
    let v = ph.s.save_visit(v).unwrap();
    v.findings[0].photos.len();
    let mut v2 = v.clone();
    v2.findings[0].photos.push(absent.to_string());
    let e = ph.s.save_visit(v2).unwrap_err();
    assert!(
        matches!(&e, Error::Invalid(i) if i.field == "findings[0].photos[2]"),
        "{e}"
    );
}

#[test]
fn the_cache_evicts_the_least_recently_read_and_never_a_pending_one() {
    let ph = Phone::new();
    let s = &ph.s;
    // Three pending attachments referred to by a record, then "uploaded".
    let refs: Vec<AttachmentRef> = (0..4)
        .map(|i| s.add_attachment(&jpeg(1000, i), None).unwrap())
        .collect();
    ph.visit_with(&refs.iter().map(ToString::to_string).collect::<Vec<_>>())
        .unwrap();
    s.set_attachment_cache_budget(2500).unwrap();
    // Pending ones are never evicted, whatever the budget.
    s.set_attachment_cache_budget(0).unwrap();
    assert_eq!(s.pending_attachments().unwrap().len(), 4);
    s.set_attachment_cache_budget(2500).unwrap();
    for r in &refs[..3] {
        s.mark_uploaded(&r.sha256).unwrap();
    }
    // 3000 uploaded bytes do not fit in 2500: the least recently read (the first) went.
    assert_eq!(state(s, &refs[0].sha256), None);
    assert!(!ph.file(&refs[0].sha256).exists());
    assert_eq!(state(s, &refs[1].sha256), Some(AttachmentState::Uploaded));
    // Reading refs[1] makes refs[2] the least recently read.
    s.attachment(&refs[1].sha256).unwrap();
    s.set_attachment_cache_budget(1500).unwrap();
    assert_eq!(state(s, &refs[2].sha256), None);
    assert_eq!(state(s, &refs[1].sha256), Some(AttachmentState::Uploaded));
    assert_eq!(state(s, &refs[3].sha256), Some(AttachmentState::Pending));
    s.set_attachment_cache_budget(0).unwrap();
    assert_eq!(state(s, &refs[1].sha256), None);
    assert_eq!(state(s, &refs[3].sha256), Some(AttachmentState::Pending));
    assert_eq!(ph.files(), vec![refs[3].sha256.clone()]);
}

#[test]
fn an_uploaded_attachment_no_record_refers_to_is_deleted() {
    let ph = Phone::new();
    let s = &ph.s;
    let kept = s.add_attachment(&jpeg(600, 1), None).unwrap();
    let dropped = s.add_attachment(&jpeg(600, 2), None).unwrap();
    let orphan = s.add_attachment(&jpeg(600, 3), None).unwrap();
    let v = ph
        .visit_with(&[kept.to_string(), dropped.to_string()])
        .unwrap();
    // The visit drops a photo before it is uploaded.
    let mut v = s.visit(&v.id).unwrap();
    v.findings[0].photos.truncate(1);
    s.save_visit(v).unwrap();
    s.mark_uploaded(&kept.sha256).unwrap();
    s.mark_uploaded(&dropped.sha256).unwrap();
    assert_eq!(state(s, &kept.sha256), Some(AttachmentState::Uploaded));
    assert_eq!(state(s, &dropped.sha256), None);
    assert!(!ph.file(&dropped.sha256).exists());
    // A pending attachment no record refers to (yet) is kept: nothing recorded is lost.
    s.collect_attachments().unwrap();
    assert_eq!(state(s, &orphan.sha256), Some(AttachmentState::Pending));
}

#[test]
fn a_full_disk_leaves_no_row_no_partial_file_and_nothing_else_disturbed() {
    let ph = Phone::new();
    let s = &ph.s;
    let first = s.add_attachment(&jpeg(800, 1), None).unwrap();
    let v = ph.visit_with(&[first.to_string()]).unwrap();
    for after in [0, 100, 5000] {
        s.fail_next_attachment_write(after);
        let e = s.add_attachment(&jpeg(5000, 9), None).unwrap_err();
        assert!(e.is_disk_full(), "{e}");
        assert!(e.to_string().contains("writing attachment"), "{e}");
        assert_eq!(s.attachments().unwrap().len(), 1);
        assert_eq!(ph.files(), vec![first.sha256.clone()]);
    }
    // The rest of the store works; the same photo can be added once the disk has room.
    assert_eq!(s.attachment(&first.sha256).unwrap(), jpeg(800, 1));
    assert_eq!(
        s.visit(&v.id).unwrap().findings[0].photos,
        vec![first.to_string()]
    );
    let r = s.add_attachment(&jpeg(5000, 9), None).unwrap();
    assert_eq!(s.attachment(&r.sha256).unwrap(), jpeg(5000, 9));
}

#[test]
fn an_in_memory_store_keeps_attachments_in_a_private_directory() {
    let s = Store::open_in_memory().unwrap();
    let r = s.add_attachment(&jpeg(100, 1), None).unwrap();
    let dir = s.attachment_dir().to_path_buf();
    assert!(dir.join(&r.sha256).exists());
    assert_eq!(s.attachment(&r.sha256).unwrap(), jpeg(100, 1));
    drop(s);
    assert!(!dir.exists());
}

#[test]
fn a_damaged_file_is_reported_not_returned() {
    let ph = Phone::new();
    let r = ph.s.add_attachment(&jpeg(100, 1), None).unwrap();
    std::fs::write(ph.file(&r.sha256), jpeg(100, 2)).unwrap();
    let e = ph.s.attachment(&r.sha256).unwrap_err();
    assert!(matches!(e, Error::Corrupt { .. }), "{e}");
}
