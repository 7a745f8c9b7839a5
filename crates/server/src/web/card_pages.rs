//! The cardholder's one-time cards: a new card (its schedule shown before it is created), the card page (masked;
//! reveal audited; cancel; refund of the unused amount; activity with decline reasons in plain words).

use ghostcard_domain::card::CardStatus;

use super::*;

pub(super) fn router() -> axum::Router<Arc<App>> {
    axum::Router::new()
        .route("/app/static/card.js", get(card_script))
        .route("/app/cards/new", get(new_card))
        .route("/app/cards/preview", post(preview_card))
        .route("/app/cards", post(create_card))
        .route("/app/cards/{id}", get(show_card))
        .route("/app/cards/{id}/reveal", post(reveal_card))
        .route("/app/cards/{id}/{action}", post(card_action))
}

#[derive(Template)]
#[template(path = "new_card.html")]
struct NewCardPage {
    csrf: String,
    error: Option<String>,
    available: String,
    currency: String,
    amount: String,
    plan: String,
    plans: Vec<(String, String)>,
    sources: Vec<(String, String)>,
}

async fn new_card_page(app: &App, signed_in: &SignedIn, error: Option<String>, amount: &str, plan: &str) -> PageResult {
    let now = app.clock.now();
    let mut tx = app.store.read().await?;
    let power = purchase_power_of(app, &mut tx, &signed_in.cardholder, now).await.map_err(page_error)?;
    let sources = funding_sources::for_cardholder(&mut tx, &signed_in.cardholder.id).await?;
    drop(tx);
    let mut response = render(&NewCardPage {
        csrf: signed_in.session.csrf.clone(),
        error: error.clone(),
        available: power.available.to_string(),
        currency: app.currency.code().to_owned(),
        amount: amount.to_owned(),
        plan: plan.to_owned(),
        plans: PlanKind::ALL.iter().map(|kind| (kind.as_str().to_owned(), plan_name(*kind, &app.plan_terms))).collect(),
        sources: sources
            .iter()
            .filter(|source| source.status == "active")
            .map(|source| (source.id.clone(), format!("{} ending {}", source.brand, source.last4)))
            .collect(),
    })?;
    if error.is_some() {
        *response.status_mut() = StatusCode::UNPROCESSABLE_ENTITY;
    }
    Ok(response)
}

async fn new_card(State(app): State<Arc<App>>, headers: HeaderMap) -> PageResult {
    let now = app.clock.now();
    let signed_in = require_session!(app, headers, now);
    new_card_page(&app, &signed_in, None, "", "pay_in_4").await
}

#[derive(Deserialize)]
struct CardForm {
    csrf: String,
    /// Only on the final form (the preview's "Create the card").
    once: Option<String>,
    amount: String,
    plan: String,
    funding_source_id: String,
}

#[derive(Template)]
#[template(path = "card_preview.html")]
struct PreviewPage {
    csrf: String,
    once: String,
    amount: String,
    amount_minor: i64,
    plan: String,
    plan_name: String,
    funding_source_id: String,
    schedule: Vec<(String, String)>,
}

/// Step 1: the schedule the card would have, before anything is created.
async fn preview_card(State(app): State<Arc<App>>, headers: HeaderMap, Form(form): Form<CardForm>) -> PageResult {
    let now = app.clock.now();
    let signed_in = require_form!(app, headers, now, &form.csrf);
    let amount = match Money::parse(form.amount.trim(), app.currency) {
        Ok(amount) if amount.is_positive() => amount,
        _ => {
            let error = format!("Enter the amount in {} with a dot for cents, e.g. 40.00.", app.currency.code());
            return new_card_page(&app, &signed_in, Some(error), &form.amount, &form.plan).await;
        }
    };
    let Some(kind) = PlanKind::parse(&form.plan) else {
        return new_card_page(&app, &signed_in, Some("Choose how you pay.".to_owned()), &form.amount, &form.plan).await;
    };
    let schedule = Plan::new(kind, amount, app.today(now), &app.plan_terms)
        .map(|plan| {
            plan.installments
                .iter()
                .map(|installment| {
                    (installment.due_date.format("%-d %b %Y").to_string(), plan.money(installment.amount()).to_string())
                })
                .collect()
        })
        .unwrap_or_default();
    render(&PreviewPage {
        csrf: signed_in.session.csrf.clone(),
        once: random_token(),
        amount: amount.to_string(),
        amount_minor: amount.minor(),
        plan: kind.as_str().to_owned(),
        plan_name: plan_name(kind, &app.plan_terms),
        funding_source_id: form.funding_source_id,
        schedule,
    })
}

