use proptest::prelude::*;

use super::*;

fn authorization() -> Message {
    let mut message = Message::new("0100");
    message
        .set(2, "4111111111111111")
        .set(3, "000000")
        .set(4, "000000001000")
        .set(7, "1126120000")
        .set(11, "000001")
        .set(48, "9203123")
        .set(90, "0".repeat(42));
    message
}

#[test]
fn encodes_exactly_as_pyiso8583_does() {
    // The bytes pyiso8583 4.0.1 produced for this message with specs.default_ascii.
    let expected =
        b"0100F220000000010000000000400000000016411111111111111100000000000000100011261200000000010079203123\
010000000111261200000000012345600000000000";
    let mut message = authorization();
    message.set(90, "010000000111261200000000012345600000000000");
    let bytes = encode(&message).expect("valid");
    assert_eq!(String::from_utf8_lossy(&bytes), String::from_utf8_lossy(expected));
    assert_eq!(decode(&bytes).expect("valid"), message);
}

#[test]
fn decoding_reports_what_is_wrong_and_what_was_read() {
    let bytes = encode(&authorization()).expect("valid");
    let failure = decode(&bytes[..bytes.len() - 1]).expect_err("truncated");
    assert_eq!(failure.error, DecodeError::Truncated(90));
    assert_eq!(failure.partial.get(11), Some("000001"), "the STAN was read before the failure");
    assert_eq!(failure.partial.mti(), "0100");
    let mut trailing = bytes.clone();
    trailing.push(b'0');
    assert_eq!(decode(&trailing).expect_err("trailing").error, DecodeError::TrailingBytes(1));
    assert_eq!(decode(b"01X0").expect_err("mti").error, DecodeError::InvalidMti);
    assert_eq!(decode(b"0100").expect_err("short").error, DecodeError::TooShort);
    assert_eq!(decode(b"0100G000000000000000").expect_err("bitmap").error, DecodeError::InvalidBitmap);
    // Field 2 announced as 20 characters, more than its 19.
    let long = b"01004000000000000000201234567890123456789";
    assert_eq!(decode(long).expect_err("long").error, DecodeError::TooLong { field: 2, length: 20, max: 19 });
    let letters = b"010040000000000000001X";
    assert_eq!(decode(letters).expect_err("length").error, DecodeError::InvalidLength(2));
}

#[test]
fn encoding_refuses_fields_that_do_not_fit() {
    let mut message = Message::new("0100");
    message.set(3, "00000");
    assert_eq!(encode(&message), Err(EncodeError::WrongFixedLength { field: 3, length: 5, max: 6 }));
    message.set(3, "000000").set(2, "1".repeat(20));
    assert_eq!(encode(&message), Err(EncodeError::TooLong { field: 2, length: 20, max: 19 }));
    assert_eq!(encode(&Message::new("01A0")), Err(EncodeError::InvalidMti));
    for reserved in [1, TERTIARY_BITMAP] {
        let mut bitmap = Message::new("0100");
        bitmap.set(reserved, "0".repeat(16));
        assert_eq!(encode(&bitmap), Err(EncodeError::UnknownField(reserved)));
    }
    let tertiary = b"0100800000000000000080000000000000000123456789ABCDEF";
    assert_eq!(decode(tertiary).expect_err("tertiary").error, DecodeError::TertiaryBitmap);
}

#[test]
fn formats_are_checked_separately_from_the_bytes() {
    let mut message = authorization();
    assert_eq!(message.check_formats(), Ok(()));
    message.set(4, "00000000100A");
    assert_eq!(message.check_formats(), Err(FormatError { field: 4, format: Format::Numeric }));
}

#[test]
fn masked_dumps_hide_the_card_number_and_the_cvv2() {
    let dump = authorization().masked();
    assert!(dump.contains("2=411111******1111"), "{dump}");
    assert!(dump.contains("48=9203***"), "{dump}");
    assert!(!dump.contains("4111111111111111") && !dump.contains("123"), "{dump}");
    assert_eq!(format!("{:?}", authorization()), dump);
}

#[test]
fn masked_dumps_hide_pin_blocks_and_track_data_whole_and_escape_what_could_forge_a_log_line() {
    let mut message = authorization();
    message
        .set(52, "0123456789ABCDEF")
        .set(35, "4111111111111111=30121011234")
        .set(43, "SHOP\nlevel=ERROR forged\u{1b}[2J");
    let dump = message.masked();
    assert!(dump.contains(&format!("52={}", "*".repeat(16))), "{dump}");
    assert!(dump.contains(&format!("35={}", "*".repeat(28))), "{dump}");
    assert!(dump.contains("43=SHOP\\nlevel=ERROR forged\\u{1b}[2J"), "{dump}");
    assert!(!dump.contains('\n') && !dump.contains('\u{1b}'), "{dump}");
    // A card number copied into another field is hidden there too (found by fuzzing).
    message.set(95, format!("{}{}", message.get(2).unwrap_or_default(), "0".repeat(26)));
    assert!(!message.masked().contains("4111111111111111"), "{}", message.masked());
}

/// A random valid value for field `number`.
fn value(number: u8) -> impl Strategy<Value = String> {
    let spec = FIELDS[usize::from(number) - 1];
    let alphabet: &'static [u8] = match spec.format {
        Format::Numeric => b"0123456789",
        Format::AlphaNumeric => b"ABCXYZ0123456789 ",
        Format::Hex => b"0123456789ABCDEF",
        Format::Printable => b" !#%&()*+,-./0123456789:;<=>?@ABCZabcz[]_{}~",
    };
    let lengths = match spec.length {
        Length::Fixed => usize::from(spec.max)..=usize::from(spec.max),
        _ => 0..=usize::from(spec.max),
    };
    proptest::collection::vec(proptest::sample::select(alphabet), lengths)
        .prop_map(|bytes| String::from_utf8(bytes).expect("ASCII"))
}

pub(crate) fn message() -> impl Strategy<Value = Message> {
    let mti = proptest::collection::vec(proptest::sample::select(b"0123456789".as_slice()), 4)
        .prop_map(|bytes| String::from_utf8(bytes).expect("ASCII"));
    let fields = proptest::collection::btree_set(
        (2u8..=128).prop_filter("65 is a bitmap", |number| *number != TERTIARY_BITMAP),
        0..20,
    )
    .prop_flat_map(|numbers| {
        numbers.into_iter().map(|number| value(number).prop_map(move |value| (number, value))).collect::<Vec<_>>()
    });
    (mti, fields).prop_map(|(mti, fields)| {
        let mut message = Message::new(&mti);
        for (number, value) in fields {
            message.set(number, value);
        }
        message
    })
}

proptest! {
    #[test]
    fn decode_of_encode_is_the_message_and_encode_of_decode_the_bytes(message in message()) {
        let bytes = encode(&message).expect("valid");
        let decoded = decode(&bytes).expect("decodes");
        prop_assert_eq!(&decoded, &message);
        prop_assert_eq!(encode(&decoded).expect("valid"), bytes);
    }

    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        let _ = decode(&bytes);
    }

    #[test]
    fn decoding_mutated_messages_never_panics(message in message(), position in any::<usize>(), byte in any::<u8>()) {
        let mut bytes = encode(&message).expect("valid");
        if !bytes.is_empty() {
            let index = position % bytes.len();
            bytes[index] = byte;
            let _ = decode(&bytes);
            let _ = decode(&bytes[..index]);
        }
    }
}
