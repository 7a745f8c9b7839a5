//! Card numbers (PANs): generation under a BIN with a Luhn check digit, validation, masking and printed expiry.
//!
//! A full card number only exists inside [`CardNumber`], which wraps it in a [`Secret`]: it cannot be printed by
//! `Debug` or `Display`. What may be shown anywhere is [`CardNumber::masked`] (BIN + last 4).

use std::fmt;

use rand::{Rng, RngExt};

use crate::secret::Secret;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CardNumberError {
    #[error("a BIN is 6 to 8 digits")]
    InvalidBin,
    #[error("a card number is 12 to 19 digits")]
    InvalidLength,
    #[error("a card number contains only digits")]
    NotDigits,
    #[error("the card number's check digit is wrong (Luhn)")]
    LuhnMismatch,
    #[error("card number length must leave room for the BIN, account digits and the check digit")]
    LengthTooShortForBin,
}

/// The bank identification number that starts every card number we issue (6 to 8 digits).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bin(String);

impl Bin {
    pub fn parse(digits: &str) -> Result<Bin, CardNumberError> {
        let valid = (6..=8).contains(&digits.len()) && digits.bytes().all(|byte| byte.is_ascii_digit());
        if valid { Ok(Bin(digits.to_owned())) } else { Err(CardNumberError::InvalidBin) }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A full card number. Never printed: `Debug` and `Display` show only the masked form.
#[derive(Clone, PartialEq, Eq)]
pub struct CardNumber(Secret<String>);

impl CardNumber {
    pub const MIN_LENGTH: usize = 12;
    pub const MAX_LENGTH: usize = 19;

    /// Validates a card number typed or received from outside: digits only, 12–19 long, Luhn check digit.
    pub fn parse(digits: &str) -> Result<CardNumber, CardNumberError> {
        if !digits.bytes().all(|byte| byte.is_ascii_digit()) {
            return Err(CardNumberError::NotDigits);
        }
        if !(Self::MIN_LENGTH..=Self::MAX_LENGTH).contains(&digits.len()) {
            return Err(CardNumberError::InvalidLength);
        }
        if !luhn_valid(digits) {
            return Err(CardNumberError::LuhnMismatch);
        }
        Ok(CardNumber(Secret::new(digits.to_owned())))
    }

    /// A new random number under `bin`, `length` digits long, ending in its Luhn check digit. Uniqueness is the
    /// store's job (a card number is never reused); this only draws a candidate.
    pub fn generate(bin: &Bin, length: usize, rng: &mut impl Rng) -> Result<CardNumber, CardNumberError> {
        if !(Self::MIN_LENGTH..=Self::MAX_LENGTH).contains(&length) {
            return Err(CardNumberError::InvalidLength);
        }
        // At least 4 random account digits, so a BIN never leaves too few numbers to draw from.
        if length < bin.0.len() + 4 + 1 {
            return Err(CardNumberError::LengthTooShortForBin);
        }
        let mut digits = String::with_capacity(length);
        digits.push_str(&bin.0);
        while digits.len() < length - 1 {
            digits.push(char::from(b'0' + rng.random_range(0..10u8)));
        }
        digits.push(char::from(b'0' + luhn_check_digit(&digits)));
        Ok(CardNumber(Secret::new(digits)))
    }

    /// The number made of `bin`, the given account digits and its check digit. Card numbers that are issued
    /// are drawn at random ([`CardNumber::generate`]); this is for provisioning known sequences (benchmarks).
    pub fn from_account_digits(bin: &Bin, account_digits: &str) -> Result<CardNumber, CardNumberError> {
        if !account_digits.bytes().all(|byte| byte.is_ascii_digit()) {
            return Err(CardNumberError::NotDigits);
        }
        let mut digits = format!("{}{account_digits}", bin.0);
        if !(Self::MIN_LENGTH..=Self::MAX_LENGTH).contains(&(digits.len() + 1)) {
            return Err(CardNumberError::InvalidLength);
        }
        digits.push(char::from(b'0' + luhn_check_digit(&digits)));
        Ok(CardNumber(Secret::new(digits)))
    }

    /// The digits. Only for encryption, keyed hashing, CVV computation and the audited reveal.
    pub fn expose(&self) -> &str {
        self.0.expose()
    }

    pub fn last4(&self) -> &str {
        let digits = self.expose();
        &digits[digits.len() - 4..]
    }

    /// The first `length` digits (the BIN as issued).
    pub fn bin(&self, length: usize) -> &str {
        &self.expose()[..length.min(self.expose().len() - 4)]
    }

    /// BIN (first 6 digits) and last 4, the rest as `*`: `411111******1111`. Safe to show and log.
    pub fn masked(&self) -> String {
        self.masked_with_bin(6)
    }

    /// As [`CardNumber::masked`] for a BIN of `bin_length` digits (at most the number's length minus 4).
    pub fn masked_with_bin(&self, bin_length: usize) -> String {
        let digits = self.expose();
        let shown_start = bin_length.min(digits.len() - 4);
        let hidden = digits.len() - shown_start - 4;
        format!("{}{}{}", &digits[..shown_start], "*".repeat(hidden), self.last4())
    }
}

impl fmt::Debug for CardNumber {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "CardNumber({})", self.masked())
    }
}

