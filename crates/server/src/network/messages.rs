//! One ISO 8583 request in, one response out: authorizations (0100/0101, 0120/0121, 0200/0201), reversals
//! (0400/0401, 0420/0421) and network management (0800). Duplicates are answered from what was stored; the
//! deadline is enforced here.

use std::time::Duration;

use ghostcard_domain::card::MerchantBinding;
use ghostcard_domain::card_number::{CardNumber, Expiry};
use ghostcard_domain::country::Country;
use ghostcard_domain::decision::{AuthorizationRequest, Mcc, MessageClass, TransactionType};
use ghostcard_domain::engine::NetworkKey;
use ghostcard_iso8583::Message;
use ghostcard_iso8583::subfields::{self, OriginalData, TAG_CVV2, TAG_CVV2_RESULT};
use ghostcard_store::authorizations::{self, AuthorizationRecord};
use ghostcard_store::reversals::{self, ReversalRecord};
use ghostcard_store::{StoreError, Tx};

use crate::App;
use crate::authorize::{CvvInput, Descriptors, Job, Outcome as BatchOutcome, Settlement, decide_alone};
use crate::authorizer::Authorizer;
use crate::decision_endpoint::{DEADLINE_MARGIN, decide_asking};
use crate::ids::new_id;
use crate::service::lifecycle::{self, LifecycleError};

/// Fields a response echoes when the request has them.
const ECHOED: [u8; 12] = [2, 3, 4, 7, 11, 32, 37, 41, 42, 49, 70, 90];
const AUTHORIZATION_REQUIRED: [u8; 10] = [2, 3, 4, 7, 11, 18, 32, 37, 42, 49];
const REVERSAL_REQUIRED: [u8; 8] = [2, 3, 4, 7, 11, 32, 37, 49];

/// The response MTI of a request MTI: the function digit up by one, the repeat flag cleared (0101 → 0110).
fn response_mti(mti: &str) -> Option<String> {
    let bytes = mti.as_bytes();
    if bytes.len() != 4 || !bytes.iter().all(u8::is_ascii_digit) || !(bytes[2] - b'0').is_multiple_of(2) {
        return None;
    }
    Some(format!("{}{}0", &mti[..2], char::from(bytes[2] + 1)))
}

fn respond(request: &Message, code: &str) -> Message {
    let mut response = Message::new(&response_mti(request.mti()).unwrap_or_else(|| request.mti().to_owned()));
    for number in ECHOED {
        if let Some(value) = request.get(number) {
            response.set(number, value);
        }
    }
    response.set(39, code);
    response
}

/// The `30` answer for a message whose MTI and STAN could be read but nothing more; `None` if not even those.
pub(super) fn format_error(partial: &Message) -> Option<Message> {
    response_mti(partial.mti())?;
    partial.get(11)?;
    Some(respond(partial, "30"))
}

/// Answers one request.
pub async fn handle(app: &App, authorizer: &Authorizer, request: Message) -> Message {
    tracing::debug!(request = %request.masked(), "network request");
    let response = match request.mti() {
        "0800" => management(&request),
        "0100" | "0101" | "0120" | "0121" | "0200" | "0201" => authorization(app, authorizer, &request).await,
        // Boxed: reversals are rarer than authorizations, and their future is large.
        "0400" | "0401" | "0420" | "0421" => Box::pin(reversal(app, &request)).await,
        _ => respond(&request, "30"),
    };
    tracing::debug!(response = %response.masked(), "network response");
    response
}

fn management(request: &Message) -> Message {
    let valid = [7, 11, 70].iter().all(|number| request.has(*number)) && request.check_formats().is_ok();
    match (valid, request.get(70)) {
        (true, Some("001" | "002" | "301")) => respond(request, "00"),
        (true, _) => respond(request, "12"),
        (false, _) => respond(request, "30"),
    }
}

/// What an authorization request says, parsed; `Err` is the response code for a malformed request.
struct Parsed {
    number: Option<CardNumber>,
    number_hash: Vec<u8>,
    request: AuthorizationRequest,
    cvv: CvvInput,
    cvv_sent: bool,
    descriptors: Descriptors,
    settlement: Settlement,
}

