//! The HTTP server loop: accepts connections for [`crate::router`] within explicit bounds, so that no
//! client, or crowd of clients, can take the server away from the others.
//!
//! - At most `limits.http` connections are open (under the process's descriptor limit, [`crate::limits`]). At the
//!   limit a new connection takes the place of the oldest one with no request running — first those that never sent
//!   one — so that idle connections cannot lock everyone else out; only when every connection is busy is the new one
//!   closed.
//! - A connection must send a complete request head within `http_header_timeout_seconds` of opening or of its last
//!   answer, or it is closed (slow or silent clients); bodies have their own timeout ([`crate::router`]).
//! - A failed accept (descriptors or memory ran out) backs off instead of spinning, and is logged at most every 10 s.
//! - On shutdown, requests in flight finish and idle connections close.

use std::collections::BTreeMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, watch};
use tower_service::Service;

use crate::App;
use crate::limits::AcceptBackoff;

/// How long a new connection waits for the slot of the connection it displaced.
const DISPLACEMENT_WAIT: Duration = Duration::from_secs(1);
/// How long shutdown waits for requests in flight.
const SHUTDOWN_WAIT: Duration = Duration::from_secs(30);

/// Serves the HTTP API on `listener` until `shutdown` completes; requests in flight finish first.
pub async fn serve(
    app: Arc<App>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let router = crate::router::router(app.clone());
    let connections = Arc::new(Connections::new(app.limits.http));
    let header_timeout = Duration::from_secs(app.config.http_header_timeout_seconds.max(1));
    let (closing, _) = watch::channel(false);
    let mut backoff = AcceptBackoff::new("http");
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    backoff.failed(&error).await;
                    continue;
                }
            },
        };
        backoff.succeeded();
        let Some(slot) = connections.admit().await else {
            app.metrics.count_refusal("http_connection_limit");
            continue;
        };
        let (router, closing) = (router.clone(), closing.subscribe());
        tokio::spawn(serve_connection(stream, peer, router, slot, header_timeout, closing));
    }
    let _ = closing.send(true);
    connections.wait_until_closed(SHUTDOWN_WAIT).await;
    Ok(())
}

async fn serve_connection(
    stream: TcpStream,
    peer: SocketAddr,
    router: axum::Router,
    slot: Slot,
    header_timeout: Duration,
    mut closing: watch::Receiver<bool>,
) {
    let _ = stream.set_nodelay(true);
    let state = slot.state.clone();
    let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
        request.extensions_mut().insert(ConnectInfo(peer));
        let running = RunningRequest::start(&state);
        let mut router = router.clone();
        async move {
            let response = router.call(request.map(Body::new)).await;
            drop(running);
            response
        }
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(header_timeout);
    let connection = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(error) = result {
                tracing::debug!(%peer, %error, "HTTP connection ended");
            }
        }
        () = slot.state.displaced.notified() => {
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
        () = async { drop(closing.wait_for(|closing| *closing).await) } => {
            connection.as_mut().graceful_shutdown();
            let _ = connection.await;
        }
    }
    drop(slot);
}

/// One open connection, as the admission of others sees it.
#[derive(Debug, Default)]
struct ConnectionState {
    /// Requests begun on it so far.
    requests: AtomicU64,
    /// Requests running now (until their answer's head is ready).
    running: AtomicUsize,
    /// Told to close, to make room for a new connection.
    displaced: Notify,
}

/// Counts a request as running while it lives.
struct RunningRequest(Arc<ConnectionState>);

impl RunningRequest {
    fn start(state: &Arc<ConnectionState>) -> RunningRequest {
        state.requests.fetch_add(1, Ordering::Relaxed);
        state.running.fetch_add(1, Ordering::AcqRel);
        RunningRequest(state.clone())
    }
}

