//! The administrators' desk pages against a real server on loopback: people and devices
//! (adding people with checked grids, enrolment codes with their QR code, devices enrolled
//! through the real sync API, revoked and stopped by deactivation), CSRF on every action,
//! and the audit trail within scope.

#![allow(clippy::unwrap_used)]

mod desk_support;

use desk_support::*;
use gridsync_core::sync::protocol::{self, SyncRequest, PROTOCOL_HEADER, PROTOCOL_VERSION};

// ---- Helpers ----

fn signed_in(s: &Server, user: &str, password: &str) -> Browser {
    let mut b = Browser::new(s);
    let r = b.sign_in(user, password);
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    b
}

/// The CSRF token of a signed-in browser's session (from any page's logout form).
fn csrf_of(b: &mut Browser) -> String {
    let home = b.get("/desk/");
    assert_eq!(home.status, StatusCode::OK);
    home.csrf()
}

/// The text of the element with this id (`<tag id="...">text</tag>`).
fn element_text(body: &str, id: &str) -> Option<String> {
    let at = body.find(&format!("id=\"{id}\""))?;
    let rest = &body[at..];
    let start = rest.find('>')? + 1;
    let end = rest[start..].find('<')?;
    Some(rest[start..start + end].trim().to_string())
}

/// The `data-id`s of the rows of the table with this id.
fn row_ids(body: &str, table: &str) -> Vec<String> {
    let Some(at) = body.find(&format!("<table id=\"{table}\"")) else {
        return Vec::new();
    };
    let t = &body[at..];
    let t = &t[..t.find("</table>").unwrap()];
    t.split("<tr data-id=\"")
        .skip(1)
        .map(|r| r[..r.find('"').unwrap()].to_string())
        .collect()
}

/// The row with this `data-id` in the table.
fn row<'a>(body: &'a str, id: &str) -> &'a str {
    let at = body
        .find(&format!("<tr data-id=\"{id}\""))
        .unwrap_or_else(|| panic!("no row {id} in {body}"));
    let r = &body[at..];
    &r[..r.find("</tr>").unwrap()]
}

/// The "load older" link of an audit page, unescaped.
fn older_link(body: &str) -> Option<String> {
    let at = body.find("id=\"older\"")?;
    let at = body[..at].rfind("href=\"").unwrap() + 6;
    let h = &body[at..];
    Some(
        h[..h.find('"').unwrap()]
            .replace("&#38;", "&")
            .replace("&amp;", "&"),
    )
}

/// Reads the modules of a QR code SVG (dark rectangles of one module each, in a quiet
/// zone) as rows of booleans.
fn svg_modules(svg: &str, modules: usize) -> Vec<Vec<bool>> {
    let width: usize = {
        let at = svg.find("width=\"").unwrap() + 7;
        svg[at..at + svg[at..].find('"').unwrap()].parse().unwrap()
    };
    let d = {
        let at = svg.find(" d=\"").unwrap() + 4;
        &svg[at..at + svg[at..].find('"').unwrap()]
    };
    let mut rects = Vec::new();
    for cmd in d.split('M').filter(|c| !c.is_empty()) {
        // "{x} {y}h{w}v{h}H{x}V{y}"
        let (xy, rest) = cmd.split_once('h').unwrap();
        let (x, y) = xy.split_once(' ').unwrap();
        let w = rest.split_once('v').unwrap().0;
        rects.push((
            x.parse::<usize>().unwrap(),
            y.parse::<usize>().unwrap(),
            w.parse::<usize>().unwrap(),
        ));
    }
    let size = rects[0].2;
    assert_eq!(width % size, 0);
    let quiet = (width / size - modules) / 2;
    let mut grid = vec![vec![false; modules]; modules];
    for (x, y, w) in rects {
        assert_eq!(w, size, "one module per rectangle");
        grid[y / size - quiet][x / size - quiet] = true;
    }
    grid
}

/// Enrols a device with a code through `POST /v1/enroll`: (status, body).
fn enroll(s: &Server, code: &str) -> (StatusCode, serde_json::Value) {
    let r = reqwest::blocking::Client::new()
        .post(format!("{}/v1/enroll", s.base))
        .json(&serde_json::json!({"code": code, "device_name": "测试手机"}))
        .send()
        .unwrap();
    let status = r.status();
    (status, r.json().unwrap_or(serde_json::Value::Null))
}

