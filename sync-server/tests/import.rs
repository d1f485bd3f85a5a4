//! Imports of producers and people from CSV and XLSX files (issue 16): all rows or none,
//! bad rows named by line and column, likely duplicates reported, records stored as an
//! administrator's documents and in the query tables; the staffing check; the admin
//! command line on a real data directory.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use gridsync_core::doc::RecordDoc;
use gridsync_core::model::{GridKind, GridLevel, GridNode, Person, Record, Role};
use gridsync_server::import::{self, DuplicateOf, ImportError, ProducerOptions};
use gridsync_server::reports::staffing::{self, StaffingIssue};
use gridsync_server::storage::{open_storage, Storage, StorageConfig};

const HEADER: &str =
    "序号,名称,主体类型,统一社会信用代码,身份证号,负责人,联系电话,网格编码,地址,主要产品,风险等级";

/// 20 name characters without place words or suffix endings.
const SYLLABLES: [char; 20] = [
    '巴', '彦', '乌', '拉', '图', '雅', '其', '格', '日', '勒', '哈', '达', '额', '尔', '敦', '宝',
    '力', '根', '阿', '苏',
];

fn grids() -> Vec<GridNode> {
    let n = |code: &str, name: &str, level, parent: Option<&str>| GridNode {
        code: code.into(),
        name: name.into(),
        level,
        kind: GridKind::Pastoral,
        parent: parent.map(Into::into),
    };
    let mut v = vec![
        n("15", "内蒙古自治区", GridLevel::Region, None),
        n("1525", "锡林郭勒盟", GridLevel::League, Some("15")),
        n("152522", "阿巴嘎旗", GridLevel::Banner, Some("1525")),
    ];
    for t in 1..=2 {
        let tc = format!("152522{t:03}");
        v.push(n(
            &tc,
            &format!("苏木{t}"),
            GridLevel::Township,
            Some("152522"),
        ));
        for g in 1..=10 {
            v.push(n(
                &format!("{tc}{g:03}"),
                &format!("嘎查{t}-{g}"),
                GridLevel::Village,
                Some(&tc),
            ));
        }
    }
    v
}

fn village(i: usize) -> String {
    format!("152522{:03}{:03}", 1 + (i / 10) % 2, 1 + i % 10)
}

fn admin() -> Person {
    Person {
        id: "adm".into(),
        name: "管理员".into(),
        phone: "13900000000".into(),
        role: Role::Admin,
        grids: vec![],
    }
}

fn storage(dir: &Path) -> Arc<dyn Storage> {
    let s = open_storage(&StorageConfig::from_options(dir, None)).unwrap();
    s.import_grids(&grids()).unwrap();
    gridsync_server::admin::add_person(s.as_ref(), &admin()).unwrap();
    s
}

/// Four characters, every two distinct ones at least two substitutions apart (the fourth
/// is a check character), so no two generated names are similar.
fn core_name(i: usize) -> String {
    let (a, b, c) = (i % 20, (i / 20) % 20, (i / 400) % 20);
    [a, b, c, (a + b + c) % 20]
        .iter()
        .map(|&k| SYLLABLES[k])
        .collect()
}

fn id_number(i: usize) -> String {
    const W: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];
    let first = format!("152522{}0101{:03}", 1950 + (i / 1000) % 50, i % 1000);
    let sum: u32 = first
        .bytes()
        .zip(W)
        .map(|(d, w)| u32::from(d - b'0') * w)
        .sum();
    format!("{first}{}", b"10X98765432"[(sum % 11) as usize] as char)
}

fn credit_code(i: usize) -> String {
    let first = format!("93152522{i:09}");
    let c = gridsync_core::validate::uscc_check_char(&first).unwrap();
    format!("{first}{c}")
}

fn phone(i: usize) -> String {
    format!("135{i:08}")
}

