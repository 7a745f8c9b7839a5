//! The web app in a real headless Chromium (driven over WebDriver), plus its session and CSRF protections
//! checked with plain HTTP. The README's screenshots come from here: `GHOSTCARD_UPDATE_SCREENSHOTS=1 cargo test -p
//! ghostcard-server --test web` rewrites docs/screenshots/.

mod common;

#[path = "../../../tests/support/webdriver.rs"]
mod webdriver;

use common::web::{cookies, hidden, sign_in};
use common::{Backend, TestApp};
use reqwest::StatusCode;
use serde_json::json;
use webdriver::Browser;

/// Where screenshots go: the README's `docs/screenshots/` when `GHOSTCARD_UPDATE_SCREENSHOTS=1`, else
/// `target/screenshots/` (so a test run leaves the checkout as it was).
fn screenshots() -> std::path::PathBuf {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let directory = if std::env::var("GHOSTCARD_UPDATE_SCREENSHOTS").is_ok_and(|value| value == "1") {
        root.join("docs/screenshots")
    } else {
        root.join("target/screenshots")
    };
    std::fs::create_dir_all(&directory).expect("screenshot directory");
    directory
}

#[tokio::test]
async fn a_cardholder_signs_up_links_a_funding_card_and_signs_out_in_a_real_browser() {
    let app = TestApp::spawn(Backend::Sqlite, "web_browser").await;
    let browser = Browser::start().await;
    browser.goto(&format!("{}/app", app.base)).await;
    browser.wait_for_url("/app/sign-in").await;
    browser.screenshot(&screenshots().join("sign-in.png")).await;
    browser.click("a[href='/app/sign-up']").await;
    browser.wait_for_url("/app/sign-up").await;
    browser.type_into("#name", "Ada Lovelace").await;
    browser.type_into("#email", "ada@example.com").await;
    browser.type_into("#password", "correct horse battery").await;
    browser.click("button[type=submit]").await;
    browser.wait_for_url("/app/dashboard").await;
    assert_eq!(browser.text("[data-testid=available]").await, "50.00 USD");
    assert!(browser.source().await.contains("50.00 USD to start"), "the limit is explained");

    browser.type_into("#number", "4242 4242 4242 4242").await;
    browser.type_into("#exp_month", "12").await;
    browser.type_into("#exp_year", "2031").await;
    browser.type_into("#cvc", "123").await;
    browser.click("form[action='/app/funding-sources'] button").await;
    let page = browser.wait_for_text("Your funding card is linked.").await;
    assert!(page.contains("visa ending 4242"), "{page}");
    assert!(!page.contains("4242424242424242") && !page.contains("4242 4242 4242 4242"), "no full number on a page");
    browser.screenshot(&screenshots().join("dashboard.png")).await;

    // A pay-in-4 card: the schedule is shown before anything is created.
    browser.click("a[href='/app/cards/new']").await;
    browser.wait_for_url("/app/cards/new").await;
    browser.type_into("#amount", "40.00").await;
    browser.click("form[action='/app/cards/preview'] button").await;
    let page = browser.wait_for_text("Confirm your 40.00 USD card").await;
    assert_eq!(page.matches("10.00 USD").count(), 4, "four installments of 10.00: {page}");
    browser.screenshot(&screenshots().join("new-card-schedule.png")).await;
    browser.click("form[action='/app/cards'] button").await;
    let url = browser.wait_for_url("created=1").await;
    let card_id = url.split("/app/cards/").nth(1).and_then(|rest| rest.split('?').next()).expect("card id").to_owned();
    assert_eq!(browser.text("[data-testid=status]").await, "active");
    browser.screenshot(&screenshots().join("card.png")).await;

    // The reveal shows the number (BIN + the masked last four), expiry and CVV, and is audited.
    browser.click(&format!("form[action='/app/cards/{card_id}/reveal'] button")).await;
    let number = browser.text("#number").await.replace(' ', "");
    assert_eq!(number.len(), 16);
    // The copy button puts the number on the clipboard (where the browser allows it) and says so.
    browser.click("button[data-copy=number]").await;
    browser.wait_for_text("Copied").await;
    let (_, card) = app.get(&format!("/v1/cards/{card_id}")).await;
    assert!(
        number.starts_with(card["bin"].as_str().expect("bin"))
            && number.ends_with(card["last4"].as_str().expect("last4"))
    );
    assert_eq!(browser.text("#cvv").await.len(), 3);
    let mut tx = app.app.store.read().await.expect("reads");
    let reveals = ghostcard_store::audit::list(&mut tx, Some("card.reveal"), 10).await.expect("audit");
    drop(tx);
    assert!(
        reveals
            .rows
            .iter()
            .any(|entry| entry.resource.as_deref() == Some(card_id.as_str()) && entry.actor.starts_with("cardholder:"))
    );

    // A purchase, and a declined one at another merchant with its reason in plain words.
    let approved = app.authorize(&card_id, 3_000, "SHOP1").await;
    assert_eq!(approved["response_code"], "00");
    let declined = app.authorize(&card_id, 500, "SHOP2").await;
    assert_ne!(declined["response_code"], "00");
    browser.goto(&format!("{}/app/cards/{card_id}", app.base)).await;
    let page = browser.wait_for_text("Declined:").await;
    assert!(!page.contains(&number), "only the reveal shows the full number");
    assert_eq!(browser.text("[data-testid=status]").await, "used");
    app.post("/v1/simulate/clear", json!({"authorization_id": approved["id"], "amount": 3_000})).await;

    browser.goto(&format!("{}/app/cards/{card_id}", app.base)).await;
    browser.wait_for_text("Purchase captured").await;

    // On a phone's screen nothing needs sideways scrolling.
    browser.resize(390, 844).await;
    for page in [format!("{}/app/dashboard", app.base), format!("{}/app/cards/{card_id}", app.base)] {
        browser.goto(&page).await;
        browser.find("main h1").await;
        let overflow = browser.execute("return document.documentElement.scrollWidth - window.innerWidth;").await;
        assert!(overflow.as_i64().unwrap_or(1) <= 0, "{page} scrolls sideways by {overflow} px on a phone");
    }
    browser.resize(1100, 900).await;

    // Pause the card: its merchant's next authorization is declined; resume it.
    browser.goto(&format!("{}/app/cards/{card_id}", app.base)).await;
    browser.click(&format!("form[action='/app/cards/{card_id}/pause'] button")).await;
    browser.wait_for_text("The card is paused").await;
    assert_eq!(browser.text("[data-testid=status]").await, "paused");
    let paused = app.authorize(&card_id, 500, "SHOP1").await;
    assert_eq!(
        (paused["response_code"].as_str(), paused["decline_reason"].as_str()),
        (Some("62"), Some("card_paused"))
    );
    browser.click(&format!("form[action='/app/cards/{card_id}/resume'] button")).await;
    browser.wait_for_text("The card is resumed.").await;
    assert_eq!(browser.text("[data-testid=status]").await, "used");

    // Refund the unused 10.00.
    browser.goto(&format!("{}/app/cards/{card_id}", app.base)).await;
    browser.click(&format!("form[action='/app/cards/{card_id}/refund-unused'] button")).await;
    browser.wait_for_text("The unused amount is refunded.").await;
    assert_eq!(browser.text("[data-testid=remaining]").await, "0.00 USD");

    // The plan: the first installment is collected by the job runner; the next one paid early from the page.
    browser.click("a[href^='/app/plans/']").await;
    browser.wait_for_url("/app/plans/").await;
    app.post("/v1/simulate/clock/advance", json!({"seconds": 1})).await;
    browser.goto(&browser.url().await).await;
    assert_eq!(browser.text("[data-testid=installment-1]").await, "paid");
    browser.click("form[action$='/pay'] input[value=next] ~ button").await;
    browser.wait_for_text("your payment went through").await;
    assert_eq!(browser.text("[data-testid=installment-2]").await, "paid");
    browser.screenshot(&screenshots().join("plan.png")).await;
    assert!(!browser.source().await.contains(&number), "the plan page shows no card number");
    browser.click("a[href='/app/dashboard']").await;
    browser.wait_for_url("/app/dashboard").await;
    assert!(!browser.source().await.contains(&number), "the dashboard shows no card number");

    // A declined funding card is explained on the page and nothing is linked.
    browser.type_into("#number", "4000000000000002").await;
    browser.type_into("#exp_month", "12").await;
    browser.type_into("#exp_year", "2031").await;
    browser.type_into("#cvc", "123").await;
    browser.click("form[action='/app/funding-sources'] button").await;
    browser.wait_for_text("declined").await;
    assert!(browser.text("[role=alert]").await.contains("declined"));

    browser.click("form[action='/app/sign-out'] button").await;
    browser.wait_for_url("signed_out=1").await;
    assert!(browser.text("[role=status]").await.contains("signed out"));
    browser.goto(&format!("{}/app/dashboard", app.base)).await;
    browser.wait_for_url("/app/sign-in").await;
    browser.close().await;
}

