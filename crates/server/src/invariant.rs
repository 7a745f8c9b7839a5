//! Broken invariants on the authorization path stop the process, in TigerBeetle's style: an authorizer that carried
//! on would answer the network with a plausible decision computed from a state it can no longer trust. Nothing of
//! the batch was committed (its transaction is open until the engine's effects are written), so nothing is lost;
//! while the process is down the network stands in, or another node answers, and the log says why.
//!
//! Elsewhere (the API, the web app, the jobs) a broken invariant rolls its transaction back and fails the request or
//! the job with an error that is logged: nothing half-done is written, and the rest of the service keeps running.

use std::fmt::Display;

/// Logs `what` and aborts the process.
pub fn broken(what: impl Display) -> ! {
    tracing::error!(%what, "broken invariant on the authorization path; stopping");
    // The log may be buffered or sent elsewhere: say it where an operator looks first, too.
    eprintln!("ghostcard: broken invariant on the authorization path, stopping: {what}");
    std::process::abort()
}
