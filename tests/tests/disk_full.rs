//! A phone whose storage runs out (issue: reliability under faults). The phone runs as its
//! own process (`phone-worker fill`) on a real SQLite file and edits until writing fails:
//!
//! - on a small tmpfs (a real full disk, `ENOSPC`), when this machine lets the test mount
//!   one (root); space returns by remounting it larger;
//! - under a file-size limit (`RLIMIT_FSIZE` with `SIGXFSZ` ignored, so writes past it fail
//!   with `EFBIG`, an I/O error), which needs no privileges; space returns by raising the
//!   limit of the running process with `prlimit`.
//!
//! Either way: the failing edit gets a clear error (no panic), the file passes
//! `PRAGMA integrity_check`, no acknowledged edit is lost, and once there is room again the
//! same running app edits and syncs, and a second device receives every acknowledged edit.

// Test code: an unwrap is an assertion, in helpers as in test functions.
#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::Duration;

use gridsync_core::model::Role;
use gridsync_core::store::Store;
use gridsync_tests::*;

fn lines_of(child: &mut Child) -> Receiver<String> {
    let out = child.stdout.take().expect("piped stdout");
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// A tmpfs mounted for the test, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(at).ok()?;
        let ok = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size}"),
                "tmpfs",
                at.to_str()?,
            ])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs(at.to_path_buf()))
    }

    fn grow(&self, size: &str) {
        let st = Command::new("mount")
            .args([
                "-o",
                &format!("remount,size={size}"),
                self.0.to_str().unwrap(),
            ])
            .status()
            .expect("remount");
        assert!(st.success(), "remount failed");
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        Command::new("umount").arg(&self.0).status().ok();
    }
}

enum Room<'a> {
    Tmpfs(&'a Tmpfs),
    FileSizeLimit,
}