fn parse_authorization(app: &App, message: &Message) -> Result<Parsed, &'static str> {
    if !AUTHORIZATION_REQUIRED.iter().all(|number| message.has(*number)) || message.check_formats().is_err() {
        return Err("30");
    }
    let field = |number| message.get(number).unwrap_or_default();
    let digits = field(2);
    let (number, number_hash) = match CardNumber::parse(digits) {
        Ok(number) => {
            let hash = app.vault.number_hash(&number);
            (Some(number), hash)
        }
        // Not a card number at all: it cannot be ours (14), and it is recorded by its keyed hash only.
        Err(_) => (None, app.vault.keyed_hash(digits.as_bytes())),
    };
    let amount_minor: i64 = field(4).parse().map_err(|_| "13")?;
    let currency_numeric: u16 = field(49).parse().map_err(|_| "30")?;
    let expiry = message.get(14).map(Expiry::parse_yymm).transpose().map_err(|_| "30")?;
    let mcc = Mcc::parse(field(18)).ok_or("30")?;
    let location = message.get(43).unwrap_or_default();
    let country = match location.get(38..40).map(str::trim).filter(|code| !code.is_empty()) {
        Some(code) => Some(Country::parse(code).map_err(|_| "30")?),
        None => match message.get(19) {
            Some(numeric) => Some(Country::from_numeric(numeric.parse().map_err(|_| "30")?).map_err(|_| "30")?),
            None => None,
        },
    };
    let cvv = match message.get(48) {
        Some(additional) => {
            let tags = subfields::parse_tags(additional).map_err(|_| "30")?;
            match tags.iter().find(|(tag, _)| *tag == TAG_CVV2) {
                Some((_, value)) => CvvInput::Received((*value).to_owned()),
                None => CvvInput::Absent,
            }
        }
        None => CvvInput::Absent,
    };
    let class = match &message.mti()[..3] {
        "010" => MessageClass::Authorization,
        "012" => MessageClass::Advice,
        _ => MessageClass::Financial,
    };
    let trimmed = |text: Option<&str>| text.map(str::trim).filter(|text| !text.is_empty()).map(str::to_owned);
    Ok(Parsed {
        number,
        number_hash,
        cvv_sent: matches!(cvv, CvvInput::Received(_)),
        cvv,
        request: AuthorizationRequest {
            class,
            transaction_type: TransactionType::from_processing_code(field(3)),
            amount_minor,
            currency_numeric,
            expiry,
            mcc,
            merchant: MerchantBinding {
                acquirer_id: field(32).to_owned(),
                merchant_id: field(42).trim_end().to_owned(),
            },
            country,
        },
        descriptors: Descriptors {
            merchant_name: trimmed(location.get(..25)),
            merchant_city: trimmed(location.get(25..38)),
            stan: Some(field(11).to_owned()),
            rrn: Some(field(37).to_owned()),
            transmission_time: Some(field(7).to_owned()),
        },
        settlement: if class == MessageClass::Financial { Settlement::Immediate } else { Settlement::HoldOnly },
    })
}

/// The response to an authorization from what was decided (or stored, for a duplicate).
fn authorization_response(request: &Message, record: &AuthorizationRecord, cvv_sent: bool, advice: bool) -> Message {
    // An advice is acknowledged: the network already approved it.
    let mut response = respond(request, if advice { "00" } else { &record.response_code });
    if let Some(code) = record.auth_code.as_deref().filter(|_| !record.stand_in) {
        response.set(38, code);
    }
    if cvv_sent && let Some(result) = &record.cvv_result {
        response.set(48, subfields::build_tags(&[(TAG_CVV2_RESULT, result)]).unwrap_or_default());
    }
    response
}

