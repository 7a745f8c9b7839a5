//! Payment plans: schedules, collections, rollover, late fees, refunds, early payoff and charge-off.
//!
//! All amounts are integer minor units of the plan's currency; interest uses exact decimals (`rust_decimal`) and
//! rounds half-up to the minor unit. Two invariants hold after every operation and are checked by
//! [`Plan::check`]: the installments' principal parts sum to the plan's principal, and their fee parts to its
//! fees. The fee cap (25% of the principal by default) is never crossed.

use chrono::{Days, Months, NaiveDate};
use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};

use crate::money::{Currency, Money};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PlanKind {
    PayNow,
    PayIn4,
    PayIn30,
    /// Monthly installments over 3, 6, 12 or 24 months.
    Financing(u8),
}

impl PlanKind {
    pub const ALL: [PlanKind; 7] = [
        PlanKind::PayNow,
        PlanKind::PayIn4,
        PlanKind::PayIn30,
        PlanKind::Financing(3),
        PlanKind::Financing(6),
        PlanKind::Financing(12),
        PlanKind::Financing(24),
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            PlanKind::PayNow => "pay_now",
            PlanKind::PayIn4 => "pay_in_4",
            PlanKind::PayIn30 => "pay_in_30",
            PlanKind::Financing(3) => "financing_3",
            PlanKind::Financing(6) => "financing_6",
            PlanKind::Financing(12) => "financing_12",
            PlanKind::Financing(_) => "financing_24",
        }
    }

    pub fn parse(text: &str) -> Option<PlanKind> {
        PlanKind::ALL.into_iter().find(|kind| kind.as_str() == text)
    }

    pub fn is_pay_later(self) -> bool {
        self != PlanKind::PayNow
    }
}

/// The deployment's plan terms (configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanTerms {
    /// Annual percentage rate of financing plans in basis points (1999 = 19.99%).
    pub financing_apr_basis_points: u32,
    pub late_fee: Money,
    /// Total late fees on one plan never exceed this percentage of its principal.
    pub late_fee_cap_percent: u32,
    pub late_fee_after_days: u64,
    pub retry_after_days: u64,
    pub charge_off_after_days: u64,
}

impl PlanTerms {
    /// docs/reference/behaviour.md's defaults: 19.99% APR, 7.00 late fee after 10 days capped at 25%, retry after 2
    /// days, charge-off after 120 days overdue.
    pub fn defaults(currency: Currency) -> PlanTerms {
        PlanTerms {
            financing_apr_basis_points: 1999,
            late_fee: Money::new(7 * currency.minor_per_major(), currency),
            late_fee_cap_percent: 25,
            late_fee_after_days: 10,
            retry_after_days: 2,
            charge_off_after_days: 120,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PlanStatus {
    Active,
    Completed,
    Canceled,
    ChargedOff,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InstallmentStatus {
    Scheduled,
    Paid,
    /// A collection attempt failed; it will be retried.
    Failed,
    /// Past due and unpaid, with no retry left.
    Overdue,
    /// Its amount moved to the next installment.
    RolledOver,
    Canceled,
}

impl PlanStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            PlanStatus::Active => "active",
            PlanStatus::Completed => "completed",
            PlanStatus::Canceled => "canceled",
            PlanStatus::ChargedOff => "charged_off",
        }
    }
}

impl InstallmentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            InstallmentStatus::Scheduled => "scheduled",
            InstallmentStatus::Paid => "paid",
            InstallmentStatus::Failed => "failed",
            InstallmentStatus::Overdue => "overdue",
            InstallmentStatus::RolledOver => "rolled_over",
            InstallmentStatus::Canceled => "canceled",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Installment {
    /// 1-based position in the schedule.
    pub seq: u32,
    pub due_date: NaiveDate,
    pub principal: i64,
    pub interest: i64,
    pub fee: i64,
    pub paid: i64,
    pub status: InstallmentStatus,
    /// When the last collection attempt failed (the retry is due `retry_after_days` later).
    pub failed_on: Option<NaiveDate>,
    /// Where a rolled-over installment's amount went.
    pub rolled_into: Option<u32>,
    /// Whether this installment's lateness has been charged its fee.
    pub late_fee_charged: bool,
}

impl Installment {
    /// What the cardholder pays for this installment: principal + interest + fee.
    pub fn amount(&self) -> i64 {
        self.principal + self.interest + self.fee
    }

    pub fn owed(&self) -> i64 {
        self.amount() - self.paid
    }

    fn is_open(&self) -> bool {
        matches!(self.status, InstallmentStatus::Scheduled | InstallmentStatus::Failed | InstallmentStatus::Overdue)
    }

    /// The unpaid part of each component: payments cover the fee first, then interest, then principal.
    fn owed_parts(&self) -> (i64, i64, i64) {
        let mut paid = self.paid;
        let mut take = |part: i64| {
            let covered = part.min(paid);
            paid -= covered;
            part - covered
        };
        let fee = take(self.fee);
        let interest = take(self.interest);
        let principal = take(self.principal);
        (principal, interest, fee)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error("a plan's principal must be positive")]
    NonPositivePrincipal,
    #[error("the amount must be positive")]
    NonPositiveAmount,
    #[error("the amount is more than the plan still owes")]
    ExceedsBalance,
    #[error("the plan is not active")]
    NotActive,
    #[error("installment {0} is not open for collection")]
    NotCollectible(u32),
    #[error("plan invariant broken: {0}")]
    Invariant(String),
}

/// How a refund was applied to a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RefundApplication {
    /// Paid towards installments already due and unpaid.
    pub to_overdue: i64,
    /// The interest part of `to_overdue` (payments cover fees first, then interest, then principal).
    pub interest_paid: i64,
    /// Taken off the installments still to come.
    pub to_future: i64,
    /// More than the plan owed: goes back to the funding card.
    pub excess: i64,
}