/// A device's bearer credential from an enrolment answer.
fn bearer(v: &serde_json::Value) -> (String, String) {
    let id = v["device_id"].as_str().unwrap().to_string();
    let secret = v["secret"].as_str().unwrap();
    (id.clone(), format!("Bearer {id}.{secret}"))
}

/// One sync round trip through `POST /v1/sync`, pushing `push`: (status, body text or
/// the decoded response's results).
fn sync(
    s: &Server,
    cred: &str,
    push: Vec<protocol::PushRecord>,
) -> (StatusCode, Option<protocol::SyncResponse>, String) {
    let req = SyncRequest {
        epoch: String::new(),
        reference_version: String::new(),
        push,
        cursors: Vec::new(),
        want_full: Vec::new(),
        page_limit: 10,
        bare_docs: false,
        page_bytes: 0,
    };
    let r = reqwest::blocking::Client::new()
        .post(format!("{}/v1/sync", s.base))
        .header("Authorization", cred)
        .header(PROTOCOL_HEADER, PROTOCOL_VERSION.to_string())
        .header("Content-Type", protocol::CONTENT_TYPE)
        .body(protocol::encode(&req).unwrap())
        .send()
        .unwrap();
    let status = r.status();
    let bytes = r.bytes().unwrap().to_vec();
    if status == StatusCode::OK {
        let resp = protocol::decode_response(&bytes, PROTOCOL_VERSION).unwrap();
        (status, Some(resp), String::new())
    } else {
        (status, None, String::from_utf8_lossy(&bytes).into_owned())
    }
}

/// A new producer in `grid` as a device of `person` pushes it.
fn producer_push(device: &str, person: &str, grid: &str, name: &str) -> protocol::PushRecord {
    let now = gridsync_core::now_ms();
    let mut p = Producer::new(
        name,
        ProducerType::FamilyRanch,
        "巴图",
        "13812345678",
        grid,
        person,
        now,
    );
    p.id_number = Some("11010519491231002X".into());
    let rec = Record::Producer(p);
    let mut d = gridsync_core::doc::RecordDoc::create(
        &rec,
        &gridsync_core::device_actor(device),
        person,
        now,
    )
    .unwrap();
    protocol::PushRecord {
        id: rec.id().to_string(),
        kind: rec.kind().tag(),
        changes: d.save(),
        heads: d.heads().iter().map(|h| h.0).collect(),
    }
}

/// Issues an enrolment code on a person's page: the page's body.
fn issue_code(b: &mut Browser, csrf: &str, person: &str) -> Resp {
    let r = b.post(
        &format!("/desk/people/{person}/code"),
        &[("csrf", csrf), ("hours", "24")],
    );
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    r
}

// ---- Tests ----

