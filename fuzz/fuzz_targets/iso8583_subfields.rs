//! Field 48 subelements, field 90 original data and field 95 replacement amounts.
#![no_main]

libfuzzer_sys::fuzz_target!(|bytes: &[u8]| ghostcard_iso8583::fuzzing::subfields(bytes));