impl fmt::Display for CardNumber {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(&self.masked())
    }
}

/// True when the last digit of `digits` is the Luhn check digit of the others.
pub fn luhn_valid(digits: &str) -> bool {
    let Some((body, check)) = digits.len().checked_sub(1).map(|last| digits.split_at(last)) else {
        return false;
    };
    !body.is_empty() && check.as_bytes()[0].wrapping_sub(b'0') == luhn_check_digit(body)
}

/// Digits in a row (single spaces or dashes between them allowed, as card numbers are written) from which a run is
/// treated as a possible card number: the shortest card numbers in use have 13 digits.
pub const REDACTED_DIGIT_RUN: usize = 13;

/// `text` with every run of [`REDACTED_DIGIT_RUN`] or more digits replaced by `[REDACTED]`: the last line of defence
/// for text that may echo what a client sent (error messages, stored error bodies, log fields), so that a card
/// number sent in the wrong place is never kept or shown.
pub fn redact_digit_runs(text: &str) -> std::borrow::Cow<'_, str> {
    let bytes = text.as_bytes();
    let mut out = String::new();
    // Where the text not yet copied to `out` begins.
    let mut copied = 0;
    let mut index = 0;
    while index < bytes.len() {
        if !bytes[index].is_ascii_digit() {
            index += 1;
            continue;
        }
        let start = index;
        let mut end = index;
        let mut digits = 0;
        let mut at = index;
        while at < bytes.len() {
            if bytes[at].is_ascii_digit() {
                digits += 1;
                at += 1;
                end = at;
            } else if matches!(bytes[at], b' ' | b'-') && bytes.get(at + 1).is_some_and(u8::is_ascii_digit) {
                at += 1;
            } else {
                break;
            }
        }
        if digits >= REDACTED_DIGIT_RUN {
            out.push_str(&text[copied..start]);
            out.push_str("[REDACTED]");
            copied = end;
        }
        index = end;
    }
    if copied == 0 && out.is_empty() {
        return std::borrow::Cow::Borrowed(text);
    }
    out.push_str(&text[copied..]);
    std::borrow::Cow::Owned(out)
}

/// The digit to append to `body` so that the whole number passes the Luhn check.
fn luhn_check_digit(body: &str) -> u8 {
    let sum: u32 = body
        .bytes()
        .rev()
        .enumerate()
        .map(|(position, byte)| {
            let digit = u32::from(byte - b'0');
            // Counting from the right of the body, every first, third, ... digit is doubled, because the check
            // digit will take position zero.
            if position % 2 == 0 {
                let doubled = digit * 2;
                if doubled > 9 { doubled - 9 } else { doubled }
            } else {
                digit
            }
        })
        .sum();
    ((10 - sum % 10) % 10) as u8
}

