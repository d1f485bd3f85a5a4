//! Exports from the console and the admin command line, read back: XLSX with calamine,
//! CSV as text. Row counts equal the records in scope, another township's rows never
//! appear, identifiers stay text, dates are dates, the CSV starts with a BOM, a grid
//! outside the scope is 404, and no session means the sign-in page.

#![allow(clippy::unwrap_used)]

mod desk_support;
use desk_support::*;

use std::io::Cursor;

use calamine::{Data, Reader, Xlsx};
use gridsync_core::model::{
    default_template, RapidTest, Rectification, RiskLevel, TestMethod, Verdict, Visit,
};

const DAY_MS: i64 = 86_400_000;
/// 2024-03-01 10:00 in China.
const MARCH: i64 = 1_709_258_400_000;
/// A landline with its area code: the leading zero must survive.
const LANDLINE: &str = "04798221234";
/// The ID number the harness gives every producer.
const ID_X: &str = "11010519491231002X";
/// Excel's serial day of 2023-11-15 (the harness's producers were registered then, in
/// China time).
const NOV_15_2023: f64 = 45_245.0;

/// A valid credit code of 18 digits starting with two zeros.
fn zero_code() -> String {
    let first = "00152522123456789";
    let c = gridsync_core::validate::uscc_check_char(first).unwrap();
    format!("{first}{c}")
}

fn admin_person() -> Person {
    person("adm", "管理员甲", Role::Admin, &[])
}

fn visit(id: &str, producer_id: &str, grid: &str, inspector: &str, started_ms: i64) -> Visit {
    let mut v = Visit::new(
        producer_id,
        grid,
        inspector,
        &default_template("B"),
        started_ms,
    );
    v.id = id.into();
    v.updated_at_ms = started_ms;
    v
}

fn test_of(id: &str, item: &str, verdict: Verdict, by: &str, at: i64) -> RapidTest {
    RapidTest {
        id: id.into(),
        sample: "羊尿".into(),
        item: item.into(),
        method: TestMethod::ColloidalGold,
        kit: "某某试纸条（某某生物）".into(),
        value: Some(0.5),
        unit: Some("μg/kg".into()),
        verdict,
        operator: by.into(),
        tested_at_ms: at,
    }
}

/// The harness's server (P1 in T1-V1, P2 in T2-V1) with P3 (an enterprise whose credit
/// code starts with zeros and whose phone is a landline) in T1-V1, and visits: V1 (P1,
/// March, a failed test, a rectification), V2 (P3, May, two tests), V3 (P2 in the other
/// township, March, a test and a rectification).
fn setup() -> Server {
    let s = start(|_, _| {});
    let Record::Producer(mut p3) = producer("P3", "零号农牧业有限公司", "高娃", "T1-V1")
    else {
        unreachable!()
    };
    p3.producer_type = ProducerType::Enterprise;
    p3.id_number = None;
    p3.credit_code = Some(zero_code());
    p3.phone = LANDLINE.into();
    p3.risk = RiskLevel::High;
    let mut v1 = visit("V1", "P1", "T1-V1", "sup1", MARCH);
    v1.rapid_tests.push(test_of(
        "t1",
        "克伦特罗",
        Verdict::Fail,
        "sup1",
        MARCH + 600_000,
    ));
    v1.rectification = Some(Rectification {
        required: true,
        deadline: "2024-03-10".into(),
        notice_number: "0012".into(),
        resolved_at_ms: None,
    });
    let may = MARCH + 61 * DAY_MS;
    let mut v2 = visit("V2", "P3", "T1-V1", "liai", may);
    v2.rapid_tests
        .push(test_of("t2", "莱克多巴胺", Verdict::Pass, "liai", may));
    v2.rapid_tests
        .push(test_of("t3", "沙丁胺醇", Verdict::Suspect, "liai", may + 1));
    let mut v3 = visit("V3", "P2", "T2-V1", "adm", MARCH);
    v3.rapid_tests
        .push(test_of("t4", "克伦特罗", Verdict::Pass, "adm", MARCH));
    v3.rectification = Some(Rectification {
        required: true,
        deadline: "2024-03-05".into(),
        notice_number: "整改-003".into(),
        resolved_at_ms: None,
    });
    gridsync_server::admin::seed_records(
        s.storage(),
        &admin_person(),
        &[
            Record::Producer(p3),
            Record::Visit(v1),
            Record::Visit(v2),
            Record::Visit(v3),
        ],
    )
    .unwrap();
    s
}