/// An authorization, advice or financial request. 0100s and 0120s are decided in a batch with others (group
/// commit); a 0200 is decided and settled in its own transaction. Either way the network hears the answer within
/// the deadline, and a repeat gets the stored answer of its original (or `94` when it conflicts).
async fn authorization(app: &App, authorizer: &Authorizer, message: &Message) -> Message {
    let parsed = match parse_authorization(app, message) {
        Ok(parsed) => parsed,
        Err(code) => return respond(message, code),
    };
    let advice = parsed.request.class == MessageClass::Advice;
    let (cvv_sent, number_hash, amount_minor) =
        (parsed.cvv_sent, parsed.number_hash.clone(), parsed.request.amount_minor);
    let settlement = parsed.settlement;
    let mut job = Job::new(parsed.number, parsed.number_hash, parsed.request, parsed.cvv, parsed.descriptors);
    let deadline = Duration::from_millis(app.config.authorization_deadline_ms);
    job.deadline = Some(std::time::Instant::now() + deadline.saturating_sub(DEADLINE_MARGIN));
    let work = async {
        match settlement {
            Settlement::HoldOnly => decide_asking(app, job, |job| authorizer.submit(job)).await,
            // Boxed: a rare path with a large future; every request's task would otherwise carry its size.
            Settlement::Immediate => {
                let decide = |job| async {
                    Box::pin(decide_alone(app, job, Settlement::Immediate)).await.map_err(|error| error.to_string())
                };
                Box::pin(decide_asking(app, job, decide)).await
            }
        }
    };
    // The decision runs to the end whatever happens; the deadline only decides what the network hears.
    tokio::pin!(work);
    let outcome = tokio::select! {
        outcome = &mut work => Some(outcome),
        () = tokio::time::sleep(Duration::from_millis(app.config.authorization_deadline_ms)) => None,
    };
    match outcome {
        Some(Ok(BatchOutcome::Decided(record))) => authorization_response(message, &record, cvv_sent, advice),
        Some(Ok(BatchOutcome::Duplicate(original))) => {
            if original.number_hash.as_deref() == Some(number_hash.as_slice()) && original.amount == amount_minor {
                authorization_response(message, &original, cvv_sent, advice)
            } else {
                respond(message, "94")
            }
        }
        Some(Err(error)) => {
            tracing::error!(%error, "authorization failed");
            respond(message, "96")
        }
        Some(Ok(BatchOutcome::Ask(_))) => {
            tracing::error!("the decision endpoint was asked twice for one authorization");
            respond(message, "96")
        }
        None => {
            tracing::warn!("authorization missed its deadline; answering stand-in");
            let code = app.config.stand_in_response_code.clone();
            let stand_in = respond(message, &code);
            // Take back anything the late decision held: the network heard "no".
            match work.await {
                Ok(BatchOutcome::Decided(record)) => {
                    if let Err(error) = Box::pin(void_stand_in(app, &record.id, &code)).await {
                        tracing::error!(%error, authorization = %record.id, "could not void a hold committed after its deadline");
                    }
                }
                Ok(BatchOutcome::Duplicate(_) | BatchOutcome::Ask(_)) => {}
                Err(error) => tracing::error!(%error, "authorization after its deadline failed"),
            }
            stand_in
        }
    }
}

/// Records that an authorization was answered with the stand-in code and voids what it held.
async fn void_stand_in(app: &App, authorization_id: &str, code: &str) -> Result<(), LifecycleError> {
    let now = app.clock.now();
    let mut tx = app.store.begin().await?;
    lifecycle::reverse(&mut tx, authorization_id, None, now).await?;
    if let Some(mut record) = authorizations::get(&mut tx, authorization_id).await? {
        record.response_code = code.to_owned();
        record.stand_in = true;
        let mut state = record.state();
        state.void_stand_in();
        record.set_state(&state);
        authorizations::update_progress(&mut tx, &record).await?;
    }
    ghostcard_store::commit(tx).await?;
    Ok(())
}

async fn reversal(app: &App, message: &Message) -> Message {
    if !REVERSAL_REQUIRED.iter().all(|number| message.has(*number)) || message.check_formats().is_err() {
        return respond(message, "30");
    }
    match reverse(app, message).await {
        Ok(code) => respond(message, &code),
        Err(error) => {
            tracing::error!(%error, "reversal failed");
            respond(message, "96")
        }
    }
}

