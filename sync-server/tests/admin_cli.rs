//! The admin command line, run as a real process on a real data directory.

use std::process::Command;

fn admin(data: &std::path::Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_gridsync-server"))
        .arg("admin")
        .arg("--data")
        .arg(data)
        .args(args)
        .env_remove("GRIDSYNC_DATABASE")
        .output()
        .expect("run gridsync-server");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn grid_import_people_codes_devices_and_audit() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // A bad row names its line and column, and nothing is imported.
    let bad = dir.path().join("bad.csv");
    std::fs::write(
        &bad,
        "code,name,level,parent,kind\n15,内蒙古自治区,region,,mixed\n1525,锡林郭勒盟,league,15,pastoral\n152522,阿巴嘎旗,banner,1525,pastorl\n",
    )
    .unwrap();
    let (ok, _, err) = admin(&data, &["import-grids", bad.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        err.contains("line 4") && err.contains("column kind") && err.contains("pastorl"),
        "{err}"
    );
    let (ok, out, _) = admin(&data, &["status"]);
    assert!(ok);
    assert!(out.contains("grids: 0"), "nothing half-imported: {out}");
    let good = dir.path().join("good.csv");
    std::fs::write(
        &good,
        "code,name,level,parent,kind\n15,内蒙古自治区,region,,mixed\n1525,锡林郭勒盟,league,15,pastoral\n152522,阿巴嘎旗,banner,1525,pastoral\n152522101,别力古台镇,township,152522,pastoral\n152522101001,巴彦嘎查,village,152522101,pastoral\n",
    )
    .unwrap();
    let (ok, out, err) = admin(&data, &["import-grids", good.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(out.contains("imported 5"), "{out}");
    assert!(admin(&data, &["status"]).1.contains("grids: 5"));
    // People: a bad phone is refused with the field named.
    let (ok, _, err) = admin(
        &data,
        &[
            "add-person",
            "--id",
            "l1",
            "--name",
            "乌日娜",
            "--phone",
            "123",
            "--role",
            "liaison",
            "--grid",
            "152522101001",
        ],
    );
    assert!(!ok && err.contains("phone"), "{err}");
    let (ok, _, err) = admin(
        &data,
        &[
            "add-person",
            "--id",
            "l1",
            "--name",
            "乌日娜",
            "--phone",
            "13912345678",
            "--role",
            "liaison",
            "--grid",
            "nowhere",
        ],
    );
    assert!(!ok && err.contains("nowhere"), "{err}");
    let (ok, _, err) = admin(
        &data,
        &[
            "add-person",
            "--id",
            "l1",
            "--name",
            "乌日娜",
            "--phone",
            "13912345678",
            "--role",
            "liaison",
            "--grid",
            "152522101001",
        ],
    );
    assert!(ok, "{err}");
    // A code, as text and as a QR code.
    let qr = dir.path().join("code.svg");
    let (ok, out, err) = admin(
        &data,
        &[
            "issue-code",
            "--person",
            "l1",
            "--qr",
            qr.to_str().unwrap(),
            "--json",
        ],
    );
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let code = v["code"].as_str().unwrap();
    assert_eq!(code.len(), 14);
    let svg = std::fs::read_to_string(&qr).unwrap();
    assert!(
        svg.starts_with("<?xml") && svg.contains("<svg"),
        "{}",
        &svg[..60.min(svg.len())]
    );
    let (ok, _, err) = admin(&data, &["issue-code", "--person", "ghost"]);
    assert!(!ok && err.contains("ghost"), "{err}");
    // No devices yet; revoking an unknown one fails clearly.
    let (ok, out, _) = admin(&data, &["list-devices", "--json"]);
    assert!(ok);
    assert_eq!(out.trim(), "[]");
    let (ok, _, err) = admin(
        &data,
        &["revoke-device", "--device", "nope", "--reason", "x"],
    );
    assert!(!ok && err.contains("nope"), "{err}");
    // Reassignment and the audit trail. A liaison works at villages: a township is
    // refused, naming the grid and the role.
    let (ok, _, err) = admin(
        &data,
        &["assign-grids", "--person", "l1", "--grid", "152522101"],
    );
    assert!(
        !ok && err.contains("'152522101'") && err.contains("liaison"),
        "{err}"
    );
    let (ok, out, err) = admin(
        &data,
        &["assign-grids", "--person", "l1", "--grid", "152522101001"],
    );
    assert!(ok, "{err}");
    assert!(out.contains("152522101001"));
    let (ok, out, _) = admin(&data, &["audit", "--person", "l1", "--json"]);
    assert!(ok);
    assert!(serde_json::from_str::<serde_json::Value>(out.trim())
        .unwrap()
        .is_array());
    let (ok, _, err) = admin(&data, &["audit", "--person", "a", "--grid", "b"]);
    assert!(!ok && err.contains("at most one"), "{err}");
}

#[test]
fn backup_carries_attachments_and_gc_deletes_unreferenced_ones() {
    use gridsync_core::attachment::AttachmentRef;
    use gridsync_core::model::RecordKind;
    use gridsync_core::sync::protocol::PushRecord;
    use gridsync_server::storage::sqlite::SqliteStorage;
    use gridsync_server::storage::{
        AppendOutcome, AttachmentLimits, Author, PushDecision, Storage, StoredRecord,
    };

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let s = SqliteStorage::open(data.join("gridsync.db")).unwrap();
    let mut bytes = vec![0xFF, 0xD8, 0xFF, 0xE0];
    bytes.extend((0..5000u32).map(|i| i as u8));
    let r = AttachmentRef::of_bytes(&bytes, None, u64::MAX).unwrap();
    let author = Author {
        person_id: "p1".into(),
        device_id: Some("d1".into()),
    };
    let push_visit = |refs: Vec<AttachmentRef>, change: &[u8]| {
        let push = vec![PushRecord {
            id: "v1".into(),
            kind: RecordKind::Visit.tag(),
            changes: change.to_vec(),
            heads: vec![[change.len() as u8; 32]],
        }];
        let mut decide = |_: Option<&StoredRecord>, p: &PushRecord| PushDecision::Store {
            kind: RecordKind::Visit,
            grid: "G".into(),
            doc: p.changes.clone(),
            heads: vec![1; 32],
            new_changes: p.changes.clone(),
            action: "create",
            attachments: refs.clone(),
            record: None,
        };
        s.apply_push(&author, &push, &mut decide).unwrap();
    };
    push_visit(vec![r.clone()], b"a");
    let done = s
        .append_attachment("d1", &r, 0, &bytes, &AttachmentLimits::default())
        .unwrap();
    assert_eq!(done, AppendOutcome::Completed);
    let backups = dir.path().join("backups");
    std::fs::create_dir_all(&backups).unwrap();
    let dest = backups.join("b.db");
    let (ok, _, err) = admin(&data, &["backup", dest.to_str().unwrap()]);
    assert!(ok, "{err}");
    let copied = backups
        .join("attachments")
        .join(&r.sha256[..2])
        .join(&r.sha256);
    assert_eq!(std::fs::read(copied).unwrap(), bytes);
    // Referenced: kept.
    let (ok, out, err) = admin(&data, &["gc-attachments"]);
    assert!(ok, "{err}");
    assert!(out.contains("deleted 0 attachments"), "{out}");
    // The visit drops the photo: the next collection deletes it.
    push_visit(Vec::new(), b"bb");
    let (ok, out, err) = admin(&data, &["gc-attachments", "--older-than-days", "3"]);
    assert!(ok, "{err}");
    assert!(
        out.contains(&r.sha256)
            && out.contains("no record refers to it")
            && out.contains("deleted 1 attachments (5004 bytes)"),
        "{out}"
    );
    assert!(s.attachment(&r.sha256).unwrap().is_none());
}

#[test]
fn rebuild_query_tables_repairs_missing_damaged_and_stale_rows() {
    use gridsync_server::dataset::{generate, DatasetSpec};
    use gridsync_server::storage::sqlite::SqliteStorage;
    use gridsync_server::storage::Storage;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let db = data.join("gridsync.db");
    let set = generate(&DatasetSpec {
        producers_per_township: 5,
        visits_per_producer: 2,
        ..DatasetSpec::demo()
    });
    let (expected, records) = {
        let s = SqliteStorage::open(&db).unwrap();
        gridsync_server::demo::load_dataset(&s, &set).unwrap();
        let n: i64 = s.record_counts().unwrap().iter().map(|c| c.1).sum();
        (s.query_snapshot().unwrap(), n)
    };
    assert_eq!(expected.producers.len(), set.producers.len());
    assert_eq!(expected.visits.len(), set.visits.len());
    let snapshot = || SqliteStorage::open(&db).unwrap().query_snapshot().unwrap();
    // Every visit row gone, a producer's row damaged, one missing, one for no record.
    rusqlite::Connection::open(&db)
        .unwrap()
        .execute_batch(&format!(
            "DELETE FROM q_visits;
             UPDATE q_producers SET name = 'damaged', last_visit_ms = NULL WHERE id = '{}';
             DELETE FROM q_producers WHERE id = '{}';
             INSERT INTO q_producers (id, grid, name, owner, phone, producer_type, status, review_state, risk, created_by, created_at_ms, updated_at_ms)
                 VALUES ('ghost', 'G', 'ghost', 'o', '1', 'family_ranch', 'active', 'draft', 'low', 'p1', 1, 1);",
            set.producers[0].id, set.producers[1].id
        ))
        .unwrap();
    assert_ne!(snapshot(), expected);
    let (ok, out, err) = admin(&data, &["rebuild-query-tables"]);
    assert!(ok, "{err}");
    assert!(
        out.contains(&format!("from {records} records"))
            && out.contains(&format!("{} producers", set.producers.len()))
            && out.contains(&format!("{} visits", set.visits.len()))
            && out.contains("1 stale rows deleted"),
        "{out}"
    );
    assert_eq!(snapshot(), expected);
    // Again: the same rows, nothing stale.
    let (ok, out, err) = admin(&data, &["rebuild-query-tables"]);
    assert!(ok, "{err}");
    assert!(out.contains("0 stale rows deleted"), "{out}");
    assert_eq!(snapshot(), expected);
}

/// Runs an admin command with `stdin` as its standard input.
fn admin_stdin(data: &std::path::Path, args: &[&str], stdin: &str) -> (bool, String, String) {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_gridsync-server"))
        .arg("admin")
        .arg("--data")
        .arg(data)
        .args(args)
        .env_remove("GRIDSYNC_DATABASE")
        .env("GRIDSYNC_LOG", "debug")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run gridsync-server");
    child
        .stdin
        .take()
        .expect("stdin piped")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    let out = child.wait_with_output().expect("wait for gridsync-server");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn desk_passwords_from_stdin_and_one_time_links() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let grids = dir.path().join("grids.csv");
    std::fs::write(
        &grids,
        "code,name,level,parent,kind\n15,内蒙古自治区,region,,mixed\n1525,锡林郭勒盟,league,15,pastoral\n152522,阿巴嘎旗,banner,1525,pastoral\n152522101,别力古台镇,township,152522,pastoral\n152522101001,巴彦嘎查,village,152522101,pastoral\n",
    )
    .unwrap();
    assert!(admin(&data, &["import-grids", grids.to_str().unwrap()]).0);
    for (id, role, grid) in [
        ("sup1", "supervisor", "152522101"),
        ("liai1", "liaison", "152522101001"),
    ] {
        let (ok, _, err) = admin(
            &data,
            &[
                "add-person",
                "--id",
                id,
                "--name",
                "测试",
                "--phone",
                "13912345678",
                "--role",
                role,
                "--grid",
                grid,
            ],
        );
        assert!(ok, "{err}");
    }
    let secret = "草原上的好密码-2024";
    // The password comes from standard input; it is stored hashed and never printed.
    let (ok, out, err) = admin_stdin(
        &data,
        &["set-password", "--person", "sup1", "--username", "wangli"],
        &format!("{secret}\n"),
    );
    assert!(ok, "{err}");
    assert!(out.contains("wangli"), "{out}");
    assert!(!out.contains(secret) && !err.contains(secret), "{out}{err}");
    let db = rusqlite::Connection::open(data.join("gridsync.db")).unwrap();
    let (user, hash): (String, String) = db
        .query_row(
            "SELECT username, password_hash FROM desk_accounts WHERE person_id = 'sup1'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(user, "wangli");
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    assert!(!hash.contains(secret));
    // Too short, a liaison, an unknown person: refused, nothing changes.
    let (ok, _, err) = admin_stdin(
        &data,
        &["set-password", "--person", "sup1", "--username", "wangli"],
        "short\n",
    );
    assert!(!ok && err.contains("10"), "{err}");
    let (ok, _, err) = admin_stdin(
        &data,
        &["set-password", "--person", "liai1", "--username", "liai"],
        &format!("{secret}\n"),
    );
    assert!(!ok && err.contains("liaison"), "{err}");
    let (ok, _, err) = admin_stdin(
        &data,
        &["set-password", "--person", "ghost", "--username", "ghost"],
        &format!("{secret}\n"),
    );
    assert!(!ok && err.contains("ghost"), "{err}");
    // A username belongs to one person.
    let (ok, _, err) = admin(
        &data,
        &[
            "add-person",
            "--id",
            "sup2",
            "--name",
            "测试二",
            "--phone",
            "13912345679",
            "--role",
            "supervisor",
            "--grid",
            "152522101",
        ],
    );
    assert!(ok, "{err}");
    let (ok, _, err) = admin_stdin(
        &data,
        &["set-password", "--person", "sup2", "--username", "wangli"],
        &format!("{secret}\n"),
    );
    assert!(!ok && err.contains("wangli"), "{err}");
    // The audit trail has the set, without the password.
    let (ok, out, _) = admin(&data, &["audit", "--person", "sup1", "--json"]);
    assert!(ok);
    assert!(out.contains("desk_password_set"), "{out}");
    assert!(!out.contains(secret));

    // A one-time link: printed once with the base URL, only its hash stored.
    let (ok, out, err) = admin(
        &data,
        &[
            "desk-link",
            "--person",
            "sup2",
            "--base-url",
            "https://desk.example.cn/",
        ],
    );
    assert!(ok, "{err}");
    let url = out.lines().next().unwrap();
    let token = url
        .strip_prefix("https://desk.example.cn/desk/set-password/")
        .unwrap_or_else(|| panic!("{out}"));
    assert_eq!(token.len(), 64);
    let (stored, expires, created): (String, i64, i64) = db
        .query_row(
            "SELECT token_hash, expires_at_ms, created_at_ms FROM desk_links WHERE person_id = 'sup2'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_ne!(stored, token);
    assert_eq!(stored.len(), 64);
    assert_eq!(expires - created, 24 * 3_600_000);
    let (ok, _, err) = admin(&data, &["desk-link", "--person", "liai1"]);
    assert!(!ok && err.contains("liaison"), "{err}");
}

#[test]
fn deactivate_person_stops_devices_and_desk_sessions_and_keeps_records() {
    use gridsync_server::storage::{open_storage, DeskSession, Device, StorageConfig};
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let grids = dir.path().join("grids.csv");
    std::fs::write(
        &grids,
        "code,name,level,parent,kind\n15,内蒙古自治区,region,,mixed\n1525,锡林郭勒盟,league,15,pastoral\n152522,阿巴嘎旗,banner,1525,pastoral\n152522101,别力古台镇,township,152522,pastoral\n",
    )
    .unwrap();
    assert!(admin(&data, &["import-grids", grids.to_str().unwrap()]).0);
    let (ok, _, err) = admin(
        &data,
        &[
            "add-person",
            "--id",
            "sup1",
            "--name",
            "王丽",
            "--phone",
            "13912345678",
            "--role",
            "supervisor",
            "--grid",
            "152522101",
        ],
    );
    assert!(ok, "{err}");
    // A device and a desk session of the person, straight into the data directory.
    {
        let s = open_storage(&StorageConfig::Sqlite {
            path: data.join("gridsync.db"),
        })
        .unwrap();
        let now = gridsync_core::now_ms();
        s.insert_code(&gridsync_server::storage::EnrolCode {
            code_hash: "h".repeat(64),
            person_id: "sup1".into(),
            created_by: "test".into(),
            created_at_ms: now,
            expires_at_ms: now + 60_000,
        })
        .unwrap();
        let device = Device {
            id: "dev-1".into(),
            person_id: String::new(),
            name: "phone".into(),
            secret_hash: "s".repeat(64),
            pending_hash: None,
            created_at_ms: now,
            last_seen_ms: None,
            revoked_at_ms: None,
            revoked_reason: None,
        };
        assert_eq!(
            s.redeem_code(&"h".repeat(64), now, &device)
                .unwrap()
                .as_deref(),
            Some("sup1")
        );
        s.desk_create_session(&DeskSession {
            token_hash: "t".repeat(64),
            person_id: "sup1".into(),
            csrf_token: "c".repeat(64),
            created_at_ms: now,
            last_seen_ms: now,
            expires_at_ms: now + 3_600_000,
        })
        .unwrap();
    }
    let (ok, out, err) = admin(&data, &["deactivate-person", "sup1"]);
    assert!(ok, "{err}");
    assert!(out.contains("sup1") && out.contains("1 devices"), "{out}");
    // Again, or an unknown person: refused, naming them.
    let (ok, _, err) = admin(&data, &["deactivate-person", "sup1"]);
    assert!(!ok && err.contains("sup1"), "{err}");
    let (ok, _, err) = admin(&data, &["deactivate-person", "ghost"]);
    assert!(!ok && err.contains("ghost"), "{err}");
    let db = rusqlite::Connection::open(data.join("gridsync.db")).unwrap();
    let active: bool = db
        .query_row("SELECT active FROM people WHERE id = 'sup1'", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert!(!active, "the person row stays, inactive");
    let sessions: i64 = db
        .query_row(
            "SELECT COUNT(*) FROM desk_sessions WHERE person_id = 'sup1'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(sessions, 0, "desk sessions ended");
    // The audit trail names the actor and the person.
    let (ok, out, _) = admin(&data, &["audit", "--person", "admin-cli", "--json"]);
    assert!(ok);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    let e = v
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "deactivate_person")
        .unwrap_or_else(|| panic!("{out}"));
    assert!(e["detail"].as_str().unwrap().contains("sup1"), "{e}");
}
