//! ISO 8583:1987 messages in ASCII, byte for byte what pyiso8583 4.x encodes with `specs.default_ascii`.
//!
//! A message is a 4-digit MTI, a primary bitmap of 16 hex characters (and a secondary one, as field 1, when any
//! field 65–128 is present), then the fields in order: fixed fields exactly their length, LLVAR/LLLVAR fields
//! with 2/3 ASCII length digits. The field layout is data ([`FIELDS`]), not code per field.
//!
//! This crate knows nothing of cards or money: it turns bytes into a [`Message`] and back, splits the 2-byte
//! length framing, reads the subelements of fields 48, 90 and 95, and prints messages with secrets masked.
//! Decoding never panics; every failure is a typed [`DecodeError`].

pub mod framing;
#[doc(hidden)]
pub mod fuzzing;
pub mod subfields;

use std::collections::BTreeMap;
use std::fmt;

/// How a field's length is carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Length {
    /// Exactly `max` characters.
    Fixed,
    /// 2 ASCII length digits, then up to `max` characters.
    LlVar,
    /// 3 ASCII length digits, then up to `max` characters.
    LllVar,
}

/// What a field may contain (checked by [`Message::check_formats`], not by the byte codec, which like pyiso8583
/// carries any ASCII).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `n`: digits.
    Numeric,
    /// `an`: letters and digits (and spaces, as fixed fields are space-padded).
    AlphaNumeric,
    /// `ans`: printable ASCII.
    Printable,
    /// A bitmap: hexadecimal digits.
    Hex,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FieldSpec {
    pub number: u8,
    pub length: Length,
    pub max: u16,
    pub format: Format,
    /// Masked in dumps (card numbers, track data, PIN blocks).
    pub secret: bool,
}

