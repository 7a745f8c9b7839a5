//! The card network's side: the ISO 8583 listener (TCP, 2-byte length framing, pipelined requests answered in
//! any order) and the handling of each message of the profile.
//!
//! Bounds: message size, connection count (fitted to the descriptor limit, [`crate::limits`]), connections per peer
//! address, idle time (counting only real traffic) and requests in flight per connection are configuration. A frame
//! that cannot be parsed at all, or is over the size limit, closes its connection and nothing else; a failed accept
//! backs off instead of spinning.

mod messages;

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use ghostcard_iso8583::framing::{Frame, frame, next_frame};
use ghostcard_iso8583::{DecodeFailure, Message, decode, encode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};

pub use messages::handle;

use crate::App;
use crate::authorizer::Authorizer;
use crate::limits::{AcceptBackoff, LogLimiter};

/// What peers do wrong (idle, malformed, oversized) is logged at most once a second, with a count of what was held
/// back: a peer that floods the listener with garbage must not flood the log too.
static BAD_PEERS: LogLimiter = LogLimiter::new(Duration::from_secs(1));

/// Accepts network connections on `listener` until `shutdown` completes.
pub async fn run(app: Arc<App>, listener: TcpListener, shutdown: impl Future<Output = ()>) -> std::io::Result<()> {
    let connections = Arc::new(Semaphore::new(app.limits.iso8583));
    let peers = Arc::new(Peers::default());
    let authorizer = Authorizer::spawn(app.clone())?;
    let mut backoff = AcceptBackoff::new("iso8583");
    let refusals = LogLimiter::new(Duration::from_secs(10));
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => return Ok(()),
            accepted = listener.accept() => {
                let (socket, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        backoff.failed(&error).await;
                        continue;
                    }
                };
                backoff.succeeded();
                let Ok(permit) = connections.clone().try_acquire_owned() else {
                    app.metrics.count_refusal("iso8583_connection_limit");
                    if let Some(suppressed) = refusals.allow() {
                        tracing::warn!(%peer, limit = app.limits.iso8583, suppressed, "too many network connections; refusing one");
                    }
                    continue;
                };
                let Some(peer_slot) = peers.admit(peer.ip(), app.config.iso8583_max_connections_per_peer) else {
                    app.metrics.count_refusal("iso8583_connections_per_peer");
                    if let Some(suppressed) = refusals.allow() {
                        tracing::warn!(
                            %peer, limit = app.config.iso8583_max_connections_per_peer, suppressed,
                            "too many network connections from one address; refusing one"
                        );
                    }
                    continue;
                };
                let (app, authorizer) = (app.clone(), authorizer.clone());
                tokio::spawn(async move {
                    if let Err(error) = serve_connection(app, authorizer, socket).await {
                        tracing::debug!(%peer, %error, "network connection ended");
                    }
                    drop((permit, peer_slot));
                });
            }
        }
    }
}

/// Open connections by peer address, so that one peer cannot hold every slot.
#[derive(Debug, Default)]
struct Peers(Mutex<HashMap<IpAddr, usize>>);

/// A peer's connection, counted until dropped.
struct PeerSlot(Arc<Peers>, IpAddr);

impl Peers {
    fn admit(self: &Arc<Self>, peer: IpAddr, limit: usize) -> Option<PeerSlot> {
        let mut open = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let count = open.entry(peer).or_default();
        if *count >= limit {
            return None;
        }
        *count += 1;
        Some(PeerSlot(self.clone(), peer))
    }
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut open = self.0.0.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = open.get_mut(&self.1) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.1);
            }
        }
    }
}

async fn serve_connection(app: Arc<App>, authorizer: Authorizer, socket: TcpStream) -> std::io::Result<()> {
    let _ = socket.set_nodelay(true);
    let (mut reader, writer) = socket.into_split();
    let (responses, outgoing) = mpsc::channel::<Vec<u8>>(app.config.iso8583_max_in_flight_per_connection);
    let writer_task = spawn_writer(writer, outgoing);
    let idle = Duration::from_secs(app.config.iso8583_idle_timeout_seconds);
    let mut connection = Connection {
        in_flight: Arc::new(Semaphore::new(app.config.iso8583_max_in_flight_per_connection)),
        responses,
        traffic: Traffic::new(Duration::from_secs(app.config.iso8583_echo_interval_seconds)),
        max: app.config.iso8583_max_message_bytes,
        app: app.clone(),
        authorizer,
    };
    let mut buffer: Vec<u8> = Vec::with_capacity(8192);
    let mut chunk = vec![0u8; 8192];
    loop {
        let read = match tokio::time::timeout_at(connection.traffic.last + idle, reader.read(&mut chunk)).await {
            Ok(Ok(0)) => break,
            Ok(Ok(read)) => read,
            Ok(Err(error)) => return Err(error),
            Err(_) => {
                if let Some(suppressed) = BAD_PEERS.allow() {
                    tracing::info!(suppressed, "closing an idle network connection");
                }
                break;
            }
        };
        buffer.extend_from_slice(&chunk[..read]);
        // What the frames used is dropped once per read. Dropping each frame as it was taken moved the rest of the
        // read every time: quadratic in the frames of a read, up to 4,096 two-byte keep-alives in 8 KiB, each moving
        // up to 8 KiB.
        let Some(used) = connection.take_frames(&buffer).await else { break };
        buffer.drain(..used);
    }
    drop(connection);
    // Let the answers of requests already read go out before the connection closes.
    let _ = tokio::time::timeout(Duration::from_millis(app.config.authorization_deadline_ms + 1000), writer_task).await;
    Ok(())
}