/// Row `i` of a generated file: every tenth a cooperative with a credit code, the others
/// family ranches with the owner's ID number.
fn row(i: usize) -> Vec<String> {
    let core = core_name(i);
    let (name, ty, code, idn) = if i % 10 == 0 {
        (
            format!("{core}牧业专业合作社"),
            "农民专业合作社",
            credit_code(i),
            String::new(),
        )
    } else {
        (
            format!("{core}家庭牧场"),
            if i % 3 == 0 {
                "family_ranch"
            } else {
                "家庭牧场"
            },
            String::new(),
            id_number(i),
        )
    };
    vec![
        (i + 1).to_string(),
        name,
        ty.into(),
        code,
        idn,
        core.clone(),
        phone(i),
        village(i),
        format!("{}号", i + 1),
        "羊肉、牛肉".into(),
        ["低", "中风险", "high"][i % 3].into(),
    ]
}

fn csv_of(rows: &[Vec<String>]) -> String {
    let mut s = format!("{HEADER}\n");
    for r in rows {
        s.push_str(&r.join(","));
        s.push('\n');
    }
    s
}

fn none() -> impl FnMut(import::Stage, usize, usize) {
    |_, _, _| {}
}

#[test]
fn one_bad_row_in_5000_imports_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let s = storage(dir.path());
    let mut rows: Vec<Vec<String>> = (0..5000).map(row).collect();
    rows[3000][6] = "1391234".into();
    let file = dir.path().join("producers.csv");
    std::fs::write(&file, csv_of(&rows)).unwrap();
    let e = import::import_producers(
        s.as_ref(),
        &admin(),
        &file,
        &ProducerOptions::default(),
        &mut none(),
    )
    .unwrap_err();
    let ImportError::Problems { problems, .. } = &e else {
        panic!("{e}")
    };
    assert_eq!(problems.len(), 1, "{e}");
    assert_eq!(problems[0].line, 3002, "{e}");
    assert_eq!(problems[0].column, "联系电话");
    assert!(problems[0].message.contains("1391234"), "{e}");
    assert!(e.to_string().contains("line 3002, column 联系电话"), "{e}");
    assert!(s.query_snapshot().unwrap().producers.is_empty());
    assert!(s.record_counts().unwrap().iter().all(|(_, n)| *n == 0));
}

#[test]
fn clean_5000_rows_import_as_documents_and_query_rows() {
    let dir = tempfile::tempdir().unwrap();
    let s = storage(dir.path());
    let rows: Vec<Vec<String>> = (0..5000).map(row).collect();
    let file = dir.path().join("producers.csv");
    std::fs::write(&file, csv_of(&rows)).unwrap();
    let done = import::import_producers(
        s.as_ref(),
        &admin(),
        &file,
        &ProducerOptions::default(),
        &mut none(),
    )
    .unwrap();
    assert_eq!((done.rows, done.imported), (5000, 5000));
    assert!(done.duplicates.is_empty());
    let snap = s.query_snapshot().unwrap();
    assert_eq!(snap.producers.len(), 5000);
    let q = snap
        .producers
        .iter()
        .find(|p| p.phone == phone(4321))
        .unwrap();
    assert_eq!(q.grid, village(4321));
    assert_eq!(q.created_by, "adm");
    // The document: created by the administrator, readable as a producer.
    let stored = s.record(&q.id).unwrap().unwrap();
    let doc = RecordDoc::load(&stored.doc, &[]).unwrap();
    let Record::Producer(p) = doc.read().unwrap() else {
        panic!("not a producer")
    };
    assert_eq!(p.name, format!("{}家庭牧场", core_name(4321)));
    assert_eq!(p.id_number.as_deref(), Some(id_number(4321).as_str()));
    assert_eq!(p.products, vec!["羊肉", "牛肉"]);
    // Feeds carry them: the village's feed head moved.
    assert!(s.feed_head(&village(4321)).unwrap() > 0);
    // The same file again: every row is a duplicate of a stored entry; nothing imported.
    let e = import::import_producers(
        s.as_ref(),
        &admin(),
        &file,
        &ProducerOptions::default(),
        &mut none(),
    )
    .unwrap_err();
    let ImportError::Duplicates { duplicates, .. } = &e else {
        panic!("{e}")
    };
    assert!(duplicates.len() >= 5000);
    assert_eq!(s.query_snapshot().unwrap().producers.len(), 5000);
}