#[test]
fn people_pages_are_for_administrators_and_every_post_needs_the_csrf_token() {
    let s = start(|_, _| {});
    // A supervisor and a county reviewer: 404 for every people URL, GET or POST.
    for (user, pw) in [("wangli", SUP_PASSWORD), ("bater", CTY_PASSWORD)] {
        let mut b = signed_in(&s, user, pw);
        let csrf = csrf_of(&mut b);
        for path in ["/desk/people", "/desk/people/liai", "/desk/people/adm"] {
            let r = b.get(path);
            assert_eq!(r.status, StatusCode::NOT_FOUND, "{user} {path}");
        }
        let r = b.post(
            "/desk/people",
            &[
                ("csrf", &csrf),
                ("name", "越权"),
                ("phone", "13912345670"),
                ("role", "liaison"),
                ("grids", "T1-V1"),
            ],
        );
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{user}");
        let r = b.post("/desk/people/liai/deactivate", &[("csrf", &csrf)]);
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{user}");
        assert!(s.storage().person("liai").unwrap().is_some());
    }
    // The administrator: the list, every person with role, grids, phone, state, devices.
    let mut b = signed_in(&s, "admin", ADM_PASSWORD);
    let page = b.get("/desk/people");
    assert_eq!(page.status, StatusCode::OK, "{}", page.body);
    let ids = row_ids(&page.body, "people");
    for id in ["adm", "cty", "liai", "sup1"] {
        assert!(ids.contains(&id.to_string()), "{id} in {ids:?}");
    }
    let liai = row(&page.body, "liai");
    assert!(
        liai.contains("乌日娜") && liai.contains("协管员") && liai.contains("T1-V1"),
        "{liai}"
    );
    assert!(
        liai.contains("13912345678") && liai.contains("在岗"),
        "{liai}"
    );
    // Every action without the session's token, or with another's: 403, nothing done.
    let mut other = signed_in(&s, "wangli", SUP_PASSWORD);
    let foreign = csrf_of(&mut other);
    let device = "no-such-device";
    let actions: Vec<(String, Vec<(&str, &str)>)> = vec![
        (
            "/desk/people".into(),
            vec![
                ("name", "新人"),
                ("phone", "13912345670"),
                ("role", "liaison"),
                ("grids", "T1-V1"),
                ("id", "new1"),
            ],
        ),
        ("/desk/people/liai/grids".into(), vec![("grids", "T2-V1")]),
        ("/desk/people/liai/code".into(), vec![("hours", "24")]),
        (
            format!("/desk/people/liai/devices/{device}/revoke"),
            vec![("reason", "丢失")],
        ),
        ("/desk/people/liai/deactivate".into(), vec![]),
    ];
    for (path, fields) in &actions {
        let r = b.post(path, fields);
        assert_eq!(r.status, StatusCode::FORBIDDEN, "{path} without a token");
        let mut with_foreign = fields.clone();
        with_foreign.push(("csrf", &foreign));
        let r = b.post(path, &with_foreign);
        assert_eq!(
            r.status,
            StatusCode::FORBIDDEN,
            "{path} with another's token"
        );
    }
    // Without a session at all: 403 too.
    let mut anon = Browser::new(&s);
    let r = anon.post("/desk/people/liai/deactivate", &[("csrf", &foreign)]);
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let liai = s.storage().person("liai").unwrap().unwrap();
    assert_eq!(liai.grids, ["T1-V1"]);
    assert!(s
        .storage()
        .all_people()
        .unwrap()
        .iter()
        .all(|p| p.id != "new1"));
    let actions_by_admin = s.actions("adm");
    assert!(
        !actions_by_admin
            .iter()
            .any(|a| a.starts_with("desk_person") || a == "desk_code_issued"),
        "{actions_by_admin:?}"
    );
}

