//! Sign-in for desk staff, against a real server on loopback over HTTP: sessions and their
//! cookies, CSRF, lockout, one-time links, deactivation, the scope rule on a producer page,
//! the audit trail, and the server's log output searched for passwords.

#![allow(clippy::unwrap_used)]

mod desk_support;

use desk_support::*;

// ---- Tests ----

#[test]
fn sign_in_home_and_logout_kill_the_session() {
    let s = start(|_, _| {});
    let mut b = Browser::new(&s);
    // Not signed in: to the sign-in page.
    let r = b.get("/desk/");
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.location.as_deref(), Some("/desk/login"));
    let page = b.get("/desk/login");
    assert_eq!(page.status, StatusCode::OK);
    assert!(page.body.contains("工作人员登录"), "{}", page.body);
    assert_cookie_attributes(page.set_cookie("gridsync_desk_form").unwrap(), false);
    let csrf = page.csrf();
    let r = b.post(
        "/desk/login",
        &[
            ("username", "wangli"),
            ("password", SUP_PASSWORD),
            ("csrf", &csrf),
        ],
    );
    assert_eq!(r.status, StatusCode::SEE_OTHER, "{}", r.body);
    assert_eq!(r.location.as_deref(), Some("/desk/"));
    let cookie = r.set_cookie("gridsync_desk").unwrap().to_string();
    assert_cookie_attributes(&cookie, false);
    let token = b.cookies["gridsync_desk"].clone();
    assert_eq!(token.len(), 64);
    // Only the token's hash is stored.
    let session = s
        .storage()
        .desk_session(&token_hash(&token))
        .unwrap()
        .unwrap();
    assert_eq!(session.person_id, "sup1");
    assert!(s.storage().desk_session(&token).unwrap().is_none());
    // Home: name, role in Chinese, grids in scope.
    let home = b.get("/desk/");
    assert_eq!(home.status, StatusCode::OK);
    assert!(home.body.contains("王丽"), "{}", home.body);
    assert!(home.body.contains("监管员"), "{}", home.body);
    assert!(home.body.contains("网格T1"), "{}", home.body);
    assert!(home.body.contains("/desk/directory"), "{}", home.body);
    assert_eq!(
        s.audit("sup1").last().map(|e| e.action.as_str()),
        Some("desk_sign_in")
    );
    // Logout without or with a wrong CSRF token: 403, the session lives.
    let r = b.post("/desk/logout", &[]);
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = b.post("/desk/logout", &[("csrf", &"0".repeat(64))]);
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert_eq!(b.get("/desk/").status, StatusCode::OK);
    // Logout with the page's token: the row is gone and the old cookie is dead.
    let csrf = home.csrf();
    assert_eq!(csrf, session.csrf_token);
    let r = b.post("/desk/logout", &[("csrf", &csrf)]);
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.location.as_deref(), Some("/desk/login"));
    assert!(!b.cookies.contains_key("gridsync_desk"), "cookie cleared");
    assert!(s
        .storage()
        .desk_session(&token_hash(&token))
        .unwrap()
        .is_none());
    b.cookies.insert("gridsync_desk".into(), token.clone());
    let r = b.get("/desk/");
    assert_eq!(r.status, StatusCode::SEE_OTHER, "the old cookie is dead");
    assert_eq!(
        s.audit("sup1").last().map(|e| e.action.as_str()),
        Some("desk_sign_out")
    );
    // The desk pages are not cached and not framed.
    let r = b.get("/desk/login");
    assert!(!r.body.contains(SUP_PASSWORD));
    assert_no_password_logged();
}