fn write_xlsx(path: &Path, rows: &[Vec<String>], numbers: &[usize]) {
    let mut book = rust_xlsxwriter::Workbook::new();
    let sheet = book.add_worksheet();
    for (c, h) in HEADER.split(',').enumerate() {
        sheet.write_string(0, c as u16, h).unwrap();
    }
    for (r, cells) in rows.iter().enumerate() {
        for (c, v) in cells.iter().enumerate() {
            let (r, c16) = (r as u32 + 1, c as u16);
            if let Some(n) = v.parse::<f64>().ok().filter(|_| numbers.contains(&c)) {
                sheet.write_number(r, c16, n).unwrap();
            } else {
                sheet.write_string(r, c16, v).unwrap();
            }
        }
    }
    book.save(path).unwrap();
}

#[test]
fn xlsx_imports_every_row_and_names_rows_by_sheet_row() {
    let dir = tempfile::tempdir().unwrap();
    let s = storage(dir.path());
    let rows: Vec<Vec<String>> = (0..5000).map(row).collect();
    // The serial number and the phone as numbers, as a spreadsheet holds them.
    let file = dir.path().join("producers.xlsx");
    write_xlsx(&file, &rows, &[0, 6]);
    // An ID number typed as a number lost its last digits: named, nothing imported.
    let bad = dir.path().join("bad.xlsx");
    write_xlsx(&bad, &rows[..20], &[0, 4, 6]);
    let e = import::import_producers(
        s.as_ref(),
        &admin(),
        &bad,
        &ProducerOptions::default(),
        &mut none(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        e.contains(", column 身份证号: is stored as a number"),
        "{e}"
    );
    assert!(s.query_snapshot().unwrap().producers.is_empty());
    let done = import::import_producers(
        s.as_ref(),
        &admin(),
        &file,
        &ProducerOptions::default(),
        &mut none(),
    )
    .unwrap();
    assert_eq!(done.imported, 5000);
    let snap = s.query_snapshot().unwrap();
    assert_eq!(snap.producers.len(), 5000);
    assert!(snap.producers.iter().any(|p| p.phone == phone(17)));
}

#[test]
fn duplicates_against_stored_entries_and_within_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let s = storage(dir.path());
    let first: Vec<Vec<String>> = (0..3).map(row).collect();
    let file = dir.path().join("first.csv");
    std::fs::write(&file, csv_of(&first)).unwrap();
    import::import_producers(
        s.as_ref(),
        &admin(),
        &file,
        &ProducerOptions::default(),
        &mut none(),
    )
    .unwrap();
    // Row 0's credit code again (lower case), row 1's name (another suffix, a neighbouring
    // village), and two new rows with the same phone.
    let mut a = row(100);
    a[3] = credit_code(0).to_lowercase();
    a[2] = "农民专业合作社".into();
    a[4] = String::new();
    let mut b = row(101);
    b[1] = format!("阿巴嘎旗{}牧场", core_name(1));
    b[7] = village(2);
    let c = row(102);
    let mut d = row(103);
    let p = phone(102);
    d[6] = format!("{}-{}-{}", &p[..3], &p[3..7], &p[7..]);
    let file = dir.path().join("second.csv");
    std::fs::write(&file, csv_of(&[a, b, c, d])).unwrap();
    let e = import::import_producers(
        s.as_ref(),
        &admin(),
        &file,
        &ProducerOptions::default(),
        &mut none(),
    )
    .unwrap_err();
    let ImportError::Duplicates { duplicates, .. } = &e else {
        panic!("{e}")
    };
    assert_eq!(duplicates.len(), 3, "{e}");
    let stored = s.query_snapshot().unwrap().producers;
    let id_of = |i: usize| {
        stored
            .iter()
            .find(|p| p.phone == phone(i))
            .unwrap()
            .id
            .clone()
    };
    assert!(matches!(&duplicates[0].of, DuplicateOf::Existing { id, .. } if *id == id_of(0)));
    assert_eq!(duplicates[0].line, 2);
    assert_eq!(
        duplicates[0].reasons,
        vec![gridsync_core::dedupe::MatchReason::CreditCode]
    );
    assert!(matches!(&duplicates[1].of, DuplicateOf::Existing { id, .. } if *id == id_of(1)));
    assert_eq!(
        duplicates[1].reasons,
        vec![gridsync_core::dedupe::MatchReason::SameName]
    );
    assert!(matches!(
        &duplicates[2].of,
        DuplicateOf::Line { line: 4, .. }
    ));
    assert_eq!(duplicates[2].line, 5);
    let text = e.to_string();
    assert!(
        text.contains("line 5") && text.contains("same as line 4"),
        "{text}"
    );
    assert_eq!(
        s.query_snapshot().unwrap().producers.len(),
        3,
        "nothing imported"
    );
    // After reading the report: imported anyway, the report kept.
    let done = import::import_producers(
        s.as_ref(),
        &admin(),
        &file,
        &ProducerOptions {
            allow_duplicates: true,
            ..ProducerOptions::default()
        },
        &mut none(),
    )
    .unwrap();
    assert_eq!((done.imported, done.duplicates.len()), (4, 3));
    assert_eq!(s.query_snapshot().unwrap().producers.len(), 7);
}