fn signed_in(s: &Server, user: &str, pw: &str) -> Browser {
    let mut b = Browser::new(s);
    assert_eq!(b.sign_in(user, pw).status, StatusCode::SEE_OTHER);
    b
}

struct Download {
    status: StatusCode,
    location: Option<String>,
    content_type: String,
    disposition: String,
    bytes: Vec<u8>,
}

/// A GET with the browser's cookies, the body as bytes.
fn download(b: &Browser, path: &str) -> Download {
    let cookies: Vec<String> = b.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let mut rb = b.http.get(format!("{}{path}", b.base));
    if !cookies.is_empty() {
        rb = rb.header("cookie", cookies.join("; "));
    }
    let r = rb.send().unwrap();
    let header = |n: &str| {
        r.headers()
            .get(n)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default()
    };
    let (status, content_type, disposition) = (
        r.status(),
        header("content-type"),
        header("content-disposition"),
    );
    let location = r
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_string());
    Download {
        status,
        location,
        content_type,
        disposition,
        bytes: r.bytes().unwrap().to_vec(),
    }
}

/// The first sheet of an XLSX file: its rows.
fn sheet(bytes: &[u8]) -> Vec<Vec<Data>> {
    let mut book: Xlsx<_> = calamine::open_workbook_from_rs(Cursor::new(bytes.to_vec())).unwrap();
    let range = book.worksheet_range_at(0).unwrap().unwrap();
    range.rows().map(<[Data]>::to_vec).collect()
}

fn column(rows: &[Vec<Data>], title: &str) -> usize {
    rows[0]
        .iter()
        .position(|c| *c == Data::String(title.into()))
        .unwrap_or_else(|| panic!("no column {title} in {:?}", rows[0]))
}

/// The data rows whose column `title` holds the text `value`.
fn find<'a>(rows: &'a [Vec<Data>], title: &str, value: &str) -> &'a Vec<Data> {
    let c = column(rows, title);
    rows[1..]
        .iter()
        .find(|r| r[c] == Data::String(value.into()))
        .unwrap_or_else(|| panic!("no row with {title} = {value}"))
}

/// A CSV export as text, checked to start with the BOM; its lines without it.
fn csv_lines(d: &Download) -> Vec<String> {
    assert_eq!(d.status, StatusCode::OK);
    assert!(d.content_type.starts_with("text/csv"), "{}", d.content_type);
    assert_eq!(
        &d.bytes[..3],
        b"\xEF\xBB\xBF",
        "the CSV starts with the UTF-8 BOM"
    );
    let text = std::str::from_utf8(&d.bytes[3..]).unwrap();
    assert!(text.ends_with("\r\n"));
    text.split_terminator("\r\n").map(str::to_string).collect()
}

fn xlsx(d: &Download) -> Vec<Vec<Data>> {
    assert_eq!(
        d.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&d.bytes)
    );
    assert!(
        d.content_type.contains("spreadsheetml"),
        "{}",
        d.content_type
    );
    sheet(&d.bytes)
}

