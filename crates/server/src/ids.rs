//! Resource ids (the domain's).

pub use ghostcard_domain::ids::*;
