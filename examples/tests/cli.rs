//! Runs the built `gridsync-field` binary against temporary databases.
#![allow(clippy::unwrap_used)] // tests fail loudly on purpose

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_gridsync-field");
const VILLAGE: &str = "152522101201";
const TOWNSHIP: &str = "152522101";

struct Device {
    _dir: tempfile::TempDir,
    db: PathBuf,
}

impl Device {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("field.db");
        Device { _dir: dir, db }
    }

    /// Runs the CLI in the device's directory with the database named by a bare file
    /// name, as a person would type it (its attachment files go beside it, in `.`).
    fn run(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .current_dir(self._dir.path())
            .arg("--db")
            .arg(self.db.file_name().expect("a file name"))
            .args(args)
            .env_remove("GRIDSYNC_DB")
            .output()
            .expect("run gridsync-field")
    }

    /// Runs a command that must succeed and returns its stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "{args:?} failed ({:?}): {}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs a command with `--json` that must succeed and parses its output.
    fn json(&self, args: &[&str]) -> Value {
        let mut a = vec!["--json"];
        a.extend_from_slice(args);
        let text = self.ok(&a);
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{args:?}: {e}: {text}"))
    }

    /// Runs a command that must fail with `code`; returns stderr.
    fn fails(&self, code: i32, args: &[&str]) -> String {
        let out = self.run(args);
        assert_eq!(
            out.status.code(),
            Some(code),
            "{args:?}: stdout {} stderr {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stderr).unwrap()
    }

    fn init_liaison(&self) {
        let out = self.ok(&[
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
            "--grid-name",
            "巴彦图嘎嘎查",
            "--township-name",
            "别力古台镇",
        ]);
        assert!(out.contains("协管员"), "{out}");
        assert!(out.contains("巴彦图嘎嘎查"), "{out}");
    }

    fn init_supervisor(&self) {
        self.ok(&[
            "init",
            "--person-id",
            "super-1",
            "--name",
            "张伟",
            "--phone",
            "13904793333",
            "--role",
            "supervisor",
            "--grid",
            TOWNSHIP,
        ]);
    }
}

fn credit_code(serial: u32) -> String {
    let first = format!("93152522MA{serial:07}");
    format!(
        "{first}{}",
        gridsync_core::validate::uscc_check_char(&first).unwrap()
    )
}

/// A valid ID number, different for each serial.
fn id_number(serial: u32) -> String {
    const W: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    let first = format!("15252219850101{:03}", serial % 1000);
    let sum: u32 = first
        .bytes()
        .zip(W)
        .map(|(d, w)| u32::from(d - b'0') * w)
        .sum();
    format!("{first}{}", b"10X98765432"[(sum % 11) as usize] as char)
}

/// Registers a family ranch with a phone and an ID number of its own (so that two ranches
/// of one test are not likely duplicates of each other).
fn add_ranch(d: &Device, name: &str) -> String {
    static SERIAL: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let serial = SERIAL.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let phone = format!("1394791{serial:04}");
    let id_number = id_number(serial);
    let v = d.json(&[
        "producer",
        "add",
        "--name",
        name,
        "--type",
        "family_ranch",
        "--owner",
        "额尔敦",
        "--phone",
        &phone,
        "--id-number",
        &id_number,
        "--product",
        "羊肉",
        "--livestock",
        "sheep_goat=300/150",
        "--risk",
        "high",
    ]);
    v["id"].as_str().unwrap().to_string()
}

const ALL_ANSWERS: [&str; 14] = [
    "--answer",
    "production_records=yes",
    "--answer",
    "input_purchase=yes",
    "--answer",
    "drug_use=no",
    "--answer",
    "additives=na",
    "--answer",
    "input_waste=yes",
    "--answer",
    "compliance_certificate=yes",
    "--answer",
    "other=无",
];