#[test]
fn supervisor_exports_read_back_within_the_township() {
    let s = setup();
    let sup = signed_in(&s, "wangli", SUP_PASSWORD);

    // The directory as XLSX: P1 and P3, never P2 of the other township.
    let d = download(&sup, "/desk/exports/directory.xlsx");
    assert!(
        d.disposition
            .starts_with("attachment; filename=\"gridsync-directory.xlsx\"; filename*=UTF-8''"),
        "{}",
        d.disposition
    );
    assert!(
        d.disposition.contains("%E5%90%8D%E5%BD%95"),
        "名录 in the name: {}",
        d.disposition
    );
    let rows = xlsx(&d);
    assert_eq!(rows.len(), 3, "header and the township's two producers");
    assert_eq!(rows[0][0], Data::String("网格编码".into()));
    assert!(rows[0].contains(&Data::String("统一社会信用代码".into())));
    let all = format!("{rows:?}");
    assert!(!all.contains("T2-V1") && !all.contains("查干敖包"), "{all}");
    let p3 = find(&rows, "主体编号", "P3");
    assert_eq!(
        p3[column(&rows, "统一社会信用代码")],
        Data::String(zero_code())
    );
    assert_eq!(p3[column(&rows, "联系电话")], Data::String(LANDLINE.into()));
    assert_eq!(p3[column(&rows, "主体类型")], Data::String("企业".into()));
    let p1 = find(&rows, "主体编号", "P1");
    assert_eq!(p1[column(&rows, "身份证号")], Data::String(ID_X.into()));
    assert_eq!(
        p1[column(&rows, "联系电话")],
        Data::String("13812345678".into())
    );
    match &p1[column(&rows, "登记日期")] {
        Data::DateTime(dt) => {
            assert!(dt.is_datetime());
            assert_eq!(dt.as_f64(), NOV_15_2023);
        }
        other => panic!("登记日期 is not a date cell: {other:?}"),
    }
    // P1 was visited on 2024-03-01 (V1).
    match &p1[column(&rows, "最近巡查日期")] {
        Data::DateTime(dt) => assert_eq!(dt.as_f64(), 45_352.0),
        other => panic!("最近巡查日期 is not a date cell: {other:?}"),
    }

    // The directory as CSV: the same rows, identifiers as ="…", dates as YYYY-MM-DD.
    let lines = csv_lines(&download(&sup, "/desk/exports/directory.csv"));
    assert_eq!(lines.len(), 3, "{lines:?}");
    assert!(
        lines[0].starts_with("网格编码,网格名称,主体名称"),
        "{}",
        lines[0]
    );
    let p3 = lines.iter().find(|l| l.ends_with(",P3")).unwrap();
    assert!(
        p3.contains(&format!("\"=\"\"{}\"\"\"", zero_code())),
        "{p3}"
    );
    assert!(p3.contains(&format!("\"=\"\"{LANDLINE}\"\"\"")), "{p3}");
    let p1 = lines.iter().find(|l| l.ends_with(",P1")).unwrap();
    assert!(p1.contains(&format!("\"=\"\"{ID_X}\"\"\"")), "{p1}");
    assert!(p1.contains(",2023-11-15,"), "{p1}");
    assert!(!lines.iter().any(|l| l.contains("T2-V1")));

    // Visits: V1 and V2, oldest first; a period keeps March only.
    let rows = xlsx(&download(&sup, "/desk/exports/visits.xlsx"));
    assert_eq!(rows.len(), 3);
    let id = column(&rows, "巡查记录编号");
    assert_eq!(rows[1][id], Data::String("V1".into()));
    assert_eq!(rows[2][id], Data::String("V2".into()));
    let v1 = &rows[1];
    assert_eq!(
        v1[column(&rows, "主体名称")],
        Data::String("乌兰家庭牧场".into())
    );
    assert_eq!(v1[column(&rows, "巡查人")], Data::String("王丽".into()));
    assert_eq!(v1[column(&rows, "不合格项数")], Data::Float(1.0));
    assert_eq!(
        v1[column(&rows, "整改通知书编号")],
        Data::String("0012".into())
    );
    assert!(matches!(v1[column(&rows, "巡查日期")], Data::DateTime(_)));
    assert!(matches!(v1[column(&rows, "整改期限")], Data::DateTime(_)));
    let march = xlsx(&download(
        &sup,
        "/desk/exports/visits.xlsx?from=2024-03-01&to=2024-03-31",
    ));
    assert_eq!(march.len(), 2);
    let lines = csv_lines(&download(&sup, "/desk/exports/visits.csv?from=2024-05-01"));
    assert_eq!(lines.len(), 2);
    assert!(lines[1].contains(",2024-05-01,"), "{}", lines[1]);

    // Rapid tests: one row per test of the township's visits (three), from the documents.
    let rows = xlsx(&download(&sup, "/desk/exports/tests.xlsx"));
    assert_eq!(rows.len(), 4, "{rows:?}");
    let t1 = find(&rows, "检测项目", "克伦特罗");
    assert_eq!(t1[column(&rows, "检测结果")], Data::String("不合格".into()));
    assert_eq!(
        t1[column(&rows, "检测方法")],
        Data::String("胶体金试纸条".into())
    );
    assert_eq!(t1[column(&rows, "检测值")], Data::Float(0.5));
    assert_eq!(t1[column(&rows, "检测人")], Data::String("王丽".into()));
    assert!(matches!(t1[column(&rows, "检测日期")], Data::DateTime(_)));
    let lines = csv_lines(&download(&sup, "/desk/exports/tests.csv?to=2024-03-31"));
    assert_eq!(lines.len(), 2, "March only: {lines:?}");

    // Rectifications: V1's only (V3 is in the other township); overdue by now.
    let rows = xlsx(&download(&sup, "/desk/exports/rectifications.xlsx"));
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(
        rows[1][column(&rows, "整改状态")],
        Data::String("已逾期".into())
    );
    match &rows[1][column(&rows, "整改期限")] {
        Data::DateTime(dt) => assert_eq!(dt.as_f64(), 45_361.0, "2024-03-10"),
        other => panic!("整改期限 is not a date cell: {other:?}"),
    }

    // Activity: the township's people (the liaison, the supervisor), and the administrator
    // who registered its two producers; the administrator's visit elsewhere is not counted.
    let lines = csv_lines(&download(&sup, "/desk/exports/activity.csv"));
    assert_eq!(lines.len(), 4, "{lines:?}");
    assert!(
        lines[1].starts_with("liai,") && lines[2].starts_with("sup1,"),
        "{lines:?}"
    );
    let liai = lines.iter().find(|l| l.starts_with("liai,")).unwrap();
    assert!(
        liai.starts_with("liai,乌日娜,协管员,\"=\"\"13912345678\"\"\","),
        "{liai}"
    );
    assert!(liai.ends_with(",1,0,0,0,2,0,0,0,0"), "{liai}");
    let sup1 = lines.iter().find(|l| l.starts_with("sup1,")).unwrap();
    assert!(sup1.ends_with(",1,0,0,0,1,1,1,0,0"), "{sup1}");
    let adm = lines.iter().find(|l| l.starts_with("adm,")).unwrap();
    assert!(adm.ends_with(",0,0,0,0,0,0,0,0,2"), "{adm}");

    // A grid in the township: the same rows; the other township's grids answer 404.
    let rows = xlsx(&download(&sup, "/desk/exports/directory.xlsx?grid=T1-V1"));
    assert_eq!(rows.len(), 3);
    for path in [
        "/desk/exports/directory.xlsx?grid=T2",
        "/desk/exports/visits.csv?grid=T2-V1",
        "/desk/exports/tests.csv?grid=nowhere",
        "/desk/exports?grid=T2",
        "/desk/exports/nothing.xlsx",
        "/desk/exports/visits.pdf",
    ] {
        assert_eq!(download(&sup, path).status, StatusCode::NOT_FOUND, "{path}");
    }
    assert_eq!(
        download(&sup, "/desk/exports/visits.csv?from=2024-13-01").status,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(
        download(
            &sup,
            "/desk/exports/visits.csv?from=2024-03-02&to=2024-03-01"
        )
        .status,
        StatusCode::BAD_REQUEST
    );

    // Every export is in the audit trail, with what and which grids.
    let audit: Vec<AuditEntry> = s
        .audit("sup1")
        .into_iter()
        .filter(|e| e.action == "desk_export")
        .collect();
    assert_eq!(audit.len(), 10, "the exports that were in scope: {audit:?}");
    assert!(audit
        .iter()
        .any(|e| e.grid.as_deref() == Some("T1-V1") && e.detail.starts_with("directory as xlsx")));
    assert!(audit.iter().any(
        |e| e.detail == "visits as xlsx, whole scope (2 grids), days 2024-03-01 to 2024-03-31"
    ));
}

#[test]
fn the_county_sees_every_township_and_the_page_links_the_filters() {
    let s = setup();
    let mut cty = signed_in(&s, "bater", CTY_PASSWORD);
    let rows = xlsx(&download(&cty, "/desk/exports/directory.xlsx"));
    assert_eq!(rows.len(), 4, "the county's three producers");
    let lines = csv_lines(&download(&cty, "/desk/exports/rectifications.csv"));
    assert_eq!(lines.len(), 3);
    let lines = csv_lines(&download(&cty, "/desk/exports/tests.csv?grid=T2"));
    assert_eq!(lines.len(), 2);

    let page = cty.get("/desk/exports?grid=T1&from=2024-03-01&to=2024-03-31");
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("数据导出"));
    assert!(
        page.body
            .contains("/desk/exports/visits.xlsx?grid=T1&amp;from=2024-03-01&amp;to=2024-03-31")
            || page.body.contains(
                "/desk/exports/visits.xlsx?grid=T1&#38;from=2024-03-01&#38;to=2024-03-31"
            ),
        "{}",
        page.body
    );
    // The directory takes no period.
    assert!(
        page.body.contains("/desk/exports/directory.csv?grid=T1\""),
        "{}",
        page.body
    );
    assert!(page.body.contains("href=\"/desk/exports\""), "nav link");
}

