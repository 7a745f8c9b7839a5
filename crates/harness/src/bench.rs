//! The authorization benchmark behind `ghostcard bench` and `cargo bench`: provision cards straight into a fresh
//! database, drive the real ISO 8583 listener over TCP with pipelined 0100s on several connections (closed loop,
//! or open loop at a fixed rate), then verify the ledger. It reports throughput and latency percentiles; it never
//! asserts a time.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Datelike, Utc};
use ghostcard_domain::authorization::AuthorizationStatus;
use ghostcard_domain::card::CardStatus;
use ghostcard_domain::card_number::{CardNumber, Expiry};
use ghostcard_domain::decision::AuthorizationKind;
use ghostcard_domain::ledger::entries;
use ghostcard_domain::money::Money;
use ghostcard_domain::plan::PlanKind;
use ghostcard_iso8583::framing::{Frame, frame, next_frame};
use ghostcard_iso8583::{Message, decode, encode};
use ghostcard_store::authorizations::{self, AuthorizationRecord};
use ghostcard_store::cardholders::{self, Cardholder};
use ghostcard_store::cards::{self, CardRecord};
use ghostcard_store::funding_sources::{self, FundingSource};
use ghostcard_store::{StoreError, ledger};
use serde::Serialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;

use ghostcard_server::App;

/// Cards per cardholder in a provisioned deployment. Card `i` belongs to cardholder `i mod (cards / 10)`, and the
/// load uses the cards in order: consecutive requests come from different cardholders and a cardholder's next one
/// comes a tenth of the run later, as in a card network's stream (until session 5 a cardholder's ten cards came
/// one after another, which no cardholder does and which read a tenth of the cardholders a real batch reads).
const CARDS_PER_CARDHOLDER: usize = 10;
/// Cards written per provisioning transaction.
const CARDS_PER_TRANSACTION: usize = 10_000;
/// What each card is for, and what each authorization asks (minor units).
const CARD_AMOUNT: i64 = 10_000;
const AUTHORIZATION_AMOUNT: i64 = 1_000;

#[derive(Debug, Clone)]
pub struct BenchOptions {
    pub cards: usize,
    pub connections: usize,
    /// Requests in flight per connection (closed loop).
    pub pipeline: usize,
    pub duration: Duration,
    /// Load sent before `duration` and not counted: the server's caches and compiled statements warm up in it.
    pub warmup: Duration,
    /// Open loop: offered requests per second across all connections.
    pub rate: Option<u64>,
}

/// What a card needs to be authorized over the network.
#[derive(Debug, Clone)]
pub struct ProvisionedCard {
    number: String,
    yymm: String,
    cvv: String,
}

impl ProvisionedCard {
    pub fn number(&self) -> &str {
        &self.number
    }

    pub fn yymm(&self) -> &str {
        &self.yymm
    }

    pub fn cvv(&self) -> &str {
        &self.cvv
    }
}

#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("the database already has cards; the benchmark needs a fresh database")]
    NotFresh,
    #[error("database: {0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Setup(String),
    #[error("network: {0}")]
    Network(#[from] std::io::Error),
}