/// Matches and applies a reversal; returns the response code.
async fn reverse(app: &App, message: &Message) -> Result<String, LifecycleError> {
    let field = |number| message.get(number).unwrap_or_default();
    let advice = message.mti().starts_with("042");
    let number_hash = match CardNumber::parse(field(2)) {
        Ok(number) => app.vault.number_hash(&number),
        Err(_) => app.vault.keyed_hash(field(2).as_bytes()),
    };
    let now = app.clock.now();
    let key = NetworkKey {
        acquirer_id: field(32).to_owned(),
        stan: field(11).to_owned(),
        transmission_time: field(7).to_owned(),
    };
    let mut tx = app.store.begin().await?;
    if let Some(earlier) = reversals::find_by_network_key(&mut tx, &key).await? {
        return Ok(earlier.response_code);
    }
    let original = message.get(90).and_then(OriginalData::parse);
    let authorization = find_original(&mut tx, original.as_ref(), field(37), &number_hash).await?;
    let replacement = message.get(95).and_then(subfields::replacement_amount);
    let code = match &authorization {
        Some(authorization) => {
            // Field 95 carries the amount that stands after the reversal; without it, everything is released.
            let release = match replacement {
                Some(remaining) => {
                    (authorization.held + authorization.captured - remaining).clamp(0, authorization.held)
                }
                None => authorization.held,
            };
            match lifecycle::reverse(&mut tx, &authorization.id, Some(release), now).await {
                Ok(_) | Err(LifecycleError::Declined(_)) => "00",
                Err(error) => return Err(error),
            }
        }
        None if advice => "00",
        None => "25",
    };
    let record = ReversalRecord {
        id: new_id("rev", now, &mut rand::rng()),
        mti: message.mti().to_owned(),
        acquirer_id: key.acquirer_id.clone(),
        stan: key.stan.clone(),
        transmission_time: key.transmission_time.clone(),
        original_acquirer_id: original.as_ref().map(|original| original.acquirer_id().to_owned()),
        original_stan: original.as_ref().map(|original| original.stan.clone()),
        original_transmission_time: original.as_ref().map(|original| original.transmission.clone()),
        rrn: Some(field(37).to_owned()),
        number_hash,
        amount: field(4).parse().unwrap_or(0),
        replacement_amount: replacement,
        authorization_id: authorization.map(|authorization| authorization.id),
        response_code: code.to_owned(),
        created_at: now,
    };
    match reversals::insert(&mut tx, &record).await {
        Ok(()) => {
            ghostcard_store::commit(tx).await?;
            Ok(code.to_owned())
        }
        Err(StoreError::Conflict) => {
            // A repeat of this reversal committed first: answer what it got.
            drop(tx);
            let mut tx = app.store.read().await?;
            let earlier = reversals::find_by_network_key(&mut tx, &key).await?;
            Ok(earlier.map_or_else(|| "96".to_owned(), |earlier| earlier.response_code))
        }
        Err(error) => Err(error.into()),
    }
}

/// The original of a reversal: by field 90 (with the same card number), else by RRN and card number.
async fn find_original(
    tx: &mut Tx,
    original: Option<&OriginalData>,
    rrn: &str,
    number_hash: &[u8],
) -> Result<Option<AuthorizationRecord>, StoreError> {
    if let Some(original) = original {
        let key = NetworkKey {
            acquirer_id: original.acquirer_id().to_owned(),
            stan: original.stan.clone(),
            transmission_time: original.transmission.clone(),
        };
        let found = authorizations::find_by_network_key(tx, &key).await?;
        if let Some(found) = found.filter(|found| found.number_hash.as_deref() == Some(number_hash)) {
            return Ok(Some(found));
        }
    }
    authorizations::find_by_rrn(tx, rrn, number_hash).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_mtis_follow_the_request() {
        for (request, response) in [
            ("0100", "0110"),
            ("0101", "0110"),
            ("0120", "0130"),
            ("0121", "0130"),
            ("0200", "0210"),
            ("0400", "0410"),
            ("0421", "0430"),
            ("0800", "0810"),
        ] {
            assert_eq!(response_mti(request).as_deref(), Some(response));
        }
        assert_eq!(response_mti("0110"), None, "a response has no response");
        assert_eq!(response_mti("01X0"), None);
    }
}
