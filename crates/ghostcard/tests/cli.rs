//! The `ghostcard` binary as a person or a script runs it.

use std::process::Command;

fn ghostcard(arguments: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ghostcard")).args(arguments).output().expect("the binary runs")
}

#[test]
fn version_and_help_teach_the_commands() {
    let version = ghostcard(&["--version"]);
    assert!(version.status.success());
    assert_eq!(String::from_utf8_lossy(&version.stdout).trim(), format!("ghostcard {}", env!("CARGO_PKG_VERSION")));
    let help = String::from_utf8(ghostcard(&["--help"]).stdout).expect("utf-8");
    assert!(help.contains("demo"), "{help}");
    let demo_help = String::from_utf8(ghostcard(&["demo", "--help"]).stdout).expect("utf-8");
    assert!(demo_help.contains("--json") && demo_help.contains("Examples:"), "{demo_help}");
}

#[test]
fn demo_prints_a_story_and_json_for_scripts() {
    let text = ghostcard(&["demo"]);
    assert!(text.status.success());
    let text = String::from_utf8(text.stdout).expect("utf-8");
    assert!(text.contains("Declined: card_already_used (05)"), "{text}");
    assert!(text.contains("The ledger verifies"), "{text}");

    let json = ghostcard(&["demo", "--json"]);
    assert!(json.status.success(), "{}", String::from_utf8_lossy(&json.stderr));
    let document: serde_json::Value = serde_json::from_slice(&json.stdout).expect("one JSON document");
    let steps = document["steps"].as_array().expect("steps");
    assert_eq!(steps.last().expect("a last step")["facts"]["ledger"]["ok"], true);
    let declined = &steps[4]["facts"]["authorization"];
    assert_eq!(
        (declined["response_code"].as_str(), declined["decline_reason"].as_str()),
        (Some("05"), Some("card_already_used"))
    );
    // 30.00 captured in 4 installments, then 10.00 refunded evenly.
    let amounts = |plan: &serde_json::Value| -> Vec<i64> {
        plan["installments"]
            .as_array()
            .expect("installments")
            .iter()
            .map(|installment| installment["amount"].as_i64().unwrap_or(0))
            .collect()
    };
    assert_eq!(amounts(&steps[5]["facts"]["plan"]), vec![750, 750, 750, 750]);
    assert_eq!(amounts(&steps[6]["facts"]["plan"]), vec![500, 500, 500, 500]);
    let card = &steps[8]["facts"]["card"];
    assert_eq!(
        (card["status"].as_str(), card["amount"].as_i64(), card["remaining_amount"].as_i64()),
        (Some("closed"), Some(2_000), Some(0))
    );
    assert!(!String::from_utf8_lossy(&json.stdout).contains("\"number\""), "the demo prints no card number");
}

#[test]
fn bad_input_is_refused_with_a_hint() {
    let output = ghostcard(&["demo", "--colour"]);
    assert_eq!(output.status.code(), Some(2));
    let error = String::from_utf8(output.stderr).expect("utf-8");
    assert!(error.contains("--colour") && error.contains("--help"), "{error}");
    let output = ghostcard(&["serve", "--database-url", "mysql://nowhere"]);
    assert_eq!(output.status.code(), Some(1));
    let error = String::from_utf8(output.stderr).expect("utf-8");
    assert!(error.contains("sqlite://") && error.contains("postgres://"), "{error}");
}

#[test]
fn jobs_are_listed_and_only_dead_ones_retried() {
    let directory = ghostcard_harness::scratch::Directory::new("cli-jobs").expect("temp dir");
    let url = directory.sqlite_url("ghostcard.db");
    let output = ghostcard(&["jobs", "list", "--status", "dead", "--database-url", &url]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "No jobs dead.");
    let output = ghostcard(&["jobs", "list", "--json", "--database-url", &url]);
    assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), "[]");
    let output = ghostcard(&["jobs", "list", "--status", "stuck", "--database-url", &url]);
    assert_eq!(output.status.code(), Some(2), "an unknown status is a usage error");
    let output = ghostcard(&["jobs", "retry", "job_nothing", "--database-url", &url]);
    assert_eq!(output.status.code(), Some(1));
    let error = String::from_utf8_lossy(&output.stderr);
    assert!(error.contains("no dead job") && error.contains("ghostcard jobs list --status dead"), "{error}");
}