#[test]
fn secure_cookies_behind_a_trusted_tls_proxy() {
    let s = start(|st, _| st.trusted_proxies = vec!["127.0.0.1".parse().unwrap()]);
    let mut b = Browser::new(&s);
    b.headers = vec![
        ("x-forwarded-proto", "https"),
        ("x-forwarded-for", "203.0.113.7"),
    ];
    let page = b.get("/desk/login");
    assert_cookie_attributes(page.set_cookie("gridsync_desk_form").unwrap(), true);
    let r = b.sign_in("bater", CTY_PASSWORD);
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_cookie_attributes(r.set_cookie("gridsync_desk").unwrap(), true);
    // The audit trail names the client the proxy saw.
    let last = s.audit("cty").pop().unwrap();
    assert_eq!(last.action, "desk_sign_in");
    assert!(last.detail.contains("203.0.113.7"), "{}", last.detail);
    // Plain HTTP from an untrusted peer saying https: not believed.
    let s2 = start(|_, _| {});
    let mut b2 = Browser::new(&s2);
    b2.headers = vec![("x-forwarded-proto", "https")];
    let page = b2.get("/desk/login");
    assert_cookie_attributes(page.set_cookie("gridsync_desk_form").unwrap(), false);
    assert_no_password_logged();
}

#[test]
fn login_without_its_csrf_token_is_forbidden() {
    let s = start(|_, _| {});
    let mut b = Browser::new(&s);
    // No form cookie at all.
    let r = b.post(
        "/desk/login",
        &[
            ("username", "wangli"),
            ("password", SUP_PASSWORD),
            ("csrf", &"a".repeat(64)),
        ],
    );
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(!b.cookies.contains_key("gridsync_desk"));
    // The cookie, but the field missing or different.
    let page = b.get("/desk/login");
    let csrf = page.csrf();
    let r = b.post(
        "/desk/login",
        &[("username", "wangli"), ("password", SUP_PASSWORD)],
    );
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let mut other = csrf.clone();
    other.replace_range(0..1, if csrf.starts_with('0') { "1" } else { "0" });
    let r = b.post(
        "/desk/login",
        &[
            ("username", "wangli"),
            ("password", SUP_PASSWORD),
            ("csrf", &other),
        ],
    );
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    assert!(!b.cookies.contains_key("gridsync_desk"));
    // None of these counted as a sign-in attempt.
    assert!(!s
        .actions("sup1")
        .iter()
        .any(|a| a.starts_with("desk_sign_in")));
    assert_eq!(
        s.storage()
            .desk_account("sup1")
            .unwrap()
            .unwrap()
            .failed_attempts,
        0
    );
    // With the token it works.
    let r = b.post(
        "/desk/login",
        &[
            ("username", "wangli"),
            ("password", SUP_PASSWORD),
            ("csrf", &csrf),
        ],
    );
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_no_password_logged();
}

#[test]
fn wrong_password_and_unknown_user_get_the_same_answer() {
    let s = start(|_, _| {});
    let mut b = Browser::new(&s);
    let attempt = |b: &mut Browser, user: &str| {
        let page = b.get("/desk/login");
        let csrf = page.csrf();
        let t = Instant::now();
        let r = b.post(
            "/desk/login",
            &[
                ("username", user),
                ("password", WRONG_PASSWORD),
                ("csrf", &csrf),
            ],
        );
        (r, t.elapsed())
    };
    let mut wrong_times = Vec::new();
    let mut unknown_times = Vec::new();
    let mut bodies = Vec::new();
    for _ in 0..3 {
        let (r, t) = attempt(&mut b, "bater");
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        assert!(r.set_cookie("gridsync_desk").is_none());
        bodies.push(r.body.replace("bater", "USER"));
        wrong_times.push(t);
        let (r, t) = attempt(&mut b, "nobody");
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
        bodies.push(r.body.replace("nobody", "USER"));
        unknown_times.push(t);
    }
    assert!(
        bodies.windows(2).all(|w| w[0] == w[1]),
        "one answer for both"
    );
    assert!(bodies[0].contains("用户名或密码不正确"), "{}", bodies[0]);
    // An unknown user costs a hash verification too (comparable, not instant).
    wrong_times.sort();
    unknown_times.sort();
    assert!(
        unknown_times[1] * 4 >= wrong_times[1],
        "unknown {unknown_times:?} vs wrong {wrong_times:?}"
    );
    // Both are in the audit trail; the unknown name is not kept.
    let failed: Vec<AuditEntry> = s.audit("cty");
    assert_eq!(
        failed
            .iter()
            .filter(|e| e.action == "desk_sign_in_failed")
            .count(),
        3
    );
    let all = s.storage().audit_list(&AuditFilter::All, 1000).unwrap();
    let unknown: Vec<&AuditEntry> = all
        .iter()
        .filter(|e| e.action == "desk_sign_in_failed" && e.person_id.is_empty())
        .collect();
    assert_eq!(unknown.len(), 3);
    assert!(unknown.iter().all(|e| !e.detail.contains("nobody")));
    assert!(all.iter().all(|e| !e.detail.contains(WRONG_PASSWORD)));
    assert_no_password_logged();
}