/// Writes `count` active cards (and their cardholders and funding sources, and each card's ledger transfer)
/// straight into the store, reporting progress as it goes.
pub async fn provision(app: &App, count: usize, progress: impl Fn(usize)) -> Result<Vec<ProvisionedCard>, BenchError> {
    let mut tx = app.store.read().await?;
    if cards::count(&mut tx).await? > 0 {
        return Err(BenchError::NotFresh);
    }
    drop(tx);
    let now = app.clock.now();
    let currency = app.currency;
    let expiry = Expiry::new(u16::try_from(now.year() + 3).unwrap_or(2030), now.month() as u8)
        .map_err(|error| BenchError::Setup(error.to_string()))?;
    let cvk = app.vault.cvk(app.vault.current_cvk_version()).map_err(|error| BenchError::Setup(error.to_string()))?;
    let mut provisioned = Vec::with_capacity(count);
    let mut rng = rand::rng();
    let holder_count = count.div_ceil(CARDS_PER_CARDHOLDER);
    for start in (0..count).step_by(CARDS_PER_TRANSACTION) {
        let end = (start + CARDS_PER_TRANSACTION).min(count);
        let mut holders = Vec::new();
        let mut sources = Vec::new();
        let mut records = Vec::with_capacity(end - start);
        let mut issues = Vec::with_capacity(end - start);
        for index in start..end {
            if index < holder_count {
                let (holder, source) = bench_cardholder(app, index, now);
                holders.push(holder);
                sources.push(source);
            }
            let owner = index % holder_count;
            let account_digits =
                format!("{index:0width$}", width = app.config.card_number_length - app.bin.as_str().len() - 1);
            let number = CardNumber::from_account_digits(&app.bin, &account_digits)
                .map_err(|error| BenchError::Setup(error.to_string()))?;
            let id = format!("card_bench{index:016}");
            records.push(bench_card(app, &id, owner, &number, expiry, now, &mut rng));
            issues.extend(entries::issue_card(&id, Money::new(CARD_AMOUNT, currency)));
            provisioned.push(ProvisionedCard {
                cvv: cvk.cvv2(&number, expiry).expose().clone(),
                number: number.expose().to_owned(),
                yymm: expiry.yymm(),
            });
        }
        let mut tx = app.store.begin().await?;
        cardholders::insert_many(&mut tx, &holders).await?;
        funding_sources::insert_many(&mut tx, &sources).await?;
        cards::insert_many(&mut tx, &records).await?;
        ledger::post_many(&mut tx, &issues, now).await.map_err(|error| BenchError::Setup(error.to_string()))?;
        ghostcard_store::commit(tx).await?;
        progress(end);
    }
    // Fresh statistics, so the planner treats the new tables as what they now are.
    app.store.analyze_bulk_loaded().await?;
    Ok(provisioned)
}

/// Stores `count` past decisions on the provisioned cards (`cards` of them), spread evenly over the day that ended
/// two days ago: outside every velocity window of the live run, inside a backtest's. Nine in ten are approvals that
/// have expired (they hold nothing, so the ledger is as before), one in ten a decline.
pub async fn store_history(app: &App, count: usize, cards: usize, progress: impl Fn(usize)) -> Result<(), BenchError> {
    const PER_TRANSACTION: usize = 20_000;
    let now = app.clock.now();
    let start = now - chrono::Duration::days(3);
    let step_ms = (86_400_000 / count.max(1)).max(1) as i64;
    let holder_count = cards.div_ceil(CARDS_PER_CARDHOLDER).max(1);
    let mut rng = rand::rng();
    for first in (0..count).step_by(PER_TRANSACTION) {
        let last = (first + PER_TRANSACTION).min(count);
        let records: Vec<AuthorizationRecord> = (first..last)
            .map(|index| {
                let at = start + chrono::Duration::milliseconds(index as i64 * step_ms);
                let card = index % cards.max(1);
                past_decision(ghostcard_domain::ids::new_id("auth", at, &mut rng), card, card % holder_count, index, at)
            })
            .collect();
        let mut tx = app.store.begin().await?;
        authorizations::insert_many(&mut tx, &records).await?;
        ghostcard_store::commit(tx).await?;
        progress(last);
    }
    app.store.analyze_bulk_loaded().await?;
    Ok(())
}

