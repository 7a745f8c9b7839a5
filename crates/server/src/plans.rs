//! Payment plans over time: each plan row carries `next_run_at`, when it next needs work, and the plan sweep does
//! what fell due — late fees, charge-off, and collection jobs for due installments (the charge itself is a job,
//! see [`crate::runner`]). Dates are the deployment's calendar dates (`time_zone`); work due on a date runs from
//! its start there.

use chrono::{DateTime, Utc};
use ghostcard_domain::ledger::entries;
use ghostcard_domain::plan::{InstallmentStatus, Plan};
use ghostcard_store::plans::{self, PlanRecord};
use ghostcard_store::{StoreError, Tx, cardholders, ledger};

use crate::App;
use crate::queue::{self, Collection, RunnerError};

/// When the plan next needs the sweep: now if an installment is due for collection, else the start of its next
/// work date.
fn next_run(app: &App, plan: &Plan, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
    let today = app.today(now);
    if !plan.collectible(today, &app.plan_terms).is_empty() {
        return Some(now);
    }
    plan.next_work_date(today, &app.plan_terms).map(|date| app.start_of(date))
}

/// Writes a changed plan and when it next needs work.
pub async fn save(app: &App, tx: &mut Tx, record: &mut PlanRecord, now: DateTime<Utc>) -> Result<(), StoreError> {
    record.next_run_at = next_run(app, &record.plan, now);
    plans::update(tx, record, now).await
}

/// A new plan's first schedule.
pub fn schedule_new(app: &App, record: &mut PlanRecord, now: DateTime<Utc>) {
    record.next_run_at = next_run(app, &record.plan, now);
}

/// Does what fell due on one plan by `now`, in one transaction.
pub async fn sweep(app: &App, plan_id: &str, now: DateTime<Utc>) -> Result<(), RunnerError> {
    let today = app.today(now);
    let terms = &app.plan_terms;
    let mut tx = app.store.begin().await?;
    let Some(mut record) = plans::get(&mut tx, plan_id).await? else { return Ok(()) };
    // Late fees, each booked to the receivable.
    for (seq, fee) in record.plan.assess_late_fees(today, terms) {
        ledger::commit(&mut tx, &entries::late_fee(&record.card_id, record.plan.money(fee)), now).await?;
        crate::events::installment(&mut tx, "installment.late_fee", &record, seq, fee, now).await?;
    }
    if record.plan.charge_off_due(today, terms) {
        // Interest is booked when paid, so what was never paid of it was never a receivable: only the rest is lost.
        let unbooked_interest = record.plan.interest_owed();
        let written_off = record.plan.charge_off().map_err(|error| RunnerError::Failed(error.to_string()))?;
        let lost = record.plan.money(written_off - unbooked_interest);
        ledger::commit(&mut tx, &entries::charge_off(&record.card_id, lost), now).await?;
        cardholders::set_status(&mut tx, &record.cardholder_id, "restricted", Some("charged_off")).await?;
        crate::events::plan(&mut tx, "plan.charged_off", &record, now).await?;
    }
    for seq in record.plan.collectible(today, terms) {
        let Some(installment) = record.plan.installments.iter().find(|installment| installment.seq == seq) else {
            continue;
        };
        let attempt = if installment.status == InstallmentStatus::Failed { 2 } else { 1 };
        let collection = Collection { plan_id: record.id.clone(), seq, amount: installment.owed(), attempt };
        queue::enqueue(
            &mut tx,
            queue::INSTALLMENT_COLLECTION,
            &format!("collect:{}:{seq}:{attempt}", record.id),
            &collection,
            now,
            now,
        )
        .await?;
    }
    // Collections now pending are the runner's; the sweep is next needed on the next work date.
    record.next_run_at = record.plan.next_work_date(today, terms).map(|date| app.start_of(date));
    plans::update(&mut tx, &mut record, now).await?;
    ghostcard_store::commit(tx).await?;
    Ok(())
}