/// A connection's reading side: what it needs to answer the frames it reads.
struct Connection {
    app: Arc<App>,
    authorizer: Authorizer,
    /// Bounds the requests answered at once: a client that never reads its responses stops being read from.
    in_flight: Arc<Semaphore>,
    responses: mpsc::Sender<Vec<u8>>,
    traffic: Traffic,
    max: usize,
}

impl Connection {
    /// Takes every whole frame at the start of `buffer`, each request handled on a task of its own. Returns the
    /// bytes used, or `None` when the connection must close (an oversized or undecodable frame it cannot answer).
    async fn take_frames(&mut self, buffer: &[u8]) -> Option<usize> {
        let mut start = 0;
        loop {
            match next_frame(&buffer[start..], self.max) {
                Frame::Incomplete => return Some(start),
                Frame::KeepAlive { consumed } => start += consumed,
                Frame::TooLarge { length } => {
                    if let Some(suppressed) = BAD_PEERS.allow() {
                        let max = self.max;
                        tracing::warn!(
                            length,
                            max,
                            suppressed,
                            "network message over the size limit; closing the connection"
                        );
                    }
                    return None;
                }
                Frame::Message { body, consumed } => {
                    start += consumed;
                    let request = match decode(body) {
                        Ok(message) => {
                            self.traffic.saw(&message);
                            message
                        }
                        Err(failure) if answer_undecodable(&failure, &self.responses).await => continue,
                        Err(_) => return None,
                    };
                    let permit = self.in_flight.clone().acquire_owned().await.ok()?;
                    let (app, authorizer, responses) =
                        (self.app.clone(), self.authorizer.clone(), self.responses.clone());
                    tokio::spawn(async move {
                        let response = handle(&app, &authorizer, request).await;
                        send(&responses, &response).await;
                        drop(permit);
                    });
                }
            }
        }
    }
}

/// The connection's writer: answers that are ready together go out in one write (a batch decides many requests at
/// once).
fn spawn_writer(
    mut writer: tokio::net::tcp::OwnedWriteHalf,
    mut outgoing: mpsc::Receiver<Vec<u8>>,
) -> tokio::task::JoinHandle<std::io::Result<()>> {
    tokio::spawn(async move {
        while let Some(mut bytes) = outgoing.recv().await {
            // The answer that woke this task ran just before it: tokio runs a task woken by another right after it
            // (its LIFO slot). Yielding lets the other answers already due run first, so that they join this write
            // instead of each taking a write of its own.
            tokio::task::yield_now().await;
            while bytes.len() < 64 * 1024 {
                match outgoing.try_recv() {
                    Ok(more) => bytes.extend_from_slice(&more),
                    Err(_) => break,
                }
            }
            writer.write_all(&bytes).await?;
        }
        writer.shutdown().await
    })
}

/// A message that did not decode: answered `30` when its MTI and STAN could be read (true: the connection goes on);
/// otherwise the connection is to be closed (false).
async fn answer_undecodable(failure: &DecodeFailure, responses: &mpsc::Sender<Vec<u8>>) -> bool {
    match messages::format_error(&failure.partial) {
        Some(response) => {
            if let Some(suppressed) = BAD_PEERS.allow() {
                tracing::info!(error = %failure.error, suppressed, "malformed network message answered 30");
            }
            send(responses, &response).await;
            true
        }
        None => {
            if let Some(suppressed) = BAD_PEERS.allow() {
                tracing::warn!(error = %failure.error, suppressed, "unreadable network message; closing the connection");
            }
            false
        }
    }
}

/// What keeps a connection open: requests do; keep-alive frames do not (a peer could hold a slot forever with them);
/// network management messages (echo tests) do at most once per `echo_interval`.
struct Traffic {
    /// When the connection last had traffic that counts.
    last: tokio::time::Instant,
    last_echo: Option<tokio::time::Instant>,
    echo_interval: Duration,
}

impl Traffic {
    fn new(echo_interval: Duration) -> Traffic {
        Traffic { last: tokio::time::Instant::now(), last_echo: None, echo_interval }
    }

    fn saw(&mut self, message: &Message) {
        let now = tokio::time::Instant::now();
        if message.mti().starts_with("08") {
            if self.last_echo.is_some_and(|last| now.duration_since(last) < self.echo_interval) {
                return;
            }
            self.last_echo = Some(now);
        }
        self.last = now;
    }
}

async fn send(responses: &mpsc::Sender<Vec<u8>>, response: &Message) {
    match encode(response).ok().and_then(|bytes| frame(&bytes)) {
        Some(bytes) => {
            let _ = responses.send(bytes).await;
        }
        None => tracing::error!(response = %response.masked(), "could not encode a network response"),
    }
}