fn past_decision(id: String, card: usize, owner: usize, index: usize, at: DateTime<Utc>) -> AuthorizationRecord {
    let declined = index % 10 == 9;
    AuthorizationRecord {
        id,
        card_id: Some(format!("card_bench{card:016}")),
        cardholder_id: Some(format!("ch_bench{owner:018}")),
        kind: AuthorizationKind::Purchase,
        amount: 100 + (index % 50) as i64 * 100,
        currency: "USD".to_owned(),
        status: if declined { AuthorizationStatus::Declined } else { AuthorizationStatus::Expired },
        response_code: if declined { "51" } else { "00" }.to_owned(),
        decline_reason: declined.then(|| "exceeds_card_amount".to_owned()),
        rule: if declined { "exceeds_card_amount" } else { "all_checks_passed" }.to_owned(),
        cvv_result: Some("M".to_owned()),
        flag: None,
        acquirer_id: "123456".to_owned(),
        merchant_id: format!("SHOP{}", index % 1000),
        merchant_name: Some("Bench shop".to_owned()),
        merchant_city: None,
        merchant_country: Some("US".to_owned()),
        mcc: ["5732", "5411", "5812", "7995"][index % 4].to_owned(),
        stan: None,
        rrn: None,
        auth_code: (!declined).then(|| format!("{:06}", index % 1_000_000)),
        transmission_time: None,
        hold_transfer_id: None,
        held: 0,
        captured: 0,
        number_hash: None,
        stand_in: false,
        created_at: at,
        decision: Some(r#"{"rules":"bench","cvv":"match"}"#.to_owned()),
    }
}

/// The bench's cardholder `index` and her funding source.
fn bench_cardholder(app: &App, index: usize, now: DateTime<Utc>) -> (Cardholder, FundingSource) {
    let holder = format!("ch_bench{index:018}");
    let source = FundingSource {
        id: format!("fs_bench{index:018}"),
        cardholder_id: holder.clone(),
        brand: "visa".to_owned(),
        last4: "4242".to_owned(),
        exp_month: 12,
        exp_year: 2031,
        gateway_token: "sandbox_ok_4242_424242".to_owned(),
        status: "active".to_owned(),
        created_at: now,
    };
    let cardholder = Cardholder {
        id: holder,
        email: format!("bench{index}@example.com"),
        name: "Bench".to_owned(),
        country: app.country.as_str().to_owned(),
        password_hash: None,
        status: "active".to_owned(),
        restricted_reason: None,
        created_at: now,
    };
    (cardholder, source)
}

/// An active pay-now card `id` of the bench's cardholder `owner`, its number encrypted as the vault does.
fn bench_card(
    app: &App,
    id: &str,
    owner: usize,
    number: &CardNumber,
    expiry: Expiry,
    now: DateTime<Utc>,
    rng: &mut impl rand::Rng,
) -> CardRecord {
    let (data_key_version, number_ciphertext) = app.vault.encrypt_number(id, number, rng);
    CardRecord {
        id: id.to_owned(),
        cardholder_id: format!("ch_bench{owner:018}"),
        funding_source_id: format!("fs_bench{owner:018}"),
        number_hash: app.vault.number_hash(number),
        number_ciphertext,
        data_key_version,
        cvk_version: app.vault.current_cvk_version(),
        bin: app.bin.as_str().to_owned(),
        last4: number.last4().to_owned(),
        exp_month: i64::from(expiry.month()),
        exp_year: i64::from(expiry.year()),
        currency: app.currency,
        amount: CARD_AMOUNT,
        held: 0,
        captured: 0,
        status: CardStatus::Active,
        frozen_from: None,
        merchant_acquirer_id: None,
        merchant_id: None,
        merchant_name: None,
        plan_kind: PlanKind::PayNow,
        plan_id: None,
        funding_hold_id: None,
        valid_until: now + chrono::Duration::hours(app.config.card_validity_hours),
        created_at: now,
        version: 0,
        paused: false,
        spending_controls: Default::default(),
    }
}

/// What the load generator saw.
#[derive(Debug, Clone, Serialize)]
pub struct LoadReport {
    pub sent: u64,
    pub approved: u64,
    /// Answers other than `00`, by code.
    pub declined: HashMap<String, u64>,
    /// Requests without an answer, and connection failures.
    pub errors: u64,
    pub seconds: f64,
    pub approved_per_s: f64,
    pub latency_us_p50: u64,
    pub latency_us_p99: u64,
    pub latency_us_p999: u64,
    pub latency_us_max: u64,
    /// Every card was used before the end: the run stopped early, and its figures cover less than `duration`.
    pub ran_out_of_cards: bool,
}

/// Drives `address` with 0100s for `cards` (each used once) on `options.connections` connections: `warmup`, then
/// `duration` measured. Only requests sent (closed loop) or due (open loop) in the measured part are counted, except
/// errors, which count whenever they happen.
///
/// The connections run on a thread of their own with a single-threaded runtime. On the caller's runtime, the pacer's
/// hand-overs and the answers woke its worker threads in turn, and the load generator took more of the cores it
/// shares with the server (docs/performance-log, session 8).
pub async fn drive(
    address: SocketAddr,
    cards: Arc<Vec<ProvisionedCard>>,
    options: &BenchOptions,
) -> std::io::Result<LoadReport> {
    let options = options.clone();
    let (report, reported) = tokio::sync::oneshot::channel();
    std::thread::Builder::new().name("load".to_owned()).spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build();
        let _ = report.send(runtime.map(|runtime| runtime.block_on(drive_here(address, cards, &options))));
    })?;
    reported.await.map_err(|_| std::io::Error::other("the load generator's thread stopped"))?
}