/// What a failed collection led to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CollectionFailure {
    /// Retried on this date.
    RetryOn(NaiveDate),
    /// The retry failed too; the amount moved to installment `into`.
    RolledOver { into: u32 },
    /// The retry of the last installment failed: it stays overdue.
    Overdue,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    pub kind: PlanKind,
    pub currency: Currency,
    /// What the plan finances: the captured amount net of refunds.
    pub principal: i64,
    /// Late fees charged so far.
    pub fees: i64,
    pub status: PlanStatus,
    /// The capture date the schedule counts from.
    pub start_date: NaiveDate,
    pub apr_basis_points: u32,
    pub installments: Vec<Installment>,
}

impl Plan {
    /// The plan for a first capture of `principal` on `start_date`.
    pub fn new(kind: PlanKind, principal: Money, start_date: NaiveDate, terms: &PlanTerms) -> Result<Plan, PlanError> {
        if !principal.is_positive() {
            return Err(PlanError::NonPositivePrincipal);
        }
        let amount = principal.minor();
        let apr_basis_points = match kind {
            PlanKind::Financing(_) => terms.financing_apr_basis_points,
            _ => 0,
        };
        let (dates, parts): (Vec<NaiveDate>, Vec<(i64, i64)>) = match kind {
            PlanKind::PayNow => (vec![], vec![]),
            PlanKind::PayIn4 => {
                let dates = (0..4).map(|index| start_date + Days::new(14 * index)).collect();
                (dates, split_remainder_first(amount, 4).into_iter().map(|part| (part, 0)).collect())
            }
            PlanKind::PayIn30 => (vec![start_date + Days::new(30)], vec![(amount, 0)]),
            PlanKind::Financing(months) => {
                let dates = (1..=u32::from(months)).map(|month| add_months(start_date, month)).collect();
                (dates, amortize(amount, apr_basis_points, usize::from(months)))
            }
        };
        let installments = dates
            .into_iter()
            .zip(parts)
            .enumerate()
            .map(|(index, (due_date, (principal, interest)))| Installment {
                seq: index as u32 + 1,
                due_date,
                principal,
                interest,
                fee: 0,
                paid: 0,
                status: InstallmentStatus::Scheduled,
                failed_on: None,
                rolled_into: None,
                late_fee_charged: false,
            })
            .collect();
        // Pay-now plans have no installments: the funding card is charged for the whole amount.
        let status = if kind == PlanKind::PayNow { PlanStatus::Completed } else { PlanStatus::Active };
        let plan = Plan {
            kind,
            currency: principal.currency(),
            principal: amount,
            fees: 0,
            status,
            start_date,
            apr_basis_points,
            installments,
        };
        plan.check()?;
        Ok(plan)
    }

    /// What the cardholder still owes on the plan.
    pub fn balance(&self) -> i64 {
        self.installments.iter().filter(|installment| installment.is_open()).map(Installment::owed).sum()
    }

    pub fn money(&self, minor: i64) -> Money {
        Money::new(minor, self.currency)
    }

    /// Installments due on or before `today` that a collection should charge now: scheduled ones, and failed ones
    /// whose retry date has come.
    pub fn collectible(&self, today: NaiveDate, terms: &PlanTerms) -> Vec<u32> {
        if self.status != PlanStatus::Active {
            return vec![];
        }
        self.installments
            .iter()
            .filter(|installment| match installment.status {
                InstallmentStatus::Scheduled => installment.due_date <= today && installment.owed() > 0,
                InstallmentStatus::Failed => installment
                    .failed_on
                    .is_some_and(|failed_on| failed_on + Days::new(terms.retry_after_days) <= today),
                _ => false,
            })
            .map(|installment| installment.seq)
            .collect()
    }

    /// A collection of installment `seq` succeeded for its whole owed amount.
    pub fn collection_succeeded(&mut self, seq: u32) -> Result<i64, PlanError> {
        let installment = self.open_installment(seq)?;
        let amount = installment.owed();
        installment.paid += amount;
        installment.status = InstallmentStatus::Paid;
        self.settle_status();
        self.check()?;
        Ok(amount)
    }

    /// A collection of installment `seq` failed on `today`: the first failure is retried later; a failed retry
    /// rolls the amount into the next installment, or leaves the last one overdue.
    pub fn collection_failed(
        &mut self,
        seq: u32,
        today: NaiveDate,
        terms: &PlanTerms,
    ) -> Result<CollectionFailure, PlanError> {
        let installment = self.open_installment(seq)?;
        if installment.status == InstallmentStatus::Scheduled {
            installment.status = InstallmentStatus::Failed;
            installment.failed_on = Some(today);
            return Ok(CollectionFailure::RetryOn(today + Days::new(terms.retry_after_days)));
        }
        let next =
            self.installments.iter().position(|later| later.seq > seq && later.status == InstallmentStatus::Scheduled);
        let index = self.index_of(seq)?;
        let outcome = match next {
            Some(next) => {
                let (principal, interest, fee) = self.installments[index].owed_parts();
                let into = self.installments[next].seq;
                let current = &mut self.installments[index];
                current.principal -= principal;
                current.interest -= interest;
                current.fee -= fee;
                current.status = InstallmentStatus::RolledOver;
                current.rolled_into = Some(into);
                let target = &mut self.installments[next];
                target.principal += principal;
                target.interest += interest;
                target.fee += fee;
                CollectionFailure::RolledOver { into }
            }
            None => {
                let current = &mut self.installments[index];
                current.status = InstallmentStatus::Overdue;
                current.failed_on = Some(today);
                CollectionFailure::Overdue
            }
        };
        self.check()?;
        Ok(outcome)
    }

