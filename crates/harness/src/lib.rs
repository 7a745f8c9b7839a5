//! What drives ghostcard from outside, kept out of the crates that run in production:
//!
//! - [`scratch`]: fresh, empty databases for tests (a temporary SQLite file, a new PostgreSQL database).
//! - [`bench`]: card provisioning and the ISO 8583 load generator of `ghostcard bench` and `cargo bench`.
//! - [`fuzzing`]: what the fuzz targets of `fuzz/` check (the test suite replays their corpora through it).
//! - [`example_decider`]: an example decision endpoint (`ghostcard example-decider`), which the bench also uses.

pub mod bench;
pub mod example_decider;
pub mod fuzzing;
pub mod scratch;