#[test]
fn without_a_session_exports_send_to_sign_in() {
    let s = setup();
    let b = Browser::new(&s);
    for path in [
        "/desk/exports",
        "/desk/exports/directory.xlsx",
        "/desk/exports/visits.csv?grid=T1",
    ] {
        let d = download(&b, path);
        assert_eq!(d.status, StatusCode::SEE_OTHER, "{path}");
        assert_eq!(d.location.as_deref(), Some("/desk/login"), "{path}");
        assert!(d.bytes.is_empty() || !d.bytes.starts_with(b"PK"), "{path}");
    }
}

#[test]
fn admin_cli_exports_every_grid_or_one() {
    let s = setup();
    let dir = s._dir.path();
    let run = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_gridsync-server"))
            .arg("admin")
            .arg("--data")
            .arg(dir)
            .args(args)
            .env_remove("GRIDSYNC_DATABASE")
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let all = dir.join("all.xlsx");
    let (ok, out, err) = run(&["export", "directory", "--out", all.to_str().unwrap()]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("exported 3 rows"), "{out}");
    assert_eq!(sheet(&std::fs::read(&all).unwrap()).len(), 4);

    let t2 = dir.join("t2.csv");
    let (ok, out, err) = run(&[
        "export",
        "visits",
        "--format",
        "csv",
        "--grid",
        "T2",
        "--from",
        "2024-03-01",
        "--to",
        "2024-03-01",
        "--out",
        t2.to_str().unwrap(),
    ]);
    assert!(ok, "{out}{err}");
    let text = std::fs::read(&t2).unwrap();
    assert!(text.starts_with(b"\xEF\xBB\xBF"));
    let text = String::from_utf8(text[3..].to_vec()).unwrap();
    assert_eq!(text.lines().count(), 2, "{text}");
    assert!(text.contains(",V3,P2"), "{text}");

    let bad = dir.join("bad.csv");
    let (ok, _, err) = run(&[
        "export",
        "visits",
        "--format",
        "pdf",
        "--out",
        bad.to_str().unwrap(),
    ]);
    assert!(!ok && err.contains("xlsx or csv"), "{err}");
    let (ok, _, err) = run(&[
        "export",
        "visits",
        "--grid",
        "nowhere",
        "--out",
        bad.to_str().unwrap(),
    ]);
    assert!(!ok && err.contains("no grid nowhere"), "{err}");
    assert!(!bad.exists());
    let audit = s
        .storage()
        .audit_list(&AuditFilter::Person(String::new()), 100)
        .unwrap();
    assert_eq!(
        audit.iter().filter(|e| e.action == "admin_export").count(),
        2,
        "{audit:?}"
    );
}
