//! CVV2: the Visa card verification value, computed from the card number and printed expiry under a card
//! verification key (CVK), never stored.
//!
//! The algorithm (Visa, also used for CVC2): write PAN ‖ expiry YYMM ‖ service code as decimal digits, pad with
//! zeros to 32 digits and read them as two 8-byte blocks. Encrypt the first block with key A (DES), XOR the second
//! block in, encrypt that with the 2-key triple DES A-B-A. Of the 16 hex digits of the result keep the decimal
//! digits in order, then the letters A–F as 0–5 in order; the first three are the CVV. Card-not-present CVV2 uses
//! service code `000`.

use des::cipher::{BlockEncrypt, KeyInit, generic_array::GenericArray};
use des::{Des, TdesEde2};
use subtle::ConstantTimeEq;

use crate::card_number::{CardNumber, Expiry};
use crate::secret::Secret;

/// The service code of CVV2 (card not present).
pub const CVV2_SERVICE_CODE: &str = "000";

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CvvError {
    #[error("a card verification key is 32 hexadecimal digits (two DES keys)")]
    InvalidKey,
    #[error("card number, expiry and service code must be digits and fit in 32 of them")]
    InvalidInput,
}

/// A card verification key pair (CVK A ‖ CVK B), 16 bytes, with its DES key schedules made once (every
/// authorization with a CVV2 uses them). Printing it shows nothing.
#[derive(Clone)]
pub struct Cvk {
    key: Secret<[u8; 16]>,
    /// Key A alone, and A-B-A.
    ciphers: Box<(Des, TdesEde2)>,
}

impl PartialEq for Cvk {
    fn eq(&self, other: &Cvk) -> bool {
        self.key == other.key
    }
}

impl Eq for Cvk {}

impl std::fmt::Debug for Cvk {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_tuple("Cvk").field(&self.key).finish()
    }
}

impl Cvk {
    pub fn from_bytes(bytes: [u8; 16]) -> Cvk {
        let single = Des::new(GenericArray::from_slice(&bytes[..8]));
        let triple = TdesEde2::new(GenericArray::from_slice(&bytes));
        Cvk { key: Secret::new(bytes), ciphers: Box::new((single, triple)) }
    }

    /// Parses 32 hexadecimal digits.
    pub fn from_hex(text: &str) -> Result<Cvk, CvvError> {
        let bytes = decode_hex(text.as_bytes()).ok_or(CvvError::InvalidKey)?;
        let bytes: [u8; 16] = bytes.try_into().map_err(|_| CvvError::InvalidKey)?;
        Ok(Cvk::from_bytes(bytes))
    }

    /// The key's 16 bytes, to be wrapped under a key-encryption key. Callers must treat them as a secret.
    pub fn expose(&self) -> &[u8; 16] {
        self.key.expose()
    }

    /// Why this key must not protect live cards, if it must not: every byte the same, or two equal halves (2-key
    /// triple DES with key A = key B is single DES). DES ignores the lowest bit of each byte (parity), so the
    /// comparisons do too.
    pub fn weakness(&self) -> Option<&'static str> {
        let key = self.key.expose().map(|byte| byte & 0xfe);
        if key.iter().all(|byte| *byte == key[0]) {
            Some("every byte of it is the same")
        } else if key[..8] == key[8..] {
            Some("its two halves are equal, which makes it single DES")
        } else {
            None
        }
    }

    /// The key as 32 upper-case hex digits, for a key file. Callers must treat the result as a secret.
    pub fn to_hex(&self) -> Secret<String> {
        Secret::new(self.key.expose().iter().map(|byte| format!("{byte:02X}")).collect())
    }

    /// The CVV2 (service code `000`) of a card.
    pub fn cvv2(&self, number: &CardNumber, expiry: Expiry) -> Secret<String> {
        let digits = self.cvv2_digits(number, expiry);
        Secret::new(digits.iter().map(|digit| char::from(*digit)).collect())
    }

    /// Checks a CVV2 received from the network by recomputing it. The comparison takes the same time whichever
    /// digit differs.
    pub fn verify_cvv2(&self, number: &CardNumber, expiry: Expiry, received: &str) -> bool {
        let mut expected = self.cvv2_digits(number, expiry);
        let matches = received.len() == expected.len() && bool::from(expected.ct_eq(received.as_bytes()));
        expected.fill(0);
        matches
    }

    fn cvv2_digits(&self, number: &CardNumber, expiry: Expiry) -> [u8; 3] {
        let yymm = expiry.yymm();
        cvv_digits(self, &[number.expose().as_bytes(), yymm.as_bytes(), CVV2_SERVICE_CODE.as_bytes()])
            .expect("a parsed card number and expiry are always valid CVV input")
    }
}

