//! A wrapper for values that must never reach a log, an error message or a panic: full card numbers, CVVs, keys.
//!
//! `Debug` and `Display` print a fixed placeholder; the value is only reachable through [`Secret::expose`], which
//! makes every place that handles the real value easy to find. The inner value is overwritten when dropped where
//! the type allows it (strings and byte vectors).

use std::fmt;

/// A value that prints as `[REDACTED]`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret<T: Wipe>(T);

impl<T: Wipe> Secret<T> {
    pub fn new(value: T) -> Self {
        Secret(value)
    }

    /// The real value. Callers must not log or format it.
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T: Wipe> fmt::Debug for Secret<T> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("Secret([REDACTED])")
    }
}

impl<T: Wipe> fmt::Display for Secret<T> {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("[REDACTED]")
    }
}

impl<T: Wipe> Drop for Secret<T> {
    fn drop(&mut self) {
        self.0.wipe();
    }
}

/// Overwrites a value in place before its memory is released. A best effort without `unsafe`: it keeps secrets
/// out of freed heap blocks in the common case, not a guarantee against a compiler that elides the writes.
pub trait Wipe {
    fn wipe(&mut self);
}

impl Wipe for String {
    fn wipe(&mut self) {
        // Replacing with zero bytes keeps the string valid UTF-8 while its old content is overwritten.
        let zeroes = "\0".repeat(self.len());
        self.replace_range(.., &zeroes);
        self.clear();
    }
}

impl Wipe for Vec<u8> {
    fn wipe(&mut self) {
        self.iter_mut().for_each(|byte| *byte = 0);
        self.clear();
    }
}

impl<const N: usize> Wipe for [u8; N] {
    fn wipe(&mut self) {
        *self = [0; N];
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_never_show_the_value() {
        let secret = Secret::new(String::from("4111111111111111"));
        assert_eq!(format!("{secret:?}"), "Secret([REDACTED])");
        assert_eq!(format!("{secret}"), "[REDACTED]");
        assert_eq!(secret.expose(), "4111111111111111");
    }
}