/// Step 2: the card, through the same path as `POST /v1/cards`.
async fn create_card(State(app): State<Arc<App>>, headers: HeaderMap, Form(form): Form<CardForm>) -> PageResult {
    let now = app.clock.now();
    let signed_in = require_form!(app, headers, now, &form.csrf);
    let created = |id: &str| redirect(&format!("/app/cards/{id}?created=1"));
    let token = form.once.as_deref().unwrap_or_default();
    let claim = match once::begin(&app, &signed_in.cardholder.id, "/app/cards", token).await? {
        Once::Done(body) => {
            return Ok(once::stored_id(&body).map_or_else(|| redirect("/app/dashboard"), |id| created(&id)));
        }
        Once::Go(claim) => claim,
    };
    let body = CreateCard {
        cardholder_id: signed_in.cardholder.id.clone(),
        amount: form.amount.trim().parse().unwrap_or(0),
        currency: app.currency.code().to_owned(),
        funding_source_id: form.funding_source_id.clone(),
        plan: form.plan.clone(),
        spending_controls: None,
    };
    let shown = Money::new(body.amount, app.currency).format_amount();
    match issuing::create(&app, &body, &web_actor(&signed_in.cardholder, &headers), Some(&claim)).await {
        Ok((card, _)) => {
            app.wake_jobs.notify_one();
            Ok(created(&card.id))
        }
        Err(error) => {
            once::release(&app, &claim).await?;
            new_card_page(&app, &signed_in, Some(page_error(error).1), &shown, &form.plan).await
        }
    }
}

/// The signed-in cardholder's card `id`, or a 404 page (someone else's card does not exist for them).
async fn own_card(app: &App, signed_in: &SignedIn, id: &str) -> Result<CardRecord, PageError> {
    let mut tx = app.store.read().await?;
    let card = cards::get(&mut tx, id).await?;
    card.filter(|card| card.cardholder_id == signed_in.cardholder.id)
        .ok_or_else(|| PageError(StatusCode::NOT_FOUND, "There is no such card.".to_owned()))
}

#[derive(Template)]
#[template(path = "card.html")]
struct CardPage {
    csrf: String,
    once: String,
    id: String,
    masked: String,
    notice: Option<String>,
    error: Option<String>,
    revealed: Option<(String, String, String)>,
    can_reveal: bool,
    status: String,
    amount: String,
    held: String,
    captured: String,
    remaining: String,
    plan_name: String,
    plan_id: Option<String>,
    merchant: Option<String>,
    active: bool,
    /// The pause action the card offers: `pause`, `resume`, or none.
    pause: Option<&'static str>,
    refundable: bool,
    valid_until: String,
    valid_until_iso: String,
    time_left: String,
    seconds_left: i64,
    activity: Vec<ActivityRow>,
}

/// One line of a card's activity: an authorization, a capture or a refund.
struct ActivityRow {
    when: String,
    merchant: String,
    amount: String,
    result: String,
    /// `declined` for a declined authorization (styled).
    class: &'static str,
}

