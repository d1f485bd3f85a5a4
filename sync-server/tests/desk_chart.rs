//! The grid chart (网格化管理公示牌) against a real server on loopback: the page lists
//! exactly the grid's current supervisors and liaisons with phones and duties, follows a
//! reassignment on the next load, stays within the desk person's scope, takes the
//! administrator's forms and the admin CLI, and its PDF is well-formed (every xref offset
//! points at its object; with `pdftotext` the text holds the names).

#![allow(clippy::unwrap_used)]

mod desk_support;

use desk_support::*;
use gridsync_server::reports::chart::{
    self as report, AgencyInput, LIAISON_DUTIES, NOBODY, STANDARD_DUTIES_CELL, SUPERVISOR_DUTIES,
};

// ---- Helpers ----

fn signed_in(s: &Server, user: &str, password: &str) -> Browser {
    let mut b = Browser::new(s);
    let r = b.sign_in(user, password);
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    b
}

fn phone_person(id: &str, name: &str, phone: &str, role: Role, grids: &[&str]) -> Person {
    Person {
        phone: phone.into(),
        ..person(id, name, role, grids)
    }
}

/// The harness's server with a second village in T1 and more people: two supervisors and
/// two liaisons in T1, a supervisor and a liaison in T2, and T1's supervising body.
fn chart_server() -> Server {
    let s = start(|_, _| {});
    let st = s.storage();
    st.import_grids(&[node("T1-V2", GridLevel::Village, Some("T1"))])
        .unwrap();
    for p in [
        phone_person("sup2", "张伟", "13800001111", Role::Supervisor, &["T1"]),
        phone_person("lia2", "其其格", "13800002222", Role::Liaison, &["T1-V1"]),
        phone_person("sup3", "李强", "13800003333", Role::Supervisor, &["T2"]),
        phone_person("lia3", "图雅", "13800004444", Role::Liaison, &["T2-V1"]),
    ] {
        gridsync_server::admin::add_person(st, &p).unwrap();
    }
    report::set_agency(
        st,
        "test",
        "T1",
        &AgencyInput {
            agency: "网格T1农畜产品质量安全监管站".into(),
            address: "阿巴嘎旗别力古台镇政府院内".into(),
            phone: "0479-8221234".into(),
            complaint_phone: "12316".into(),
        },
    )
    .unwrap();
    report::set_duties(st, "test", "sup2", "负责东片区日常巡查和速测").unwrap();
    s
}

/// The rows of the table with this id: (data-id, row html).
fn rows(body: &str, table: &str) -> Vec<(String, String)> {
    let at = body
        .find(&format!("id=\"{table}\""))
        .unwrap_or_else(|| panic!("no table {table}"));
    let t = &body[at..];
    let t = &t[..t.find("</table>").unwrap()];
    t.split("<tr data-id=\"")
        .skip(1)
        .map(|r| {
            let id = r[..r.find('"').unwrap()].to_string();
            (id, r[..r.find("</tr>").unwrap()].to_string())
        })
        .collect()
}

fn ids(body: &str, table: &str) -> Vec<String> {
    rows(body, table).into_iter().map(|(id, _)| id).collect()
}

fn row_of(body: &str, table: &str, id: &str) -> String {
    rows(body, table)
        .into_iter()
        .find(|(i, _)| i == id)
        .unwrap_or_else(|| panic!("no row {id} in {table}"))
        .1
}

/// Names sorted as the chart sorts them (by name).
fn by_name(mut v: Vec<(&str, &str)>) -> Vec<String> {
    v.sort_by(|a, b| a.1.cmp(b.1));
    v.into_iter().map(|(id, _)| id.to_string()).collect()
}