/// The Visa CVV of `pan` with `expiry` (YYMM) and `service_code`, as three digits.
pub fn compute_cvv(key: &Cvk, pan: &str, expiry: &str, service_code: &str) -> Result<String, CvvError> {
    let digits = cvv_digits(key, &[pan.as_bytes(), expiry.as_bytes(), service_code.as_bytes()])?;
    Ok(digits.iter().map(|digit| char::from(*digit)).collect())
}

/// The algorithm on the ASCII digits of `parts`, in stack buffers that are overwritten before they are left.
fn cvv_digits(key: &Cvk, parts: &[&[u8]]) -> Result<[u8; 3], CvvError> {
    let mut digits = [b'0'; 32];
    let mut length = 0;
    for part in parts {
        if !part.iter().all(u8::is_ascii_digit) || length + part.len() > digits.len() {
            return Err(CvvError::InvalidInput);
        }
        digits[length..length + part.len()].copy_from_slice(part);
        length += part.len();
    }
    // Two blocks of 16 decimal digits, each digit a nibble.
    let mut data = [0u8; 16];
    for (byte, pair) in data.iter_mut().zip(digits.chunks(2)) {
        *byte = (pair[0] - b'0') << 4 | (pair[1] - b'0');
    }
    let (single, triple) = key.ciphers.as_ref();
    let mut block = GenericArray::clone_from_slice(&data[..8]);
    single.encrypt_block(&mut block);
    for (byte, other) in block.iter_mut().zip(&data[8..]) {
        *byte ^= other;
    }
    triple.encrypt_block(&mut block);

    let nibbles = block.iter().flat_map(|byte| [byte >> 4, byte & 0x0f]);
    let decimal = nibbles.clone().filter(|nibble| *nibble < 10);
    let letters = nibbles.filter(|nibble| *nibble >= 10).map(|nibble| nibble - 10);
    let mut cvv = [0u8; 3];
    for (slot, digit) in cvv.iter_mut().zip(decimal.chain(letters)) {
        *slot = b'0' + digit;
    }
    digits.fill(0);
    data.fill(0);
    block.iter_mut().for_each(|byte| *byte = 0);
    Ok(cvv)
}

fn decode_hex(text: &[u8]) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    let value = |digit: u8| char::from(digit).to_digit(16).map(|value| value as u8);
    text.chunks(2).map(|pair| Some(value(pair[0])? << 4 | value(pair[1])?)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn published_key() -> Cvk {
        Cvk::from_hex("0123456789ABCDEFFEDCBA9876543210").expect("valid key")
    }

    #[test]
    fn published_vector() {
        // The classic example of the Visa CVV algorithm (also psec's documentation example).
        assert_eq!(compute_cvv(&published_key(), "4123456789012345", "8701", "101"), Ok("561".to_owned()));
    }

    #[test]
    fn verification_accepts_only_the_computed_value() {
        let key = published_key();
        let number = CardNumber::parse("4111111111111111").expect("valid");
        let expiry = Expiry::parse_yymm("3012").expect("valid");
        let cvv = key.cvv2(&number, expiry);
        assert!(key.verify_cvv2(&number, expiry, cvv.expose()));
        let wrong = format!("{:03}", (cvv.expose().parse::<u16>().expect("digits") + 1) % 1000);
        assert!(!key.verify_cvv2(&number, expiry, &wrong));
        assert!(!key.verify_cvv2(&number, expiry, ""));
        assert!(!key.verify_cvv2(&number, expiry, &format!("{}0", cvv.expose())));
    }

    #[test]
    fn keys_are_validated_and_never_printed() {
        assert_eq!(Cvk::from_hex("0123"), Err(CvvError::InvalidKey));
        assert_eq!(Cvk::from_hex("0123456789ABCDEFFEDCBA987654321G"), Err(CvvError::InvalidKey));
        assert!(!format!("{:?}", published_key()).contains("01"));
        assert_eq!(published_key().to_hex().expose(), "0123456789ABCDEFFEDCBA9876543210");
    }

    #[test]
    fn weak_keys_are_named() {
        assert_eq!(published_key().weakness(), None);
        assert!(Cvk::from_bytes([0; 16]).weakness().is_some_and(|why| why.contains("every byte")));
        assert!(Cvk::from_hex(&"01".repeat(16)).expect("valid").weakness().is_some());
        let single_des = Cvk::from_hex("0123456789ABCDEF0123456789ABCDEF").expect("valid");
        assert!(single_des.weakness().is_some_and(|why| why.contains("single DES")));
        // Equal but for the parity bits: still single DES.
        let parity_only = Cvk::from_hex("0123456789ABCDEF0022446688AACCEE").expect("valid");
        assert!(parity_only.weakness().is_some_and(|why| why.contains("single DES")));
    }

    #[test]
    fn input_that_is_not_digits_is_refused() {
        assert_eq!(compute_cvv(&published_key(), "41234567890A2345", "8701", "101"), Err(CvvError::InvalidInput));
        assert_eq!(compute_cvv(&published_key(), &"4".repeat(26), "8701", "101"), Err(CvvError::InvalidInput));
    }
}
