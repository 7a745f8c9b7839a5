//! ISO 8583 messages handled by a real server on a fresh SQLite database with a few cards.
#![no_main]

use std::sync::OnceLock;

use ghostcard_harness::fuzzing::NetworkTarget;

static TARGET: OnceLock<NetworkTarget> = OnceLock::new();

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| {
    TARGET.get_or_init(|| NetworkTarget::new("fuzz-network-messages")).run(bytes);
});