/// GETs raw bytes with the browser's cookies: status, content type, body.
fn get_bytes(b: &Browser, path: &str) -> (StatusCode, String, Vec<u8>) {
    let c: Vec<String> = b.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let r = b
        .http
        .get(format!("{}{path}", b.base))
        .header("cookie", c.join("; "))
        .send()
        .unwrap();
    let status = r.status();
    let ct = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    (status, ct, r.bytes().unwrap().to_vec())
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Checks the PDF's structure: header, every xref offset at its `N 0 obj`, the trailer's
/// size, every stream's length. Returns the number of objects.
fn check_pdf(pdf: &[u8]) -> usize {
    assert!(pdf.starts_with(b"%PDF-1."), "a PDF header");
    assert!(pdf.ends_with(b"%%EOF\n"));
    let sx = pdf
        .windows(10)
        .rposition(|w| w == b"startxref\n")
        .expect("startxref");
    let tail = std::str::from_utf8(&pdf[sx..]).unwrap();
    let start: usize = tail.lines().nth(1).unwrap().parse().unwrap();
    let table = std::str::from_utf8(&pdf[start..sx]).unwrap();
    let mut lines = table.lines();
    assert_eq!(lines.next(), Some("xref"));
    let head: Vec<usize> = lines
        .next()
        .unwrap()
        .split(' ')
        .map(|n| n.parse().unwrap())
        .collect();
    assert_eq!(head[0], 0);
    let n = head[1];
    // Entries are 20 bytes each.
    let entries_at = start + "xref\n".len() + format!("0 {n}\n").len();
    for i in 0..n {
        let e = std::str::from_utf8(&pdf[entries_at + 20 * i..entries_at + 20 * (i + 1)]).unwrap();
        assert!(e.ends_with("\r\n"), "entry {i}: {e:?}");
        if i == 0 {
            assert_eq!(e, "0000000000 65535 f\r\n");
            continue;
        }
        assert_eq!(&e[10..18], " 00000 n", "entry {i}");
        let off: usize = e[..10].parse().unwrap();
        assert!(
            pdf[off..].starts_with(format!("{i} 0 obj\n").as_bytes()),
            "xref entry {i} points at byte {off}, which does not start `{i} 0 obj`"
        );
    }
    let trailer = &table[table.find("trailer").unwrap()..];
    assert!(trailer.contains(&format!("/Size {n} ")), "{trailer}");
    let mut rest = pdf;
    while let Some(at) = find(rest, b"<< /Length ") {
        rest = &rest[at + 11..];
        let len: usize = std::str::from_utf8(&rest[..find(rest, b" ").unwrap()])
            .unwrap()
            .parse()
            .unwrap();
        let body = &rest[find(rest, b"stream\n").unwrap() + 7..];
        assert!(body[len..].starts_with(b"\nendstream"), "stream length");
    }
    for needed in [
        &b"/BaseFont /STSong-Light"[..],
        b"/Encoding /UniGB-UCS2-H",
        b"/Ordering (GB1)",
    ] {
        assert!(find(pdf, needed).is_some());
    }
    n
}

/// UTF-16BE hex of a string, as the PDF draws text.
fn hex16(s: &str) -> String {
    s.encode_utf16().map(|u| format!("{u:04X}")).collect()
}

/// The text of a PDF as `pdftotext` extracts it, when it and its CJK data are installed.
fn pdftotext(pdf: &[u8]) -> Option<String> {
    let ok = std::process::Command::new("pdftotext")
        .arg("-v")
        .output()
        .is_ok();
    if !ok || !std::path::Path::new("/usr/share/poppler/cMap/Adobe-GB1").exists() {
        eprintln!("pdftotext or poppler-data missing: text extraction not checked");
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("chart.pdf");
    std::fs::write(&path, pdf).unwrap();
    let out = std::process::Command::new("pdftotext")
        .arg("-layout")
        .arg(&path)
        .arg("-")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "pdftotext: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8(out.stdout).unwrap())
}

// ---- Tests ----

#[test]
fn township_chart_lists_exactly_the_current_people_and_follows_reassignment() {
    let s = chart_server();
    let mut b = signed_in(&s, "wangli", SUP_PASSWORD);

    let page = b.get("/desk/chart/T1");
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let body = &page.body;
    assert!(body.contains("网格T1农畜产品质量安全网格化管理公示牌"));
    for text in [
        "网格T1农畜产品质量安全监管站",
        "阿巴嘎旗别力古台镇政府院内",
        "0479-8221234",
        "12316",
        SUPERVISOR_DUTIES,
        LIAISON_DUTIES,
    ] {
        assert!(body.contains(text), "{text}");
    }
    // Supervisors: exactly T1's, by name, each with phone and duties.
    assert_eq!(
        ids(body, "supervisors"),
        by_name(vec![("sup1", "王丽"), ("sup2", "张伟")])
    );
    let r = row_of(body, "supervisors", "sup2");
    assert!(r.contains("张伟") && r.contains("13800001111"), "{r}");
    assert!(r.contains("负责东片区日常巡查和速测"), "own duties: {r}");
    let r = row_of(body, "supervisors", "sup1");
    assert!(r.contains("王丽") && r.contains("13912345678"), "{r}");
    assert!(r.contains(STANDARD_DUTIES_CELL), "standard duties: {r}");
    // Liaisons: T1-V1's two, T1-V2 without anyone; nobody of T2.
    assert_eq!(
        ids(body, "liaisons"),
        by_name(vec![("liai", "乌日娜"), ("lia2", "其其格")])
    );
    let r = row_of(body, "liaisons", "lia2");
    assert!(
        r.contains("data-grid=\"T1-V1\"") && r.contains("其其格") && r.contains("13800002222"),
        "{r}"
    );
    assert!(body.contains(&format!(
        "<tr class=\"empty\" data-grid=\"T1-V2\"><td>网格T1-V2</td><td colspan=\"3\">{NOBODY}</td></tr>"
    )));
    for other in ["李强", "图雅", "13800003333", "巴特尔", "管理员甲"] {
        assert!(!body.contains(other), "{other} is not on T1's chart");
    }
    // Print: A4 landscape, navigation hidden; the page links its PDF.
    let css = b.get("/desk/static/chart.css");
    assert!(css.body.contains("size:A4 landscape"));
    assert!(css
        .body
        .contains("@media print{\n  header.top,.chart-tools,nav{display:none"));
    assert!(body.contains("href=\"/desk/chart/T1.pdf\""));
    assert!(
        !body.contains("id=\"chart-admin\""),
        "no forms for a supervisor"
    );

    // Reassignment: 其其格 moves to T1-V2, 张伟 to T2, a new liaison joins T1-V2, 乌日娜
    // leaves (deactivated). The next load shows exactly that.
    let st = s.storage();
    let mut lia2 = st.person("lia2").unwrap().unwrap();
    lia2.grids = vec!["T1-V2".into()];
    st.upsert_person(&lia2).unwrap();
    let mut sup2 = st.person("sup2").unwrap().unwrap();
    sup2.grids = vec!["T2".into()];
    gridsync_server::admin::add_person(st, &sup2).unwrap();
    st.upsert_person(&phone_person(
        "lia4",
        "萨仁",
        "13800005555",
        Role::Liaison,
        &["T1-V2"],
    ))
    .unwrap();
    gridsync_server::admin::deactivate_person(st, "liai", "test").unwrap();

    let body = b.get("/desk/chart/T1").body;
    assert_eq!(ids(&body, "supervisors"), vec!["sup1".to_string()]);
    assert_eq!(
        ids(&body, "liaisons"),
        by_name(vec![("lia2", "其其格"), ("lia4", "萨仁")])
    );
    assert!(row_of(&body, "liaisons", "lia2").contains("data-grid=\"T1-V2\""));
    assert!(body.contains(&format!(
        "<tr class=\"empty\" data-grid=\"T1-V1\"><td>网格T1-V1</td><td colspan=\"3\">{NOBODY}</td></tr>"
    )));
    for gone in ["张伟", "乌日娜", "负责东片区日常巡查和速测"] {
        assert!(!body.contains(gone), "{gone} left T1");
    }
}

#[test]
fn village_chart_shows_its_township_agency_and_supervisors_and_its_own_liaisons() {
    let s = chart_server();
    let mut b = signed_in(&s, "wangli", SUP_PASSWORD);
    let page = b.get("/desk/chart/T1-V1");
    assert_eq!(page.status, StatusCode::OK);
    let body = &page.body;
    assert!(body.contains("网格T1网格T1-V1农畜产品质量安全网格化管理公示牌"));
    assert!(body.contains("网格T1农畜产品质量安全监管站"));
    assert_eq!(
        ids(body, "supervisors"),
        by_name(vec![("sup1", "王丽"), ("sup2", "张伟")])
    );
    assert_eq!(
        ids(body, "liaisons"),
        by_name(vec![("liai", "乌日娜"), ("lia2", "其其格")])
    );
    assert!(!body.contains("网格T1-V2"), "only its own village");
    assert!(
        body.contains("href=\"/desk/chart/T1\""),
        "a link to the township's chart"
    );
    // A liaison of a sub-grid is listed with the village holding it.
    s.storage()
        .import_grids(&[node("T1-V1-S1", GridLevel::SubGrid, Some("T1-V1"))])
        .unwrap();
    let mut lia2 = s.storage().person("lia2").unwrap().unwrap();
    lia2.grids = vec!["T1-V1-S1".into()];
    gridsync_server::admin::add_person(s.storage(), &lia2).unwrap();
    let body = b.get("/desk/chart/T1-V1").body;
    let r = row_of(&body, "liaisons", "lia2");
    assert!(r.contains("网格T1-V1（网格T1-V1-S1）"), "{r}");
}

#[test]
fn charts_stay_within_scope() {
    let s = chart_server();
    // Without sign-in: to the sign-in page.
    let mut anon = Browser::new(&s);
    for path in ["/desk/chart/T1", "/desk/chart/T1.pdf", "/desk/chart"] {
        let r = anon.get(path);
        assert_eq!(r.status, StatusCode::SEE_OTHER, "{path}");
        assert_eq!(r.location.as_deref(), Some("/desk/login"));
    }
    let mut b = signed_in(&s, "wangli", SUP_PASSWORD);
    let missing = b.get("/desk/chart/NOPE");
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    for path in [
        "/desk/chart/T2",
        "/desk/chart/T2-V1",
        "/desk/chart/T2.pdf",
        "/desk/chart/T2-V1.pdf",
        "/desk/chart/B",
    ] {
        let r = b.get(path);
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(
            r.body, missing.body,
            "outside scope answers as missing: {path}"
        );
    }
    let (status, _, _) = get_bytes(&b, "/desk/chart/T2.pdf");
    assert_eq!(status, StatusCode::NOT_FOUND);
    // The supervisor's one township: /desk/chart goes straight to its chart.
    let r = b.get("/desk/chart");
    assert_eq!(r.location.as_deref(), Some("/desk/chart/T1"));
    // The county reviewer sees both townships (a choice), and T2's chart.
    let mut c = signed_in(&s, "bater", CTY_PASSWORD);
    let pick = c.get("/desk/chart");
    assert_eq!(pick.status, StatusCode::OK);
    for g in ["T1", "T1-V1", "T1-V2", "T2", "T2-V1"] {
        assert!(pick.body.contains(&format!("value=\"{g}\"")), "{g}");
    }
    assert!(!pick.body.contains("value=\"B\""), "no chart of a banner");
    let t2 = c.get("/desk/chart/T2");
    assert_eq!(t2.status, StatusCode::OK);
    assert_eq!(ids(&t2.body, "supervisors"), vec!["sup3".to_string()]);
    assert_eq!(ids(&t2.body, "liaisons"), vec!["lia3".to_string()]);
    assert!(
        t2.body.contains(report::AGENCY_MISSING),
        "T2's body is not set"
    );
    // A banner in scope has no chart.
    assert_eq!(c.get("/desk/chart/B").status, StatusCode::NOT_FOUND);
}

#[test]
fn the_pdf_is_well_formed_and_holds_the_names() {
    let s = chart_server();
    let b = signed_in(&s, "wangli", SUP_PASSWORD);
    let (status, ct, pdf) = get_bytes(&b, "/desk/chart/T1.pdf");
    assert_eq!(status, StatusCode::OK);
    assert_eq!(ct, "application/pdf");
    let objects = check_pdf(&pdf);
    assert!(objects >= 9, "catalog, pages, fonts, info and a page");
    for name in [
        "王丽",
        "张伟",
        "乌日娜",
        "其其格",
        "网格T1农畜产品质量安全监管站",
    ] {
        assert!(find(&pdf, hex16(name).as_bytes()).is_some(), "{name} drawn");
    }
    assert!(find(&pdf, hex16("图雅").as_bytes()).is_none());
    if let Some(text) = pdftotext(&pdf) {
        let flat: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        for t in [
            "网格T1农畜产品质量安全网格化管理公示牌",
            "王丽",
            "张伟",
            "乌日娜",
            "其其格",
            "13800001111",
            "13800002222",
            "0479-8221234",
            "12316",
            "负责东片区日常巡查和速测",
        ] {
            assert!(flat.contains(t), "pdftotext finds {t} in:\n{text}");
        }
        assert!(!flat.contains("图雅"));
    }
    // Many liaisons: the table continues on further pages, still well-formed.
    let st = s.storage();
    for i in 0..40 {
        st.upsert_person(&phone_person(
            &format!("many{i}"),
            &format!("协管员{i:02}号"),
            "13800009999",
            Role::Liaison,
            &["T1-V2"],
        ))
        .unwrap();
    }
    st.upsert_person(&phone_person(
        "astral",
        "𠀋名字",
        "13800008888",
        Role::Liaison,
        &["T1-V2"],
    ))
    .unwrap();
    let (_, _, big) = get_bytes(&b, "/desk/chart/T1.pdf");
    let big_objects = check_pdf(&big);
    assert!(big_objects > objects, "more pages");
    assert!(
        find(&big, hex16("□名字").as_bytes()).is_some(),
        "a character outside the BMP is replaced"
    );
    if let Some(text) = pdftotext(&big) {
        let flat: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        assert!(flat.contains("协管员00号") && flat.contains("协管员39号"));
    }
}

#[test]
fn administrators_set_the_agency_and_duties_on_the_page() {
    let s = chart_server();
    let mut a = signed_in(&s, "admin", ADM_PASSWORD);
    let page = a.get("/desk/chart/T1-V1");
    assert!(page.body.contains("id=\"chart-admin\""));
    let csrf = page.csrf();
    // A village's form sets its township's supervising body.
    let r = a.post(
        "/desk/chart/T1-V1/agency",
        &[
            ("agency", "别力古台镇农牧业综合服务中心"),
            ("address", ""),
            ("phone", "13900001234"),
            ("complaint_phone", ""),
            ("csrf", &csrf),
        ],
    );
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(r.location.as_deref(), Some("/desk/chart/T1-V1?done=agency"));
    let t1 = a.get("/desk/chart/T1").body;
    assert!(t1.contains("别力古台镇农牧业综合服务中心") && t1.contains("13900001234"));
    assert!(
        !t1.contains("id=\"complaint-phone\""),
        "no complaint line now"
    );
    // Refused input: the page again with the reason, nothing changed.
    let r = a.post(
        "/desk/chart/T1/agency",
        &[("agency", "某单位"), ("phone", "12"), ("csrf", &csrf)],
    );
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("id=\"form-error\""), "{}", r.body);
    assert!(r.body.contains("别力古台镇农牧业综合服务中心"), "unchanged");
    // Duties: set, then cleared back to the standard text.
    let r = a.post(
        "/desk/chart/T1/duties",
        &[
            ("person", "liai"),
            ("duties", "负责北部牧区名录登记"),
            ("csrf", &csrf),
        ],
    );
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let body = a.get("/desk/chart/T1").body;
    assert!(row_of(&body, "liaisons", "liai").contains("负责北部牧区名录登记"));
    let r = a.post(
        "/desk/chart/T1/duties",
        &[("person", "liai"), ("duties", "  "), ("csrf", &csrf)],
    );
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    let body = a.get("/desk/chart/T1").body;
    assert!(row_of(&body, "liaisons", "liai").contains(STANDARD_DUTIES_CELL));
    // Someone not on this chart: 404.
    let r = a.post(
        "/desk/chart/T1/duties",
        &[("person", "lia3"), ("duties", "x"), ("csrf", &csrf)],
    );
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    // Written to the audit trail with the administrator as the actor.
    let actions = s.actions("adm");
    assert!(
        actions.contains(&"set_grid_chart".to_string()),
        "{actions:?}"
    );
    assert!(actions.contains(&"set_duties".to_string()), "{actions:?}");

    // A wrong token: 403. A supervisor: 404 (even with a good token).
    let r = a.post(
        "/desk/chart/T1/agency",
        &[("agency", "x"), ("phone", "13900001234"), ("csrf", "bad")],
    );
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let mut sup = signed_in(&s, "wangli", SUP_PASSWORD);
    let sup_csrf = sup.get("/desk/chart/T1").csrf();
    let r = sup.post(
        "/desk/chart/T1/agency",
        &[
            ("agency", "x"),
            ("phone", "13900001234"),
            ("csrf", &sup_csrf),
        ],
    );
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert!(a
        .get("/desk/chart/T1")
        .body
        .contains("别力古台镇农牧业综合服务中心"));
}

#[test]
fn admin_cli_sets_the_chart_and_the_next_load_shows_it() {
    let s = chart_server();
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_gridsync-server"))
            .arg("admin")
            .arg("--data")
            .arg(s._dir.path())
            .args(args)
            .env_remove("GRIDSYNC_DATABASE")
            .output()
            .unwrap()
    };
    let out = run(&[
        "set-grid-chart",
        "--grid",
        "T2",
        "--agency",
        "网格T2监管站",
        "--agency-phone",
        "0479-8229999",
        "--address",
        "查干淖尔镇",
        "--complaint-phone",
        "12316",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(&[
        "set-duties",
        "--person",
        "lia3",
        "--duties",
        "负责西部草场巡查",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Refused: a village (the body is set per township), a bad phone, a county reviewer.
    let out = run(&[
        "set-grid-chart",
        "--grid",
        "T2-V1",
        "--agency",
        "x",
        "--agency-phone",
        "13900001234",
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("township"));
    let out = run(&[
        "set-grid-chart",
        "--grid",
        "T2",
        "--agency",
        "x",
        "--agency-phone",
        "555",
    ]);
    assert!(!out.status.success());
    let out = run(&["set-duties", "--person", "cty", "--duties", "x"]);
    assert!(!out.status.success());

    let mut c = signed_in(&s, "bater", CTY_PASSWORD);
    let body = c.get("/desk/chart/T2-V1").body;
    for t in ["网格T2监管站", "0479-8229999", "查干淖尔镇", "12316"] {
        assert!(body.contains(t), "{t}");
    }
    assert!(row_of(&body, "liaisons", "lia3").contains("负责西部草场巡查"));
    assert!(s
        .actions("admin-cli")
        .contains(&"set_grid_chart".to_string()));
}