/// A printed expiry month, as field 14 of ISO 8583 carries it (YYMM).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Expiry {
    /// Full year, e.g. 2030.
    year: u16,
    /// 1 to 12.
    month: u8,
}

impl Expiry {
    pub fn new(year: u16, month: u8) -> Result<Expiry, ExpiryError> {
        if (1..=12).contains(&month) && (2000..=2099).contains(&year) {
            Ok(Expiry { year, month })
        } else {
            Err(ExpiryError)
        }
    }

    /// Parses `YYMM` (years 2000–2099).
    pub fn parse_yymm(text: &str) -> Result<Expiry, ExpiryError> {
        if text.len() != 4 || !text.bytes().all(|byte| byte.is_ascii_digit()) {
            return Err(ExpiryError);
        }
        let year: u16 = text[..2].parse().map_err(|_| ExpiryError)?;
        let month: u8 = text[2..].parse().map_err(|_| ExpiryError)?;
        Expiry::new(2000 + year, month)
    }

    pub fn yymm(self) -> String {
        format!("{:02}{:02}", self.year % 100, self.month)
    }

    pub fn year(self) -> u16 {
        self.year
    }

    pub fn month(self) -> u8 {
        self.month
    }

    /// The month `months` after this one.
    pub fn plus_months(self, months: u16) -> Result<Expiry, ExpiryError> {
        let index = u32::from(self.year) * 12 + u32::from(self.month - 1) + u32::from(months);
        let year = u16::try_from(index / 12).map_err(|_| ExpiryError)?;
        Expiry::new(year, (index % 12) as u8 + 1)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("an expiry is a month 01–12 of a year 2000–2099, written YYMM")]
pub struct ExpiryError;

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn luhn_accepts_known_numbers_and_rejects_a_changed_digit() {
        for valid in ["4111111111111111", "5555555555554444", "378282246310005", "4000000000009995"] {
            assert!(luhn_valid(valid), "{valid}");
        }
        assert!(!luhn_valid("4111111111111112"));
        assert!(!luhn_valid("0"));
        assert!(!luhn_valid(""));
    }

    #[test]
    fn digit_runs_that_could_be_card_numbers_are_redacted() {
        for (text, redacted) in [
            ("invalid type: integer `4111111111111111`", "invalid type: integer `[REDACTED]`"),
            ("4111 1111 1111 1111 and 5555-5555-5555-4444.", "[REDACTED] and [REDACTED]."),
            ("x4111111111111x", "x[REDACTED]x"),
            ("12 digits 411111111111 stay", "12 digits 411111111111 stay"),
            (
                "2026-12-07 16:34:27, stan 000042, rrn 123456789012",
                "2026-12-07 16:34:27, stan 000042, rrn 123456789012",
            ),
            ("1 2 3 4 5 6 7 8 9 0 1 2 3", "[REDACTED]"),
            ("12  3456789012345", "12  [REDACTED]"),
            ("", ""),
        ] {
            assert_eq!(redact_digit_runs(text), redacted, "{text}");
        }
        assert!(matches!(redact_digit_runs("nothing here 123"), std::borrow::Cow::Borrowed(_)));
    }

    proptest! {
        #[test]
        fn no_run_of_thirteen_digits_survives_redaction(text in "[0-9 a-]{0,60}") {
            let redacted = redact_digit_runs(&text);
            prop_assert_eq!(redact_digit_runs(&redacted), redacted.clone(), "nothing left to redact");
            prop_assert!(!redacted.split(|c: char| !c.is_ascii_digit()).any(|run| run.len() >= REDACTED_DIGIT_RUN));
            let unchanged = !text.split(|c: char| !c.is_ascii_digit() && c != ' ' && c != '-')
                .any(|run| run.bytes().filter(u8::is_ascii_digit).count() >= REDACTED_DIGIT_RUN);
            if unchanged {
                prop_assert_eq!(redacted, text.as_str());
            }
        }
    }