impl Drop for RunningRequest {
    fn drop(&mut self) {
        self.0.running.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The open connections: a bounded number of slots, and who holds them in order of arrival.
#[derive(Debug)]
struct Connections {
    slots: Arc<Semaphore>,
    capacity: usize,
    /// By arrival (an increasing number): the oldest come first.
    open: Mutex<BTreeMap<u64, Arc<ConnectionState>>>,
    next: AtomicU64,
}

/// A connection's place among the open ones; given back when dropped.
struct Slot {
    connections: Arc<Connections>,
    number: u64,
    state: Arc<ConnectionState>,
    _permit: OwnedSemaphorePermit,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.connections.open.lock().unwrap_or_else(PoisonError::into_inner).remove(&self.number);
    }
}

impl Connections {
    fn new(capacity: usize) -> Connections {
        Connections {
            slots: Arc::new(Semaphore::new(capacity)),
            capacity,
            open: Mutex::new(BTreeMap::new()),
            next: AtomicU64::new(0),
        }
    }

    /// A slot for a new connection: a free one, or the one of the oldest connection with no request running (first
    /// those that never sent one). `None` when every connection is busy.
    async fn admit(self: &Arc<Self>) -> Option<Slot> {
        if let Ok(permit) = self.slots.clone().try_acquire_owned() {
            return Some(self.register(permit));
        }
        if !self.displace_one() {
            return None;
        }
        match tokio::time::timeout(DISPLACEMENT_WAIT, self.slots.clone().acquire_owned()).await {
            Ok(Ok(permit)) => Some(self.register(permit)),
            _ => None,
        }
    }

    fn register(self: &Arc<Self>, permit: OwnedSemaphorePermit) -> Slot {
        let number = self.next.fetch_add(1, Ordering::Relaxed);
        let state = Arc::new(ConnectionState::default());
        self.open.lock().unwrap_or_else(PoisonError::into_inner).insert(number, state.clone());
        Slot { connections: self.clone(), number, state, _permit: permit }
    }

    /// Tells the oldest idle connection to close; false when there is none.
    fn displace_one(&self) -> bool {
        let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        let idle = |state: &ConnectionState| state.running.load(Ordering::Acquire) == 0;
        let never_asked = open.iter().find(|(_, state)| idle(state) && state.requests.load(Ordering::Relaxed) == 0);
        let chosen = never_asked.or_else(|| open.iter().find(|(_, state)| idle(state))).map(|(number, _)| *number);
        let Some(number) = chosen else { return false };
        if let Some(state) = open.remove(&number) {
            state.displaced.notify_one();
        }
        true
    }

    async fn wait_until_closed(&self, limit: Duration) {
        let all = u32::try_from(self.capacity).unwrap_or(u32::MAX);
        let _ = tokio::time::timeout(limit, self.slots.acquire_many(all)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_house_makes_room_by_closing_the_oldest_idle_connection() {
        let connections = Arc::new(Connections::new(3));
        let first = connections.admit().await.expect("free slot");
        let second = connections.admit().await.expect("free slot");
        let third = connections.admit().await.expect("free slot");
        // The first and the third are busy; the second has served a request and is idle.
        let _running_first = RunningRequest::start(&first.state);
        drop(RunningRequest::start(&second.state));
        let _running_third = RunningRequest::start(&third.state);
        let displaced = second.state.clone();
        let waiting = tokio::spawn({
            let connections = connections.clone();
            async move { connections.admit().await }
        });
        tokio::time::timeout(Duration::from_secs(1), displaced.displaced.notified()).await.expect("told to close");
        drop(second);
        let newcomer = waiting.await.expect("ran").expect("the new connection got the slot");
        // Now every connection is busy: a new one is refused at once.
        let _running_newcomer = RunningRequest::start(&newcomer.state);
        assert!(connections.admit().await.is_none());
        drop((first, third));
    }

    #[tokio::test]
    async fn connections_that_never_sent_a_request_go_first() {
        let connections = Arc::new(Connections::new(2));
        let served = connections.admit().await.expect("slot");
        drop(RunningRequest::start(&served.state));
        let silent = connections.admit().await.expect("slot");
        assert!(connections.displace_one());
        tokio::time::timeout(Duration::from_secs(1), silent.state.displaced.notified()).await.expect("silent first");
        drop((served, silent));
    }
}
