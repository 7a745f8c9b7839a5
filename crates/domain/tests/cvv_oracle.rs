//! The CVV algorithm checked against an independent implementation: the PyPI package `psec`
//! (`psec.cvv.generate_cvv`), on many random keys, card numbers, expiries and service codes.
//!
//! `scripts/test` installs psec in a virtual environment and points `GHOSTCARD_TEST_PYTHON` at it.

#[path = "../../../tests/support/python.rs"]
mod python;

use ghostcard_domain::cvv::{Cvk, compute_cvv};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

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

    let expected = python::run("psec_cvv.py", &input);
    let expected: Vec<&str> = expected.lines().collect();
    assert_eq!(expected.len(), CASES, "psec answered every case");
    for ((key, pan, expiry, service_code), psec_cvv) in cases.iter().zip(expected) {
        let ours = compute_cvv(&Cvk::from_bytes(*key), pan, expiry, service_code).expect("valid input");
        assert_eq!(ours, psec_cvv, "pan length {}, expiry {expiry}, service code {service_code}", pan.len());
    }
}