async fn card_page(
    app: &App,
    signed_in: &SignedIn,
    card: &CardRecord,
    notice: Option<String>,
    error: Option<String>,
    revealed: Option<(String, String, String)>,
) -> PageResult {
    let now = app.clock.now();
    let currency = card.currency;
    let money = |minor: i64| Money::new(minor, currency).to_string();
    let view = crate::views::CardView::of(card, now);
    let activity = card_activity(app, card, currency).await?;
    let left = (card.valid_until - now).num_seconds().max(0);
    let state = card.to_card()?;
    let active = state.status_at(now) == CardStatus::Active && !card.paused;
    let pausable = state.pausable(now);
    render(&CardPage {
        csrf: signed_in.session.csrf.clone(),
        once: random_token(),
        id: card.id.clone(),
        masked: format!("{} •••• {}", card.bin, card.last4),
        notice,
        error,
        can_reveal: pausable,
        revealed,
        status: view.status.clone(),
        amount: money(card.amount),
        held: money(card.held),
        captured: money(card.captured),
        remaining: money(view.remaining_amount),
        plan_name: plan_name(card.plan_kind, &app.plan_terms),
        plan_id: card.plan_id.clone(),
        merchant: card.merchant_name.clone().or_else(|| card.merchant_id.clone()),
        active,
        pause: pausable.then_some(if card.paused { "resume" } else { "pause" }),
        refundable: card.status == CardStatus::Used && view.remaining_amount > 0,
        valid_until: card.valid_until.format("%-d %b %Y %H:%M UTC").to_string(),
        valid_until_iso: card.valid_until.to_rfc3339(),
        time_left: format!("{} h {:02} min", left / 3600, (left % 3600) / 60),
        seconds_left: left,
        activity,
    })
}

/// The card's authorizations and its captures and refunds from clearing, newest first.
async fn card_activity(app: &App, card: &CardRecord, currency: Currency) -> Result<Vec<ActivityRow>, PageError> {
    let money = |minor: i64| Money::new(minor, currency).to_string();
    let mut tx = app.store.read().await?;
    let authorizations = authorizations::list(&mut tx, Some(&card.id), None, 100, None).await?;
    let clearings = ghostcard_store::clearings::for_card(&mut tx, &card.id).await?;
    drop(tx);
    let mut activity: Vec<(DateTime<Utc>, ActivityRow)> = authorizations
        .rows
        .iter()
        .map(|record| {
            let message = record.decline_reason.as_deref().and_then(crate::views::decline_message);
            let result = match message {
                Some(message) => format!("Declined: {message}"),
                None => record.status.as_str().replace('_', " "),
            };
            (
                record.created_at,
                ActivityRow {
                    when: record.created_at.format("%-d %b %H:%M").to_string(),
                    merchant: record.merchant_name.clone().unwrap_or_else(|| record.merchant_id.clone()),
                    amount: money(record.amount),
                    result,
                    class: if message.is_some() { "declined" } else { "" },
                },
            )
        })
        .collect();
    for clearing in &clearings {
        let what = match clearing.kind.as_str() {
            "refund" => "Refunded by the merchant",
            "force_post" => "Purchase posted",
            _ => "Purchase captured",
        };
        activity.push((
            clearing.created_at,
            ActivityRow {
                when: clearing.created_at.format("%-d %b %H:%M").to_string(),
                merchant: card.merchant_name.clone().unwrap_or_default(),
                amount: money(clearing.amount),
                result: what.to_owned(),
                class: "",
            },
        ));
    }
    activity.sort_by_key(|(at, _)| std::cmp::Reverse(*at));
    Ok(activity.into_iter().map(|(_, row)| row).collect())
}

#[derive(Deserialize)]
struct CardQuery {
    created: Option<String>,
    /// After a post: `cancel`, `refund-unused`, or `reveal` (a reveal form sent again shows nothing).
    done: Option<String>,
}

async fn show_card(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    axum::extract::Path(id): axum::extract::Path<String>,
    axum::extract::Query(query): axum::extract::Query<CardQuery>,
) -> PageResult {
    let now = app.clock.now();
    let signed_in = require_session!(app, headers, now);
    let card = own_card(&app, &signed_in, &id).await?;
    let notice = match (query.created, query.done.as_deref()) {
        (Some(_), _) => Some("Your card is ready. Show its details when you pay."),
        (_, Some("cancel")) => Some("The card is canceled."),
        (_, Some("refund-unused")) => Some("The unused amount is refunded."),
        (_, Some("pause")) => Some("The card is paused: purchases are declined until you resume it."),
        (_, Some("resume")) => Some("The card is resumed."),
        (_, Some("reveal")) => Some("The details were already shown for that form. Show them again if you need them."),
        _ => None,
    };
    card_page(&app, &signed_in, &card, notice.map(str::to_owned), None, None).await
}

