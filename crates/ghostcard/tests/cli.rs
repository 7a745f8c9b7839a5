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
    let text = ghostcard(&["demo", "--now", "2026-11-26T12:00:00Z"]);
    assert!(text.status.success());
    let text = String::from_utf8(text.stdout).expect("utf-8");
    assert!(text.contains("Declined: card_already_used (05)"), "{text}");
    assert!(text.contains("The ledger verifies"), "{text}");

    let json = ghostcard(&["demo", "--json", "--now", "2026-11-26T12:00:00Z"]);
    assert!(json.status.success());
    let document: serde_json::Value = serde_json::from_slice(&json.stdout).expect("one JSON document");
    let steps = document["steps"].as_array().expect("steps");
    assert_eq!(steps.last().expect("a last step")["facts"]["ok"], true);
}

#[test]
fn bad_input_is_refused_with_a_hint() {
    let output = ghostcard(&["demo", "--now", "yesterday"]);
    assert_eq!(output.status.code(), Some(2));
    let error = String::from_utf8(output.stderr).expect("utf-8");
    assert!(error.contains("--now") && error.contains("--help"), "{error}");
}
