//! Resource ids: a prefix (`card_`, `ch_`, …), 10 characters of creation time and 16 random characters, all
//! lower-case Crockford base 32. Ids sort by creation time, which makes `starting_after` pagination a simple
//! `id <` comparison.

use chrono::{DateTime, Utc};
use rand::{Rng, RngExt};

const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";

pub fn new_id(prefix: &str, now: DateTime<Utc>, rng: &mut impl Rng) -> String {
    let mut id = String::with_capacity(prefix.len() + 27);
    id.push_str(prefix);
    id.push('_');
    let millis = u64::try_from(now.timestamp_millis()).unwrap_or(0);
    for shift in (0..10).rev() {
        id.push(char::from(ALPHABET[((millis >> (shift * 5)) & 31) as usize]));
    }
    for _ in 0..16 {
        id.push(char::from(ALPHABET[rng.random_range(0..32)]));
    }
    id
}

/// The smallest id with `prefix` made at `at`: every id made at `at` or later sorts above it, every id made before
/// below (a time window as a range of ids).
pub fn floor(prefix: &str, at: DateTime<Utc>) -> String {
    let mut id = String::with_capacity(prefix.len() + 11);
    id.push_str(prefix);
    id.push('_');
    let millis = u64::try_from(at.timestamp_millis()).unwrap_or(0);
    for shift in (0..10).rev() {
        id.push(char::from(ALPHABET[((millis >> (shift * 5)) & 31) as usize]));
    }
    id
}

/// True when `id` looks like an id with `prefix` (so a wrong kind of id is a clear 404, not a database error).
pub fn has_prefix(id: &str, prefix: &str) -> bool {
    id.strip_prefix(prefix)
        .and_then(|rest| rest.strip_prefix('_'))
        .is_some_and(|rest| rest.len() == 26 && rest.bytes().all(|byte| ALPHABET.contains(&byte)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    #[test]
    fn ids_sort_by_creation_time() {
        let mut rng = StdRng::seed_from_u64(1);
        let start = DateTime::from_timestamp(1_800_000_000, 0).expect("valid");
        let first = new_id("card", start, &mut rng);
        let second = new_id("card", start + Duration::milliseconds(1), &mut rng);
        assert!(first < second);
        assert!(floor("card", start) < first && first < floor("card", start + Duration::milliseconds(1)));
        assert!(has_prefix(&first, "card"));
        assert!(!has_prefix(&first, "ch"));
        assert!(!has_prefix("card_x", "card"));
    }
}