#[test]
fn people_import_names_a_bad_role_and_staffing_counts() {
    let dir = tempfile::tempdir().unwrap();
    let s = storage(dir.path());
    let bad = dir.path().join("people.csv");
    std::fs::write(
        &bad,
        "姓名,手机号,角色,网格编码\n乌日娜,13912340001,协管员,152522001001\n巴特尔,13912340002,村长,152522001002\n",
    )
    .unwrap();
    let e = import::import_people(s.as_ref(), &bad, false, &mut none())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("line 3, column 角色: '村长' is not a role"),
        "{e}"
    );
    assert_eq!(s.people().unwrap().len(), 1, "nobody imported");
    // Township 1: three supervisors (one too many); its villages 1-2 staffed, the rest
    // not; township 2 has nobody.
    let good = dir.path().join("people-good.csv");
    std::fs::write(
        &good,
        "编号,姓名,手机号,角色,网格编码\n\
         l1,乌日娜,13912340001,协管员,152522001001\n\
         l2,其其格,13912340002,信息员,152522001002\n\
         l3,图雅,13912340003,liaison,152522001002\n\
         s1,巴特尔,13912340004,监管员,152522001\n\
         s2,额尔敦,13912340005,监管员,152522001\n\
         s3,宝力根,13912340006,supervisor,152522001\n",
    )
    .unwrap();
    assert_eq!(
        import::import_people(s.as_ref(), &good, false, &mut none()).unwrap(),
        6
    );
    assert_eq!(s.person("l3").unwrap().unwrap().role, Role::Liaison);
    let r = staffing::staffing(s.as_ref(), &[]).unwrap();
    let get = |c: &str| r.grids.iter().find(|g| g.code == c).unwrap();
    assert_eq!(get("152522001").issue, Some(StaffingIssue::TooMany));
    assert_eq!(get("152522001002").issue, None);
    assert_eq!(get("152522002").issue, Some(StaffingIssue::Missing));
    assert_eq!(r.summary.townships, 2);
    assert_eq!(r.summary.townships_over, 1);
    assert_eq!(r.summary.townships_without_supervisor, 1);
    assert_eq!(r.summary.villages, 20);
    assert_eq!(r.summary.villages_ok, 2);
    assert_eq!(r.summary.villages_without_liaison, 18);
    let r = staffing::staffing(s.as_ref(), &["152522001".into()]).unwrap();
    assert_eq!(r.summary.villages, 10);
}