async fn drive_here(address: SocketAddr, cards: Arc<Vec<ProvisionedCard>>, options: &BenchOptions) -> LoadReport {
    let next = Arc::new(AtomicUsize::new(0));
    let measured = Instant::now() + options.warmup;
    let deadline = measured + options.duration;
    // Open loop: each connection is handed its requests' due times by the pacer.
    let mut schedules: Vec<Option<mpsc::UnboundedReceiver<Vec<Instant>>>> =
        (0..options.connections).map(|_| None).collect();
    if let Some(rate) = options.rate {
        let (senders, receivers): (Vec<_>, Vec<_>) = schedules.iter().map(|_| mpsc::unbounded_channel()).unzip();
        schedules = receivers.into_iter().map(Some).collect();
        if pace(senders, rate, deadline).is_err() {
            // Without a pacer no request is due: every connection ends at once, and the run reports nothing sent.
            schedules = schedules.iter().map(|_| None).collect();
        }
    }
    let mut workers = Vec::new();
    for (connection, schedule) in schedules.into_iter().enumerate() {
        let (cards, next, options) = (cards.clone(), next.clone(), options.clone());
        workers.push(tokio::spawn(async move {
            connection_load(address, connection, cards, next, &options, schedule, measured..deadline).await
        }));
    }
    let mut latencies = Vec::new();
    let mut report = LoadReport {
        sent: 0,
        approved: 0,
        declined: HashMap::new(),
        errors: 0,
        seconds: 0.0,
        approved_per_s: 0.0,
        latency_us_p50: 0,
        latency_us_p99: 0,
        latency_us_p999: 0,
        latency_us_max: 0,
        ran_out_of_cards: false,
    };
    for worker in workers {
        match worker.await {
            Ok(outcome) => {
                report.sent += outcome.sent;
                report.approved += outcome.approved;
                report.errors += outcome.errors;
                report.ran_out_of_cards |= outcome.ran_out_of_cards;
                for (code, count) in outcome.declined {
                    *report.declined.entry(code).or_default() += count;
                }
                latencies.extend(outcome.latencies_us);
            }
            Err(_) => report.errors += 1,
        }
    }
    report.seconds = measured.elapsed().as_secs_f64();
    report.approved_per_s = report.approved as f64 / report.seconds.max(f64::MIN_POSITIVE);
    latencies.sort_unstable();
    let percentile = |fraction: f64| -> u64 {
        if latencies.is_empty() {
            return 0;
        }
        let index = ((latencies.len() as f64 * fraction).ceil() as usize).clamp(1, latencies.len()) - 1;
        u64::from(latencies[index])
    };
    report.latency_us_p50 = percentile(0.50);
    report.latency_us_p99 = percentile(0.99);
    report.latency_us_p999 = percentile(0.999);
    report.latency_us_max = latencies.last().copied().map_or(0, u64::from);
    report
}

#[derive(Default)]
struct ConnectionOutcome {
    sent: u64,
    approved: u64,
    declined: HashMap<String, u64>,
    errors: u64,
    latencies_us: Vec<u32>,
    ran_out_of_cards: bool,
}

/// How often, at most, the open loop's pacer hands out what has come due.
const PACER_TICK: Duration = Duration::from_micros(250);

/// Open loop: the due time of each request, one every `1 / rate` seconds until `until`. A thread of its own wakes
/// when the next is due, but at most every [`PACER_TICK`], and hands what has come due to the next connection in
/// turn, which sends it in one write: at 10,000/s, two or three requests every 250 µs. Tokio's timers round up to
/// whole milliseconds: when each connection kept its own schedule on them, every connection's request came due at
/// the same instant and was sent up to a millisecond late (bursts of 32 every 3.2 ms at 10,000/s); a wake for every
/// request nearly doubled the load generator's share of the machine's cores (docs/performance-log, session 7).
fn pace(connections: Vec<mpsc::UnboundedSender<Vec<Instant>>>, rate: u64, until: Instant) -> std::io::Result<()> {
    let start = Instant::now();
    let rate = u128::from(rate.max(1));
    let due = move |request: u128| {
        start + Duration::from_nanos(u64::try_from(request * 1_000_000_000 / rate).unwrap_or(u64::MAX))
    };
    std::thread::Builder::new().name("bench-pacer".to_owned()).spawn(move || {
        let (mut next, mut turn) = (0u128, 0usize);
        while due(next) < until {
            let now = Instant::now();
            let mut dealt = Vec::new();
            while due(next) <= now && due(next) < until {
                dealt.push(due(next));
                next += 1;
            }
            if !dealt.is_empty() {
                // A connection that ended has stopped counting; its share of the load is not sent.
                let _ = connections[turn % connections.len()].send(dealt);
                turn += 1;
            }
            std::thread::sleep(due(next).max(now + PACER_TICK).saturating_duration_since(Instant::now()));
        }
    })?;
    Ok(())
}