#[test]
fn lockout_after_repeated_failures_and_its_audit_rows() {
    let s = start(|_, d| {
        d.max_failures = 3;
        d.lock_for = Duration::from_secs(600);
    });
    let mut b = Browser::new(&s);
    for _ in 0..3 {
        let r = b.sign_in("wangli", WRONG_PASSWORD);
        assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    }
    let account = s.storage().desk_account("sup1").unwrap().unwrap();
    let until = account.locked_until_ms.expect("locked");
    assert!(until > gridsync_core::now_ms() + 500_000);
    // Locked: the right password gets the same refusal.
    let r = b.sign_in("wangli", SUP_PASSWORD);
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.body.contains("用户名或密码不正确"));
    assert!(!b.cookies.contains_key("gridsync_desk"));
    let actions = s.actions("sup1");
    let tail: Vec<&str> = actions
        .iter()
        .rev()
        .take(5)
        .rev()
        .map(String::as_str)
        .collect();
    assert_eq!(
        tail,
        [
            "desk_sign_in_failed",
            "desk_sign_in_failed",
            "desk_sign_in_failed",
            "desk_account_locked",
            "desk_sign_in_failed"
        ]
    );
    let audit = s.audit("sup1");
    assert!(audit.last().unwrap().detail.contains("locked"));
    // Another account is not affected.
    assert_eq!(
        b.sign_in("bater", CTY_PASSWORD).status,
        StatusCode::SEE_OTHER
    );
    // An admin's new password lifts the lock.
    gridsync_server::admin::set_desk_password(s.storage(), "sup1", "wangli", SUP_PASSWORD, "test")
        .unwrap();
    let mut b2 = Browser::new(&s);
    assert_eq!(
        b2.sign_in("wangli", SUP_PASSWORD).status,
        StatusCode::SEE_OTHER
    );
    assert_no_password_logged();
}

#[test]
fn attempts_are_limited_per_address() {
    let s = start(|_, d| d.attempts_per_address_per_minute = 3);
    let mut b = Browser::new(&s);
    for _ in 0..3 {
        assert_eq!(
            b.sign_in("nobody", WRONG_PASSWORD).status,
            StatusCode::UNAUTHORIZED
        );
    }
    let r = b.sign_in("wangli", SUP_PASSWORD);
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert!(!b.cookies.contains_key("gridsync_desk"));
    let all = s.storage().audit_list(&AuditFilter::All, 1000).unwrap();
    assert!(all.iter().any(|e| e.action == "desk_sign_in_limited"));
    // The limited attempt did not count against the account.
    assert_eq!(
        s.storage()
            .desk_account("sup1")
            .unwrap()
            .unwrap()
            .failed_attempts,
        0
    );
    assert_no_password_logged();
}