    /// True when an amount that fell due before `today` is still unpaid (purchase power is then 0).
    pub fn has_arrears(&self, today: NaiveDate) -> bool {
        self.oldest_unpaid_due_date(today).is_some()
    }

    /// Charges late fees due on `today`: each installment whose debt is unpaid `late_fee_after_days` after its
    /// due date gets one fee, added to the installment now carrying that debt, cut to fit the cap. Returns the
    /// fees charged as (carrying installment, fee).
    pub fn assess_late_fees(&mut self, today: NaiveDate, terms: &PlanTerms) -> Vec<(u32, i64)> {
        if self.status != PlanStatus::Active {
            return vec![];
        }
        let cap = self.principal * i64::from(terms.late_fee_cap_percent) / 100;
        let mut charged = Vec::new();
        for index in 0..self.installments.len() {
            let installment = &self.installments[index];
            if installment.late_fee_charged || installment.due_date + Days::new(terms.late_fee_after_days) > today {
                continue;
            }
            let Some(carrier) = self.debt_carrier(index) else { continue };
            let fee = terms.late_fee.minor().min(cap - self.fees).max(0);
            self.installments[index].late_fee_charged = true;
            if fee > 0 {
                self.installments[carrier].fee += fee;
                self.fees += fee;
                charged.push((self.installments[carrier].seq, fee));
            }
        }
        charged
    }

    /// True when the oldest unpaid debt is `charge_off_after_days` past due on `today`.
    pub fn charge_off_due(&self, today: NaiveDate, terms: &PlanTerms) -> bool {
        self.status == PlanStatus::Active
            && self
                .oldest_unpaid_due_date(today)
                .is_some_and(|due| due + Days::new(terms.charge_off_after_days) <= today)
    }

    /// Writes the plan off: every open installment is canceled. Returns the amount written off.
    pub fn charge_off(&mut self) -> Result<i64, PlanError> {
        if self.status != PlanStatus::Active {
            return Err(PlanError::NotActive);
        }
        let written_off = self.balance();
        self.installments.iter_mut().filter(|installment| installment.is_open()).for_each(|installment| {
            installment.status = InstallmentStatus::Canceled;
        });
        self.status = PlanStatus::ChargedOff;
        Ok(written_off)
    }

    /// An early payment of `amount`: pays open installments in order (past-due ones come first by date).
    pub fn pay(&mut self, amount: i64) -> Result<(), PlanError> {
        if amount <= 0 {
            return Err(PlanError::NonPositiveAmount);
        }
        if self.status != PlanStatus::Active {
            return Err(PlanError::NotActive);
        }
        if amount > self.balance() {
            return Err(PlanError::ExceedsBalance);
        }
        self.pay_in_order(amount);
        self.settle_status();
        self.check()
    }

    /// What paying the whole plan off costs on `today`: for financing, the remaining principal plus interest
    /// accrued since the last due date, pro rata by days (actual/365), plus anything past due; for other plans the
    /// balance.
    pub fn payoff_amount(&self, today: NaiveDate) -> i64 {
        if self.status != PlanStatus::Active {
            return 0;
        }
        if !matches!(self.kind, PlanKind::Financing(_)) {
            return self.balance();
        }
        let (past_due, future): (Vec<&Installment>, Vec<&Installment>) =
            self.installments.iter().filter(|installment| installment.is_open()).partition(|i| i.due_date <= today);
        let past_due_owed: i64 = past_due.iter().map(|installment| installment.owed()).sum();
        let future_principal: i64 = future.iter().map(|installment| installment.owed_parts().0).sum();
        let future_fees: i64 = future.iter().map(|installment| installment.owed_parts().2).sum();
        past_due_owed + future_principal + future_fees + self.accrued_interest(future_principal, today)
    }

    /// Pays the whole plan off on `today` at [`Plan::payoff_amount`]: interest not yet accrued is forgiven.
    pub fn pay_off(&mut self, today: NaiveDate) -> Result<i64, PlanError> {
        if self.status != PlanStatus::Active {
            return Err(PlanError::NotActive);
        }
        let amount = self.payoff_amount(today);
        if matches!(self.kind, PlanKind::Financing(_)) {
            let future_principal: i64 = self
                .installments
                .iter()
                .filter(|installment| installment.is_open() && installment.due_date > today)
                .map(|installment| installment.owed_parts().0)
                .sum();
            let mut accrued = self.accrued_interest(future_principal, today);
            for installment in self.installments.iter_mut().filter(|i| i.is_open() && i.due_date > today) {
                let (_, interest_owed, _) = installment.owed_parts();
                // The first future installment carries the accrued interest; the rest is forgiven.
                installment.interest = installment.interest - interest_owed + accrued;
                accrued = 0;
            }
        }
        let balance = self.balance();
        self.pay_in_order(balance);
        self.settle_status();
        self.check()?;
        Ok(amount)
    }