#[test]
fn an_administrator_adds_people_and_assigns_grids_checked_against_the_tree() {
    let s = start(|_, _| {});
    let mut b = signed_in(&s, "admin", ADM_PASSWORD);
    let csrf = csrf_of(&mut b);
    let add = |b: &mut Browser, id: &str, role: &str, grids: &str| {
        b.post(
            "/desk/people",
            &[
                ("csrf", &csrf),
                ("id", id),
                ("name", "其木格"),
                ("phone", "13912345670"),
                ("role", role),
                ("grids", grids),
            ],
        )
    };
    // An unknown grid, a grid of the wrong level for the role, a grid inside another: 400
    // naming the grid; nothing stored, the form keeps what was typed.
    let r = add(&mut b, "liai2", "liaison", "T9");
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    let e = element_text(&r.body, "form-error").unwrap();
    assert!(e.contains("T9") && e.contains("不存在"), "{e}");
    assert!(
        r.body.contains("value=\"其木格\""),
        "the form keeps the name"
    );
    let r = add(&mut b, "sup2", "supervisor", "T1-V1");
    assert_eq!(r.status, StatusCode::BAD_REQUEST, "{}", r.body);
    let e = element_text(&r.body, "form-error").unwrap();
    assert!(e.contains("T1-V1") && e.contains("监管员"), "{e}");
    let r = add(&mut b, "cty2", "county_reviewer", "T1");
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(element_text(&r.body, "form-error").unwrap().contains("T1"));
    let r = add(&mut b, "adm2", "admin", "B, T1");
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let e = element_text(&r.body, "form-error").unwrap();
    assert!(e.contains("T1") && e.contains("B"), "{e}");
    let r = add(&mut b, "liai2", "liaison", "");
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let r = add(&mut b, "bad id/x", "liaison", "T1-V1");
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    for id in ["liai2", "sup2", "cty2", "adm2"] {
        assert!(
            s.storage().all_people().unwrap().iter().all(|p| p.id != id),
            "{id} not stored"
        );
    }
    // A good one: stored as typed, to its page, in the audit trail with the admin as actor.
    let r = add(&mut b, "liai2", "liaison", "T1-V1，T2-V1");
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(r.location.as_deref(), Some("/desk/people/liai2?done=added"));
    let p = s.storage().person("liai2").unwrap().unwrap();
    assert_eq!(p.role, Role::Liaison);
    assert_eq!(p.grids, ["T1-V1", "T2-V1"]);
    assert_eq!(p.phone, "13912345670");
    let e = s
        .audit("adm")
        .into_iter()
        .find(|e| e.action == "desk_person_added")
        .unwrap();
    assert!(e.detail.contains("liai2"), "{e:?}");
    let page = b.get("/desk/people/liai2?done=added");
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("人员已添加"), "{}", page.body);
    // The same id again: refused, the person is not replaced.
    let r = add(&mut b, "liai2", "supervisor", "T1");
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(element_text(&r.body, "form-error")
        .unwrap()
        .contains("liai2"));
    assert_eq!(
        s.storage().person("liai2").unwrap().unwrap().role,
        Role::Liaison
    );
    // Without an id: one is made.
    let r = add(&mut b, "", "supervisor", "T2");
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let to = r.location.unwrap();
    let id = to
        .trim_start_matches("/desk/people/")
        .trim_end_matches("?done=added");
    assert_eq!(
        s.storage().person(id).unwrap().unwrap().grids,
        ["T2"],
        "{to}"
    );
    // Assigning grids replaces the list, by the same rules.
    let r = b.post(
        "/desk/people/liai2/grids",
        &[("csrf", &csrf), ("grids", "T2")],
    );
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let e = element_text(&r.body, "form-error").unwrap();
    assert!(e.contains("T2") && e.contains("协管员"), "{e}");
    assert_eq!(
        s.storage().person("liai2").unwrap().unwrap().grids,
        ["T1-V1", "T2-V1"]
    );
    let r = b.post(
        "/desk/people/liai2/grids",
        &[("csrf", &csrf), ("grids", "T2-V1")],
    );
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(
        s.storage().person("liai2").unwrap().unwrap().grids,
        ["T2-V1"]
    );
    let e = s
        .audit("adm")
        .into_iter()
        .find(|e| e.action == "desk_grids_assigned")
        .unwrap();
    assert!(
        e.detail.contains("liai2") && e.detail.contains("T2-V1"),
        "{e:?}"
    );
    // An unknown person's page and actions: 404.
    assert_eq!(b.get("/desk/people/ghost").status, StatusCode::NOT_FOUND);
    let r = b.post(
        "/desk/people/ghost/grids",
        &[("csrf", &csrf), ("grids", "T1-V1")],
    );
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[test]
fn codes_enrol_devices_that_revocation_and_deactivation_stop() {
    let s = start(|_, _| {});
    let mut b = signed_in(&s, "admin", ADM_PASSWORD);
    let csrf = csrf_of(&mut b);
    // A code for the liaison: shown once, with a QR code of exactly that code.
    let r = issue_code(&mut b, &csrf, "liai");
    let code = element_text(&r.body, "enrol-code").unwrap();
    assert_eq!(code.len(), 14, "{code}");
    let svg_at = r.body.find("<svg id=\"enrol-qr\"").expect("the QR svg");
    let svg = &r.body[svg_at..svg_at + r.body[svg_at..].find("</svg>").unwrap() + 6];
    let qr = qrcode::QrCode::new(code.as_bytes()).unwrap();
    let want: Vec<Vec<bool>> = qr
        .to_colors()
        .chunks(qr.width())
        .map(|row| row.iter().map(|c| *c == qrcode::Color::Dark).collect())
        .collect();
    assert_eq!(
        svg_modules(svg, qr.width()),
        want,
        "the QR code is the code"
    );
    // Stored as its hash only; the page does not show it again.
    let db = rusqlite::Connection::open(s._dir.path().join("gridsync.db")).unwrap();
    let hashes: Vec<String> = db
        .prepare("SELECT code_hash FROM enrol_codes WHERE person_id = 'liai'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        hashes,
        [token_hash(&gridsync_server::auth::normalize_code(&code))]
    );
    let again = b.get("/desk/people/liai");
    assert_eq!(again.status, StatusCode::OK);
    assert!(element_text(&again.body, "enrol-code").is_none());
    assert!(!again.body.contains(&code));
    let e = s
        .audit("adm")
        .into_iter()
        .find(|e| e.action == "desk_code_issued")
        .unwrap();
    assert!(
        e.detail.contains("liai") && !e.detail.contains(&code),
        "{e:?}"
    );
    // The code enrols a device through the sync API, once.
    let (status, v) = enroll(&s, &code);
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["person"]["id"], "liai");
    let (device, cred) = bearer(&v);
    assert_eq!(enroll(&s, &code).0, StatusCode::UNAUTHORIZED);
    let (status, _, body) = sync(&s, &cred, Vec::new());
    assert_eq!(status, StatusCode::OK, "{body}");
    // The device is on the person's page, with when it was last seen.
    let page = b.get("/desk/people/liai");
    assert_eq!(
        row_ids(&page.body, "devices"),
        std::slice::from_ref(&device)
    );
    let line = row(&page.body, &device);
    assert!(
        line.contains("测试手机") && !line.contains("尚未同步"),
        "{line}"
    );
    let list = b.get("/desk/people");
    assert!(row(&list.body, "liai").contains("<td class=\"num\">1</td>"));
    // Revoking needs a reason; then the next sync is 401.
    let revoke = format!("/desk/people/liai/devices/{device}/revoke");
    let r = b.post(&revoke, &[("csrf", &csrf), ("reason", " ")]);
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert_eq!(sync(&s, &cred, Vec::new()).0, StatusCode::OK);
    // A device of someone else through this person's URL: 404.
    let r = b.post(
        &format!("/desk/people/sup1/devices/{device}/revoke"),
        &[("csrf", &csrf), ("reason", "手机丢失")],
    );
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    let r = b.post(&revoke, &[("csrf", &csrf), ("reason", "手机丢失")]);
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    let (status, _, body) = sync(&s, &cred, Vec::new());
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(body.contains("device_revoked"), "{body}");
    let e = s
        .audit("adm")
        .into_iter()
        .find(|e| e.action == "revoke")
        .unwrap();
    assert_eq!(e.device_id.as_deref(), Some(device.as_str()));
    assert!(row(&b.get("/desk/people/liai").body, &device).contains("手机丢失"));

    // Deactivation: the supervisor has a desk session and a phone that pushed a record.
    let mut sup = signed_in(&s, "wangli", SUP_PASSWORD);
    assert_eq!(sup.get("/desk/").status, StatusCode::OK);
    let r = issue_code(&mut b, &csrf, "sup1");
    let code = element_text(&r.body, "enrol-code").unwrap();
    let (status, v) = enroll(&s, &code);
    assert_eq!(status, StatusCode::OK, "{v}");
    let (sup_device, sup_cred) = bearer(&v);
    let push = producer_push(&sup_device, "sup1", "T1-V1", "巴图家庭牧场");
    let record = push.id.clone();
    let (status, resp, body) = sync(&s, &sup_cred, vec![push]);
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(
        resp.unwrap().results[0].outcome,
        protocol::PushOutcome::Accepted
    );
    // An administrator cannot deactivate themselves.
    let r = b.post("/desk/people/adm/deactivate", &[("csrf", &csrf)]);
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(s.storage().person("adm").unwrap().is_some());
    let r = b.post("/desk/people/sup1/deactivate", &[("csrf", &csrf)]);
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(
        r.location.as_deref(),
        Some("/desk/people/sup1?done=deactivated")
    );
    // Their desk session has ended, their phone's sync is refused, their record stays.
    let r = sup.get("/desk/");
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.location.as_deref(), Some("/desk/login"));
    let (status, _, body) = sync(&s, &sup_cred, Vec::new());
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    assert!(body.contains("person_inactive"), "{body}");
    let stored = s.storage().record(&record).unwrap().unwrap();
    assert_eq!(stored.grid, "T1-V1");
    assert!(s.storage().query_producer(&record).unwrap().is_some());
    // The list and the page show them as deactivated; no more actions are offered.
    let list = b.get("/desk/people");
    assert!(row(&list.body, "sup1").contains("已停用"));
    let page = b.get("/desk/people/sup1");
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("已停用") && !page.body.contains("/desk/people/sup1/code"));
    // Deactivated people get no codes.
    let r = b.post("/desk/people/sup1/code", &[("csrf", &csrf)]);
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    let e = s
        .audit("adm")
        .into_iter()
        .find(|e| e.action == "deactivate_person")
        .unwrap();
    assert!(e.detail.contains("sup1"), "{e:?}");
}