#[test]
fn offline_liaison_flow() {
    let d = Device::new();
    d.init_liaison();
    let ranch = add_ranch(&d, "锡林郭勒草原牧场");
    let coop = d.json(&[
        "producer",
        "add",
        "--name",
        "阿巴嘎肉羊合作社",
        "--type",
        "农民专业合作社",
        "--owner",
        "苏和",
        "--phone",
        "0479-8221234",
        "--credit-code",
        &credit_code(1234),
        "--cert",
        "green",
        "--issues-certificates",
        "yes",
    ]);
    assert_eq!(coop["producer"]["producer_type"], "cooperative");
    assert_eq!(coop["producer"]["issues_compliance_certificates"], true);

    // Lists and search, as JSON with stable ids.
    let list = d.json(&["producer", "list"]);
    assert_eq!(list.as_array().unwrap().len(), 2);
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"锡林郭勒草原牧场"));
    let hits = d.json(&["producer", "search", "草原"]);
    assert_eq!(hits.as_array().unwrap().len(), 1);
    assert_eq!(hits[0]["id"], ranch.as_str());
    let text = d.ok(&["producer", "list"]);
    assert!(text.contains("家庭牧场") && text.contains("草稿"), "{text}");

    // Edit, then show with history.
    d.ok(&[
        "producer",
        "edit",
        &ranch,
        "--phone",
        "13611112222",
        "--product",
        "羊绒",
    ]);
    let shown = d.json(&["producer", "show", &ranch]);
    assert_eq!(shown["producer"]["phone"], "13611112222");
    assert_eq!(
        shown["producer"]["products"],
        serde_json::json!(["羊肉", "羊绒"])
    );
    assert_eq!(shown["history"].as_array().unwrap().len(), 2);
    assert_eq!(shown["conflicts"], serde_json::json!([]));
    assert_eq!(shown["history"][1]["by"], "liaison-1");

    // Submit for review; the liaison cannot approve.
    let r = d.json(&["producer", "review", &ranch, "submit"]);
    assert_eq!(r["review_state"], "submitted");
    let err = d.fails(1, &["producer", "review", &ranch, "approve-township"]);
    assert!(err.contains("无权操作"), "{err}");

    // A visit that cannot be completed names the missing item and stores nothing.
    let err = d.fails(
        2,
        &[
            "visit",
            "record",
            "--producer",
            &ranch,
            "--answer",
            "production_records=yes",
            "--complete",
        ],
    );
    assert!(err.contains("answers.input_purchase"), "{err}");
    assert_eq!(d.json(&["status"])["counts"]["visits"], 0);

    // A full visit with a finding, a rapid test and a rectification.
    let mut args = vec!["visit", "record", "--producer", ranch.as_str()];
    args.extend_from_slice(&ALL_ANSWERS);
    args.extend_from_slice(&[
        "--note",
        "drug_use=用药记录不全",
        "--finding",
        "休药期未执行",
        "--severity",
        "major",
        "--rapid-test",
        "sample=羊尿,item=克伦特罗,method=colloidal_gold,verdict=pass",
        "--rectify",
        "2030-01-31",
        "阿整改〔2025〕3号",
        "--signed-by",
        "额尔敦",
        "--lat",
        "44.02",
        "--lon",
        "114.95",
        "--complete",
    ]);
    let mut json_args = vec!["--json"];
    json_args.extend_from_slice(&args);
    let rec: Value = serde_json::from_str(&d.ok(&json_args)).unwrap();
    assert_eq!(rec["status"], "completed");
    assert_eq!(rec["missing_required"], serde_json::json!([]));
    let visit = rec["id"].as_str().unwrap().to_string();

    let shown = d.json(&["visit", "show", &visit]);
    let v = &shown["visit"];
    assert_eq!(v["answers"]["drug_use"]["value"]["value"], "no");
    assert_eq!(v["answers"]["drug_use"]["note"], "用药记录不全");
    assert_eq!(v["findings"][0]["severity"], "major");
    assert_eq!(v["rapid_tests"][0]["verdict"], "pass");
    assert_eq!(v["rectification"]["deadline"], "2030-01-31");
    assert_eq!(shown["producer_name"], "锡林郭勒草原牧场");
    let text = d.ok(&["visit", "show", &visit]);
    assert!(
        text.contains("农药兽药使用情况") && text.contains("否（备注：用药记录不全）"),
        "{text}"
    );
    assert!(text.contains("已完成"), "{text}");

    // A completed visit refuses changes.
    let err = d.fails(
        1,
        &[
            "visit",
            "record",
            "--visit",
            &visit,
            "--answer",
            "drug_use=yes",
        ],
    );
    assert!(err.contains("流程不允许"), "{err}");

    // Rectifications and due patrols.
    let rect = d.json(&["rectifications", "--today", "2030-02-01"]);
    assert_eq!(rect.as_array().unwrap().len(), 1);
    assert_eq!(rect[0]["overdue"], true);
    assert_eq!(rect[0]["notice_number"], "阿整改〔2025〕3号");
    let rect = d.json(&["rectifications", "--today", "2029-12-01"]);
    assert_eq!(rect[0]["overdue"], false);
    let due = d.json(&["due"]);
    let due_ids: Vec<&str> = due
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["producer"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        due_ids,
        vec![coop["id"].as_str().unwrap()],
        "the visited ranch is not due"
    );
    let due = d.json(&["due", "--days-ahead", "31"]);
    assert_eq!(
        due.as_array().unwrap().len(),
        2,
        "high risk: due again after 30 days"
    );
    d.ok(&[
        "interval",
        "--type",
        "family_ranch",
        "--risk",
        "high",
        "--days",
        "60",
    ]);
    assert_eq!(
        d.json(&["due", "--days-ahead", "31"])
            .as_array()
            .unwrap()
            .len(),
        1
    );

    // Status counts what is waiting to sync.
    let st = d.json(&["status"]);
    assert_eq!(st["counts"]["producers"], 2);
    assert_eq!(st["counts"]["visits"], 1);
    assert_eq!(st["counts"]["unsynced"], 3);
    assert_eq!(st["person"]["role"], "liaison");
    assert_eq!(st["server"], Value::Null);
    let text = d.ok(&["status"]);
    assert!(text.contains("未同步 3 条"), "{text}");
}