/// The cookies a response set, as a `Cookie` header value (plus the ones given).
#[tokio::test]
async fn forged_posts_are_refused_sessions_time_out_and_repeated_failures_slow_sign_ins_down() {
    let app = TestApp::spawn(Backend::Sqlite, "web_protections").await;
    let (status, _) = app
        .post(
            "/v1/cardholders",
            json!({"email": "bo@example.com", "name": "Bo", "country": "US", "password": "a long enough password"}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
    let url = |path: &str| format!("{}{path}", app.base);

    // A sign-in form posted from elsewhere (no matching CSRF cookie) changes nothing.
    let forged = client
        .post(url("/app/sign-in"))
        .form(&[("csrf", "x".repeat(43).as_str()), ("email", "bo@example.com"), ("password", "a long enough password")])
        .send()
        .await
        .expect("answer");
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    assert!(forged.headers().get("set-cookie").is_none(), "no session");

    // Signing in through the form works.
    let (signed_in, jar) = sign_in(&client, &app.base, "bo@example.com", "a long enough password").await;
    assert_eq!(signed_in.status(), StatusCode::SEE_OTHER);
    let set = signed_in
        .headers()
        .get_all("set-cookie")
        .iter()
        .map(|v| v.to_str().unwrap_or("").to_owned())
        .collect::<Vec<_>>();
    assert!(
        set.iter().any(|cookie| cookie.starts_with("gc_session=")
            && cookie.contains("HttpOnly")
            && cookie.contains("SameSite=Strict")),
        "{set:?}"
    );
    let jar = cookies(&signed_in, jar);

    // With the session cookie but without the session's CSRF token, a POST is refused and links nothing.
    let forged = client
        .post(url("/app/funding-sources"))
        .header("cookie", jar.join("; "))
        .form(&[
            ("csrf", "forged"),
            ("number", "4242424242424242"),
            ("exp_month", "12"),
            ("exp_year", "2031"),
            ("cvc", "123"),
        ])
        .send()
        .await
        .expect("answer");
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    let dashboard = client.get(url("/app/dashboard")).header("cookie", jar.join("; ")).send().await.expect("page");
    assert_eq!(dashboard.status(), StatusCode::OK);
    assert_eq!(dashboard.headers().get("cache-control").and_then(|v| v.to_str().ok()), Some("no-store"));
    assert_eq!(dashboard.headers().get("x-frame-options").and_then(|v| v.to_str().ok()), Some("DENY"));
    let policy = dashboard.headers().get("content-security-policy").and_then(|v| v.to_str().ok()).unwrap_or_default();
    assert!(policy.contains("frame-ancestors 'none'") && policy.contains("default-src 'self'"), "{policy}");
    assert!(dashboard.text().await.expect("html").contains("Link the debit or credit card"), "nothing was linked");

    // 15 minutes without a request end the session; a request within them keeps it alive.
    app.post("/v1/simulate/clock/advance", json!({"seconds": 14 * 60})).await;
    let alive = client.get(url("/app/dashboard")).header("cookie", jar.join("; ")).send().await.expect("answer");
    assert_eq!(alive.status(), StatusCode::OK, "14 minutes idle: still signed in");
    app.post("/v1/simulate/clock/advance", json!({"seconds": 16 * 60})).await;
    let expired = client.get(url("/app/dashboard")).header("cookie", jar.join("; ")).send().await.expect("answer");
    assert_eq!(expired.status(), StatusCode::SEE_OTHER);
    assert_eq!(expired.headers().get("location").and_then(|v| v.to_str().ok()), Some("/app/sign-in?expired=1"));

    // Ten wrong passwords in a row slow the account down (it is not locked): the next attempt, even with the right
    // password, must wait its turn (429 with Retry-After), and an unknown email is treated exactly the same.
    let page = client.get(url("/app/sign-in")).send().await.expect("page");
    let jar = cookies(&page, vec![]);
    let csrf = hidden(&page.text().await.expect("html"), "csrf");
    let attempt = |email: &'static str, password: &'static str| {
        let request = client.post(url("/app/sign-in")).header("cookie", jar.join("; ")).form(&[
            ("csrf", csrf.as_str()),
            ("email", email),
            ("password", password),
        ]);
        async move { request.send().await.expect("answer") }
    };
    for email in ["bo@example.com", "nobody@example.com"] {
        for _ in 0..10 {
            let wrong = attempt(email, "not the password at all").await;
            assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
            assert!(wrong.text().await.expect("html").contains("The email or the password is not right."));
        }
        let slowed = attempt(email, "a long enough password").await;
        assert_eq!(slowed.status(), StatusCode::TOO_MANY_REQUESTS, "{email}");
        let retry_after: u64 = slowed
            .headers()
            .get("retry-after")
            .and_then(|value| value.to_str().ok()?.parse().ok())
            .expect("Retry-After in seconds");
        assert!((1..=30).contains(&retry_after), "{email}: {retry_after}");
        assert!(slowed.text().await.expect("html").contains(&format!("Wait {retry_after} seconds")));
    }
    app.post("/v1/simulate/clock/advance", json!({"seconds": 30})).await;
    let after = attempt("bo@example.com", "a long enough password").await;
    assert_eq!(after.status(), StatusCode::SEE_OTHER, "after the wait the owner signs in");
}

#[tokio::test]
async fn an_operator_reviews_a_fraud_flag_and_a_viewer_cannot_act() {
    let app = TestApp::spawn(Backend::Sqlite, "web_ops").await;
    let (cardholder, source) = app.cardholder_with_funding("cy@example.com", "4242424242424242").await;
    let (_, card) = app.card(&cardholder, &source, 2_000, "pay_in_4").await;
    let card_id = card["id"].as_str().expect("id").to_owned();
    // One purchase on another card, so the feed has approvals too.
    let (_, other) = app.card(&cardholder, &source, 2_000, "pay_in_4").await;
    assert_eq!(app.authorize(other["id"].as_str().expect("id"), 1_500, "SHOP9").await["response_code"], "00");
    // Five declines within an hour freeze the card.
    for _ in 0..5 {
        let declined = app.authorize(&card_id, 9_999, "SHOP1").await;
        assert_ne!(declined["response_code"], "00");
    }
    assert_eq!(app.get(&format!("/v1/cards/{card_id}")).await.1["status"], "frozen");
    let now = app.app.clock.now();
    let (_, admin_password) = ghostcard_server::credentials::create_operator(
        &app.app.store,
        "grace@example.com",
        "Grace",
        "admin",
        "test",
        now,
    )
    .await
    .expect("admin");
    let (_, viewer_password) =
        ghostcard_server::credentials::create_operator(&app.app.store, "vic@example.com", "Vic", "viewer", "test", now)
            .await
            .expect("viewer");

    let browser = Browser::start().await;
    browser.goto(&format!("{}/ops", app.base)).await;
    browser.wait_for_url("/ops/sign-in").await;
    browser.type_into("#email", "grace@example.com").await;
    browser.type_into("#password", &admin_password).await;
    browser.click("button[type=submit]").await;
    browser.wait_for_text("Signed in as Grace (admin)").await;
    assert!(browser.text("[data-testid=ledger]").await.contains("The ledger verifies"));
    assert!(browser.source().await.contains("1 frozen cards"));

    browser.click("a[href='/ops/authorizations']").await;
    let page = browser.wait_for_text("The last 24 hours").await;
    assert!(page.contains("<svg") && page.contains("exceeds_card_amount: 5") && page.contains("approved: 1"), "{page}");
    browser.screenshot(&screenshots().join("ops-authorizations.png")).await;

    browser.click("a[href='/ops/flags']").await;
    let page = browser.wait_for_text("Frozen cards").await;
    assert!(page.contains(&card_id) && page.contains("card_declines"), "the flag and its rule: {page}");
    browser.screenshot(&screenshots().join("ops-flags.png")).await;
    browser.click(&format!("form[action='/ops/cards/{card_id}/unfreeze'] button")).await;
    browser.wait_for_text("unfrozen").await;
    assert_eq!(app.get(&format!("/v1/cards/{card_id}")).await.1["status"], "active");
    browser.goto(&format!("{}/ops/audit?action=ops.card.unfreeze", app.base)).await;
    let page = browser.wait_for_text("ops.card.unfreeze").await;
    assert!(page.contains(&card_id), "the review is in the audit log");
    assert!(!page.contains("4242424242424242"));
    // An admin pauses the card from a search, and resumes it.
    browser.goto(&format!("{}/ops/search?q={card_id}", app.base)).await;
    browser.click(&format!("form[action='/ops/cards/{card_id}/pause'] button")).await;
    browser.wait_for_text("paused.").await;
    assert_eq!(app.get(&format!("/v1/cards/{card_id}")).await.1["status"], "paused");
    browser.goto(&format!("{}/ops/search?q={card_id}", app.base)).await;
    browser.click(&format!("form[action='/ops/cards/{card_id}/resume'] button")).await;
    browser.wait_for_text("resumed.").await;
    assert_eq!(app.get(&format!("/v1/cards/{card_id}")).await.1["status"], "active");
    browser.close().await;

    // A viewer signs in but may not act, even with a valid form.
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().expect("client");
    let page = client.get(format!("{}/ops/sign-in", app.base)).send().await.expect("page");
    let jar = cookies(&page, vec![]);
    let csrf = hidden(&page.text().await.expect("html"), "csrf");
    let signed_in = client
        .post(format!("{}/ops/sign-in", app.base))
        .header("cookie", jar.join("; "))
        .form(&[("csrf", csrf.as_str()), ("email", "vic@example.com"), ("password", viewer_password.as_str())])
        .send()
        .await
        .expect("answer");
    assert_eq!(signed_in.status(), StatusCode::SEE_OTHER);
    let jar = cookies(&signed_in, jar);
    let flags =
        client.get(format!("{}/ops/flags", app.base)).header("cookie", jar.join("; ")).send().await.expect("page");
    let html = flags.text().await.expect("html");
    let session_csrf = hidden(&html, "csrf");
    let refused = client
        .post(format!("{}/ops/cards/{card_id}/close", app.base))
        .header("cookie", jar.join("; "))
        .form(&[("csrf", session_csrf.as_str())])
        .send()
        .await
        .expect("answer");
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    assert_eq!(app.get(&format!("/v1/cards/{card_id}")).await.1["status"], "active", "nothing changed");
    // The cardholder app's session does not open the console.
    let console =
        client.get(format!("{}/ops", app.base)).header("cookie", "gc_session=whatever").send().await.expect("answer");
    assert_eq!(console.status(), StatusCode::SEE_OTHER);
    app.assert_ledger_verifies().await;
}

#[tokio::test]
async fn an_operator_reads_a_rule_backtests_it_and_promotes_it_and_sees_the_endpoints_health() {
    let app = TestApp::spawn(Backend::Sqlite, "web_rules").await;
    ghostcard_server::jobs::spawn_timer(app.app.clone(), std::time::Duration::from_secs(60));
    let (status, rule) = app
        .post(
            "/v1/auth-rules",
            json!({"name": "Over 10", "mode": "shadow", "scope": {"program": true},
                   "conditions": [{"attribute": "amount", "operation": "is_greater_than", "value": 1_000}]}),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{rule}");
    let rule_id = rule["id"].as_str().expect("id").to_owned();
    // An endpoint nobody answers at: the purchase falls back to ghostcard's approval.
    let (status, _) =
        app.post("/v1/decision-endpoints", json!({"url": "http://127.0.0.1:9/decide", "timeout_ms": 200})).await;
    assert_eq!(status, StatusCode::CREATED);
    let (cardholder, source) = app.cardholder_with_funding("rules@example.com", "4242424242424242").await;
    let (_, card) = app.card(&cardholder, &source, 2_000, "pay_now").await;
    let approved = app.authorize(card["id"].as_str().expect("id"), 1_500, "SHOP1").await;
    assert_eq!((approved["response_code"].as_str(), approved["decided_by"].as_str()), (Some("00"), Some("fallback")));
    let now = app.app.clock.now();
    let (_, password) =
        ghostcard_server::credentials::create_operator(&app.app.store, "ada@example.com", "Ada", "admin", "test", now)
            .await
            .expect("admin");

    let browser = Browser::start().await;
    browser.goto(&format!("{}/ops/sign-in", app.base)).await;
    browser.type_into("#email", "ada@example.com").await;
    browser.type_into("#password", &password).await;
    browser.click("button[type=submit]").await;
    browser.wait_for_text("Signed in as Ada").await;
    browser.click("a[href='/ops/rules']").await;
    let page = browser.wait_for_text("Authorization rules").await;
    assert!(page.contains("Over 10") && page.contains("amount is greater than 1000"), "{page}");
    assert!(browser.text("#endpoint-health").await.contains("asked 1 times, 1 fallbacks"), "{page}");
    browser.screenshot(&screenshots().join("ops-rules.png")).await;

    browser.click(&format!("a[href='/ops/rules/{rule_id}']")).await;
    browser.wait_for_text("Last 24 hours").await;
    assert!(browser.text("#report").await.contains("would have declined 1"));
    browser.click(&format!("form[action='/ops/rules/{rule_id}/backtests'] button")).await;
    browser.wait_for_text("The backtest is running").await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        browser.goto(&format!("{}/ops/rules/{rule_id}", app.base)).await;
        if browser.wait_for_text("Backtests").await.contains("1 approvals it would have declined") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the backtest did not complete");
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    }
    browser.click(&format!("form[action='/ops/rules/{rule_id}/promote'] button")).await;
    let page = browser.wait_for_text("The rule is active").await;
    assert!(
        page.contains("<del>\"shadow\"</del>") || page.contains("<del>shadow</del>"),
        "the diff of version 2: {page}"
    );
    browser.screenshot(&screenshots().join("ops-rule.png")).await;
    browser.close().await;
    let (_, promoted) = app.get(&format!("/v1/auth-rules/{rule_id}")).await;
    assert_eq!((promoted["mode"].as_str(), promoted["version"].as_i64()), (Some("active"), Some(2)));
    assert!(promoted["updated_by"].as_str().is_some_and(|actor| actor.starts_with("operator:")), "{promoted}");
    let (_, second) = app.card(&cardholder, &source, 2_000, "pay_now").await;
    let declined = app.post(
        "/v1/simulate/authorize",
        json!({"card_id": second["id"], "amount": 1_500, "mcc": "5732", "merchant_id": "SHOP1", "merchant_name": "Shop", "country": "US"}),
    )
    .await
    .1;
    assert_eq!(declined["decline_reason"], "auth_rule", "{declined}");
}
