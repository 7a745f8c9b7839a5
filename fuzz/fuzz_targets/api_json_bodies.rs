//! The JSON request bodies of the card, funding-source, cardholder, clearing, webhook and payment endpoints.
#![no_main]

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| ghostcard_harness::fuzzing::json_bodies(bytes));