#[test]
fn supervisor_approves_and_a_later_edit_sends_it_back() {
    let d = Device::new();
    d.init_liaison();
    let id = add_ranch(&d, "宝音牧场");
    d.ok(&["producer", "review", &id, "submit"]);
    d.init_supervisor();
    let r = d.json(&["producer", "review", &id, "approve-township"]);
    assert_eq!(r["review_state"], "township_approved");
    // Returning needs a reason.
    let err = d.fails(2, &["producer", "review", &id, "return"]);
    assert!(err.contains("reason"), "{err}");
    d.init_liaison();
    let e = d.json(&["producer", "edit", &id, "--owner", "宝音"]);
    assert_eq!(e["producer"]["review"]["state"], "submitted");
    let history = e["producer"]["review"]["history"].as_array().unwrap();
    let last = history.last().unwrap();
    assert_eq!(last["action"]["action"], "edited_after_approval");
    assert_eq!(last["by"], "liaison-1");
    let text = d.ok(&["producer", "show", &id]);
    assert!(text.contains("审核后修改，重新审核"), "{text}");
    assert!(text.contains("待乡镇审核"), "{text}");
}

#[test]
fn yearly_confirmation_keeps_the_approval_and_rolls_over() {
    let d = Device::new();
    d.init_liaison();
    let id = add_ranch(&d, "年审牧场");
    d.ok(&["producer", "review", &id, "submit"]);
    d.init_supervisor();
    d.ok(&["producer", "review", &id, "approve-township"]);
    d.init_liaison();
    let year = gridsync_core::dates::china_year(gridsync_core::now_ms());
    let listed = |y: i32| -> Vec<String> {
        d.json(&["producer", "unconfirmed", "--year", &y.to_string()])
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(listed(year), std::slice::from_ref(&id));
    let c = d.json(&["producer", "confirm", &id]);
    assert_eq!(c["effective_review_state"], "township_approved");
    assert_eq!(c["confirmations"][0]["year"], year);
    assert_eq!(c["confirmations"][0]["by"], "liaison-1");
    assert!(listed(year).is_empty());
    // January of next year: listed again.
    assert_eq!(listed(year + 1), std::slice::from_ref(&id));
    let err = d.fails(
        2,
        &[
            "producer",
            "confirm",
            &id,
            "--year",
            &(year + 1).to_string(),
        ],
    );
    assert!(err.contains("year"), "{err}");
    let text = d.ok(&["producer", "show", &id]);
    assert!(
        text.contains(&format!("{year} 年度确认：仍在经营")),
        "{text}"
    );
    let c = d.json(&["producer", "confirm", &id, "--closed"]);
    assert_eq!(c["status"], "closed");
    assert_eq!(c["effective_review_state"], "submitted");
    assert!(
        listed(year + 1).is_empty(),
        "a closed producer is not listed"
    );
}

/// The yearly rollover by the clock itself: the binary run under `faketime` (Debian
/// `faketime`, installed by `scripts/test-all.sh`) at fixed UTC times. The year turns at
/// midnight in China (16:00 UTC): then every producer is unconfirmed again.
#[test]
fn a_clock_set_to_january_lists_every_producer_unconfirmed() {
    let d = Device::new();
    d.init_liaison();
    let a = add_ranch(&d, "腊月牧场");
    let b = add_ranch(&d, "正月牧场");
    let at = |utc: &str, args: &[&str]| -> Value {
        let out = Command::new("faketime")
            .arg(utc)
            .arg(BIN)
            .current_dir(d._dir.path())
            .env("TZ", "UTC")
            .env_remove("GRIDSYNC_DB")
            .arg("--db")
            .arg(d.db.file_name().unwrap())
            .arg("--json")
            .args(args)
            .output()
            .expect("run faketime (Debian package faketime)");
        assert!(
            out.status.success(),
            "{utc} {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    };
    let unconfirmed = |utc: &str| -> Vec<String> {
        let mut ids: Vec<String> = at(utc, &["producer", "unconfirmed"])
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_string())
            .collect();
        ids.sort();
        ids
    };
    let mut both = vec![a.clone(), b.clone()];
    both.sort();
    // 31 December 2026, 20:00 in China: both confirmed for 2026.
    for id in [&a, &b] {
        let c = at("2026-12-31 12:00:00", &["producer", "confirm", id]);
        assert_eq!(c["year"], 2026);
    }
    assert!(unconfirmed("2026-12-31 12:00:00").is_empty());
    // 23:59 in China is still 2026; at midnight (16:00 UTC) it is January 2027.
    assert!(unconfirmed("2026-12-31 15:59:00").is_empty());
    assert_eq!(unconfirmed("2026-12-31 16:00:00"), both);
    assert_eq!(unconfirmed("2027-01-02 08:00:00"), both);
    // A confirmation in January is for the new year.
    let c = at("2027-01-02 08:00:00", &["producer", "confirm", &a]);
    assert_eq!(c["year"], 2027);
    assert_eq!(unconfirmed("2027-01-02 08:00:00"), std::slice::from_ref(&b));
}

#[test]
fn bad_input_exits_2_naming_the_field() {
    let d = Device::new();
    d.init_liaison();
    let bad_phone = [
        "producer",
        "add",
        "--name",
        "坏电话牧场",
        "--type",
        "family_ranch",
        "--owner",
        "额尔敦",
        "--phone",
        "12345",
        "--id-number",
        "11010519491231002X",
    ];
    let err = d.fails(2, &bad_phone);
    assert!(err.contains("phone") && err.contains("联系电话"), "{err}");
    let mut json_args = vec!["--json"];
    json_args.extend_from_slice(&bad_phone);
    let out = d.run(&json_args);
    assert_eq!(out.status.code(), Some(2));
    let e: Value = serde_json::from_slice(&out.stderr).unwrap();
    assert_eq!(e["error"], "invalid");
    assert_eq!(e["field"], "phone");
    assert!(out.stdout.is_empty());
    // Nothing was written.
    assert_eq!(d.json(&["status"])["counts"]["producers"], 0);

    let err = d.fails(
        2,
        &[
            "producer",
            "add",
            "--name",
            "x",
            "--type",
            "unicorn",
            "--owner",
            "y",
            "--phone",
            "13900000000",
        ],
    );
    assert!(err.contains("type"), "{err}");
    let id = add_ranch(&d, "好牧场");
    let err = d.fails(
        2,
        &[
            "visit",
            "record",
            "--producer",
            &id,
            "--answer",
            "no_such_item=yes",
        ],
    );
    assert!(err.contains("answers.no_such_item"), "{err}");
    let err = d.fails(
        2,
        &[
            "visit",
            "record",
            "--producer",
            &id,
            "--answer",
            "drug_use=maybe",
        ],
    );
    assert!(err.contains("answers.drug_use"), "{err}");
    let err = d.fails(
        2,
        &[
            "visit",
            "record",
            "--producer",
            &id,
            "--rectify",
            "2030-13-01",
            "N1",
        ],
    );
    assert!(err.contains("rectification.deadline"), "{err}");
    let err = d.fails(2, &["producer", "show", "no-such-id"]);
    assert!(err.contains("no-such-id"), "{err}");
    let err = d.fails(
        2,
        &[
            "producer",
            "edit",
            &id,
            "--credit-code",
            "91440300192203821X",
        ],
    );
    assert!(err.contains("credit_code"), "{err}");
    // Argument errors (clap) are bad input too.
    d.fails(2, &["producer", "add", "--name"]);
    d.fails(2, &["no-such-command"]);
}

#[test]
fn failures_that_are_not_bad_input_exit_1() {
    let d = Device::new();
    // Nobody set up yet.
    let err = d.fails(
        1,
        &[
            "producer",
            "add",
            "--name",
            "x",
            "--type",
            "family_ranch",
            "--owner",
            "y",
            "--phone",
            "13900000000",
            "--id-number",
            "11010519491231002X",
        ],
    );
    assert!(err.contains("init"), "{err}");
    d.init_liaison();
    let err = d.fails(1, &["sync"]);
    assert!(err.contains("enroll"), "{err}");
    // No server listening: a clear transport error, not a panic.
    let err = d.fails(
        1,
        &["enroll", "--server", "http://127.0.0.1:9", "--code", "ABCD"],
    );
    assert!(
        err.contains("网络错误") || err.contains("transport"),
        "{err}"
    );
    // Outside the person's grid.
    let err = d.fails(
        1,
        &[
            "producer",
            "add",
            "--grid",
            TOWNSHIP,
            "--name",
            "x",
            "--type",
            "family_ranch",
            "--owner",
            "y",
            "--phone",
            "13900000000",
            "--id-number",
            "11010519491231002X",
        ],
    );
    assert!(err.contains("无权操作"), "{err}");
}

#[test]
fn the_database_persists_between_runs_and_json_is_stable() {
    let d = Device::new();
    d.init_liaison();
    let id = add_ranch(&d, "持久牧场");
    let first = d.json(&["producer", "show", &id]);
    let second = d.json(&["producer", "show", &id]);
    assert_eq!(first, second);
    for key in [
        "producer",
        "effective_review_state",
        "conflicts",
        "history",
        "visits",
    ] {
        assert!(first.get(key).is_some(), "missing {key}");
    }
    assert!(Path::new(&d.db).exists());
}

#[test]
fn a_photo_recorded_with_a_visit_is_stored_and_listed_pending() {
    let d = Device::new();
    d.init_liaison();
    let ranch = add_ranch(&d, "苏和家庭牧场");
    let photo = d._dir.path().join("现场.jpg");
    let mut bytes = vec![0xFF, 0xD8, 0xFF, 0xE0];
    bytes.extend((0..3000u32).map(|i| (i * 7) as u8));
    std::fs::write(&photo, &bytes).unwrap();
    let photo = photo.to_str().unwrap();
    let v = d.json(&[
        "visit",
        "record",
        "--producer",
        ranch.as_str(),
        "--finding",
        "兽药与饲料混放",
        "--photo",
        photo,
    ]);
    let photos = v["visit"]["findings"][0]["photos"].as_array().unwrap();
    assert_eq!(photos.len(), 1);
    let reference = photos[0].as_str().unwrap();
    assert!(reference.ends_with(":3004:image/jpeg"), "{reference}");
    let list = d.json(&["attachments"]);
    assert_eq!(list[0]["reference"], reference);
    assert_eq!(list[0]["state"], "pending");
    assert_eq!(list[0]["referenced"], true);
    assert!(d.ok(&["attachments"]).contains("待上传 1"));
    // Not a photo: refused naming the attachment, nothing saved.
    let text = d._dir.path().join("notes.txt");
    std::fs::write(&text, "not a photo").unwrap();
    let err = d.fails(
        2,
        &[
            "visit",
            "record",
            "--producer",
            ranch.as_str(),
            "--finding",
            "x",
            "--photo",
            text.to_str().unwrap(),
        ],
    );
    assert!(err.contains("attachment"), "{err}");
    assert_eq!(d.json(&["attachments"]).as_array().unwrap().len(), 1);
}

/// Registering or editing lists the likely duplicates on the device (Chinese labels, the
/// other entry's name, grid and reason) and saves nothing (exit code 3) unless `--anyway`.
#[test]
fn likely_duplicates_stop_a_save_until_anyway() {
    const VILLAGE2: &str = "152522101202";
    let d = Device::new();
    d.ok(&[
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
        "--grid",
        VILLAGE2,
        "--grid-name",
        "巴彦图嘎嘎查",
        "--grid-name",
        "宝力根嘎查",
    ]);
    let coop = |name: &str, grid: &str, code: &str, phone: &str| -> Vec<String> {
        [
            "producer",
            "add",
            "--name",
            name,
            "--type",
            "cooperative",
            "--owner",
            "苏和",
            "--phone",
            phone,
            "--grid",
            grid,
            "--credit-code",
            code,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect()
    };
    fn args(v: &[String]) -> Vec<&str> {
        v.iter().map(String::as_str).collect()
    }
    let count = || {
        d.json(&["producer", "list", "--grid", TOWNSHIP])
            .as_array()
            .unwrap()
            .len()
    };
    let first = d.json(&args(&coop(
        "阿巴嘎旗浩日沁牧业专业合作社",
        VILLAGE,
        &credit_code(77),
        "13947910001",
    )));
    let first_id = first["id"].as_str().unwrap().to_string();
    assert_eq!(first["likely_duplicates"], serde_json::json!([]));

    // A similar name in the neighbouring village: listed, not saved, exit 3.
    let similar = coop(
        "浩日沁牧业合作社",
        VILLAGE2,
        &credit_code(78),
        "13947910002",
    );
    let out = d.run(&args(&similar));
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("可能重复：本机已有 1 个相近的生产主体，未保存"),
        "{text}"
    );
    assert!(
        text.contains("阿巴嘎旗浩日沁牧业专业合作社  巴彦图嘎嘎查（152522101201）  名称相同（同一或相邻网格）  可能性 80%"),
        "{text}"
    );
    assert!(text.contains(&first_id), "{text}");
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(err.contains("--anyway"), "{err}");
    assert_eq!(count(), 1, "nothing saved");
    // The same as JSON: the matches on stdout, the error on stderr.
    let mut json_args = vec!["--json"];
    json_args.extend(args(&similar));
    let out = d.run(&json_args);
    assert_eq!(out.status.code(), Some(3));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["saved"], false);
    assert_eq!(v["likely_duplicates"][0]["id"], first_id.as_str());
    assert_eq!(
        v["likely_duplicates"][0]["reasons"],
        serde_json::json!(["same_name"])
    );
    assert_eq!(v["likely_duplicates"][0]["grid"], VILLAGE);
    let e: Value = serde_json::from_slice(&out.stderr).unwrap();
    assert_eq!(e["error"], "likely_duplicates");
    // With --anyway it is saved, the match noted.
    let mut anyway = args(&similar);
    anyway.push("--anyway");
    let text = d.ok(&anyway);
    assert!(text.contains("已登记：浩日沁牧业合作社"), "{text}");
    assert!(
        text.contains("注意：本机另有 1 个可能重复的生产主体"),
        "{text}"
    );
    assert_eq!(count(), 2);

    // The same credit code under another name, anywhere: listed with its reason.
    let err = d.fails(
        3,
        &args(&coop(
            "草原红牧业合作社",
            VILLAGE2,
            &credit_code(77),
            "13947910003",
        )),
    );
    assert!(err.contains("发现 1 个可能重复的生产主体，未保存"), "{err}");
    // Unrelated: saved at once.
    let other = d.json(&args(&coop(
        "额尔敦养殖合作社",
        VILLAGE2,
        &credit_code(79),
        "13947910004",
    )));
    let other_id = other["id"].as_str().unwrap().to_string();
    assert_eq!(other["likely_duplicates"], serde_json::json!([]));
    assert_eq!(count(), 3);

    // Editing: a phone that another entry has stops the edit; --anyway saves it.
    let out = d.run(&["producer", "edit", &other_id, "--phone", "13947910001"]);
    assert_eq!(out.status.code(), Some(3));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("联系电话相同"), "{text}");
    let shown = d.json(&["producer", "show", &other_id]);
    assert_eq!(shown["producer"]["phone"], "13947910004", "not saved");
    d.ok(&[
        "producer",
        "edit",
        &other_id,
        "--phone",
        "13947910001",
        "--anyway",
    ]);
    // A match the entry already had does not stop another edit of it.
    let text = d.ok(&["producer", "edit", &other_id, "--address", "宝力根嘎查二组"]);
    assert!(text.contains("已保存"), "{text}");
    assert!(!text.contains("可能重复"), "{text}");
}

