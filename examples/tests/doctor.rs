//! `gridsync-field doctor` on a real database file: a query-table row that no longer
//! matches its document is found, reported and repaired by rebuilding the query tables.
#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use std::process::{Command, Output};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_gridsync-field");
const VILLAGE: &str = "152522101201";

fn run(db: &std::path::Path, args: &[&str]) -> Output {
    Command::new(BIN)
        .arg("--db")
        .arg(db)
        .args(args)
        .env_remove("GRIDSYNC_DB")
        .output()
        .unwrap()
}

fn json(db: &std::path::Path, args: &[&str]) -> Value {
    let mut a = vec!["--json"];
    a.extend_from_slice(args);
    let out = run(db, &a);
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn doctor_finds_a_damaged_query_table_and_rebuilds_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("field.db");
    json(
        &db,
        &[
            "init",
            "--person-id",
            "liaison-1",
            "--name",
            "巴特尔",
            "--phone",
            "13904791111",
            "--role",
            "liaison",
            "--grid",
            VILLAGE,
        ],
    );
    let p = json(
        &db,
        &[
            "producer",
            "add",
            "--name",
            "草原牧场",
            "--type",
            "family_ranch",
            "--owner",
            "额尔敦",
            "--phone",
            "13947912345",
            "--id-number",
            "11010519491231002X",
            "--address",
            "测试地址",
        ],
    );
    let id = p["id"].as_str().unwrap().to_string();

    let clean = json(&db, &["doctor"]);
    assert_eq!(clean["ok"], true, "{clean}");
    assert_eq!(clean["report"]["rebuilt"], false);
    assert_eq!(clean["report"]["documents_checked"], 1);

    // The list row says something its document does not (a damaged table page would).
    {
        let c = rusqlite::Connection::open(&db).unwrap();
        c.execute("UPDATE producers SET name = '错' WHERE id = ?1", [&id])
            .unwrap();
    }
    // Report only: problems found, nothing repaired, exit code 1.
    let out = run(&db, &["doctor", "--no-repair"]);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(text.contains("remain"), "{text}");

    let fixed = json(&db, &["doctor"]);
    assert_eq!(fixed["ok"], true, "{fixed}");
    assert_eq!(fixed["report"]["rebuilt"], true);
    let tables = fixed["report"]["tables"].as_array().unwrap();
    assert!(
        tables.iter().any(|t| t.as_str().unwrap().contains(&id)),
        "{fixed}"
    );
    let list = json(&db, &["producer", "search", "草原"]);
    assert_eq!(list.as_array().map(Vec::len), Some(1), "{list}");

    // Text for field staff, and a rebuild on demand.
    let out = run(&db, &["doctor", "--quick", "--rebuild"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("快速检查"), "{text}");
    assert!(text.contains("已从记录重建查询表"), "{text}");
}
