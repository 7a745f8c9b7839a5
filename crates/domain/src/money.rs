//! Money: an integer number of minor units (cents, yen, fils) and its ISO 4217 currency.
//!
//! There is no floating point anywhere in this module. Arithmetic is checked: an overflow or a mix of currencies
//! is an error the caller must handle, never a wrapped or silently converted amount.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// An ISO 4217 currency: its alphabetic code, numeric code (used by ISO 8583 field 49) and minor-unit exponent.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Currency {
    code: &'static str,
    numeric: u16,
    exponent: u8,
}

/// Active ISO 4217 currencies with their minor units (0, 2 or 3 decimals).
#[rustfmt::skip]
const CURRENCIES: &[(&str, u16, u8)] = &[
    ("AED", 784, 2), ("AFN", 971, 2), ("ALL", 8, 2), ("AMD", 51, 2), ("AOA", 973, 2), ("ARS", 32, 2),
    ("AUD", 36, 2), ("AWG", 533, 2), ("AZN", 944, 2), ("BAM", 977, 2), ("BBD", 52, 2), ("BDT", 50, 2),
    ("BGN", 975, 2), ("BHD", 48, 3), ("BIF", 108, 0), ("BMD", 60, 2), ("BND", 96, 2), ("BOB", 68, 2),
    ("BRL", 986, 2), ("BSD", 44, 2), ("BTN", 64, 2), ("BWP", 72, 2), ("BYN", 933, 2), ("BZD", 84, 2),
    ("CAD", 124, 2), ("CDF", 976, 2), ("CHF", 756, 2), ("CLP", 152, 0), ("CNY", 156, 2), ("COP", 170, 2),
    ("CRC", 188, 2), ("CUP", 192, 2), ("CVE", 132, 2), ("CZK", 203, 2), ("DJF", 262, 0), ("DKK", 208, 2),
    ("DOP", 214, 2), ("DZD", 12, 2), ("EGP", 818, 2), ("ERN", 232, 2), ("ETB", 230, 2), ("EUR", 978, 2),
    ("FJD", 242, 2), ("FKP", 238, 2), ("GBP", 826, 2), ("GEL", 981, 2), ("GHS", 936, 2), ("GIP", 292, 2),
    ("GMD", 270, 2), ("GNF", 324, 0), ("GTQ", 320, 2), ("GYD", 328, 2), ("HKD", 344, 2), ("HNL", 340, 2),
    ("HTG", 332, 2), ("HUF", 348, 2), ("IDR", 360, 2), ("ILS", 376, 2), ("INR", 356, 2), ("IQD", 368, 3),
    ("IRR", 364, 2), ("ISK", 352, 0), ("JMD", 388, 2), ("JOD", 400, 3), ("JPY", 392, 0), ("KES", 404, 2),
    ("KGS", 417, 2), ("KHR", 116, 2), ("KMF", 174, 0), ("KRW", 410, 0), ("KWD", 414, 3), ("KYD", 136, 2),
    ("KZT", 398, 2), ("LAK", 418, 2), ("LBP", 422, 2), ("LKR", 144, 2), ("LRD", 430, 2), ("LSL", 426, 2),
    ("LYD", 434, 3), ("MAD", 504, 2), ("MDL", 498, 2), ("MGA", 969, 2), ("MKD", 807, 2), ("MMK", 104, 2),
    ("MNT", 496, 2), ("MOP", 446, 2), ("MRU", 929, 2), ("MUR", 480, 2), ("MVR", 462, 2), ("MWK", 454, 2),
    ("MXN", 484, 2), ("MYR", 458, 2), ("MZN", 943, 2), ("NAD", 516, 2), ("NGN", 566, 2), ("NIO", 558, 2),
    ("NOK", 578, 2), ("NPR", 524, 2), ("NZD", 554, 2), ("OMR", 512, 3), ("PAB", 590, 2), ("PEN", 604, 2),
    ("PGK", 598, 2), ("PHP", 608, 2), ("PKR", 586, 2), ("PLN", 985, 2), ("PYG", 600, 0), ("QAR", 634, 2),
    ("RON", 946, 2), ("RSD", 941, 2), ("RUB", 643, 2), ("RWF", 646, 0), ("SAR", 682, 2), ("SBD", 90, 2),
    ("SCR", 690, 2), ("SDG", 938, 2), ("SEK", 752, 2), ("SGD", 702, 2), ("SHP", 654, 2), ("SLE", 925, 2),
    ("SOS", 706, 2), ("SRD", 968, 2), ("SSP", 728, 2), ("STN", 930, 2), ("SYP", 760, 2), ("SZL", 748, 2),
    ("THB", 764, 2), ("TJS", 972, 2), ("TMT", 934, 2), ("TND", 788, 3), ("TOP", 776, 2), ("TRY", 949, 2),
    ("TTD", 780, 2), ("TWD", 901, 2), ("TZS", 834, 2), ("UAH", 980, 2), ("UGX", 800, 0), ("USD", 840, 2),
    ("UYU", 858, 2), ("UZS", 860, 2), ("VES", 928, 2), ("VND", 704, 0), ("VUV", 548, 0), ("WST", 882, 2),
    ("XAF", 950, 0), ("XCD", 951, 2), ("XOF", 952, 0), ("XPF", 953, 0), ("YER", 886, 2), ("ZAR", 710, 2),
    ("ZMW", 967, 2), ("ZWG", 924, 2),
];