#[test]
fn a_producer_outside_scope_answers_as_missing() {
    let s = start(|_, _| {});
    let mut sup = Browser::new(&s);
    assert_eq!(
        sup.sign_in("wangli", SUP_PASSWORD).status,
        StatusCode::SEE_OTHER
    );
    // Own township.
    let r = sup.get("/desk/producers/P1");
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.contains("乌兰家庭牧场"), "{}", r.body);
    assert!(r.body.contains("家庭牧场"));
    // Another township: 404, exactly the body of a missing id, nothing of the record.
    let other = sup.get("/desk/producers/P2");
    let missing = sup.get("/desk/producers/NO-SUCH-ID");
    assert_eq!(other.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(other.body, missing.body);
    for secret in ["查干敖包", "查干巴拉", "13812345678", "T2-V1", "P2"] {
        assert!(!other.body.contains(secret), "{secret} in {}", other.body);
    }
    // The county reviewer sees the banner; the admin everything.
    let mut cty = Browser::new(&s);
    assert_eq!(
        cty.sign_in("bater", CTY_PASSWORD).status,
        StatusCode::SEE_OTHER
    );
    let r = cty.get("/desk/producers/P2");
    assert_eq!(r.status, StatusCode::OK);
    assert!(r.body.contains("查干敖包家庭牧场"));
    assert!(r.body.contains("查干巴拉"));
    assert!(cty.get("/desk/").body.contains("旗县审核员"));
    let mut adm = Browser::new(&s);
    assert_eq!(
        adm.sign_in("admin", ADM_PASSWORD).status,
        StatusCode::SEE_OTHER
    );
    assert_eq!(adm.get("/desk/producers/P1").status, StatusCode::OK);
    assert_eq!(adm.get("/desk/producers/P2").status, StatusCode::OK);
    assert!(adm.get("/desk/").body.contains("系统管理员"));
    // Without a session: to the sign-in page, nothing of the record.
    let mut anon = Browser::new(&s);
    let r = anon.get("/desk/producers/P1");
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert!(!r.body.contains("乌兰"));
    assert_no_password_logged();
}

#[test]
fn an_expired_session_is_refused() {
    let s = start(|_, d| d.idle = Duration::from_millis(800));
    let mut b = Browser::new(&s);
    assert_eq!(
        b.sign_in("wangli", SUP_PASSWORD).status,
        StatusCode::SEE_OTHER
    );
    let token = b.cookies["gridsync_desk"].clone();
    assert_eq!(b.get("/desk/").status, StatusCode::OK);
    std::thread::sleep(Duration::from_millis(1000));
    let r = b.get("/desk/");
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert_eq!(r.location.as_deref(), Some("/desk/login"));
    assert!(s
        .storage()
        .desk_session(&token_hash(&token))
        .unwrap()
        .is_none());
    let last = s.audit("sup1").pop().unwrap();
    assert_eq!(
        (last.action.as_str(), last.detail.as_str()),
        ("desk_session_ended", "expired")
    );
    // The absolute limit holds however active the session is.
    let s = start(|_, d| d.absolute = Duration::from_millis(800));
    let mut b = Browser::new(&s);
    assert_eq!(
        b.sign_in("wangli", SUP_PASSWORD).status,
        StatusCode::SEE_OTHER
    );
    for _ in 0..3 {
        assert_eq!(b.get("/desk/").status, StatusCode::OK);
        std::thread::sleep(Duration::from_millis(200));
    }
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(b.get("/desk/").status, StatusCode::SEE_OTHER);
    assert_no_password_logged();
}

