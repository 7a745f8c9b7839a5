//! What the fuzz targets of `fuzz/` run, kept here so that `cargo test` replays their corpora on the stable
//! toolchain (without libFuzzer). Each function takes arbitrary bytes, must never panic, and asserts the codec's
//! promises about what it accepted.

use crate::framing::{Frame, next_frame};
use crate::{decode, encode, subfields};

/// The largest message the listener accepts by default.
const MAX_MESSAGE_BYTES: usize = 4096;

/// Bytes as they arrive on a connection: split into frames as the listener does, each frame decoded; and the whole
/// input decoded as one message too. What decodes re-encodes to bytes that decode to the same message, and its dump
/// shows no card number.
pub fn frames(bytes: &[u8]) {
    let mut rest = bytes;
    loop {
        match next_frame(rest, MAX_MESSAGE_BYTES) {
            Frame::Incomplete | Frame::TooLarge { .. } => break,
            Frame::KeepAlive { consumed } => rest = &rest[consumed..],
            Frame::Message { body, consumed } => {
                assert!(consumed > body.len() && consumed <= rest.len(), "a frame consumes its prefix and body");
                message(body);
                rest = &rest[consumed..];
            }
        }
    }
    message(bytes);
}

fn message(body: &[u8]) {
    match decode(body) {
        Ok(message) => {
            let _ = message.check_formats();
            check_dump(&message.masked(), message.get(2));
            if let Ok(encoded) = encode(&message) {
                let again = decode(&encoded).expect("what encode wrote decodes");
                assert_eq!(again, message, "decode(encode(message)) is the message");
            }
        }
        Err(failure) => check_dump(&failure.partial.masked(), failure.partial.get(2)),
    }
}

/// A dump is one line, and a card number in field 2 (13 digits or more) shows at most its first 6 and last 4.
fn check_dump(dump: &str, number: Option<&str>) {
    assert!(!dump.contains('\n') && !dump.contains('\r'), "a dump is one line: {dump:?}");
    let card_number = |number: &&str| number.len() >= 13 && number.bytes().all(|byte| byte.is_ascii_digit());
    if let Some(number) = number.filter(card_number) {
        assert!(!dump.contains(number), "the dump hides the card number");
    }
}

/// Field 48, 90 and 95 values: subelements parse back to what they were built from, masking keeps the length, and
/// original data and replacement amounts survive a round trip.
pub fn subfields(bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    let value = text.as_ref();
    if let Ok(tags) = subfields::parse_tags(value) {
        assert_eq!(subfields::build_tags(&tags).as_deref(), Some(value), "field 48 rebuilds as it was");
        assert_eq!(
            subfields::find_tag(value, subfields::TAG_CVV2),
            tags.iter().find(|(tag, _)| *tag == "92").map(|(_, content)| *content)
        );
    }
    assert_eq!(subfields::mask_tags(value, &[subfields::TAG_CVV2]).len(), value.len(), "masking keeps the length");
    if let Some(original) = subfields::OriginalData::parse(value) {
        let rebuilt = subfields::OriginalData::build(
            &original.mti,
            &original.stan,
            &original.transmission,
            original.acquirer_id(),
        );
        assert_eq!(rebuilt[..31], value[..31], "field 90 rebuilds from its parts");
        assert_eq!(subfields::OriginalData::parse(&rebuilt).map(|parsed| parsed.acquirer), Some(original.acquirer));
    }
    if let Some(amount) = subfields::replacement_amount(value) {
        assert!(amount >= 0);
        assert_eq!(subfields::replacement_amount(&subfields::build_replacement_amount(amount)), Some(amount));
    }
}

/// Every file of `fuzz/corpus/<target>/`, for replaying a corpus in a test.
pub fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let directory = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus").join(target);
    let mut files: Vec<_> = std::fs::read_dir(&directory)
        .map(|entries| entries.filter_map(Result::ok).map(|entry| entry.path()).collect())
        .unwrap_or_default();
    files.sort();
    files
        .into_iter()
        .filter_map(|path| Some((path.file_name()?.to_string_lossy().into_owned(), std::fs::read(&path).ok()?)))
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_fuzz_corpora_replay_without_a_failure() {
        for (target, run) in [("iso8583_frames", super::frames as fn(&[u8])), ("iso8583_subfields", super::subfields)] {
            let corpus = super::corpus(target);
            assert!(corpus.len() >= 5, "fuzz/corpus/{target} has its seeds");
            for (name, bytes) in corpus {
                let outcome = std::panic::catch_unwind(|| run(&bytes));
                assert!(outcome.is_ok(), "fuzz/corpus/{target}/{name} fails");
            }
        }
    }
}