/// One connection's load: keeps `pipeline` requests in flight (closed loop) or sends each request of `schedule` when
/// it is due (open loop), until the end of `measured`; then waits for the answers still due. Counts what was sent
/// (closed loop) or due (open loop) within `measured`.
async fn connection_load(
    address: SocketAddr,
    connection: usize,
    cards: Arc<Vec<ProvisionedCard>>,
    next: Arc<AtomicUsize>,
    options: &BenchOptions,
    schedule: Option<mpsc::UnboundedReceiver<Vec<Instant>>>,
    measured: std::ops::Range<Instant>,
) -> ConnectionOutcome {
    let mut load = Load {
        cards,
        next,
        pipeline: options.pipeline,
        open_loop: options.rate.is_some(),
        schedule,
        due_now: VecDeque::new(),
        acquirer: format!("{}", 100_000 + connection),
        sequence: 0,
        in_flight: HashMap::new(),
        measured,
        outcome: ConnectionOutcome::default(),
    };
    let Ok(stream) = TcpStream::connect(address).await else {
        load.outcome.errors += 1;
        return load.outcome;
    };
    let _ = stream.set_nodelay(true);
    let (mut reader, mut writer) = stream.into_split();
    let mut buffer = Vec::with_capacity(16 * 1024);
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        let sending = load.sending();
        let batch = if sending { load.requests() } else { Vec::new() };
        if !batch.is_empty() && writer.write_all(&batch).await.is_err() {
            return load.failed();
        }
        // The schedule may have ended, or the cards run out, while sending.
        let sending = sending && !load.outcome.ran_out_of_cards && (!load.open_loop || load.schedule.is_some());
        if !sending && load.in_flight.is_empty() {
            break;
        }
        let wait = if sending { Duration::from_secs(5) } else { Duration::from_secs(10) };
        let read = match &mut load.schedule {
            // Open loop: wake for whichever comes first, the next due time or an answer.
            Some(pacer) if sending => tokio::select! {
                due = pacer.recv() => {
                    match due {
                        Some(dealt) => load.due_now.extend(dealt),
                        None => load.schedule = None,
                    }
                    continue;
                }
                read = tokio::time::timeout(wait, reader.read(&mut chunk)) => read,
            },
            _ => tokio::time::timeout(wait, reader.read(&mut chunk)).await,
        };
        match read {
            Ok(Ok(0)) | Ok(Err(_)) => return load.failed(),
            Ok(Ok(read)) => buffer.extend_from_slice(&chunk[..read]),
            // Answers that never came.
            Err(_) if !sending => return load.failed(),
            Err(_) => {}
        }
        load.take_answers(&mut buffer);
    }
    load.outcome
}

/// One connection's state while it drives the listener.
struct Load {
    cards: Arc<Vec<ProvisionedCard>>,
    /// The next card to use, shared by the connections.
    next: Arc<AtomicUsize>,
    pipeline: usize,
    open_loop: bool,
    /// Open loop: the pacer's due times, until it ends.
    schedule: Option<mpsc::UnboundedReceiver<Vec<Instant>>>,
    /// Due times the pacer handed over while this connection waited for answers.
    due_now: VecDeque<Instant>,
    acquirer: String,
    sequence: u64,
    /// STAN → when it was due to be sent (open loop) or sent (closed loop).
    in_flight: HashMap<String, Instant>,
    measured: std::ops::Range<Instant>,
    outcome: ConnectionOutcome,
}

impl Load {
    /// Sending stops at the deadline (open loop: when the pacer has handed over every due time), or when the cards
    /// run out (then the answers due are still awaited).
    fn sending(&self) -> bool {
        let more = if self.open_loop {
            self.schedule.is_some() || !self.due_now.is_empty()
        } else {
            Instant::now() < self.measured.end
        };
        more && !self.outcome.ran_out_of_cards
    }