/// The fields of pyiso8583's `default_ascii` spec, 1 to 128 (index = number − 1).
#[rustfmt::skip]
pub const FIELDS: [FieldSpec; 128] = [
    FieldSpec { number: 1, length: Length::Fixed, max: 16, format: Format::Hex, secret: false },
    FieldSpec { number: 2, length: Length::LlVar, max: 19, format: Format::Numeric, secret: true },
    FieldSpec { number: 3, length: Length::Fixed, max: 6, format: Format::Numeric, secret: false },
    FieldSpec { number: 4, length: Length::Fixed, max: 12, format: Format::Numeric, secret: false },
    FieldSpec { number: 5, length: Length::Fixed, max: 12, format: Format::Numeric, secret: false },
    FieldSpec { number: 6, length: Length::Fixed, max: 12, format: Format::Numeric, secret: false },
    FieldSpec { number: 7, length: Length::Fixed, max: 10, format: Format::Numeric, secret: false },
    FieldSpec { number: 8, length: Length::Fixed, max: 8, format: Format::Numeric, secret: false },
    FieldSpec { number: 9, length: Length::Fixed, max: 8, format: Format::Numeric, secret: false },
    FieldSpec { number: 10, length: Length::Fixed, max: 8, format: Format::Numeric, secret: false },
    FieldSpec { number: 11, length: Length::Fixed, max: 6, format: Format::Numeric, secret: false },
    FieldSpec { number: 12, length: Length::Fixed, max: 6, format: Format::Numeric, secret: false },
    FieldSpec { number: 13, length: Length::Fixed, max: 4, format: Format::Numeric, secret: false },
    FieldSpec { number: 14, length: Length::Fixed, max: 4, format: Format::Numeric, secret: false },
    FieldSpec { number: 15, length: Length::Fixed, max: 4, format: Format::Numeric, secret: false },
    FieldSpec { number: 16, length: Length::Fixed, max: 4, format: Format::Numeric, secret: false },
    FieldSpec { number: 17, length: Length::Fixed, max: 4, format: Format::Numeric, secret: false },
    FieldSpec { number: 18, length: Length::Fixed, max: 4, format: Format::Numeric, secret: false },
    FieldSpec { number: 19, length: Length::Fixed, max: 3, format: Format::Numeric, secret: false },
    FieldSpec { number: 20, length: Length::Fixed, max: 3, format: Format::Numeric, secret: false },
    FieldSpec { number: 21, length: Length::Fixed, max: 3, format: Format::Numeric, secret: false },
    FieldSpec { number: 22, length: Length::Fixed, max: 3, format: Format::Numeric, secret: false },
    FieldSpec { number: 23, length: Length::Fixed, max: 3, format: Format::Numeric, secret: false },
    FieldSpec { number: 24, length: Length::Fixed, max: 3, format: Format::Numeric, secret: false },
    FieldSpec { number: 25, length: Length::Fixed, max: 2, format: Format::Numeric, secret: false },
    FieldSpec { number: 26, length: Length::Fixed, max: 2, format: Format::Numeric, secret: false },
    FieldSpec { number: 27, length: Length::Fixed, max: 1, format: Format::Printable, secret: false },
    FieldSpec { number: 28, length: Length::Fixed, max: 9, format: Format::Printable, secret: false },
    FieldSpec { number: 29, length: Length::Fixed, max: 9, format: Format::Printable, secret: false },
    FieldSpec { number: 30, length: Length::Fixed, max: 9, format: Format::Printable, secret: false },
    FieldSpec { number: 31, length: Length::Fixed, max: 9, format: Format::Printable, secret: false },
    FieldSpec { number: 32, length: Length::LlVar, max: 11, format: Format::Numeric, secret: false },
    FieldSpec { number: 33, length: Length::LlVar, max: 11, format: Format::Numeric, secret: false },
    FieldSpec { number: 34, length: Length::LlVar, max: 28, format: Format::Printable, secret: false },
    FieldSpec { number: 35, length: Length::LlVar, max: 37, format: Format::Printable, secret: true },
    FieldSpec { number: 36, length: Length::LllVar, max: 104, format: Format::Printable, secret: true },
    FieldSpec { number: 37, length: Length::Fixed, max: 12, format: Format::AlphaNumeric, secret: false },
    FieldSpec { number: 38, length: Length::Fixed, max: 6, format: Format::AlphaNumeric, secret: false },
    FieldSpec { number: 39, length: Length::Fixed, max: 2, format: Format::AlphaNumeric, secret: false },
    FieldSpec { number: 40, length: Length::Fixed, max: 3, format: Format::Printable, secret: false },
    FieldSpec { number: 41, length: Length::Fixed, max: 8, format: Format::Printable, secret: false },
    FieldSpec { number: 42, length: Length::Fixed, max: 15, format: Format::Printable, secret: false },
    FieldSpec { number: 43, length: Length::Fixed, max: 40, format: Format::Printable, secret: false },
    FieldSpec { number: 44, length: Length::LlVar, max: 25, format: Format::Printable, secret: false },
    FieldSpec { number: 45, length: Length::LlVar, max: 76, format: Format::Printable, secret: true },
    FieldSpec { number: 46, length: Length::LllVar, max: 999, format: Format::Printable, secret: false },
    FieldSpec { number: 47, length: Length::LllVar, max: 999, format: Format::Printable, secret: false },
    FieldSpec { number: 48, length: Length::LllVar, max: 999, format: Format::Printable, secret: false },
    FieldSpec { number: 49, length: Length::Fixed, max: 3, format: Format::Numeric, secret: false },
    FieldSpec { number: 50, length: Length::Fixed, max: 3, format: Format::Numeric, secret: false },
    FieldSpec { number: 51, length: Length::Fixed, max: 3, format: Format::Numeric, secret: false },
    FieldSpec { number: 52, length: Length::Fixed, max: 16, format: Format::Printable, secret: true },
    FieldSpec { number: 53, length: Length::Fixed, max: 16, format: Format::Printable, secret: false },
    FieldSpec { number: 54, length: Length::LllVar, max: 240, format: Format::Printable, secret: false },
    FieldSpec { number: 55, length: Length::LllVar, max: 510, format: Format::Printable, secret: false },
    FieldSpec { number: 56, length: Length::LllVar, max: 999, format: Format::Printable, secret: false },
    FieldSpec { number: 57, length: Length::LllVar, max: 999, format: Format::Printable, secret: false },
    FieldSpec { number: 58, length: Length::LllVar, max: 999, format: Format::Printable, secret: false },
    FieldSpec { number: 59, length: Length::LllVar, max: 999, format: Format::Printable, secret: false },
    FieldSpec { number: 60, length: Length::LllVar, max: 999, format: Format::Printable, secret: false },
    FieldSpec { number: 61, length: Length::LllVar, max: 999, format: Format::Printable, secret: false },
    FieldSpec { number: 62, length: Length::LllVar, max: 999, format: Format::Printable, secret: false },
    FieldSpec { number: 63, length: Length::LllVar, max: 999, format: Format::Printable, secret: false },
    FieldSpec { number: 64, length: Length::Fixed, max: 16, format: Format::Printable, secret: false },
    FieldSpec { number: 65, length: Length::Fixed, max: 16, format: Format::Hex, secret: false },
    FieldSpec { number: 66, length: Length::Fixed, max: 1, format: Format::Numeric, secret: false },
    FieldSpec { number: 67, length: Length::Fixed, max: 2, format: Format::Numeric, secret: false },
    FieldSpec { number: 68, length: Length::Fixed, max: 3, format: Format::Numeric, secret: false },
    FieldSpec { number: 69, length: Length::Fixed, max: 3, format: Format::Numeric, secret: false },
    FieldSpec { number: 70, length: Length::Fixed, max: 3, format: Format::Numeric, secret: false },
    FieldSpec { number: 71, length: Length::Fixed, max: 4, format: Format::Numeric, secret: false },
    FieldSpec { number: 72, length: Length::Fixed, max: 4, format: Format::Numeric, secret: false },
    FieldSpec { number: 73, length: Length::Fixed, max: 6, format: Format::Numeric, secret: false },
    FieldSpec { number: 74, length: Length::Fixed, max: 10, format: Format::Numeric, secret: false },
    FieldSpec { number: 75, length: Length::Fixed, max: 10, format: Format::Numeric, secret: false },
    FieldSpec { number: 76, length: Length::Fixed, max: 10, format: Format::Numeric, secret: false },
    FieldSpec { number: 77, length: Length::Fixed, max: 10, format: Format::Numeric, secret: false },
    FieldSpec { number: 78, length: Length::Fixed, max: 10, format: Format::Numeric, secret: false },
    FieldSpec { number: 79, length: Length::Fixed, max: 10, format: Format::Numeric, secret: false },
    FieldSpec { number: 80, length: Length::Fixed, max: 10, format: Format::Numeric, secret: false },
    FieldSpec { number: 81, length: Length::Fixed, max: 10, format: Format::Numeric, secret: false },
    FieldSpec { number: 82, length: Length::Fixed, max: 12, format: Format::Numeric, secret: false },
    FieldSpec { number: 83, length: Length::Fixed, max: 12, format: Format::Numeric, secret: false },
    FieldSpec { number: 84, length: Length::Fixed, max: 12, format: Format::Numeric, secret: false },
    FieldSpec { number: 85, length: Length::Fixed, max: 12, format: Format::Numeric, secret: false },
    FieldSpec { number: 86, length: Length::Fixed, max: 16, format: Format::Numeric, secret: false },
    FieldSpec { number: 87, length: Length::Fixed, max: 16, format: Format::Numeric, secret: false },
    FieldSpec { number: 88, length: Length::Fixed, max: 16, format: Format::Numeric, secret: false },
    FieldSpec { number: 89, length: Length::Fixed, max: 16, format: Format::Numeric, secret: false },
    FieldSpec { number: 90, length: Length::Fixed, max: 42, format: Format::Numeric, secret: false },
    FieldSpec { number: 91, length: Length::Fixed, max: 1, format: Format::AlphaNumeric, secret: false },
    FieldSpec { number: 92, length: Length::Fixed, max: 2, format: Format::AlphaNumeric, secret: false },
    FieldSpec { number: 93, length: Length::Fixed, max: 5, format: Format::Numeric, secret: false },
    FieldSpec { number: 94, length: Length::Fixed, max: 7, format: Format::Numeric, secret: false },
    FieldSpec { number: 95, length: Length::Fixed, max: 42, format: Format::AlphaNumeric, secret: false },
    FieldSpec { number: 96, length: Length::Fixed, max: 16, format: Format::Printable, secret: false },
    FieldSpec { number: 97, length: Length::Fixed, max: 17, format: Format::Printable, secret: false },
    FieldSpec { number: 98, length: Length::Fixed, max: 25, format: Format::Printable, secret: false },
    FieldSpec { number: 99, length: Length::LlVar, max: 11, format: Format::Numeric, secret: false },
    FieldSpec { number: 100, length: Length::LlVar, max: 11, format: Format::Numeric, secret: false },
    FieldSpec { number: 101, length: Length::LlVar, max: 17, format: Format::Printable, secret: false },
    FieldSpec { number: 102, length: Length::LlVar, max: 28, format: Format::Printable, secret: false },
    FieldSpec { number: 103, length: Length::LlVar, max: 28, format: Format::Printable, secret: false },
    FieldSpec { number: 104, length: Length::LllVar, max: 100, format: Format::Printable, secret: false },
    FieldSpec { number: 105, length: Length::LllVar, max: 999, format: Format::Printable, secret: false },
    FieldSpec { number: 106, length: Length::LllVar, max: 999, format: Format::Printable, secret: false },
    FieldSpec { number: 107, length: Length::LllVar, max: 999, format: Format::Printable, secret: false },
    FieldSpec { number: 108, length: Length::LllVar, max: 999, format: Format::Printable, secret: false },
    FieldSpec { number: 109, length: Length::LllVar, max: 999, format: Format::Printable, secret: false },
    FieldSpec { number: 110, length: Length::LllVar, max: 999, format: Format::Printable, secret: false },
    FieldSpec { number: 111, length: Length::LllVar, max: 999, format: Format::Printable, secret: false },
    FieldSpec { number: 112, length: Length::LllVar, max: 999, format: Format::Printable, secret: false },
    FieldSpec { number: 113, length: Length::LllVar, max: 999, format: Format::Printable, secret: false },
    FieldSpec { number: 114, length: Length::LllVar, max: 999, format: Format::Printable, secret: false },
    FieldSpec { number: 115, length: Length::LllVar, max: 999, format: Format::Printable, secret: false },
    FieldSpec { number: 116, length: Length::LllVar, max: 999, format: Format::Printable, secret: false },
    FieldSpec { number: 117, length: Length::LllVar, max: 999, format: Format::Printable, secret: false },
    FieldSpec { number: 118, length: Length::LllVar, max: 999, format: Format::Printable, secret: false },
    FieldSpec { number: 119, length: Length::LllVar, max: 999, format: Format::Printable, secret: false },
    FieldSpec { number: 120, length: Length::LllVar, max: 999, format: Format::Printable, secret: false },
    FieldSpec { number: 121, length: Length::LllVar, max: 999, format: Format::Printable, secret: false },
    FieldSpec { number: 122, length: Length::LllVar, max: 999, format: Format::Printable, secret: false },
    FieldSpec { number: 123, length: Length::LllVar, max: 999, format: Format::Printable, secret: false },
    FieldSpec { number: 124, length: Length::LllVar, max: 999, format: Format::Printable, secret: false },
    FieldSpec { number: 125, length: Length::LllVar, max: 999, format: Format::Printable, secret: false },
    FieldSpec { number: 126, length: Length::LllVar, max: 999, format: Format::Printable, secret: false },
    FieldSpec { number: 127, length: Length::LllVar, max: 999, format: Format::Printable, secret: false },
    FieldSpec { number: 128, length: Length::Fixed, max: 16, format: Format::Printable, secret: false },
];