/// Shows the card's number, expiry and security code — audited, like `POST /v1/cards/{id}/reveal`.
async fn reveal_card(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    axum::extract::Path(id): axum::extract::Path<String>,
    Form(form): Form<OnceForm>,
) -> PageResult {
    let now = app.clock.now();
    let signed_in = require_form!(app, headers, now, &form.csrf);
    let card = own_card(&app, &signed_in, &id).await?;
    let path = format!("/app/cards/{}/reveal", card.id);
    let claim = match once::begin(&app, &signed_in.cardholder.id, &path, &form.once).await? {
        Once::Done(..) => return Ok(redirect(&format!("/app/cards/{}?done=reveal", card.id))),
        Once::Go(claim) => claim,
    };
    let actor = web_actor(&signed_in.cardholder, &headers);
    let revealed = match issuing::reveal(&app, &card, &actor, Some(&claim)).await {
        Ok(revealed) => revealed,
        Err(error) => {
            once::release(&app, &claim).await?;
            return Err(page_error(error));
        }
    };
    let spaced: String = revealed
        .number
        .as_bytes()
        .chunks(4)
        .map(|group| String::from_utf8_lossy(group).into_owned())
        .collect::<Vec<_>>()
        .join(" ");
    let details = (spaced, format!("{:02}/{}", revealed.exp_month, revealed.exp_year % 100), revealed.cvv.clone());
    card_page(&app, &signed_in, &card, None, None, Some(details)).await
}

/// Cancel and refund-unused, as the cardholder: the same use cases as the API's.
async fn card_action(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    axum::extract::Path((id, action)): axum::extract::Path<(String, String)>,
    Form(form): Form<OnceForm>,
) -> PageResult {
    let now = app.clock.now();
    let signed_in = require_form!(app, headers, now, &form.csrf);
    let card = own_card(&app, &signed_in, &id).await?;
    if !matches!(action.as_str(), "cancel" | "refund-unused" | "pause" | "resume") {
        return Err(PageError(StatusCode::NOT_FOUND, "There is no such page.".to_owned()));
    }
    let done = redirect(&format!("/app/cards/{}?done={action}", card.id));
    let claim =
        match once::begin(&app, &signed_in.cardholder.id, &format!("/app/cards/{}/{action}", card.id), &form.once)
            .await?
        {
            Once::Done(..) => return Ok(done),
            Once::Go(claim) => claim,
        };
    let actor = web_actor(&signed_in.cardholder, &headers);
    let changed = async {
        let mut tx = app.store.begin().await?;
        let record = match action.as_str() {
            "cancel" => crate::service::cards::cancel(&mut tx, &card.id, &actor, now).await?,
            "pause" => crate::service::cards::set_paused(&mut tx, &card.id, true, &actor, now).await?,
            "resume" => crate::service::cards::set_paused(&mut tx, &card.id, false, &actor, now).await?,
            _ => crate::service::cards::refund_unused(&mut tx, &card.id, &actor, now).await?,
        };
        crate::service::commit_with(tx, Some(&claim), 303, &record.id).await?;
        Ok::<_, CardError>(())
    };
    match changed.await {
        Ok(()) => {
            app.wake_jobs.notify_one();
            Ok(done)
        }
        Err(error) => {
            once::release(&app, &claim).await?;
            let message = match error {
                CardError::Store(_) | CardError::Ledger(_) | CardError::Inconsistent(_) => {
                    tracing::error!(%error, card = %card.id, "a card change from the web app failed");
                    SOMETHING_WENT_WRONG.to_owned()
                }
                refused => refused.to_string(),
            };
            let card = own_card(&app, &signed_in, &id).await?;
            card_page(&app, &signed_in, &card, None, Some(message), None).await
        }
    }
}

async fn card_script() -> Response {
    (
        [
            (CONTENT_TYPE, HeaderValue::from_static("text/javascript; charset=utf-8")),
            (CACHE_CONTROL, HeaderValue::from_static("max-age=3600")),
        ],
        include_str!("../../static/card.js"),
    )
        .into_response()
}
