//! Bytes as a network connection delivers them: framing, decoding, re-encoding, masked dumps.
#![no_main]

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| ghostcard_iso8583::fuzzing::frames(bytes));