/// Field 65 is where pyiso8583 expects a tertiary bitmap: it can be neither sent nor received.
pub const TERTIARY_BITMAP: u8 = 65;

/// The spec of field `number` (1–128).
pub fn field(number: u8) -> Option<&'static FieldSpec> {
    FIELDS.get(usize::from(number).checked_sub(1)?)
}

/// An ISO 8583 message: its MTI and its fields (2–128) as ASCII text.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Message {
    mti: String,
    fields: BTreeMap<u8, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("the message is shorter than an MTI and a bitmap")]
    TooShort,
    #[error("the MTI is not 4 digits")]
    InvalidMti,
    #[error("the bitmap is not 16 hexadecimal characters")]
    InvalidBitmap,
    #[error("field {0} is cut short")]
    Truncated(u8),
    #[error("field {0} has an invalid length prefix")]
    InvalidLength(u8),
    #[error("field {field} is {length} characters, more than its maximum {max}")]
    TooLong { field: u8, length: usize, max: u16 },
    #[error("field {0} is not ASCII")]
    NotAscii(u8),
    #[error("{0} bytes follow the last field")]
    TrailingBytes(usize),
    #[error("bit 65 (a tertiary bitmap) is set; this profile has no fields above 128")]
    TertiaryBitmap,
}

/// A failed decode, with what could be read before the failure (the MTI and the fields before it), so that a
/// message whose MTI and STAN are readable can still be answered with a format error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{error}")]
pub struct DecodeFailure {
    pub error: DecodeError,
    pub partial: Message,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    #[error("the MTI must be 4 digits")]
    InvalidMti,
    #[error("field {0} cannot be set (fields are 2 to 128 except 65; bitmaps are computed)")]
    UnknownField(u8),
    #[error("field {field} must be exactly {max} characters, not {length}")]
    WrongFixedLength { field: u8, length: usize, max: u16 },
    #[error("field {field} is {length} characters, more than its maximum {max}")]
    TooLong { field: u8, length: usize, max: u16 },
    #[error("field {0} is not ASCII")]
    NotAscii(u8),
}