/// Runs the fill scenario on a phone whose store lives in `store_dir`.
fn fill_and_recover(dir: &Path, store_dir: &Path, room: Room<'_>) {
    let server = TestServer::start(&dir.join("server"));
    let data = small_dataset();
    server.load(&data);
    let liaison = person_in(&data, Role::Liaison, "DEMO-T01-V01");
    let phone = Phone::enrol(&server, &server.url(), store_dir, "full", &liaison.id);
    phone.sync().unwrap();
    let observer = Phone::enrol(&server, &server.url(), dir, "observer", &liaison.id);
    observer.sync().unwrap();
    let path = phone.path.clone();
    drop(phone);

    let worker = env!("CARGO_BIN_EXE_phone-worker");
    let err_path = dir.join("worker.err");
    let mut cmd = match room {
        Room::Tmpfs(_) => {
            let mut c = Command::new(worker);
            c.args(["fill", path.to_str().unwrap()]);
            c
        }
        Room::FileSizeLimit => {
            // Soft limit only, so it can be raised later; writes past it fail with EFBIG.
            let limit = std::fs::metadata(&path).unwrap().len() + 300 * 1024;
            let mut c = Command::new("prlimit");
            c.arg(format!("--fsize={limit}:")).args([
                "sh",
                "-c",
                "trap '' XFSZ; exec \"$0\" \"$@\"",
                worker,
                "fill",
                path.to_str().unwrap(),
            ]);
            c
        }
    };
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .expect("spawn phone-worker");
    let rx = lines_of(&mut child);
    let next = |what: &str| -> String {
        rx.recv_timeout(Duration::from_secs(120))
            .unwrap_or_else(|_| {
                panic!(
                    "waiting for {what}: the worker went quiet; stderr: {}",
                    std::fs::read_to_string(&err_path).unwrap_or_default()
                )
            })
    };
    let mut acked: Vec<(String, String, String)> = Vec::new();
    let take = |line: &str, acked: &mut Vec<(String, String, String)>| -> bool {
        let p: Vec<&str> = line.splitn(4, ' ').collect();
        if p.len() == 4 && p[0] == "ACK" {
            acked.push((p[1].into(), p[2].into(), p[3].into()));
            return true;
        }
        false
    };
    let full = loop {
        let line = next("the disk to fill");
        assert!(!line.starts_with("FATAL"), "{line}");
        if let Some(e) = line.strip_prefix("FULL ") {
            break e.to_string();
        }
        assert!(take(&line, &mut acked), "unexpected line {line}");
    };
    let before_full = acked.len();
    println!("disk full after {before_full} acknowledged edits: {full}");
    assert!(
        full.contains("full") || full.contains("I/O error"),
        "the error does not say what is wrong: {full}"
    );
    let mut full_sync = String::new();
    loop {
        let line = next("the worker to wait for room");
        assert!(!line.starts_with("FATAL"), "{line}");
        if line == "WAITING" {
            break;
        }
        if let Some(r) = line.strip_prefix("FULL-SYNC ") {
            full_sync = r.to_string();
        } else if let Some(e) = line.strip_prefix("FULL-EDIT ") {
            assert!(
                e.contains("full") || e.contains("I/O error"),
                "unclear error: {e}"
            );
        } else {
            assert!(take(&line, &mut acked), "unexpected line {line}");
        }
    }
    println!("sync while full: {full_sync}");
    assert_eq!(
        integrity_check(&path),
        "ok",
        "the store is damaged while the disk is full"
    );

    match room {
        Room::Tmpfs(t) => t.grow("64m"),
        Room::FileSizeLimit => {
            let st = Command::new("prlimit")
                .args(["--pid", &child.id().to_string(), "--fsize=unlimited"])
                .status()
                .expect("prlimit");
            assert!(st.success(), "prlimit could not raise the limit");
        }
    }
    writeln!(child.stdin.as_mut().unwrap(), "ROOM").unwrap();
    let mut after = 0;
    loop {
        let line = next("edits after space returned");
        assert!(!line.starts_with("FATAL"), "{line}");
        if line == "DONE" {
            break;
        }
        if let Some(c) = line.strip_prefix("COUNTS ") {
            assert_eq!(c, "unsynced=0 rejected=0 corrupt=0", "after the sync");
        } else if !line.starts_with("SYNC-OK") {
            assert!(take(&line, &mut acked), "unexpected line {line}");
            after += 1;
        }
    }
    assert_eq!(after, 5, "five edits after space returned");
    assert!(child.wait().unwrap().success());
    let stderr = std::fs::read_to_string(&err_path).unwrap_or_default();
    assert!(
        !stderr.contains("panicked"),
        "the worker panicked: {stderr}"
    );
    assert_eq!(integrity_check(&path), "ok");

    // Nothing acknowledged is lost: on the phone, and on a second device after sync.
    let store = Store::open(&path).unwrap();
    assert!(store.corrupt_records().unwrap().is_empty());
    observer.sync().unwrap();
    for (id, what, value) in &acked {
        for (who, s) in [("phone", &store), ("second device", &observer.store)] {
            let rec = s
                .record(id)
                .unwrap_or_else(|e| panic!("{who}: acknowledged record {id} is gone: {e}"));
            if what == "finding" {
                let gridsync_core::model::Record::Visit(v) = rec else {
                    panic!("{id} is not a visit")
                };
                assert!(
                    v.findings.iter().any(|f| &f.id == value),
                    "{who}: finding {value} lost"
                );
            }
        }
    }
    println!("{} acknowledged edits ({before_full} before the disk filled, {after} after) all present on both devices", acked.len());
}

#[test]
fn full_disk_on_a_small_tmpfs() {
    let dir = tempfile::tempdir().unwrap();
    let Some(fs) = Tmpfs::mount(&dir.path().join("tmpfs"), "2m") else {
        println!("skipped: this machine does not let the test mount a tmpfs (needs root); the file-size-limit test covers the same path");
        return;
    };
    fill_and_recover(dir.path(), &fs.0.clone(), Room::Tmpfs(&fs));
}

#[test]
fn write_errors_under_a_file_size_limit() {
    if Command::new("prlimit")
        .arg("--version")
        .stdout(Stdio::null())
        .status()
        .is_err()
    {
        panic!("prlimit (util-linux) is needed for this test");
    }
    let dir = tempfile::tempdir().unwrap();
    let store_dir = dir.path().join("phone");
    std::fs::create_dir_all(&store_dir).unwrap();
    fill_and_recover(dir.path(), &store_dir, Room::FileSizeLimit);
}
