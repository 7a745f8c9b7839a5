//! The cardholder's payment plans: the installment timeline and paying early.

use super::*;

pub(super) fn router() -> axum::Router<Arc<App>> {
    axum::Router::new().route("/app/plans/{id}", get(show_plan)).route("/app/plans/{id}/pay", post(pay_plan))
}

struct InstallmentRow {
    seq: u32,
    due: String,
    amount: String,
    paid: String,
    status: String,
    status_class: &'static str,
    width: i64,
}

#[derive(Template)]
#[template(path = "plan.html")]
struct PlanPage {
    csrf: String,
    once: String,
    id: String,
    card_id: String,
    notice: Option<String>,
    error: Option<String>,
    plan_name: String,
    status: String,
    principal: String,
    fees: String,
    has_fees: bool,
    balance: String,
    payoff: String,
    active: bool,
    installments: Vec<InstallmentRow>,
}

async fn own_plan(app: &App, signed_in: &SignedIn, id: &str) -> Result<PlanRecord, PageError> {
    let mut tx = app.store.read().await?;
    let plan = plans::get(&mut tx, id).await?;
    plan.filter(|plan| plan.cardholder_id == signed_in.cardholder.id)
        .ok_or_else(|| PageError(StatusCode::NOT_FOUND, "There is no such plan.".to_owned()))
}

fn plan_page(
    app: &App,
    signed_in: &SignedIn,
    record: &PlanRecord,
    notice: Option<String>,
    error: Option<String>,
) -> PageResult {
    let plan = &record.plan;
    let today = app.today(app.clock.now());
    let largest = plan.installments.iter().map(|installment| installment.amount()).max().unwrap_or(1).max(1);
    render(&PlanPage {
        csrf: signed_in.session.csrf.clone(),
        once: random_token(),
        id: record.id.clone(),
        card_id: record.card_id.clone(),
        notice,
        error,
        plan_name: plan_name(plan.kind, &app.plan_terms),
        status: plan.status.as_str().replace('_', " "),
        principal: plan.money(plan.principal).to_string(),
        fees: plan.money(plan.fees).to_string(),
        has_fees: plan.fees > 0,
        balance: plan.money(plan.balance()).to_string(),
        payoff: plan.money(plan.payoff_amount(today)).to_string(),
        active: plan.status == ghostcard_domain::plan::PlanStatus::Active,
        installments: plan
            .installments
            .iter()
            .map(|installment| {
                use ghostcard_domain::plan::InstallmentStatus as Status;
                InstallmentRow {
                    seq: installment.seq,
                    due: installment.due_date.format("%-d %b %Y").to_string(),
                    amount: plan.money(installment.amount()).to_string(),
                    paid: if installment.paid > 0 && installment.status != Status::Paid {
                        plan.money(installment.paid).to_string()
                    } else {
                        String::new()
                    },
                    status: installment.status.as_str().replace('_', " "),
                    status_class: match installment.status {
                        Status::Paid => "paid",
                        Status::Failed | Status::Overdue => "late",
                        _ => "",
                    },
                    width: installment.amount() * 100 / largest,
                }
            })
            .collect(),
    })
}

async fn show_plan(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    axum::extract::Path(id): axum::extract::Path<String>,
    axum::extract::Query(query): axum::extract::Query<PlanQuery>,
) -> PageResult {
    let now = app.clock.now();
    let signed_in = require_session!(app, headers, now);
    let plan = own_plan(&app, &signed_in, &id).await?;
    let notice = query.paid.map(|_| "Thank you: your payment went through.".to_owned());
    plan_page(&app, &signed_in, &plan, notice, None)
}

#[derive(Deserialize)]
struct PlanQuery {
    paid: Option<String>,
}

#[derive(Deserialize)]
struct PayForm {
    csrf: String,
    #[serde(default)]
    once: String,
    /// `next` (the next open installment) or `all`.
    what: String,
}

/// Pays early through the same path as `POST /v1/plans/{id}/payments`.
async fn pay_plan(
    State(app): State<Arc<App>>,
    headers: HeaderMap,
    axum::extract::Path(id): axum::extract::Path<String>,
    Form(form): Form<PayForm>,
) -> PageResult {
    let now = app.clock.now();
    let signed_in = require_form!(app, headers, now, &form.csrf);
    let plan = own_plan(&app, &signed_in, &id).await?;
    let paid = redirect(&format!("/app/plans/{}?paid=1", plan.id));
    let claim =
        match once::begin(&app, &signed_in.cardholder.id, &format!("/app/plans/{}/pay", plan.id), &form.once).await? {
            Once::Done(..) => return Ok(paid),
            Once::Go(claim) => claim,
        };
    let next = plan
        .plan
        .installments
        .iter()
        .find(|installment| {
            installment.owed() > 0 && installment.status != ghostcard_domain::plan::InstallmentStatus::RolledOver
        })
        .map(|installment| installment.seq);
    let payment = match (form.what.as_str(), next) {
        ("all", _) => Payment::Payoff,
        (_, Some(seq)) => Payment::Installment(seq),
        _ => {
            once::release(&app, &claim).await?;
            return plan_page(&app, &signed_in, &plan, None, Some("Nothing is owed on this plan.".to_owned()));
        }
    };
    match crate::service::plans::pay(&app, &id, payment, None, now).await {
        Ok(_) => {
            once::complete(&app, &claim, "paid").await?;
            Ok(paid)
        }
        Err(error) => {
            // A payment the gateway has not answered yet is queued: sending the form again must not pay twice.
            if matches!(error, PaymentError::Pending) {
                once::complete(&app, &claim, "queued").await?;
            } else {
                once::release(&app, &claim).await?;
            }
            let message = match error {
                PaymentError::Store(error) => {
                    tracing::error!(%error, plan = %id, "a plan payment from the web app failed");
                    SOMETHING_WENT_WRONG.to_owned()
                }
                refused => refused.to_string(),
            };
            let plan = own_plan(&app, &signed_in, &id).await?;
            plan_page(&app, &signed_in, &plan, None, Some(message))
        }
    }
}