/// A field whose content breaks its format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("field {field} is not {format:?}")]
pub struct FormatError {
    pub field: u8,
    pub format: Format,
}

impl Message {
    pub fn new(mti: &str) -> Message {
        Message { mti: mti.to_owned(), fields: BTreeMap::new() }
    }

    pub fn mti(&self) -> &str {
        &self.mti
    }

    pub fn set_mti(&mut self, mti: &str) {
        self.mti = mti.to_owned();
    }

    pub fn get(&self, number: u8) -> Option<&str> {
        self.fields.get(&number).map(String::as_str)
    }

    pub fn set(&mut self, number: u8, value: impl Into<String>) -> &mut Message {
        self.fields.insert(number, value.into());
        self
    }

    pub fn remove(&mut self, number: u8) -> Option<String> {
        self.fields.remove(&number)
    }

    pub fn has(&self, number: u8) -> bool {
        self.fields.contains_key(&number)
    }

    /// Field numbers present, ascending.
    pub fn numbers(&self) -> impl Iterator<Item = u8> + '_ {
        self.fields.keys().copied()
    }

    /// Checks every present field against its [`Format`].
    pub fn check_formats(&self) -> Result<(), FormatError> {
        for (&number, value) in &self.fields {
            let Some(spec) = field(number) else { continue };
            let fits = match spec.format {
                Format::Numeric => value.bytes().all(|byte| byte.is_ascii_digit()),
                Format::AlphaNumeric => value.bytes().all(|byte| byte.is_ascii_alphanumeric() || byte == b' '),
                Format::Printable => value.bytes().all(|byte| (0x20..0x7f).contains(&byte)),
                Format::Hex => value.bytes().all(|byte| byte.is_ascii_hexdigit()),
            };
            if !fits {
                return Err(FormatError { field: number, format: spec.format });
            }
        }
        Ok(())
    }

    /// A one-line description safe for logs: secret fields masked, field 48's CVV2 (tag 92) hidden.
    pub fn masked(&self) -> String {
        let mut out = format!("MTI={}", self.mti);
        // The card number is hidden wherever it appears: a peer may copy it into another field too.
        let card_number = self.get(2).filter(|number| number.len() >= 13);
        for (&number, value) in &self.fields {
            let shown = if number == 2 {
                mask_card_number(value)
            } else if field(number).is_some_and(|spec| spec.secret) {
                "*".repeat(value.chars().count())
            } else if number == 48 {
                subfields::mask_tags(value, &[subfields::TAG_CVV2])
            } else {
                value.clone()
            };
            let shown = match card_number {
                // Starred whole, so that what is left beside it cannot join up into the number again.
                Some(card_number) if number != 2 && shown.contains(card_number) => {
                    shown.replace(card_number, &"*".repeat(card_number.len()))
                }
                _ => shown,
            };
            out.push_str(&format!(" {number}={}", printable(&shown)));
        }
        out
    }
}