/// The producer view shows the scale line by the national thresholds: a herd on the
/// threshold counts, one head less does not, and a small household's is a type mismatch.
#[test]
fn the_producer_view_shows_the_scale_assessment() {
    let d = Device::new();
    d.init_liaison();
    let id = add_ranch(&d, "规模牧场");
    let shown = d.json(&["producer", "show", &id]);
    assert_eq!(
        shown["scale_assessment"]["is_scale_farm"], false,
        "150 sold"
    );
    d.ok(&["producer", "edit", &id, "--livestock", "sheep_goat=300/199"]);
    let text = d.ok(&["producer", "show", &id]);
    assert!(
        text.contains("规模养殖：未达规模养殖标准（全国标准）"),
        "{text}"
    );
    d.ok(&["producer", "edit", &id, "--livestock", "sheep_goat=300/200"]);
    let text = d.ok(&["producer", "show", &id]);
    assert!(
        text.contains("规模养殖：规模养殖场（羊 200 年出栏≥200）"),
        "{text}"
    );
    assert!(!text.contains("主体类型不符"), "{text}");
    d.ok(&["producer", "edit", &id, "--type", "small_household"]);
    let shown = d.json(&["producer", "show", &id]);
    assert_eq!(shown["scale_assessment"]["type_mismatch"], true);
    let text = d.ok(&["producer", "show", &id]);
    assert!(text.contains("主体类型不符，请核实"), "{text}");
}
