//! The fuzz corpora of `fuzz/` replayed as regression tests, on the stable toolchain without libFuzzer: every input
//! that the fuzzers kept (seeds, new coverage, and inputs that once failed) must pass the targets' checks.

use ghostcard_harness::fuzzing::{NetworkTarget, json_bodies};
use ghostcard_iso8583::fuzzing::corpus;

#[test]
fn the_json_bodies_corpus_replays() {
    let inputs = corpus("api_json_bodies");
    assert!(inputs.len() >= 5, "fuzz/corpus/api_json_bodies has its seeds");
    for (name, bytes) in inputs {
        assert!(std::panic::catch_unwind(|| json_bodies(&bytes)).is_ok(), "fuzz/corpus/api_json_bodies/{name} fails");
    }
}

#[test]
fn the_network_messages_corpus_replays_and_the_ledger_verifies() {
    let target = NetworkTarget::new("fuzz-corpus-network");
    let inputs = corpus("network_messages");
    assert!(inputs.len() >= 10, "fuzz/corpus/network_messages has its seeds");
    for (name, bytes) in inputs {
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| target.run(&bytes)));
        assert!(outcome.is_ok(), "fuzz/corpus/network_messages/{name} fails");
    }
    target.assert_ledger_verifies();
}