impl fmt::Debug for Message {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.masked())
    }
}

/// A card number as PCI DSS allows it shown: first 6 and last 4 digits of a long one, the rest `*`; a short or odd
/// one entirely `*`. Other secret fields (track data, PIN blocks) are always entirely `*`.
fn mask_card_number(value: &str) -> String {
    if value.len() >= 13 && value.bytes().all(|byte| byte.is_ascii_digit()) {
        format!("{}{}{}", &value[..6], "*".repeat(value.len() - 10), &value[value.len() - 4..])
    } else {
        "*".repeat(value.chars().count())
    }
}

/// `value` with everything but printable ASCII escaped (`\n`, `\u{1b}`): what a peer sent can never start a new
/// log line or reach a terminal as a control sequence.
fn printable(value: &str) -> std::borrow::Cow<'_, str> {
    if value.bytes().all(|byte| byte == b' ' || byte.is_ascii_graphic()) {
        return std::borrow::Cow::Borrowed(value);
    }
    let mut out = String::with_capacity(value.len() + 8);
    for character in value.chars() {
        if character == ' ' || character.is_ascii_graphic() {
            out.push(character);
        } else {
            out.extend(character.escape_default());
        }
    }
    std::borrow::Cow::Owned(out)
}

/// Decodes one message (without its length prefix).
pub fn decode(bytes: &[u8]) -> Result<Message, DecodeFailure> {
    let mut message = Message::default();
    let fail = |error: DecodeError, message: &Message| DecodeFailure { error, partial: message.clone() };
    let mti = bytes.get(..4).ok_or_else(|| fail(DecodeError::TooShort, &message))?;
    if !mti.iter().all(u8::is_ascii_digit) {
        return Err(fail(DecodeError::InvalidMti, &message));
    }
    message.mti = String::from_utf8_lossy(mti).into_owned();
    let primary = bytes.get(4..20).ok_or_else(|| fail(DecodeError::TooShort, &message))?;
    let primary = parse_bitmap(primary).ok_or_else(|| fail(DecodeError::InvalidBitmap, &message))?;
    let mut position = 20;
    let mut bitmap = [primary, 0u64];
    if primary & (1 << 63) != 0 {
        let secondary = bytes.get(20..36).ok_or_else(|| fail(DecodeError::Truncated(1), &message))?;
        bitmap[1] = parse_bitmap(secondary).ok_or_else(|| fail(DecodeError::InvalidBitmap, &message))?;
        // Like pyiso8583, bit 65 would announce a third bitmap, which this spec does not have.
        if bitmap[1] & (1 << 63) != 0 {
            return Err(fail(DecodeError::TertiaryBitmap, &message));
        }
        position = 36;
    }
    for number in 2..=128u8 {
        let word = bitmap[usize::from((number - 1) / 64)];
        if word & (1 << (63 - (u32::from(number) - 1) % 64)) == 0 {
            continue;
        }
        let spec = &FIELDS[usize::from(number) - 1];
        let length = match spec.length {
            Length::Fixed => usize::from(spec.max),
            Length::LlVar | Length::LllVar => {
                let digits = if spec.length == Length::LlVar { 2 } else { 3 };
                let prefix = bytes
                    .get(position..position + digits)
                    .ok_or_else(|| fail(DecodeError::Truncated(number), &message))?;
                if !prefix.iter().all(u8::is_ascii_digit) {
                    return Err(fail(DecodeError::InvalidLength(number), &message));
                }
                position += digits;
                let length = prefix.iter().fold(0usize, |total, digit| total * 10 + usize::from(digit - b'0'));
                if length > usize::from(spec.max) {
                    return Err(fail(DecodeError::TooLong { field: number, length, max: spec.max }, &message));
                }
                length
            }
        };
        let value =
            bytes.get(position..position + length).ok_or_else(|| fail(DecodeError::Truncated(number), &message))?;
        if !value.is_ascii() {
            return Err(fail(DecodeError::NotAscii(number), &message));
        }
        position += length;
        message.fields.insert(number, String::from_utf8_lossy(value).into_owned());
    }
    if position != bytes.len() {
        return Err(fail(DecodeError::TrailingBytes(bytes.len() - position), &message));
    }
    Ok(message)
}