    /// The framed requests to send now: enough to fill the window (closed loop) or what is due (open loop), at most
    /// about 64 KiB.
    fn requests(&mut self) -> Vec<u8> {
        let mut batch = Vec::new();
        loop {
            let due = match (self.due_now.pop_front(), &mut self.schedule) {
                (Some(due), _) => due,
                (None, Some(pacer)) => match pacer.try_recv() {
                    Ok(dealt) => {
                        self.due_now.extend(dealt);
                        continue;
                    }
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => {
                        self.schedule = None;
                        break;
                    }
                },
                (None, None) if self.open_loop => break,
                (None, None) if self.in_flight.len() >= self.pipeline => break,
                (None, None) => Instant::now(),
            };
            let index = self.next.fetch_add(1, Ordering::Relaxed);
            let Some(card) = self.cards.get(index) else {
                self.outcome.ran_out_of_cards = true;
                break;
            };
            self.sequence += 1;
            let stan = format!("{:06}", self.sequence % 1_000_000);
            let transmission = format!("{:010}", 1_126_000_000 + self.sequence / 1_000_000);
            let message = request(card, &self.acquirer, &stan, &transmission);
            if let Some(bytes) = encode(&message).ok().and_then(|bytes| frame(&bytes)) {
                batch.extend_from_slice(&bytes);
                self.in_flight.insert(stan, due);
                self.outcome.sent += u64::from(due >= self.measured.start);
            }
            if batch.len() > 64 * 1024 {
                break;
            }
        }
        batch
    }

    /// Counts the whole answers at the start of `buffer` (latency only within the measured run), and drops them.
    fn take_answers(&mut self, buffer: &mut Vec<u8>) {
        let outcome = &mut self.outcome;
        while let Frame::Message { body, consumed } = next_frame(buffer, 65_535) {
            if let Ok(answer) = decode(body) {
                if let Some(sent_at) = answer.get(11).and_then(|stan| self.in_flight.remove(stan)) {
                    match answer.get(39) {
                        None => outcome.errors += 1,
                        Some(_) if sent_at < self.measured.start => {}
                        Some(code) => {
                            let micros = sent_at.elapsed().as_micros().min(u128::from(u32::MAX)) as u32;
                            outcome.latencies_us.push(micros);
                            match code {
                                "00" => outcome.approved += 1,
                                code => *outcome.declined.entry(code.to_owned()).or_default() += 1,
                            }
                        }
                    }
                }
            } else {
                outcome.errors += 1;
            }
            buffer.drain(..consumed);
        }
    }

    /// The connection failed: every request in flight is an error.
    fn failed(mut self) -> ConnectionOutcome {
        self.outcome.errors += self.in_flight.len() as u64;
        self.outcome
    }
}

fn request(card: &ProvisionedCard, acquirer: &str, stan: &str, transmission: &str) -> Message {
    let mut message = Message::new("0100");
    message
        .set(2, card.number.clone())
        .set(3, "000000")
        .set(4, format!("{AUTHORIZATION_AMOUNT:012}"))
        .set(7, transmission)
        .set(11, stan)
        .set(14, card.yymm.clone())
        .set(18, "5732")
        .set(32, acquirer)
        .set(37, format!("{acquirer:0>6}{stan}"))
        .set(41, "BENCH001")
        .set(42, "BENCH-MERCHANT ")
        .set(43, format!("{:<25}{:<13}US", "BENCH STORE", "LOCALHOST"))
        .set(48, format!("9203{}", card.cvv))
        .set(49, "840");
    message
}

/// A timestamp for reports.
pub fn now_text() -> String {
    Utc::now().format("%Y-%m-%d %H:%M UTC").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_pacer_spaces_requests_evenly_and_deals_them_to_the_connections_in_turn() {
        let (senders, mut receivers): (Vec<_>, Vec<_>) = (0..4).map(|_| mpsc::unbounded_channel()).unzip();
        let until = Instant::now() + Duration::from_millis(50);
        pace(senders, 1_000, until).expect("the pacer starts");
        // (connection, what it was dealt at once)
        let mut dealt: Vec<(usize, Vec<Instant>)> = Vec::new();
        for (connection, receiver) in receivers.iter_mut().enumerate() {
            while let Some(group) = receiver.recv().await {
                dealt.push((connection, group));
            }
        }
        dealt.sort_by_key(|(_, group)| group[0]);
        // One request a millisecond for 50 ms, each once, in order; each hand-out to the next connection in turn.
        let start = dealt[0].1[0];
        let times: Vec<Duration> = dealt.iter().flat_map(|(_, group)| group.iter().map(|due| *due - start)).collect();
        assert_eq!(times, (0..50).map(|k| Duration::from_millis(1) * k).collect::<Vec<_>>());
        for (turn, (connection, _)) in dealt.iter().enumerate() {
            assert_eq!(*connection, turn % 4, "hand-out {turn} went to connection {}", turn % 4);
        }
        assert!(dealt.iter().flat_map(|(_, group)| group).all(|due| *due < until), "nothing is due after the end");
    }
}