#[test]
fn keys_rotate_adds_card_number_keys_and_cvk_versions_and_refuses_weak_ones() {
    let directory = ghostcard_harness::scratch::Directory::new("cli-keys").expect("temp dir");
    let url = directory.sqlite_url("ghostcard.db");
    let output = ghostcard(&["keys", "rotate", "--cvk", "--json", "--database-url", &url]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let rotated: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(rotated["detail"], "CVK version 2");
    let output = ghostcard(&[
        "keys",
        "rotate",
        "--cvk",
        "--new-cvk",
        "0123456789ABCDEF0123456789ABCDEF",
        "--database-url",
        &url,
    ]);
    assert_eq!(output.status.code(), Some(1));
    let error = String::from_utf8_lossy(&output.stderr);
    assert!(error.contains("single DES"), "{error}");
    let output = ghostcard(&["keys", "rotate", "--new-kek", &"00".repeat(32), "--database-url", &url]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("weak"));
    let output = ghostcard(&["keys", "rotate", "--database-url", &url]);
    assert!(String::from_utf8_lossy(&output.stdout).contains("card-number key version 2"));
    let help = String::from_utf8(ghostcard(&["keys", "rotate", "--help"]).stdout).expect("utf-8");
    assert!(help.contains("--cvk") && help.contains("Examples:"), "{help}");
}

#[test]
fn the_example_decider_checks_signatures_and_declines_by_its_policy() {
    use std::io::{BufRead, BufReader};
    let secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let refused = ghostcard(&["example-decider", "--secret", "not-a-secret"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("whsec_"), "the error says what a secret looks like");

    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_ghostcard"))
        .args(["example-decider", "--listen", "127.0.0.1:0", "--secret", secret, "--decline-above", "10000", "--json"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("starts");
    let mut banner = String::new();
    let mut stderr = BufReader::new(child.stderr.take().expect("stderr"));
    stderr.read_line(&mut banner).expect("a first line");
    let url = banner.split_whitespace().find(|word| word.starts_with("http://")).expect("its URL").to_owned();
    let key = ghostcard_harness::example_decider::key_of(secret).expect("a key");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let ask = |amount: i64, signed: bool| {
        let body = serde_json::json!({"type": "authorization.request", "data": {
            "authorization": {"id": "auth_1", "amount": amount, "currency": "USD", "merchant": {"id": "SHOP1", "mcc": "5732"}},
            "ghostcard_decision": {"approve": true}}})
        .to_string();
        let timestamp = chrono::Utc::now().timestamp();
        let signature = if signed {
            ghostcard_server::webhooks::signature(&key, "msg_1", timestamp, &body)
        } else {
            "v1,bm90IGEgc2lnbmF0dXJl".to_owned()
        };
        runtime.block_on(async {
            let response = reqwest::Client::new()
                .post(&url)
                .header("webhook-id", "msg_1")
                .header("webhook-timestamp", timestamp.to_string())
                .header("webhook-signature", signature)
                .body(body)
                .send()
                .await
                .expect("answered");
            (response.status().as_u16(), response.json::<serde_json::Value>().await.expect("JSON"))
        })
    };
    assert_eq!(ask(5_000, true), (200, serde_json::json!({"approve": true})));
    assert_eq!(ask(10_001, true), (200, serde_json::json!({"approve": false, "decline_reason": "amount_above_limit"})));
    assert_eq!(ask(5_000, false).0, 401, "an unsigned request is refused");
    child.kill().expect("stops");
    let output = child.wait_with_output().expect("output");
    let printed = String::from_utf8_lossy(&output.stdout);
    assert_eq!(printed.lines().count(), 2, "one line per decision: {printed}");
}