    /// Applies a refund (merchant refund or unused-amount adjustment) of `amount` on `today`: first to what is
    /// past due, then evenly off the installments to come (the last takes the remainder); financing plans are
    /// re-amortized on the reduced principal; what exceeds the balance goes back to the funding card. The plan's
    /// principal shrinks by what the refund takes off it.
    pub fn apply_refund(&mut self, amount: i64, today: NaiveDate) -> Result<RefundApplication, PlanError> {
        if amount <= 0 {
            return Err(PlanError::NonPositiveAmount);
        }
        if self.kind == PlanKind::PayNow || self.status != PlanStatus::Active {
            // Nothing is owed: the whole refund goes back to the funding card. A pay-now plan's principal is the
            // purchase net of refunds; a finished plan's schedule stays as it was paid.
            if self.kind == PlanKind::PayNow {
                self.principal -= amount.min(self.principal);
            }
            return Ok(RefundApplication { to_overdue: 0, interest_paid: 0, to_future: 0, excess: amount });
        }
        let mut left = amount;
        // 1. What is past due.
        let mut to_overdue = 0;
        let mut interest_paid = 0;
        for installment in self.installments.iter_mut().filter(|i| i.is_open() && i.due_date < today) {
            let paying = installment.owed().min(left);
            let (_, interest, fee) = installment.owed_parts();
            interest_paid += (paying - fee).clamp(0, interest);
            installment.paid += paying;
            left -= paying;
            to_overdue += paying;
            if installment.owed() == 0 {
                installment.status = InstallmentStatus::Paid;
            }
        }
        // 2. The installments to come: their principal shrinks (financing: re-amortized on what is left).
        let future: Vec<usize> = (0..self.installments.len())
            .filter(|&index| self.installments[index].is_open() && self.installments[index].due_date >= today)
            .collect();
        let capacities: Vec<i64> = future.iter().map(|&index| self.installments[index].owed_parts().0).collect();
        let future_principal: i64 = capacities.iter().sum();
        let to_principal = left.min(future_principal);
        left -= to_principal;
        let mut to_future = to_principal;
        if to_principal == future_principal {
            // Nothing left to finance: interest still to come is forgiven, fees still owed are paid from what is
            // left of the refund, and the installments end.
            for &index in &future {
                let installment = &mut self.installments[index];
                let (principal, interest, fee) = installment.owed_parts();
                installment.principal -= principal;
                installment.interest -= interest;
                let paying = fee.min(left);
                installment.paid += paying;
                left -= paying;
                to_future += paying;
                if installment.owed() == 0 {
                    installment.status =
                        if installment.paid > 0 { InstallmentStatus::Paid } else { InstallmentStatus::Canceled };
                }
            }
        } else if let PlanKind::Financing(_) = self.kind {
            self.reamortize(&future, future_principal - to_principal);
        } else {
            for (&index, reduction) in future.iter().zip(spread_capped(to_principal, &capacities)) {
                self.installments[index].principal -= reduction;
            }
        }
        self.principal -= to_principal;
        self.settle_status();
        self.check()?;
        Ok(RefundApplication { to_overdue, interest_paid, to_future, excess: left })
    }

    /// A later capture adds `amount` to the plan: spread over the installments to come (financing: re-amortized).
    /// When nothing is left to come, a new installment due `today` carries it.
    pub fn add_principal(&mut self, amount: i64, today: NaiveDate) -> Result<(), PlanError> {
        if amount <= 0 {
            return Err(PlanError::NonPositiveAmount);
        }
        if self.kind == PlanKind::PayNow {
            self.principal += amount;
            return Ok(());
        }
        let future: Vec<usize> = (0..self.installments.len())
            .filter(|&index| {
                self.installments[index].status == InstallmentStatus::Scheduled
                    && self.installments[index].due_date >= today
            })
            .collect();
        if future.is_empty() {
            self.installments.push(Installment {
                seq: self.installments.len() as u32 + 1,
                due_date: today,
                principal: amount,
                interest: 0,
                fee: 0,
                paid: 0,
                status: InstallmentStatus::Scheduled,
                failed_on: None,
                rolled_into: None,
                late_fee_charged: false,
            });
        } else if let PlanKind::Financing(_) = self.kind {
            let future_principal: i64 = future.iter().map(|&index| self.installments[index].owed_parts().0).sum();
            self.reamortize(&future, future_principal + amount);
        } else {
            for (&index, share) in future.iter().zip(spread_evenly(amount, future.len())) {
                self.installments[index].principal += share;
            }
        }
        self.principal += amount;
        self.status = PlanStatus::Active;
        self.check()
    }

    /// Interest still owed on open installments (a payment's interest part is what it takes off this).
    pub fn interest_owed(&self) -> i64 {
        self.installments.iter().filter(|installment| installment.is_open()).map(|i| i.owed_parts().1).sum()
    }

    /// The first date after `today` on which the plan may need work: a due installment to collect, a retry, a
    /// late fee, a charge-off. `None` once the plan is no longer active. (A date with nothing to do in the end
    /// is harmless: the work is recomputed then.)
    pub fn next_work_date(&self, today: NaiveDate, terms: &PlanTerms) -> Option<NaiveDate> {
        if self.status != PlanStatus::Active {
            return None;
        }
        let mut dates = Vec::new();
        for installment in &self.installments {
            match installment.status {
                InstallmentStatus::Scheduled if installment.owed() > 0 => dates.push(installment.due_date),
                InstallmentStatus::Failed => {
                    dates.extend(installment.failed_on.map(|failed| failed + Days::new(terms.retry_after_days)));
                }
                _ => {}
            }
            let in_debt = installment.is_open() || installment.status == InstallmentStatus::RolledOver;
            if in_debt && !installment.late_fee_charged {
                dates.push(installment.due_date + Days::new(terms.late_fee_after_days));
            }
            if in_debt {
                dates.push(installment.due_date + Days::new(terms.charge_off_after_days));
            }
        }
        dates.into_iter().filter(|date| *date > today).min()
    }