    #[test]
    fn parse_reports_what_is_wrong() {
        assert_eq!(CardNumber::parse("4111 1111 1111 1111"), Err(CardNumberError::NotDigits));
        assert_eq!(CardNumber::parse("41111111111"), Err(CardNumberError::InvalidLength));
        assert_eq!(CardNumber::parse("4111111111111112"), Err(CardNumberError::LuhnMismatch));
        assert!(CardNumber::parse("4111111111111111").is_ok());
    }

    #[test]
    fn masking_shows_bin_and_last_four_only() {
        let number = CardNumber::parse("4111111111111111").expect("valid");
        assert_eq!(number.masked(), "411111******1111");
        assert_eq!(number.masked_with_bin(8), "41111111****1111");
        assert_eq!(format!("{number:?}"), "CardNumber(411111******1111)");
        assert_eq!(format!("{number}"), "411111******1111");
        assert_eq!(number.last4(), "1111");
    }

    #[test]
    fn numbers_from_account_digits_carry_their_check_digit() {
        let bin = Bin::parse("424242").expect("valid");
        let number = CardNumber::from_account_digits(&bin, "000000123").expect("valid");
        assert_eq!(number.expose().len(), 16);
        assert!(number.expose().starts_with("424242000000123"));
        assert!(luhn_valid(number.expose()));
        assert_eq!(CardNumber::from_account_digits(&bin, "12a"), Err(CardNumberError::NotDigits));
        assert_eq!(CardNumber::from_account_digits(&bin, "1"), Err(CardNumberError::InvalidLength));
    }

    #[test]
    fn bins_are_six_to_eight_digits() {
        assert!(Bin::parse("42424").is_err());
        assert!(Bin::parse("424242").is_ok());
        assert!(Bin::parse("42424242").is_ok());
        assert!(Bin::parse("424242424").is_err());
        assert!(Bin::parse("42424a").is_err());
    }

    #[test]
    fn expiry_round_trips_yymm_and_adds_months() {
        let expiry = Expiry::parse_yymm("3012").expect("valid");
        assert_eq!((expiry.year(), expiry.month()), (2030, 12));
        assert_eq!(expiry.yymm(), "3012");
        assert_eq!(expiry.plus_months(1).expect("in range").yymm(), "3101");
        assert!(Expiry::parse_yymm("3013").is_err());
        assert!(Expiry::parse_yymm("300").is_err());
    }

    proptest! {
        #[test]
        fn every_generated_number_is_luhn_valid_and_starts_with_its_bin(
            seed in any::<u64>(), bin_length in 6usize..=8, length in 13usize..=19,
        ) {
            let mut rng = StdRng::seed_from_u64(seed);
            let bin_digits: String = (0..bin_length).map(|index| char::from(b'1' + (index % 9) as u8)).collect();
            let bin = Bin::parse(&bin_digits).expect("valid bin");
            let number = CardNumber::generate(&bin, length, &mut rng).expect("valid length");
            prop_assert_eq!(number.expose().len(), length);
            prop_assert!(number.expose().starts_with(&bin_digits));
            prop_assert!(luhn_valid(number.expose()));
            prop_assert!(CardNumber::parse(number.expose()).is_ok());
        }

        #[test]
        fn changing_one_digit_breaks_luhn(seed in any::<u64>(), position in 0usize..16, delta in 1u8..10) {
            let mut rng = StdRng::seed_from_u64(seed);
            let bin = Bin::parse("400000").expect("valid bin");
            let number = CardNumber::generate(&bin, 16, &mut rng).expect("valid length");
            let mut digits = number.expose().as_bytes().to_vec();
            digits[position] = b'0' + (digits[position] - b'0' + delta) % 10;
            prop_assert!(!luhn_valid(std::str::from_utf8(&digits).expect("ascii")));
        }
    }
}
