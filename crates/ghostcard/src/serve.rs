//! `ghostcard serve`: start the server and run it until Ctrl-C or SIGTERM.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result};
use ghostcard_server::App;
use ghostcard_server::config::Mode;
use ghostcard_store::api_keys;

use crate::ConfigArguments;
use ghostcard_server::credentials::create_api_key;

#[derive(Debug, clap::Args)]
pub struct Arguments {
    #[command(flatten)]
    config: ConfigArguments,
    /// Where the REST API listens (default 127.0.0.1:8080).
    #[arg(long, value_name = "HOST:PORT")]
    http_addr: Option<SocketAddr>,
    /// Where the ISO 8583 network listener listens (default 127.0.0.1:8583).
    #[arg(long, value_name = "HOST:PORT")]
    iso8583_addr: Option<SocketAddr>,
    /// sandbox (test money, the default) or live.
    #[arg(long, value_parser = ["sandbox", "live"])]
    mode: Option<String>,
}

/// The runtime of connections, HTTP requests and jobs: one worker thread fewer than the machine has cores, at least
/// one, unless `TOKIO_WORKER_THREADS` says otherwise. Network authorizations are decided on threads of their own (the
/// authorizer and, on SQLite, the write connection's, which take turns), and that one path sets the throughput. With
/// a worker on every core, answering one batch's requests took both cores from under the next batch: one worker fewer
/// was faster on both databases (docs/performance-log, session 8).
fn server_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if std::env::var_os("TOKIO_WORKER_THREADS").is_none() {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        builder.worker_threads(cores.saturating_sub(1).max(1));
    }
    builder.enable_all().build()
}

pub fn run(arguments: Arguments) -> Result<()> {
    let mut config = arguments.config.load()?;
    if let Some(address) = arguments.http_addr {
        config.http_addr = address;
    }
    if let Some(address) = arguments.iso8583_addr {
        config.iso8583_addr = address;
    }
    if let Some(mode) = &arguments.mode {
        config.mode = if mode == "live" { Mode::Live } else { Mode::Sandbox };
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_new(&config.log).context("GHOSTCARD_LOG is not a valid filter")?,
        )
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
        .init();
    let runtime = server_runtime()?;
    runtime.block_on(async move {
        let address = config.http_addr;
        let network_address = config.iso8583_addr;
        let database = config.database_url.clone();
        let app = App::start(config).await?;
        let listener = tokio::net::TcpListener::bind(address)
            .await
            .with_context(|| format!("cannot listen on {address}; is another server running there? choose another with --http-addr"))?;
        let network = tokio::net::TcpListener::bind(network_address).await.with_context(|| {
            format!("cannot listen on {network_address}; is another server running there? choose another with --iso8583-addr")
        })?;
        let address = listener.local_addr()?;
        println!(
            "ghostcard {} listening on http://{address} and ISO 8583 on {} ({} mode, {})",
            env!("CARGO_PKG_VERSION"),
            network.local_addr()?,
            app.config.mode.as_str(),
            without_password(&database).0
        );
        if app.sandbox() {
            first_run_key(&app, address).await?;
        }
        ghostcard_server::jobs::spawn_timer(app.clone(), Duration::from_secs(app.config.job_interval_seconds.max(1)));
        app.store.checkpoint_in_background();
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let stopped_network = stopped.clone();
        let network_task = tokio::spawn(ghostcard_server::network::run(app.clone(), network, wait_for(stopped_network)));
        tokio::spawn(async move {
            shutdown_signal().await;
            let _ = stop.send(true);
        });
        ghostcard_server::serve(app.clone(), listener, wait_for(stopped)).await?;
        network_task.await??;
        // Failed authentications still being counted go to the audit log now.
        ghostcard_server::clients::write_failed_authentications(&app, true).await?;
        println!("ghostcard stopped");
        Ok(())
    })
}

/// On the first sandbox start there is no API key yet: make one, so the server can be tried at once.
async fn first_run_key(app: &App, address: SocketAddr) -> Result<()> {
    let mut tx = app.store.read().await?;
    if !api_keys::list(&mut tx).await?.is_empty() {
        println!("Create an API key with: ghostcard api-key create --name NAME");
        return Ok(());
    }
    drop(tx);
    let (_, key) = create_api_key(&app.store, "sandbox", "serve (first run)", app.clock.now()).await?;
    println!("First run: created the API key \"sandbox\". It is shown once; keep it:\n\n  {key}\n");
    println!("Try it:");
    println!(
        "  curl -s http://{address}/v1/cardholders -H 'Authorization: Bearer {key}' -H 'Content-Type: application/json' \\\n       -d '{{\"email\": \"ada@example.com\", \"name\": \"Ada\", \"country\": \"US\"}}'"
    );
    println!(
        "  then link a funding card (POST /v1/cardholders/ID/funding-sources) and create a card (POST /v1/cards);"
    );
    println!("  README.md walks through it. The whole API: http://{address}/openapi.json");
    println!("The web app: http://{address}/app  ·  the operator console: http://{address}/ops");
    println!("  (create an operator first: ghostcard operator create --email EMAIL --name NAME --role admin)\n");
    Ok(())
}

/// A database URL without its password, and the password (percent-decoded, as libpq reads it), if it had one.
pub fn without_password(url: &str) -> (String, Option<String>) {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let (user, password) = match url[scheme + 3..at].split_once(':') {
                Some((user, password)) => (user, Some(percent_decoded(password))),
                None => (&url[scheme + 3..at], None),
            };
            (format!("{}{user}@{}", &url[..scheme + 3], &url[at + 1..]), password)
        }
        _ => (url.to_owned(), None),
    }
}

fn percent_decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let escaped = (bytes[index] == b'%')
            .then(|| text.get(index + 1..index + 3))
            .flatten()
            .and_then(|hex| u8::from_str_radix(hex, 16).ok());
        match escaped {
            Some(byte) => {
                out.push(byte);
                index += 3;
            }
            None => {
                out.push(bytes[index]);
                index += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn wait_for(mut stopped: tokio::sync::watch::Receiver<bool>) {
    let _ = stopped.wait_for(|stopped| *stopped).await;
}

async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => {},
        () = terminate => {},
    }
    println!("shutting down: finishing requests in flight");
}

#[cfg(test)]
mod tests {
    #[test]
    fn database_passwords_are_not_printed() {
        assert_eq!(
            super::without_password("postgres://ghost:s%40cret@db:5432/g"),
            ("postgres://ghost@db:5432/g".to_owned(), Some("s@cret".to_owned()))
        );
        assert_eq!(super::without_password("postgres://ghost@db/g"), ("postgres://ghost@db/g".to_owned(), None));
        assert_eq!(super::without_password("sqlite://ghostcard.db"), ("sqlite://ghostcard.db".to_owned(), None));
    }
}