    /// Checks the plan's invariants; an error here is a bug.
    pub fn check(&self) -> Result<(), PlanError> {
        let principal: i64 = self.installments.iter().map(|installment| installment.principal).sum();
        let fees: i64 = self.installments.iter().map(|installment| installment.fee).sum();
        let broken = |what: String| Err(PlanError::Invariant(what));
        if self.kind != PlanKind::PayNow && principal != self.principal {
            return broken(format!("installment principal {principal} != plan principal {}", self.principal));
        }
        if fees != self.fees {
            return broken(format!("installment fees {fees} != plan fees {}", self.fees));
        }
        if let Some(bad) =
            self.installments.iter().find(|i| i.principal < 0 || i.interest < 0 || i.fee < 0 || i.owed() < 0)
        {
            return broken(format!("installment {} has a negative part", bad.seq));
        }
        Ok(())
    }

    /// Replaces the unpaid principal and interest of the installments at `future` with a new amortization of
    /// `principal` over them; what was already paid on each stays.
    fn reamortize(&mut self, future: &[usize], principal: i64) {
        let parts = amortize(principal, self.apr_basis_points, future.len());
        for (&index, (new_principal, new_interest)) in future.iter().zip(parts) {
            let installment = &mut self.installments[index];
            let (principal_owed, interest_owed, _) = installment.owed_parts();
            installment.principal = installment.principal - principal_owed + new_principal;
            installment.interest = installment.interest - interest_owed + new_interest;
        }
    }

    fn pay_in_order(&mut self, mut amount: i64) {
        for installment in self.installments.iter_mut().filter(|installment| installment.is_open()) {
            let paying = installment.owed().min(amount);
            installment.paid += paying;
            amount -= paying;
            if installment.owed() == 0 {
                installment.status = InstallmentStatus::Paid;
            }
        }
    }

    fn settle_status(&mut self) {
        if self.status == PlanStatus::Active && self.installments.iter().all(|installment| !installment.is_open()) {
            let anything_paid = self.installments.iter().any(|installment| installment.paid > 0);
            self.status = if anything_paid { PlanStatus::Completed } else { PlanStatus::Canceled };
        }
    }

    fn accrued_interest(&self, principal: i64, today: NaiveDate) -> i64 {
        let last_due = self
            .installments
            .iter()
            .map(|installment| installment.due_date)
            .filter(|due| *due <= today)
            .max()
            .unwrap_or(self.start_date);
        let days = (today - last_due).num_days();
        let interest = Decimal::from(principal) * Decimal::from(self.apr_basis_points) * Decimal::from(days)
            / Decimal::from(10_000 * 365);
        round_half_up(interest)
    }

    /// The installment now carrying the debt of installment `index`, if that debt is unpaid: itself while open,
    /// or the end of its rollover chain.
    fn debt_carrier(&self, mut index: usize) -> Option<usize> {
        loop {
            let installment = &self.installments[index];
            match installment.status {
                InstallmentStatus::Failed | InstallmentStatus::Overdue => return Some(index),
                InstallmentStatus::Scheduled => return (installment.owed() > 0).then_some(index),
                InstallmentStatus::RolledOver => index = self.index_of(installment.rolled_into?).ok()?,
                InstallmentStatus::Paid | InstallmentStatus::Canceled => return None,
            }
        }
    }

    fn oldest_unpaid_due_date(&self, today: NaiveDate) -> Option<NaiveDate> {
        if self.status != PlanStatus::Active {
            return None;
        }
        (0..self.installments.len())
            .filter(|&index| self.installments[index].due_date < today && self.debt_carrier(index).is_some())
            .map(|index| self.installments[index].due_date)
            .min()
    }

    fn index_of(&self, seq: u32) -> Result<usize, PlanError> {
        self.installments.iter().position(|installment| installment.seq == seq).ok_or(PlanError::NotCollectible(seq))
    }

    fn open_installment(&mut self, seq: u32) -> Result<&mut Installment, PlanError> {
        if self.status != PlanStatus::Active {
            return Err(PlanError::NotActive);
        }
        let index = self.index_of(seq)?;
        let installment = &mut self.installments[index];
        if matches!(installment.status, InstallmentStatus::Scheduled | InstallmentStatus::Failed) {
            Ok(installment)
        } else {
            Err(PlanError::NotCollectible(seq))
        }
    }
}

/// `date` plus `months` calendar months, clamped to the month's last day (Jan 31 + 1 month = Feb 28/29).
pub fn add_months(date: NaiveDate, months: u32) -> NaiveDate {
    date.checked_add_months(Months::new(months)).unwrap_or(NaiveDate::MAX)
}

/// `count` equal parts of `total`, the remainder on the first (pay-in-4, zero-interest financing).
fn split_remainder_first(total: i64, count: usize) -> Vec<i64> {
    let part = total / count as i64;
    let mut parts = vec![part; count];
    parts[0] += total - part * count as i64;
    parts
}

/// `count` rounded equal shares of `total`, the last taking the remainder (refunds spread over installments).
fn spread_evenly(total: i64, count: usize) -> Vec<i64> {
    if count == 0 {
        return vec![];
    }
    let others = count as i64 - 1;
    let mut share = round_half_up(Decimal::from(total) / Decimal::from(count as i64));
    if share * others > total {
        // Rounding up would leave the last share negative: round down instead.
        share = total / count as i64;
    }
    let mut shares = vec![share; count];
    shares[count - 1] = total - share * others;
    shares
}