impl Currency {
    pub const USD: Currency = Currency { code: "USD", numeric: 840, exponent: 2 };

    /// Looks up an alphabetic code such as `"USD"` (upper case, as ISO 4217 writes it).
    pub fn from_code(code: &str) -> Result<Currency, MoneyError> {
        // The table is sorted by code (tested): a card's currency is looked up for every authorization, and USD is
        // near the end.
        CURRENCIES
            .binary_search_by(|(candidate, _, _)| (*candidate).cmp(code))
            .map(|index| CURRENCIES[index])
            .map(|(code, numeric, exponent)| Currency { code, numeric, exponent })
            .map_err(|_| MoneyError::UnknownCurrency)
    }

    /// Looks up a numeric code such as `840` (ISO 8583 field 49).
    pub fn from_numeric(numeric: u16) -> Result<Currency, MoneyError> {
        CURRENCIES
            .iter()
            .find(|(_, candidate, _)| *candidate == numeric)
            .map(|&(code, numeric, exponent)| Currency { code, numeric, exponent })
            .ok_or(MoneyError::UnknownCurrency)
    }

    pub fn code(self) -> &'static str {
        self.code
    }

    pub fn numeric(self) -> u16 {
        self.numeric
    }

    /// Number of decimal places of the minor unit: 2 for USD, 0 for JPY, 3 for KWD.
    pub fn exponent(self) -> u8 {
        self.exponent
    }

    /// How many minor units make one major unit (100 for USD).
    pub fn minor_per_major(self) -> i64 {
        10_i64.pow(u32::from(self.exponent))
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.code)
    }
}

impl fmt::Debug for Currency {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.code)
    }
}

impl FromStr for Currency {
    type Err = MoneyError;
    fn from_str(code: &str) -> Result<Self, Self::Err> {
        Currency::from_code(code)
    }
}

impl Serialize for Currency {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.code)
    }
}

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let code = String::deserialize(deserializer)?;
        Currency::from_code(&code).map_err(serde::de::Error::custom)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("unknown currency: use an ISO 4217 code such as USD")]
    UnknownCurrency,
    #[error("amounts in different currencies cannot be combined")]
    CurrencyMismatch,
    #[error("amount is out of range")]
    Overflow,
    #[error("amount is not a number: write digits with an optional decimal point, such as 100.01")]
    Malformed,
    #[error("amount has more decimal places than its currency allows")]
    TooManyDecimals,
}

/// An amount of money: a signed integer count of minor units in one currency.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
pub struct Money {
    minor: i64,
    currency: Currency,
}

impl Money {
    pub const fn new(minor: i64, currency: Currency) -> Money {
        Money { minor, currency }
    }

    pub const fn zero(currency: Currency) -> Money {
        Money { minor: 0, currency }
    }

