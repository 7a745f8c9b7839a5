//! Running the Python test oracles (PyPI packages installed by `scripts/test`) from Rust tests. Included by path
//! from each test crate that needs it (not every crate uses every function).
#![allow(dead_code)]

use std::io::Write;
use std::process::{Command, Stdio};

/// The interpreter: `GHOSTCARD_TEST_PYTHON`, else the virtual environment `scripts/test` makes, else `python3`.
pub fn python() -> String {
    let venv = concat!(env!("CARGO_MANIFEST_DIR"), "/../../target/test-python/bin/python");
    std::env::var("GHOSTCARD_TEST_PYTHON")
        .unwrap_or_else(|_| if std::path::Path::new(venv).exists() { venv.to_owned() } else { "python3".to_owned() })
}

/// The path of a script in `tests/python`.
pub fn script(name: &str) -> String {
    format!("{}/../../tests/python/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// Runs `tests/python/<name>` with `input` on standard input and returns its standard output; fails the test
/// with the script's error output when it fails.
pub fn run(name: &str, input: &str) -> String {
    let python = python();
    let mut child = Command::new(&python)
        .arg(script(name))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| {
            panic!("cannot start {python} ({error}); run scripts/test, which installs the oracles")
        });
    // Write from another thread: the oracle answers while it reads, and both pipes must keep flowing.
    let mut stdin = child.stdin.take().expect("piped");
    let input = input.to_owned();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let output = child.wait_with_output().expect("oracle finished");
    let written = writer.join().expect("writer thread");
    assert!(
        output.status.success(),
        "{name} failed; run scripts/test (it installs tests/python/requirements.txt):\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    written.expect("write cases");
    String::from_utf8(output.stdout).expect("UTF-8")
}
