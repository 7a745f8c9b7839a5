//! The rules of ghostcard, with no I/O: money, card numbers, CVV, the card lifecycle, the authorization decision,
//! fraud rules, purchase power, payment plans and the ledger model.
//!
//! Everything here is a deterministic function of its inputs. Time arrives as an argument (`now`), randomness as
//! an `Rng`; nothing reads a clock, a file, a socket or a database. The store, the server and the command line
//! build on these types and must not re-implement these rules.

pub mod auth_rules;
pub mod authorization;
pub mod card;
pub mod card_number;
pub mod controls;
pub mod country;
pub mod cvv;
pub mod decision;
pub mod engine;
pub mod fraud;
pub mod ids;
pub mod issuance;
pub mod ledger;
pub mod money;
pub mod plan;
pub mod purchase_power;
pub mod secret;