/// [`spread_evenly`], but no share exceeds its capacity: what does not fit is spread again over the others.
fn spread_capped(total: i64, capacities: &[i64]) -> Vec<i64> {
    let mut shares = vec![0; capacities.len()];
    let mut left = total;
    while left > 0 {
        let open: Vec<usize> = (0..capacities.len()).filter(|&index| shares[index] < capacities[index]).collect();
        if open.is_empty() {
            break;
        }
        for (&index, share) in open.iter().zip(spread_evenly(left, open.len())) {
            let fits = share.min(capacities[index] - shares[index]);
            shares[index] += fits;
            left -= fits;
        }
    }
    shares
}

/// An amortized schedule: (principal, interest) per month for `principal` at `apr_basis_points` over `months`.
/// Payment = P·r / (1 − (1 + r)^−N) rounded half-up; interest = round(balance·r); the last payment takes the
/// residual so the balance ends at exactly zero. APR 0 gives equal parts.
fn amortize(principal: i64, apr_basis_points: u32, months: usize) -> Vec<(i64, i64)> {
    if months == 0 {
        return vec![];
    }
    if apr_basis_points == 0 {
        return split_remainder_first(principal, months).into_iter().map(|part| (part, 0)).collect();
    }
    let rate = Decimal::from(apr_basis_points) / Decimal::from(10_000 * 12);
    let growth = (0..months).fold(Decimal::ONE, |product, _| product * (Decimal::ONE + rate));
    let payment = round_half_up(Decimal::from(principal) * rate / (Decimal::ONE - Decimal::ONE / growth));
    let mut balance = principal;
    let mut schedule = Vec::with_capacity(months);
    for month in 1..=months {
        let interest = round_half_up(Decimal::from(balance) * rate);
        let part = if month == months { balance } else { (payment - interest).clamp(0, balance) };
        balance -= part;
        schedule.push((part, interest));
    }
    schedule
}

