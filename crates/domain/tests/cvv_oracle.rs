//! The CVV algorithm checked against an independent implementation: the PyPI package `psec`
//! (`psec.cvv.generate_cvv`), on many random keys, card numbers, expiries and service codes.
//!
//! `scripts/test` installs psec in a virtual environment and points `GHOSTCARD_TEST_PYTHON` at it.

use std::io::Write;
use std::process::{Command, Stdio};

use ghostcard_domain::cvv::{Cvk, compute_cvv};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const CASES: usize = 500;

#[test]
fn cvv_matches_psec_on_random_keys_and_cards() {
    let mut rng = StdRng::seed_from_u64(0x6c05_7ca2d);
    let mut cases = Vec::with_capacity(CASES);
    for _ in 0..CASES {
        let key: [u8; 16] = rng.random();
        let pan_length = rng.random_range(12..=19);
        let pan: String = (0..pan_length).map(|_| char::from(b'0' + rng.random_range(0..10u8))).collect();
        let expiry = format!("{:02}{:02}", rng.random_range(0..100), rng.random_range(1..=12));
        let service_code =
            if rng.random_bool(0.5) { "000".to_owned() } else { format!("{:03}", rng.random_range(0..1000)) };
        cases.push((key, pan, expiry, service_code));
    }
    let input: String = cases
        .iter()
        .map(|(key, pan, expiry, service_code)| {
            let key: String = key.iter().map(|byte| format!("{byte:02X}")).collect();
            format!("{key} {pan} {expiry} {service_code}\n")
        })
        .collect();

    let expected = run_oracle(&input);
    let expected: Vec<&str> = expected.lines().collect();
    assert_eq!(expected.len(), CASES, "psec answered every case");
    for ((key, pan, expiry, service_code), psec_cvv) in cases.iter().zip(expected) {
        let ours = compute_cvv(&Cvk::from_bytes(*key), pan, expiry, service_code).expect("valid input");
        assert_eq!(ours, psec_cvv, "pan length {}, expiry {expiry}, service code {service_code}", pan.len());
    }
}

fn run_oracle(input: &str) -> String {
    // scripts/test's virtual environment, if it was made; else whatever python3 is on the PATH.
    let venv = concat!(env!("CARGO_MANIFEST_DIR"), "/../../target/test-python/bin/python");
    let python = std::env::var("GHOSTCARD_TEST_PYTHON")
        .unwrap_or_else(|_| if std::path::Path::new(venv).exists() { venv.to_owned() } else { "python3".to_owned() });
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/python/psec_cvv.py");
    let mut child = Command::new(&python)
        .arg(script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|error| panic!("cannot start {python} ({error}); run scripts/test, which installs psec"));
    // Write from another thread: the oracle answers while it reads, and both pipes must keep flowing.
    let mut stdin = child.stdin.take().expect("piped");
    let input = input.to_owned();
    let writer = std::thread::spawn(move || stdin.write_all(input.as_bytes()));
    let output = child.wait_with_output().expect("oracle finished");
    let written = writer.join().expect("writer thread");
    assert!(
        output.status.success(),
        "psec oracle failed; run scripts/test (it installs tests/python/requirements.txt):\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    written.expect("write cases");
    String::from_utf8(output.stdout).expect("ascii digits")
}