fn parse_bitmap(text: &[u8]) -> Option<u64> {
    if text.len() != 16 || !text.iter().all(u8::is_ascii_hexdigit) {
        return None;
    }
    u64::from_str_radix(std::str::from_utf8(text).ok()?, 16).ok()
}

/// Encodes a message (without its length prefix). Bitmaps are computed from the fields present.
pub fn encode(message: &Message) -> Result<Vec<u8>, EncodeError> {
    if message.mti.len() != 4 || !message.mti.bytes().all(|byte| byte.is_ascii_digit()) {
        return Err(EncodeError::InvalidMti);
    }
    let mut bitmap = [0u64; 2];
    for &number in message.fields.keys() {
        if !(2..=128).contains(&number) || number == TERTIARY_BITMAP {
            return Err(EncodeError::UnknownField(number));
        }
        bitmap[usize::from((number - 1) / 64)] |= 1 << (63 - (u32::from(number) - 1) % 64);
    }
    if bitmap[1] != 0 {
        bitmap[0] |= 1 << 63;
    }
    let mut out = Vec::with_capacity(64 + message.fields.values().map(String::len).sum::<usize>());
    out.extend_from_slice(message.mti.as_bytes());
    out.extend_from_slice(format!("{:016X}", bitmap[0]).as_bytes());
    if bitmap[1] != 0 {
        out.extend_from_slice(format!("{:016X}", bitmap[1]).as_bytes());
    }
    for (&number, value) in &message.fields {
        let spec = &FIELDS[usize::from(number) - 1];
        if !value.is_ascii() {
            return Err(EncodeError::NotAscii(number));
        }
        let length = value.len();
        match spec.length {
            Length::Fixed if length != usize::from(spec.max) => {
                return Err(EncodeError::WrongFixedLength { field: number, length, max: spec.max });
            }
            Length::Fixed => {}
            _ if length > usize::from(spec.max) => {
                return Err(EncodeError::TooLong { field: number, length, max: spec.max });
            }
            Length::LlVar => out.extend_from_slice(format!("{length:02}").as_bytes()),
            Length::LllVar => out.extend_from_slice(format!("{length:03}").as_bytes()),
        }
        out.extend_from_slice(value.as_bytes());
    }
    Ok(out)
}

#[cfg(test)]
mod tests;