#[test]
fn templates_import() {
    let dir = tempfile::tempdir().unwrap();
    let s = storage(dir.path());
    let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/templates");
    // The XLSX template is written from the CSV template (GRIDSYNC_WRITE_TEMPLATES=1
    // rewrites the committed file).
    let csv = import::read_table(&docs.join("producers-import.csv")).unwrap();
    let xlsx_path = docs.join("producers-import.xlsx");
    if std::env::var_os("GRIDSYNC_WRITE_TEMPLATES").is_some() {
        let mut book = rust_xlsxwriter::Workbook::new();
        let sheet = book.add_worksheet();
        sheet.set_name("生产主体名录").unwrap();
        let text = rust_xlsxwriter::Format::new().set_num_format("@");
        for (c, h) in csv.headers.iter().enumerate() {
            sheet.set_column_format(c as u16, &text).unwrap();
            sheet.set_column_width(c as u16, 16).unwrap();
            sheet.write_string(0, c as u16, h).unwrap();
        }
        for (r, row) in csv.rows.iter().enumerate() {
            for (c, cell) in row.cells.iter().enumerate() {
                sheet
                    .write_string_with_format(r as u32 + 1, c as u16, &cell.text, &text)
                    .unwrap();
            }
        }
        book.save(&xlsx_path).unwrap();
    }
    for path in [docs.join("producers-import.csv"), xlsx_path] {
        let t = import::read_table(&path).unwrap();
        assert_eq!(t.headers, csv.headers, "{}", path.display());
        let rows = import::parse_producers(
            &t,
            &grids_for_templates(),
            "adm",
            gridsync_core::now_ms(),
            None,
            &mut none(),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(rows.len(), csv.rows.len());
    }
    let people = import::read_table(&docs.join("people-import.csv")).unwrap();
    import::parse_people(&people, &grids_for_templates(), &[]).unwrap_or_else(|e| panic!("{e}"));
    drop(s);
}

/// The grids the templates name.
fn grids_for_templates() -> Vec<GridNode> {
    let mut g = grids();
    let n = |code: &str, name: &str, level, parent: &str| GridNode {
        code: code.into(),
        name: name.into(),
        level,
        kind: GridKind::Pastoral,
        parent: Some(parent.into()),
    };
    g.push(n("152522101", "别力古台镇", GridLevel::Township, "152522"));
    g.push(n(
        "152522101001",
        "巴彦嘎查",
        GridLevel::Village,
        "152522101",
    ));
    g.push(n(
        "152522101002",
        "宝力根嘎查",
        GridLevel::Village,
        "152522101",
    ));
    g
}

// ---------------------------------------------------------------------------------------
// The command line.

fn admin_cli(data: &Path, args: &[&str]) -> (bool, String, String) {
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
fn cli_imports_producers_and_people_and_checks_staffing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let grid_csv = dir.path().join("grids.csv");
    let mut g = String::from("code,name,level,parent,kind\n");
    for n in grids() {
        g.push_str(&format!(
            "{},{},{},{},pastoral\n",
            n.code,
            n.name,
            n.level.as_str(),
            n.parent.unwrap_or_default()
        ));
    }
    std::fs::write(&grid_csv, g).unwrap();
    assert!(admin_cli(&data, &["import-grids", grid_csv.to_str().unwrap()]).0);
    // No administrator yet: the import says how to add one.
    let rows: Vec<Vec<String>> = (0..200).map(row).collect();
    let good = dir.path().join("producers.csv");
    std::fs::write(&good, csv_of(&rows)).unwrap();
    let (ok, _, err) = admin_cli(&data, &["import-producers", good.to_str().unwrap()]);
    assert!(!ok && err.contains("add-person --role admin"), "{err}");
    let (ok, _, err) = admin_cli(
        &data,
        &[
            "add-person",
            "--id",
            "adm",
            "--name",
            "管理员",
            "--phone",
            "13900000000",
            "--role",
            "admin",
        ],
    );
    assert!(ok, "{err}");
    // One bad row: named, nothing imported.
    let mut bad_rows = rows.clone();
    bad_rows[150][2] = "养蜂场".into();
    let bad = dir.path().join("bad.csv");
    std::fs::write(&bad, csv_of(&bad_rows)).unwrap();
    let (ok, _, err) = admin_cli(&data, &["import-producers", bad.to_str().unwrap()]);
    assert!(!ok);
    assert!(
        err.contains("line 152, column 主体类型") && err.contains("养蜂场"),
        "{err}"
    );
    let out = admin_cli(&data, &["status"]).1;
    assert!(
        !out.lines()
            .any(|l| l.starts_with("producer") && !l.ends_with(": 0")),
        "nothing half-imported: {out}"
    );
    // A dry run writes nothing; the import writes every row, with a progress bar.
    let (ok, out, err) = admin_cli(
        &data,
        &["import-producers", "--dry-run", good.to_str().unwrap()],
    );
    assert!(ok && out.contains("all 200 rows are good"), "{out}{err}");
    let (ok, out, err) = admin_cli(&data, &["import-producers", good.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(out.contains("imported 200 producers"), "{out}");
    assert!(err.contains("writing") && err.contains('\r'), "{err}");
    // Again: every row a duplicate, refused; --allow-duplicates imports and lists them.
    let (ok, _, err) = admin_cli(&data, &["import-producers", good.to_str().unwrap()]);
    assert!(
        !ok && err.contains("--allow-duplicates") && err.contains("likely the existing entry"),
        "{err}"
    );
    let one = dir.path().join("one.csv");
    std::fs::write(&one, csv_of(&rows[..1])).unwrap();
    let (ok, out, err) = admin_cli(
        &data,
        &[
            "import-producers",
            "--allow-duplicates",
            one.to_str().unwrap(),
        ],
    );
    assert!(
        ok && out.contains("imported 1 producers") && out.contains("credit_code"),
        "{out}{err}"
    );
    // People: a bad role named; then a good file; the staffing check.
    let people = dir.path().join("people.csv");
    std::fs::write(
        &people,
        "姓名,手机号,角色,网格编码\n乌日娜,13912340001,协管员,152522001001\n巴特尔,13912340002,村长,152522001\n",
    )
    .unwrap();
    let (ok, _, err) = admin_cli(&data, &["import-people", people.to_str().unwrap()]);
    assert!(!ok && err.contains("line 3, column 角色"), "{err}");
    std::fs::write(
        &people,
        "姓名,手机号,角色,网格编码\n乌日娜,13912340001,协管员,152522001001\n巴特尔,13912340002,监管员,152522001\n",
    )
    .unwrap();
    let (ok, out, err) = admin_cli(&data, &["import-people", people.to_str().unwrap()]);
    assert!(ok && out.contains("imported 2 people"), "{out}{err}");
    assert!(out.contains("outside the plan"), "{out}");
    let (ok, out, err) = admin_cli(&data, &["staffing", "--grid", "152522001"]);
    assert!(ok, "{err}");
    assert!(
        !out.contains("152522001001 "),
        "a staffed village is not listed: {out}"
    );
    assert!(
        out.contains("152522001002") && out.contains("missing"),
        "{out}"
    );
    assert!(out.contains("townships: 1 of 1 within plan"), "{out}");
    assert!(
        out.contains("villages: 1 of 10 within plan (9 without a liaison"),
        "{out}"
    );
    let (ok, _, err) = admin_cli(&data, &["staffing", "--grid", "nope"]);
    assert!(!ok && err.contains("not a grid"), "{err}");
}