    /// A whole number of major units (`Money::major(10, USD)` is 10.00 USD).
    pub fn major(major: i64, currency: Currency) -> Result<Money, MoneyError> {
        major.checked_mul(currency.minor_per_major()).map(|minor| Money { minor, currency }).ok_or(MoneyError::Overflow)
    }

    pub fn minor(self) -> i64 {
        self.minor
    }

    pub fn currency(self) -> Currency {
        self.currency
    }

    pub fn is_zero(self) -> bool {
        self.minor == 0
    }

    pub fn is_positive(self) -> bool {
        self.minor > 0
    }

    pub fn is_negative(self) -> bool {
        self.minor < 0
    }

    pub fn checked_add(self, other: Money) -> Result<Money, MoneyError> {
        self.same_currency(other)?;
        self.with_minor(self.minor.checked_add(other.minor))
    }

    pub fn checked_sub(self, other: Money) -> Result<Money, MoneyError> {
        self.same_currency(other)?;
        self.with_minor(self.minor.checked_sub(other.minor))
    }

    pub fn checked_neg(self) -> Result<Money, MoneyError> {
        self.with_minor(self.minor.checked_neg())
    }

    pub fn checked_mul(self, factor: i64) -> Result<Money, MoneyError> {
        self.with_minor(self.minor.checked_mul(factor))
    }

    pub fn min(self, other: Money) -> Result<Money, MoneyError> {
        self.same_currency(other)?;
        Ok(if other.minor < self.minor { other } else { self })
    }

    pub fn max(self, other: Money) -> Result<Money, MoneyError> {
        self.same_currency(other)?;
        Ok(if other.minor > self.minor { other } else { self })
    }

    /// Parses a decimal amount in major units, such as `"100.01"` or `"-5"`, for `currency`. More decimal places
    /// than the currency has is an error, not a rounding.
    pub fn parse(text: &str, currency: Currency) -> Result<Money, MoneyError> {
        let (negative, unsigned) = match text.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let (whole, fraction) = match unsigned.split_once('.') {
            Some((whole, fraction)) if !fraction.is_empty() => (whole, fraction),
            Some(_) => return Err(MoneyError::Malformed),
            None => (unsigned, ""),
        };
        let all_digits = |part: &str| part.bytes().all(|byte| byte.is_ascii_digit());
        if whole.is_empty() || !all_digits(whole) || !all_digits(fraction) {
            return Err(MoneyError::Malformed);
        }
        if fraction.len() > usize::from(currency.exponent) {
            return Err(MoneyError::TooManyDecimals);
        }
        let mut minor: i64 = 0;
        let padding = usize::from(currency.exponent) - fraction.len();
        for byte in whole.bytes().chain(fraction.bytes()).chain(std::iter::repeat_n(b'0', padding)) {
            minor = minor
                .checked_mul(10)
                .and_then(|value| value.checked_add(i64::from(byte - b'0')))
                .ok_or(MoneyError::Overflow)?;
        }
        Ok(Money { minor: if negative { -minor } else { minor }, currency })
    }

    /// The amount in major units with the currency's decimals, without the code: `"100.01"`, `"1000"` (JPY).
    pub fn format_amount(self) -> String {
        let exponent = usize::from(self.currency.exponent);
        let sign = if self.minor < 0 { "-" } else { "" };
        let digits = self.minor.unsigned_abs().to_string();
        if exponent == 0 {
            return format!("{sign}{digits}");
        }
        let padded = format!("{digits:0>width$}", width = exponent + 1);
        let (whole, fraction) = padded.split_at(padded.len() - exponent);
        format!("{sign}{whole}.{fraction}")
    }

    fn same_currency(self, other: Money) -> Result<(), MoneyError> {
        if self.currency == other.currency { Ok(()) } else { Err(MoneyError::CurrencyMismatch) }
    }

    fn with_minor(self, minor: Option<i64>) -> Result<Money, MoneyError> {
        minor.map(|minor| Money { minor, currency: self.currency }).ok_or(MoneyError::Overflow)
    }
}