#[test]
fn a_one_time_link_sets_a_password_once() {
    let s = start(|_, _| {});
    // A person without a desk account yet.
    s.storage()
        .upsert_person(&person("sup2", "张伟", Role::Supervisor, &["T2"]))
        .unwrap();
    let link = gridsync_server::admin::issue_desk_link(s.storage(), "sup2", "test").unwrap();
    let path = format!("/desk/set-password/{}", link.token);
    let mut b = Browser::new(&s);
    let page = b.get(&path);
    assert_eq!(page.status, StatusCode::OK);
    assert!(
        page.body.contains("张伟") && page.body.contains("sup2"),
        "{}",
        page.body
    );
    let csrf = page.csrf();
    // Without the CSRF token: 403, the link stays.
    let r = b.post(
        &path,
        &[("password", LINK_PASSWORD), ("password2", LINK_PASSWORD)],
    );
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    // Two different passwords, or one too short: refused, the link stays.
    let r = b.post(
        &path,
        &[
            ("password", LINK_PASSWORD),
            ("password2", "something-else-123"),
            ("csrf", &csrf),
        ],
    );
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(r.body.contains("不一致"), "{}", r.body);
    let r = b.post(
        &path,
        &[
            ("password", "short"),
            ("password2", "short"),
            ("csrf", &csrf),
        ],
    );
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
    assert!(s.storage().desk_account("sup2").unwrap().is_none());
    // Set once.
    let r = b.post(
        &path,
        &[
            ("password", LINK_PASSWORD),
            ("password2", LINK_PASSWORD),
            ("csrf", &csrf),
        ],
    );
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.body.contains("密码已设置"));
    let account = s.storage().desk_account("sup2").unwrap().unwrap();
    assert_eq!(account.username, "sup2");
    assert!(account.password_hash.starts_with("$argon2id$"));
    // Not twice.
    let r = b.post(
        &path,
        &[
            ("password", "another-password-99"),
            ("password2", "another-password-99"),
            ("csrf", &csrf),
        ],
    );
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(b.get(&path).status, StatusCode::NOT_FOUND);
    // The new password signs in.
    let mut b2 = Browser::new(&s);
    assert_eq!(
        b2.sign_in("sup2", LINK_PASSWORD).status,
        StatusCode::SEE_OTHER
    );
    let actions = s.actions("sup2");
    assert!(actions.contains(&"desk_link_issued".to_string()));
    assert!(actions.contains(&"desk_password_set".to_string()));
    // Neither the link's token nor a session token is in the log.
    let text = log_text();
    assert!(!text.contains(&link.token), "the link token is in the log");
    assert!(
        !text.contains(&b2.cookies["gridsync_desk"]),
        "a session token is in the log"
    );
    assert!(
        text.contains("/desk/set-password/"),
        "the path itself is logged, redacted"
    );
    // A made-up token: the same 404.
    assert_eq!(
        b.get(&format!("/desk/set-password/{}", "ab".repeat(32)))
            .status,
        StatusCode::NOT_FOUND
    );
    assert_no_password_logged();
}

#[test]
fn a_deactivated_person_is_signed_out_and_cannot_sign_in() {
    let s = start(|_, _| {});
    let mut b = Browser::new(&s);
    assert_eq!(
        b.sign_in("wangli", SUP_PASSWORD).status,
        StatusCode::SEE_OTHER
    );
    assert_eq!(b.get("/desk/").status, StatusCode::OK);
    let token = b.cookies["gridsync_desk"].clone();
    assert!(s.storage().set_person_active("sup1", false).unwrap());
    let r = b.get("/desk/");
    assert_eq!(r.status, StatusCode::SEE_OTHER);
    assert!(s
        .storage()
        .desk_session(&token_hash(&token))
        .unwrap()
        .is_none());
    // Signing in is refused with the one answer.
    let mut b2 = Browser::new(&s);
    let r = b2.sign_in("wangli", SUP_PASSWORD);
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);
    assert!(r.body.contains("用户名或密码不正确"));
    assert!(s.audit("sup1").last().unwrap().detail.contains("inactive"));
    // Active again: the old session stays dead; a new sign-in works.
    assert!(s.storage().set_person_active("sup1", true).unwrap());
    b.cookies.insert("gridsync_desk".into(), token);
    assert_eq!(b.get("/desk/").status, StatusCode::SEE_OTHER);
    assert_eq!(
        b2.sign_in("wangli", SUP_PASSWORD).status,
        StatusCode::SEE_OTHER
    );
    assert_eq!(b2.get("/desk/").status, StatusCode::OK);
    assert_no_password_logged();
}

#[test]
fn desk_pages_carry_security_headers_and_unknown_paths_are_404() {
    let s = start(|_, _| {});
    let http = Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let r = http.get(format!("{}/desk/login", s.base)).send().unwrap();
    assert_eq!(r.headers()["cache-control"], "no-store");
    assert_eq!(r.headers()["x-frame-options"], "DENY");
    assert!(r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .contains("frame-ancestors 'none'"));
    let r = http
        .get(format!("{}/desk/no-such-page", s.base))
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = http
        .get(format!("{}/desk/static/desk.css", s.base))
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/css"));
    // Forms are small: a large body is refused before it is read as a form.
    let big = "x".repeat(20 * 1024);
    let r = http
        .post(format!("{}/desk/login", s.base))
        .form(&[("username", big.as_str()), ("password", "p"), ("csrf", "c")])
        .send()
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // The sync API is still there on the same listener.
    assert_eq!(
        http.get(format!("{}/healthz", s.base))
            .send()
            .unwrap()
            .status(),
        StatusCode::OK
    );
}