/// Rounds to a whole number of minor units, halves away from zero (amounts here are never negative).
fn round_half_up(value: Decimal) -> i64 {
    let rounded = value.round_dp_with_strategy(0, RoundingStrategy::MidpointAwayFromZero);
    i64::try_from(rounded).unwrap_or(if rounded.is_sign_negative() { i64::MIN } else { i64::MAX })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn date(year: i32, month: u32, day: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(year, month, day).expect("valid date")
    }

    fn usd(minor: i64) -> Money {
        Money::new(minor, Currency::USD)
    }

    fn terms() -> PlanTerms {
        PlanTerms::defaults(Currency::USD)
    }

    fn amounts(plan: &Plan) -> Vec<i64> {
        plan.installments.iter().map(Installment::amount).collect()
    }

    fn statuses(plan: &Plan) -> Vec<InstallmentStatus> {
        plan.installments.iter().map(|installment| installment.status).collect()
    }

    #[test]
    fn pay_in_4_puts_the_remainder_on_the_first_installment_every_14_days() {
        let plan = Plan::new(PlanKind::PayIn4, usd(10_001), date(2026, 11, 26), &terms()).expect("valid");
        assert_eq!(amounts(&plan), vec![2_501, 2_500, 2_500, 2_500]);
        let dates: Vec<NaiveDate> = plan.installments.iter().map(|installment| installment.due_date).collect();
        assert_eq!(dates, vec![date(2026, 11, 26), date(2026, 12, 10), date(2026, 12, 24), date(2027, 1, 7)]);
        assert_eq!(plan.balance(), 10_001);
    }

    #[test]
    fn pay_in_30_is_one_payment_30_days_later_and_pay_now_has_none() {
        let plan = Plan::new(PlanKind::PayIn30, usd(4_999), date(2026, 11, 26), &terms()).expect("valid");
        assert_eq!(amounts(&plan), vec![4_999]);
        assert_eq!(plan.installments[0].due_date, date(2026, 12, 26));
        let now = Plan::new(PlanKind::PayNow, usd(4_999), date(2026, 11, 26), &terms()).expect("valid");
        assert!(now.installments.is_empty());
        assert_eq!((now.status, now.balance()), (PlanStatus::Completed, 0));
    }

    #[test]
    fn financing_800_at_15_percent_over_12_months_pays_72_21() {
        let mut terms = terms();
        terms.financing_apr_basis_points = 1500;
        let plan = Plan::new(PlanKind::Financing(12), usd(80_000), date(2026, 1, 31), &terms).expect("valid");
        assert!(amounts(&plan)[..11].iter().all(|amount| *amount == 7_221), "{:?}", amounts(&plan));
        // First month's interest: 800.00 × 1.25% = 10.00.
        assert_eq!((plan.installments[0].interest, plan.installments[0].principal), (1_000, 6_221));
        let principal: i64 = plan.installments.iter().map(|installment| installment.principal).sum();
        assert_eq!(principal, 80_000);
        // The last payment absorbs the rounding residual.
        assert_eq!(plan.installments[11].amount(), 7_217);
        // Due one month after capture, on the same day, clamped to the month's end.
        assert_eq!(plan.installments[0].due_date, date(2026, 2, 28));
        assert_eq!(plan.installments[1].due_date, date(2026, 3, 31));
        assert_eq!(plan.installments[2].due_date, date(2026, 4, 30));
    }

    #[test]
    fn financing_at_zero_apr_is_equal_parts() {
        let mut terms = terms();
        terms.financing_apr_basis_points = 0;
        let plan = Plan::new(PlanKind::Financing(3), usd(10_000), date(2026, 11, 26), &terms).expect("valid");
        assert_eq!(amounts(&plan), vec![3_334, 3_333, 3_333]);
    }

    #[test]
    fn a_refund_pays_the_overdue_installment_then_reduces_the_rest_evenly() {
        let start = date(2026, 11, 1);
        let mut plan = Plan::new(PlanKind::PayIn4, usd(50_000), start, &terms()).expect("valid");
        plan.collection_failed(1, start, &terms()).expect("open");
        let application = plan.apply_refund(30_000, date(2026, 11, 5)).expect("applies");
        assert_eq!(
            application,
            RefundApplication { to_overdue: 12_500, interest_paid: 0, to_future: 17_500, excess: 0 }
        );
        assert_eq!(amounts(&plan), vec![12_500, 6_667, 6_667, 6_666]);
        assert_eq!(plan.installments[0].status, InstallmentStatus::Paid);
        assert_eq!(plan.balance(), 20_000);
    }

    #[test]
    fn a_refund_that_pays_an_overdue_financing_installment_reports_the_interest_it_paid() {
        let start = date(2026, 11, 1);
        let mut plan = Plan::new(PlanKind::Financing(3), usd(300_000), start, &terms()).expect("valid");
        let first = plan.installments[0].clone();
        assert!(first.interest > 0);
        // Unpaid past its due date; a refund smaller than it covers its interest first, then principal.
        let application = plan.apply_refund(first.interest + 100, date(2027, 1, 5)).expect("applies");
        assert_eq!((application.to_overdue, application.interest_paid), (first.interest + 100, first.interest));
        // A refund smaller than the interest pays only interest.
        let mut plan = Plan::new(PlanKind::Financing(3), usd(300_000), start, &terms()).expect("valid");
        let application = plan.apply_refund(10, date(2027, 1, 5)).expect("applies");
        assert_eq!(application.interest_paid, 10);
    }

    #[test]
    fn a_refund_beyond_the_balance_cancels_the_rest_and_returns_the_excess() {
        let start = date(2026, 11, 1);
        let mut plan = Plan::new(PlanKind::PayIn4, usd(10_000), start, &terms()).expect("valid");
        plan.collection_succeeded(1).expect("open");
        let application = plan.apply_refund(10_000, date(2026, 11, 2)).expect("applies");
        assert_eq!(application, RefundApplication { to_overdue: 0, interest_paid: 0, to_future: 7_500, excess: 2_500 });
        use InstallmentStatus::*;
        assert_eq!(statuses(&plan), vec![Paid, Canceled, Canceled, Canceled]);
        assert_eq!(plan.status, PlanStatus::Completed);
        // A refund on a finished plan goes back to the funding card whole.
        let application = plan.apply_refund(500, date(2026, 11, 3)).expect("applies");
        assert_eq!(application.excess, 500);
    }

    #[test]
    fn a_full_refund_before_any_payment_cancels_the_plan() {
        let mut plan = Plan::new(PlanKind::PayIn30, usd(10_000), date(2026, 11, 1), &terms()).expect("valid");
        let application = plan.apply_refund(10_000, date(2026, 11, 2)).expect("applies");
        assert_eq!(application.excess, 0);
        assert_eq!((plan.status, plan.principal), (PlanStatus::Canceled, 0));
    }

    #[test]
    fn financing_is_reamortized_on_the_reduced_principal() {
        let mut terms = terms();
        terms.financing_apr_basis_points = 1500;
        let mut plan = Plan::new(PlanKind::Financing(12), usd(80_000), date(2026, 1, 15), &terms).expect("valid");
        plan.apply_refund(40_000, date(2026, 1, 20)).expect("applies");
        let expected = Plan::new(PlanKind::Financing(12), usd(40_000), date(2026, 1, 15), &terms).expect("valid");
        assert_eq!(amounts(&plan), amounts(&expected));
        assert_eq!(plan.principal, 40_000);
    }

    #[test]
    fn a_failing_card_retries_rolls_over_and_hits_the_late_fee_cap() {
        let start = date(2026, 11, 1);
        let terms = terms();
        let mut plan = Plan::new(PlanKind::PayIn4, usd(10_000), start, &terms).expect("valid");
        let mut fees = Vec::new();
        let mut day = start;
        while day <= start + Days::new(70) {
            for seq in plan.collectible(day, &terms) {
                plan.collection_failed(seq, day, &terms).expect("open");
            }
            fees.extend(plan.assess_late_fees(day, &terms).into_iter().map(|(_, fee)| (day, fee)));
            day = day + Days::new(1);
        }
        use InstallmentStatus::*;
        assert_eq!(statuses(&plan), vec![RolledOver, RolledOver, RolledOver, Overdue]);
        // Each installment's debt is 10 days late once; the fourth fee is cut to the 25.00 cap.
        assert_eq!(
            fees,
            vec![
                (date(2026, 11, 11), 700),
                (date(2026, 11, 25), 700),
                (date(2026, 12, 9), 700),
                (date(2026, 12, 23), 400)
            ]
        );
        assert_eq!((plan.fees, plan.balance()), (2_500, 12_500));
        assert_eq!(plan.installments[3].amount(), 12_500);
        assert!(plan.has_arrears(day));
        // Paying everything ends the arrears and the plan.
        plan.pay(12_500).expect("pays");
        assert_eq!(plan.status, PlanStatus::Completed);
        assert!(!plan.has_arrears(day));
    }

    #[test]
    fn a_retry_that_succeeds_pays_the_installment() {
        let start = date(2026, 11, 1);
        let terms = terms();
        let mut plan = Plan::new(PlanKind::PayIn4, usd(10_000), start, &terms).expect("valid");
        assert_eq!(plan.collection_failed(1, start, &terms), Ok(CollectionFailure::RetryOn(date(2026, 11, 3))));
        assert!(plan.collectible(date(2026, 11, 2), &terms).is_empty());
        assert!(plan.has_arrears(date(2026, 11, 2)));
        assert_eq!(plan.collectible(date(2026, 11, 3), &terms), vec![1]);
        assert_eq!(plan.collection_succeeded(1), Ok(2_500));
        assert!(!plan.has_arrears(date(2026, 11, 3)));
        assert_eq!(plan.collection_succeeded(1), Err(PlanError::NotCollectible(1)));
    }

    #[test]
    fn charge_off_after_120_days_overdue() {
        let start = date(2026, 1, 1);
        let terms = terms();
        let mut plan = Plan::new(PlanKind::PayIn30, usd(10_000), start, &terms).expect("valid");
        let due = date(2026, 1, 31);
        plan.collection_failed(1, due, &terms).expect("open");
        plan.collection_failed(1, due + Days::new(2), &terms).expect("open");
        assert!(!plan.charge_off_due(due + Days::new(119), &terms));
        assert!(plan.charge_off_due(due + Days::new(120), &terms));
        assert_eq!(plan.charge_off(), Ok(10_000));
        assert_eq!(plan.status, PlanStatus::ChargedOff);
    }

    #[test]
    fn early_payment_and_financing_payoff_with_interest_by_days() {
        let mut plan = Plan::new(PlanKind::PayIn4, usd(10_000), date(2026, 11, 1), &terms()).expect("valid");
        plan.pay(3_000).expect("pays");
        assert_eq!(statuses(&plan)[..2], [InstallmentStatus::Paid, InstallmentStatus::Scheduled]);
        assert_eq!(plan.installments[1].paid, 500);
        assert_eq!(plan.pay(7_001), Err(PlanError::ExceedsBalance));

        let mut terms = terms();
        terms.financing_apr_basis_points = 1500;
        let mut financed = Plan::new(PlanKind::Financing(12), usd(80_000), date(2026, 1, 15), &terms).expect("valid");
        // 30 days after capture, before the first due date: 800.00 × 15% × 30 / 365 = 9.86.
        assert_eq!(financed.payoff_amount(date(2026, 2, 14)), 80_000 + 986);
        assert_eq!(financed.pay_off(date(2026, 2, 14)), Ok(80_986));
        assert_eq!((financed.status, financed.balance()), (PlanStatus::Completed, 0));
        let paid: i64 = financed.installments.iter().map(|installment| installment.paid).sum();
        assert_eq!(paid, 80_986);
    }

    #[test]
    fn a_later_capture_adds_to_the_installments_to_come() {
        let mut plan = Plan::new(PlanKind::PayIn4, usd(10_000), date(2026, 11, 1), &terms()).expect("valid");
        plan.collection_succeeded(1).expect("open");
        plan.add_principal(1_000, date(2026, 11, 2)).expect("adds");
        assert_eq!(amounts(&plan), vec![2_500, 2_833, 2_833, 2_834]);
        assert_eq!(plan.principal, 11_000);
    }

    #[test]
    fn evenly_spread_shares_never_go_negative() {
        assert_eq!(spread_evenly(17_500, 3), vec![5_833, 5_833, 5_834]);
        assert_eq!(spread_evenly(5, 8), vec![0, 0, 0, 0, 0, 0, 0, 5]);
        assert_eq!(spread_capped(10, &[2, 100, 100]), vec![2, 4, 4]);
    }

    fn kinds() -> impl Strategy<Value = PlanKind> {
        proptest::sample::select(PlanKind::ALL.to_vec())
    }

    proptest! {
        #[test]
        fn schedules_sum_to_the_principal_and_never_go_negative(
            kind in kinds(), principal in 1i64..100_000_000, apr in 0u32..10_000, day in 0u64..3_650,
        ) {
            let mut terms = terms();
            terms.financing_apr_basis_points = apr;
            let plan = Plan::new(kind, usd(principal), date(2026, 1, 1) + Days::new(day), &terms).expect("valid");
            prop_assert!(plan.check().is_ok());
            if kind != PlanKind::PayNow {
                let sum: i64 = plan.installments.iter().map(|installment| installment.principal).sum();
                prop_assert_eq!(sum, principal);
            }
            if !matches!(kind, PlanKind::Financing(_)) || apr == 0 {
                prop_assert_eq!(plan.balance(), if kind == PlanKind::PayNow { 0 } else { principal });
            }
            prop_assert!(plan.installments.iter().all(|i| i.principal >= 0 && i.interest >= 0));
        }

        #[test]
        fn refunds_conserve_money_and_keep_invariants(
            kind in proptest::sample::select(vec![PlanKind::PayIn4, PlanKind::PayIn30, PlanKind::Financing(6)]),
            principal in 1_000i64..1_000_000, refunds in proptest::collection::vec(1i64..600_000, 1..4),
            failures in 0usize..3, day in 0u64..60,
        ) {
            let terms = terms();
            let start = date(2026, 1, 1);
            let mut plan = Plan::new(kind, usd(principal), start, &terms).expect("valid");
            for _ in 0..failures {
                for seq in plan.collectible(start + Days::new(day), &terms) {
                    plan.collection_failed(seq, start + Days::new(day), &terms).expect("open");
                }
            }
            let today = start + Days::new(day + 1);
            for refund in refunds {
                let before = plan.balance();
                let application = plan.apply_refund(refund, today).expect("applies");
                prop_assert_eq!(application.to_overdue + application.to_future + application.excess, refund);
                prop_assert!(application.excess >= 0 && plan.check().is_ok());
                if !matches!(kind, PlanKind::Financing(_)) {
                    prop_assert_eq!(plan.balance(), before - application.to_overdue - application.to_future);
                }
                prop_assert!(plan.balance() >= 0);
            }
        }
    }
}