impl fmt::Display for Money {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(formatter, "{} {}", self.format_amount(), self.currency.code)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn every_currency_of_the_table_is_found_by_its_code_and_its_number() {
        // `from_code` searches the table by halves: it must be sorted by code.
        assert!(CURRENCIES.windows(2).all(|pair| pair[0].0 < pair[1].0), "sorted by code, no repeats");
        for &(code, numeric, exponent) in CURRENCIES {
            let currency = Currency { code, numeric, exponent };
            assert_eq!(Currency::from_code(code), Ok(currency));
            assert_eq!(Currency::from_numeric(numeric), Ok(currency));
        }
        assert_eq!(Currency::from_code("usd"), Err(MoneyError::UnknownCurrency));
        assert_eq!(Currency::from_code("ZZZ"), Err(MoneyError::UnknownCurrency));
        assert_eq!(Currency::from_code(""), Err(MoneyError::UnknownCurrency));
    }

    fn currency(code: &str) -> Currency {
        Currency::from_code(code).expect("known currency")
    }

    #[test]
    fn exponents_follow_iso_4217() {
        assert_eq!(currency("USD").exponent(), 2);
        assert_eq!(currency("JPY").exponent(), 0);
        assert_eq!(currency("KWD").exponent(), 3);
        assert_eq!(Currency::from_numeric(392).expect("JPY").code(), "JPY");
        assert_eq!(Currency::from_numeric(48).expect("BHD").code(), "BHD");
        assert_eq!(Currency::from_code("XXZ"), Err(MoneyError::UnknownCurrency));
        assert_eq!(Currency::from_code("usd"), Err(MoneyError::UnknownCurrency));
    }

    #[test]
    fn every_table_row_is_unique() {
        for (index, (code, numeric, _)) in CURRENCIES.iter().enumerate() {
            for (other_code, other_numeric, _) in &CURRENCIES[index + 1..] {
                assert_ne!(code, other_code);
                assert_ne!(numeric, other_numeric, "{code} and {other_code}");
            }
        }
    }

    #[test]
    fn parses_and_formats_in_each_exponent() {
        let usd = Money::parse("100.01", currency("USD")).expect("valid");
        assert_eq!(usd.minor(), 10001);
        assert_eq!(usd.to_string(), "100.01 USD");
        assert_eq!(Money::parse("100.1", currency("USD")).expect("valid").minor(), 10010);
        assert_eq!(Money::parse("1000", currency("JPY")).expect("valid").to_string(), "1000 JPY");
        assert_eq!(Money::parse("1.234", currency("KWD")).expect("valid").minor(), 1234);
        assert_eq!(Money::new(5, currency("KWD")).format_amount(), "0.005");
        assert_eq!(Money::new(-7, currency("USD")).format_amount(), "-0.07");
    }

    #[test]
    fn parse_refuses_what_is_not_an_exact_amount() {
        let usd = currency("USD");
        assert_eq!(Money::parse("1.001", usd), Err(MoneyError::TooManyDecimals));
        assert_eq!(Money::parse("1.5", currency("JPY")), Err(MoneyError::TooManyDecimals));
        for text in ["", "-", ".5", "1.", "1,00", "1e3", " 1", "+1", "1.0.0", "abc"] {
            assert_eq!(Money::parse(text, usd), Err(MoneyError::Malformed), "{text:?}");
        }
        assert_eq!(Money::parse("99999999999999999999", usd), Err(MoneyError::Overflow));
    }

    #[test]
    fn arithmetic_is_checked() {
        let usd = currency("USD");
        let max = Money::new(i64::MAX, usd);
        assert_eq!(max.checked_add(Money::new(1, usd)), Err(MoneyError::Overflow));
        assert_eq!(Money::new(1, usd).checked_add(Money::new(1, currency("EUR"))), Err(MoneyError::CurrencyMismatch));
        assert_eq!(Money::new(i64::MIN, usd).checked_neg(), Err(MoneyError::Overflow));
        assert_eq!(Money::major(10, usd).expect("fits").minor(), 1000);
    }

    proptest! {
        #[test]
        fn format_then_parse_is_identity(minor in any::<i64>().prop_filter("negatable", |m| *m != i64::MIN),
                                         index in 0..CURRENCIES.len()) {
            let (code, _, _) = CURRENCIES[index];
            let money = Money::new(minor, currency(code));
            prop_assert_eq!(Money::parse(&money.format_amount(), money.currency()), Ok(money));
        }
    }
}