#[test]
fn the_audit_trail_pages_within_scope() {
    let s = start(|_, _| {});
    let st = s.storage();
    // 250 entries in each village, interleaved, and some about people.
    for i in 0..250 {
        for (grid, record) in [("T1-V1", "P1"), ("T2-V1", "P2")] {
            st.audit(&AuditEntry {
                at_ms: 1_700_000_000_000 + i,
                person_id: "adm".into(),
                device_id: None,
                record_id: Some(record.into()),
                kind: Some("producer".into()),
                grid: Some(grid.into()),
                action: "update".into(),
                detail: format!("{grid} change {i}"),
            })
            .unwrap();
        }
    }
    // The administrator: everything, newest first, 100 a page, names shown.
    let mut adm = signed_in(&s, "admin", ADM_PASSWORD);
    let r = adm.get("/desk/audit");
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let ids: Vec<i64> = row_ids(&r.body, "audit")
        .iter()
        .map(|i| i.parse().unwrap())
        .collect();
    assert_eq!(ids.len(), 100);
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "newest first");
    assert!(r.body.contains("T2-V1 change 249"));
    assert!(r.body.contains("管理员甲"), "names, not only ids");
    // A grid filter, paged by the "older" link until the end.
    let mut seen = Vec::new();
    let mut next = Some("/desk/audit?grid=T2".to_string());
    let mut pages = 0;
    while let Some(path) = next {
        let r = adm.get(&path);
        assert_eq!(r.status, StatusCode::OK, "{path}");
        assert!(!r.body.contains("T1-V1 change"), "{path}");
        seen.extend(row_ids(&r.body, "audit"));
        next = older_link(&r.body);
        pages += 1;
        assert!(pages < 10, "{next:?} {seen:?}");
    }
    let t2_entries = st
        .audit_list(&AuditFilter::Grid("T2-V1".into()), 10_000)
        .unwrap()
        .len();
    assert_eq!(seen.len(), t2_entries, "every T2 entry once");
    assert!(t2_entries > 250, "the seeded P2 and the 250");
    let mut dedup = seen.clone();
    dedup.sort();
    dedup.dedup();
    assert_eq!(dedup.len(), seen.len());

    // A supervisor of T1: nothing of T2, by any filter.
    let mut sup = signed_in(&s, "wangli", SUP_PASSWORD);
    let r = sup.get("/desk/audit");
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(row_ids(&r.body, "audit").len(), 100);
    assert!(r.body.contains("T1-V1 change 249"));
    assert!(!r.body.contains("T2-V1") && !r.body.contains("P2"), "no T2");
    let mut path = "/desk/audit".to_string();
    for _ in 0..5 {
        let r = sup.get(&path);
        assert!(!r.body.contains("T2-V1 change"), "{path}");
        let Some(older) = older_link(&r.body) else {
            break;
        };
        path = older;
    }
    for path in [
        "/desk/audit?grid=T2",
        "/desk/audit?grid=T2-V1",
        "/desk/audit?grid=B",
        "/desk/audit?grid=NOPE",
        "/desk/audit?record=P2",
        "/desk/audit?person=cty",
        "/desk/audit?person=adm",
    ] {
        assert_eq!(sup.get(path).status, StatusCode::NOT_FOUND, "{path}");
    }
    let r = sup.get("/desk/audit?grid=T1");
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.contains("T1-V1 change 249"));
    let r = sup.get("/desk/audit?record=P1");
    assert_eq!(r.status, StatusCode::OK);
    assert!(row_ids(&r.body, "audit").len() == 100 && !r.body.contains("P2"));
    // Entries about people: their own sign-in, not the county reviewer's.
    let _cty = signed_in(&s, "bater", CTY_PASSWORD);
    let r = sup.get("/desk/audit?person=sup1");
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.contains("desk_sign_in"), "{}", r.body);
    let r = sup.get("/desk/audit?person=liai");
    assert_eq!(r.status, StatusCode::OK);
    // The county reviewer sees both townships.
    let mut cty = signed_in(&s, "bater", CTY_PASSWORD);
    let r = cty.get("/desk/audit?grid=T2");
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.contains("T2-V1 change 249"));
}
