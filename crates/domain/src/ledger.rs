//! The ledger model: double-entry transfers in integer minor units, pending transfers (holds) that resolve at most
//! once, the account layout, and an invariant checker.
//!
//! A transfer moves an amount from a debit account to a credit account, so each one balances on its own and every
//! transaction (a list of transfers committed together) balances too. Postings derived from transfers count a
//! debit as `+amount` and a credit as `−amount`; per currency they always sum to zero. A pending transfer is a
//! hold: it is either posted (fully or partly — the rest is re-held as a new pending transfer) or voided, once.
//! Corrections are new transfers; nothing is ever edited.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use serde::Serialize;

use crate::money::{Currency, Money};

/// The kinds of account in the layout. Per-card accounts carry the card's id as owner.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AccountKind {
    /// The issuer's side of every card's spending limit (a memo account: debited when a card is issued).
    IssuedCardLimits,
    /// Per card: what the card may still spend (credit balance = `remaining_amount`).
    CardAvailable,
    /// Per card: authorization holds on their way to becoming purchases.
    AuthorizationHolds,
    /// What the issuer owes the card network for captured purchases.
    NetworkSettlementPayable,
    /// Money the funding gateway collected from (debit) or returned to (credit) cardholders' funding cards.
    FundingGatewayClearing,
    /// Per card (one card, one plan): what the cardholder owes for the card's purchases, fees and interest.
    CardholderReceivable,
    /// Refunds owed back to cardholders' funding cards.
    CardholderRefundPayable,
    LateFeeRevenue,
    InterestRevenue,
    /// Written-off receivables.
    CreditLosses,
}

impl AccountKind {
    const ALL: [AccountKind; 10] = [
        AccountKind::IssuedCardLimits,
        AccountKind::CardAvailable,
        AccountKind::AuthorizationHolds,
        AccountKind::NetworkSettlementPayable,
        AccountKind::FundingGatewayClearing,
        AccountKind::CardholderReceivable,
        AccountKind::CardholderRefundPayable,
        AccountKind::LateFeeRevenue,
        AccountKind::InterestRevenue,
        AccountKind::CreditLosses,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            AccountKind::IssuedCardLimits => "issued_card_limits",
            AccountKind::CardAvailable => "card_available",
            AccountKind::AuthorizationHolds => "authorization_holds",
            AccountKind::NetworkSettlementPayable => "network_settlement_payable",
            AccountKind::FundingGatewayClearing => "funding_gateway_clearing",
            AccountKind::CardholderReceivable => "cardholder_receivable",
            AccountKind::CardholderRefundPayable => "cardholder_refund_payable",
            AccountKind::LateFeeRevenue => "late_fee_revenue",
            AccountKind::InterestRevenue => "interest_revenue",
            AccountKind::CreditLosses => "credit_losses",
        }
    }

    fn per_card(self) -> bool {
        matches!(self, AccountKind::CardAvailable | AccountKind::AuthorizationHolds | AccountKind::CardholderReceivable)
    }
}

/// An account: a kind, and the card it belongs to for per-card kinds. Written `card_available:card_123`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AccountId {
    kind: AccountKind,
    card: Option<String>,
}

impl AccountId {
    /// A deployment-wide account. Panics on a per-card kind: that is a programming error, not input.
    pub fn global(kind: AccountKind) -> AccountId {
        assert!(!kind.per_card(), "{} is a per-card account", kind.as_str());
        AccountId { kind, card: None }
    }

    pub fn card(kind: AccountKind, card_id: &str) -> AccountId {
        assert!(kind.per_card(), "{} is not a per-card account", kind.as_str());
        AccountId { kind, card: Some(card_id.to_owned()) }
    }

    pub fn kind(&self) -> AccountKind {
        self.kind
    }

    /// Parses the written form (`card_available:card_123`, `late_fee_revenue`).
    pub fn parse(text: &str) -> Option<AccountId> {
        let (kind, card) = match text.split_once(':') {
            Some((kind, card)) if !card.is_empty() => (kind, Some(card)),
            Some(_) => return None,
            None => (text, None),
        };
        let kind = AccountKind::ALL.into_iter().find(|candidate| candidate.as_str() == kind)?;
        (kind.per_card() == card.is_some()).then(|| AccountId { kind, card: card.map(str::to_owned) })
    }
}

impl fmt::Display for AccountId {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.card {
            Some(card) => write!(formatter, "{}:{card}", self.kind.as_str()),
            None => formatter.write_str(self.kind.as_str()),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct TransferId(pub u64);

/// What a transfer does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "type")]
pub enum TransferKind {
    Posted,
    Pending,
    /// Posts `amount` of the pending transfer (the rest, if any, is re-held by a new pending transfer).
    PostPending {
        pending: TransferId,
    },
    /// Releases the pending transfer.
    VoidPending {
        pending: TransferId,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transfer {
    pub id: TransferId,
    pub debit: AccountId,
    pub credit: AccountId,
    pub amount: Money,
    pub kind: TransferKind,
    /// What business event made it (`authorization_hold`, `capture`, `late_fee`...).
    pub code: String,
}

/// One step of a transaction, before ids are assigned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Entry {
    Post {
        debit: AccountId,
        credit: AccountId,
        amount: Money,
        code: &'static str,
    },
    Hold {
        debit: AccountId,
        credit: AccountId,
        amount: Money,
        code: &'static str,
    },
    /// Posts `amount` (at most the hold) of a pending transfer and re-holds the rest.
    PostHold {
        pending: TransferId,
        amount: Money,
        code: &'static str,
    },
    VoidHold {
        pending: TransferId,
        code: &'static str,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LedgerError {
    #[error("transfer amounts must be positive")]
    NonPositiveAmount,
    #[error("a transfer needs two different accounts")]
    SameAccount,
    #[error("pending transfer {0:?} does not exist")]
    UnknownPending(TransferId),
    #[error("pending transfer {0:?} is already resolved")]
    AlreadyResolved(TransferId),
    #[error("posting more than pending transfer {0:?} holds")]
    ExceedsPending(TransferId),
    #[error("currency differs from the pending transfer's")]
    CurrencyMismatch,
}

/// What a committed entry produced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Committed {
    pub transfer: TransferId,
    /// For a partial [`Entry::PostHold`]: the new pending transfer holding the rest.
    pub reheld: Option<TransferId>,
}

/// An in-memory ledger. The store keeps the same transfers in a database and runs the same [`verify`].
#[derive(Debug, Clone, Default)]
pub struct Ledger {
    transfers: Vec<Transfer>,
    /// Pending transfers not yet resolved, by id (index into `transfers`).
    open_pending: HashMap<TransferId, usize>,
}

impl Ledger {
    pub fn new() -> Ledger {
        Ledger::default()
    }

    pub fn transfers(&self) -> &[Transfer] {
        &self.transfers
    }

    /// The pending transfer `id`, if it is still open.
    pub fn open_pending(&self, id: TransferId) -> Option<&Transfer> {
        self.open_pending.get(&id).map(|&index| &self.transfers[index])
    }

    /// Commits every entry or none: the whole transaction is validated before anything is written.
    pub fn commit(&mut self, entries: &[Entry]) -> Result<Vec<Committed>, LedgerError> {
        let length = self.transfers.len();
        let open_before = self.open_pending.clone();
        let committed = entries.iter().map(|entry| self.apply(entry)).collect::<Result<Vec<_>, _>>();
        if committed.is_err() {
            self.transfers.truncate(length);
            self.open_pending = open_before;
        }
        committed
    }

    /// The posted balance of an account, debit-positive.
    pub fn posted_balance(&self, account: &AccountId, currency: Currency) -> i64 {
        balances(&self.transfers).get(&(account.clone(), currency)).map_or(0, |balance| balance.posted)
    }

    /// The open pending amount of an account, debit-positive.
    pub fn pending_balance(&self, account: &AccountId, currency: Currency) -> i64 {
        balances(&self.transfers).get(&(account.clone(), currency)).map_or(0, |balance| balance.pending)
    }

    fn apply(&mut self, entry: &Entry) -> Result<Committed, LedgerError> {
        let next_id = TransferId(self.transfers.len() as u64 + 1);
        match entry {
            Entry::Post { debit, credit, amount, code } | Entry::Hold { debit, credit, amount, code } => {
                if !amount.is_positive() {
                    return Err(LedgerError::NonPositiveAmount);
                }
                if debit == credit {
                    return Err(LedgerError::SameAccount);
                }
                let kind =
                    if matches!(entry, Entry::Hold { .. }) { TransferKind::Pending } else { TransferKind::Posted };
                self.push(Transfer {
                    id: next_id,
                    debit: debit.clone(),
                    credit: credit.clone(),
                    amount: *amount,
                    kind,
                    code: code.to_string(),
                });
                Ok(Committed { transfer: next_id, reheld: None })
            }
            Entry::PostHold { pending, amount, code } => self.post_hold(next_id, *pending, *amount, code),
            Entry::VoidHold { pending, code } => {
                let held = self.take_pending(*pending)?;
                let kind = TransferKind::VoidPending { pending: *pending };
                self.push(Transfer {
                    id: next_id,
                    debit: held.debit,
                    credit: held.credit,
                    amount: held.amount,
                    kind,
                    code: code.to_string(),
                });
                Ok(Committed { transfer: next_id, reheld: None })
            }
        }
    }

    /// Posts `amount` of the pending transfer `pending` and holds the rest again as a new pending transfer.
    fn post_hold(
        &mut self,
        next_id: TransferId,
        pending: TransferId,
        amount: Money,
        code: &str,
    ) -> Result<Committed, LedgerError> {
        let held = self.take_pending(pending)?;
        if amount.currency() != held.amount.currency() {
            return Err(LedgerError::CurrencyMismatch);
        }
        if !amount.is_positive() {
            return Err(LedgerError::NonPositiveAmount);
        }
        if amount.minor() > held.amount.minor() {
            return Err(LedgerError::ExceedsPending(pending));
        }
        self.push(Transfer {
            id: next_id,
            debit: held.debit.clone(),
            credit: held.credit.clone(),
            amount,
            kind: TransferKind::PostPending { pending },
            code: code.to_owned(),
        });
        let rest = held.amount.minor() - amount.minor();
        let reheld = (rest > 0).then(|| {
            let id = TransferId(next_id.0 + 1);
            self.push(Transfer {
                id,
                debit: held.debit,
                credit: held.credit,
                amount: Money::new(rest, held.amount.currency()),
                kind: TransferKind::Pending,
                code: "rehold".to_owned(),
            });
            id
        });
        Ok(Committed { transfer: next_id, reheld })
    }

    fn take_pending(&mut self, id: TransferId) -> Result<Transfer, LedgerError> {
        match self.open_pending.remove(&id) {
            Some(index) => Ok(self.transfers[index].clone()),
            None if self
                .transfers
                .iter()
                .any(|transfer| transfer.id == id && transfer.kind == TransferKind::Pending) =>
            {
                Err(LedgerError::AlreadyResolved(id))
            }
            None => Err(LedgerError::UnknownPending(id)),
        }
    }

    fn push(&mut self, transfer: Transfer) {
        if transfer.kind == TransferKind::Pending {
            self.open_pending.insert(transfer.id, self.transfers.len());
        }
        self.transfers.push(transfer);
    }
}

/// Posted and open-pending balance of one account, debit-positive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Balance {
    pub posted: i64,
    pub pending: i64,
}

/// Every account's balance, re-derived from the transfers.
pub fn balances(transfers: &[Transfer]) -> BTreeMap<(AccountId, Currency), Balance> {
    let resolved: std::collections::HashSet<TransferId> = transfers
        .iter()
        .filter_map(|transfer| match transfer.kind {
            TransferKind::PostPending { pending } | TransferKind::VoidPending { pending } => Some(pending),
            _ => None,
        })
        .collect();
    let mut balances: BTreeMap<(AccountId, Currency), Balance> = BTreeMap::new();
    for transfer in transfers {
        let currency = transfer.amount.currency();
        let amount = transfer.amount.minor();
        let mut add = |account: &AccountId, signed: i64, pending: bool| {
            let balance = balances.entry((account.clone(), currency)).or_default();
            if pending { balance.pending += signed } else { balance.posted += signed }
        };
        match transfer.kind {
            TransferKind::Posted | TransferKind::PostPending { .. } => {
                add(&transfer.debit, amount, false);
                add(&transfer.credit, -amount, false);
            }
            TransferKind::Pending if !resolved.contains(&transfer.id) => {
                add(&transfer.debit, amount, true);
                add(&transfer.credit, -amount, true);
            }
            TransferKind::Pending | TransferKind::VoidPending { .. } => {}
        }
    }
    balances
}

/// Per-currency totals of a verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct CurrencyTotals {
    /// Sum of all posted postings: always 0.
    pub postings_sum: i64,
    /// Sum of all open pending postings: always 0.
    pub pending_sum: i64,
    pub transfers: u64,
    /// Amount still held by open pending transfers.
    pub open_holds: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct LedgerReport {
    pub ok: bool,
    pub currencies: BTreeMap<String, CurrencyTotals>,
    pub problems: Vec<String>,
}

/// Recomputes everything from the transfers and checks every invariant: positive amounts, distinct accounts,
/// every resolution refers to an earlier pending transfer of the same accounts and currency, each pending
/// transfer resolved at most once, no posting above its hold, and postings summing to zero per currency.
pub fn verify(transfers: &[Transfer]) -> LedgerReport {
    let mut report = LedgerReport::default();
    let mut pending: HashMap<TransferId, &Transfer> = HashMap::new();
    let mut resolved: HashMap<TransferId, TransferId> = HashMap::new();
    for transfer in transfers {
        let totals = report.currencies.entry(transfer.amount.currency().code().to_owned()).or_default();
        totals.transfers += 1;
        if !transfer.amount.is_positive() {
            report.problems.push(format!("transfer {} has a non-positive amount", transfer.id.0));
        }
        if transfer.debit == transfer.credit {
            report.problems.push(format!("transfer {} debits and credits the same account", transfer.id.0));
        }
        match transfer.kind {
            TransferKind::Pending => {
                pending.insert(transfer.id, transfer);
            }
            TransferKind::PostPending { pending: held } | TransferKind::VoidPending { pending: held } => {
                match pending.get(&held) {
                    None => {
                        report.problems.push(format!("transfer {} resolves unknown pending {}", transfer.id.0, held.0))
                    }
                    Some(original) => {
                        if original.debit != transfer.debit
                            || original.credit != transfer.credit
                            || original.amount.currency() != transfer.amount.currency()
                        {
                            report
                                .problems
                                .push(format!("transfer {} does not match pending {}", transfer.id.0, held.0));
                        }
                        if transfer.amount.minor() > original.amount.minor() {
                            report
                                .problems
                                .push(format!("transfer {} posts more than pending {}", transfer.id.0, held.0));
                        }
                    }
                }
                if let Some(earlier) = resolved.insert(held, transfer.id) {
                    report.problems.push(format!(
                        "pending {} resolved twice (transfers {} and {})",
                        held.0, earlier.0, transfer.id.0
                    ));
                }
            }
            TransferKind::Posted => {}
        }
    }
    for ((_, currency), balance) in balances(transfers) {
        let totals = report.currencies.entry(currency.code().to_owned()).or_default();
        totals.postings_sum += balance.posted;
        totals.pending_sum += balance.pending;
        totals.open_holds += balance.pending.max(0);
    }
    for (currency, totals) in &report.currencies {
        if totals.postings_sum != 0 || totals.pending_sum != 0 {
            report
                .problems
                .push(format!("{currency} postings sum to {} (pending {})", totals.postings_sum, totals.pending_sum));
        }
    }
    report.ok = report.problems.is_empty();
    report
}

/// The entries of each business event, in the account layout above. The server and the demo build their
/// transactions from these, so the layout lives in one place.
pub mod entries {
    use super::{AccountId, AccountKind, Entry, TransferId};
    use crate::money::Money;

    fn card(kind: AccountKind, card_id: &str) -> AccountId {
        AccountId::card(kind, card_id)
    }

    fn global(kind: AccountKind) -> AccountId {
        AccountId::global(kind)
    }

    fn post(debit: AccountId, credit: AccountId, amount: Money, code: &'static str) -> Option<Entry> {
        amount.is_positive().then_some(Entry::Post { debit, credit, amount, code })
    }

    /// A card is issued for `amount`: its spending limit opens.
    pub fn issue_card(card_id: &str, amount: Money) -> Vec<Entry> {
        post(global(AccountKind::IssuedCardLimits), card(AccountKind::CardAvailable, card_id), amount, "card_issued")
            .into_iter()
            .collect()
    }

    /// An approved authorization holds `amount` of the card's limit.
    pub fn hold(card_id: &str, amount: Money) -> Entry {
        Entry::Hold {
            debit: card(AccountKind::CardAvailable, card_id),
            credit: card(AccountKind::AuthorizationHolds, card_id),
            amount,
            code: "authorization_hold",
        }
    }

    /// A capture of `amount`, taking up to `hold_amount` from the pending hold `hold` (none for a force post);
    /// any part above the hold is posted directly. The purchase becomes a debt to the network and a receivable
    /// from the cardholder.
    pub fn capture(card_id: &str, hold: Option<(TransferId, Money)>, amount: Money) -> Vec<Entry> {
        let from_hold = hold.map_or(0, |(_, held)| held.minor().min(amount.minor()));
        let above_hold = Money::new(amount.minor() - from_hold, amount.currency());
        let mut entries = Vec::new();
        if let Some((pending, _)) = hold.filter(|_| from_hold > 0) {
            entries.push(Entry::PostHold {
                pending,
                amount: Money::new(from_hold, amount.currency()),
                code: "capture",
            });
        }
        let available = card(AccountKind::CardAvailable, card_id);
        let holds = card(AccountKind::AuthorizationHolds, card_id);
        entries.extend(post(available, holds.clone(), above_hold, "capture_above_hold"));
        entries.extend(post(holds, global(AccountKind::NetworkSettlementPayable), amount, "capture"));
        entries.extend(post(
            card(AccountKind::CardholderReceivable, card_id),
            global(AccountKind::IssuedCardLimits),
            amount,
            "capture",
        ));
        entries
    }

    /// Releases `amount` of the card's unused limit (refund of the unused amount, expiry, closing).
    pub fn release_unused(card_id: &str, amount: Money) -> Vec<Entry> {
        post(card(AccountKind::CardAvailable, card_id), global(AccountKind::IssuedCardLimits), amount, "release_unused")
            .into_iter()
            .collect()
    }

    /// A hold ends without a purchase (reversal, expiry, stand-in void).
    pub fn void(pending: TransferId, code: &'static str) -> Entry {
        Entry::VoidHold { pending, code }
    }

    /// A merchant refund: the network owes it back; `to_plan` reduces the cardholder's debt, `excess` is owed
    /// back to the funding card, and `restored` of it returns to the card's limit (its captured amount shrinks).
    pub fn merchant_refund(card_id: &str, to_plan: Money, excess: Money, restored: Money) -> Vec<Entry> {
        let network = || global(AccountKind::NetworkSettlementPayable);
        let mut entries: Vec<Entry> = Vec::new();
        entries.extend(post(network(), card(AccountKind::CardholderReceivable, card_id), to_plan, "merchant_refund"));
        entries.extend(post(network(), global(AccountKind::CardholderRefundPayable), excess, "merchant_refund"));
        entries.extend(post(
            global(AccountKind::IssuedCardLimits),
            card(AccountKind::CardAvailable, card_id),
            restored,
            "merchant_refund",
        ));
        entries
    }

    /// The funding gateway collected `amount` from the cardholder (pay-now charge or installment).
    pub fn collect(card_id: &str, amount: Money) -> Vec<Entry> {
        post(
            global(AccountKind::FundingGatewayClearing),
            card(AccountKind::CardholderReceivable, card_id),
            amount,
            "collection",
        )
        .into_iter()
        .collect()
    }

    /// The funding gateway collected `amount` more than was owed: it is owed back to the funding card.
    pub fn collect_excess(amount: Money) -> Vec<Entry> {
        post(
            global(AccountKind::FundingGatewayClearing),
            global(AccountKind::CardholderRefundPayable),
            amount,
            "collection_excess",
        )
        .into_iter()
        .collect()
    }

    /// Pay now: `amount` the cardholder paid for the card is returned (the purchase shrank or did not happen).
    pub fn refund_prepaid(card_id: &str, amount: Money) -> Vec<Entry> {
        post(
            card(AccountKind::CardholderReceivable, card_id),
            global(AccountKind::FundingGatewayClearing),
            amount,
            "funding_refund",
        )
        .into_iter()
        .collect()
    }

    /// The funding gateway returned `amount` to the cardholder's funding card.
    pub fn refund_to_funding(amount: Money) -> Vec<Entry> {
        post(
            global(AccountKind::CardholderRefundPayable),
            global(AccountKind::FundingGatewayClearing),
            amount,
            "funding_refund",
        )
        .into_iter()
        .collect()
    }

    pub fn late_fee(card_id: &str, fee: Money) -> Vec<Entry> {
        post(card(AccountKind::CardholderReceivable, card_id), global(AccountKind::LateFeeRevenue), fee, "late_fee")
            .into_iter()
            .collect()
    }

    pub fn interest(card_id: &str, interest: Money) -> Vec<Entry> {
        post(
            card(AccountKind::CardholderReceivable, card_id),
            global(AccountKind::InterestRevenue),
            interest,
            "interest",
        )
        .into_iter()
        .collect()
    }

    pub fn charge_off(card_id: &str, amount: Money) -> Vec<Entry> {
        post(global(AccountKind::CreditLosses), card(AccountKind::CardholderReceivable, card_id), amount, "charge_off")
            .into_iter()
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::card::CardEvent;
    use crate::card::tests::{card, merchant, now, usd};
    use proptest::prelude::*;

    fn available(ledger: &Ledger, card_id: &str) -> i64 {
        let account = AccountId::card(AccountKind::CardAvailable, card_id);
        // Credit-normal: what is left is credits minus posted and pending debits.
        -(ledger.posted_balance(&account, Currency::USD) + ledger.pending_balance(&account, Currency::USD))
    }

    #[test]
    fn account_ids_round_trip_their_written_form() {
        for text in ["card_available:card_1", "late_fee_revenue", "cardholder_receivable:card_x"] {
            assert_eq!(AccountId::parse(text).map(|id| id.to_string()).as_deref(), Some(text));
        }
        assert_eq!(AccountId::parse("card_available"), None, "per-card kinds need a card");
        assert_eq!(AccountId::parse("late_fee_revenue:card_1"), None);
        assert_eq!(AccountId::parse("nonsense"), None);
    }

    #[test]
    fn a_card_story_keeps_the_ledger_and_the_card_in_step() {
        let mut ledger = Ledger::new();
        let mut card = card(10_000);
        ledger.commit(&entries::issue_card("c1", usd(10_000))).expect("valid");
        assert_eq!(available(&ledger, "c1"), card.remaining().minor());

        card.hold(usd(8_000)).expect("fits");
        card.apply(CardEvent::FirstUse(merchant("SHOP1")), now()).expect("legal");
        let hold = ledger.commit(&[entries::hold("c1", usd(8_000))]).expect("valid")[0].transfer;
        assert_eq!(available(&ledger, "c1"), card.remaining().minor());

        // Capture 60.00 of the 80.00 hold: the rest is re-held.
        card.capture(usd(6_000), usd(6_000)).expect("from hold");
        let committed = ledger.commit(&entries::capture("c1", Some((hold, usd(8_000))), usd(6_000))).expect("valid");
        let rehold = committed[0].reheld.expect("20.00 re-held");
        assert_eq!(ledger.open_pending(rehold).map(|transfer| transfer.amount), Some(usd(2_000)));
        assert_eq!(available(&ledger, "c1"), card.remaining().minor());

        // The original hold cannot be resolved again.
        assert_eq!(ledger.commit(&[entries::void(hold, "reversal")]), Err(LedgerError::AlreadyResolved(hold)));

        // Refund the unused amount: the re-held 20.00 is voided, the 20.00 never used is released.
        card.release(usd(2_000)).expect("held");
        let released = card.refund_unused().expect("fits");
        let mut refund_unused = vec![entries::void(rehold, "refund_unused")];
        refund_unused.extend(entries::release_unused("c1", released));
        ledger.commit(&refund_unused).expect("valid");
        assert_eq!((available(&ledger, "c1"), card.remaining().minor()), (0, 0));

        // A merchant refund of 10.00 and collections of the 50.00 left.
        let restored = card.refund(usd(1_000)).expect("captured");
        ledger.commit(&entries::merchant_refund("c1", usd(1_000), usd(0), restored)).expect("valid");
        ledger.commit(&entries::collect("c1", usd(5_000))).expect("valid");
        let receivable = AccountId::card(AccountKind::CardholderReceivable, "c1");
        assert_eq!(ledger.posted_balance(&receivable, Currency::USD), 0, "the cardholder owes nothing");
        let report = verify(ledger.transfers());
        assert!(report.ok, "{:?}", report.problems);
        assert_eq!(report.currencies["USD"].postings_sum, 0);
    }

    #[test]
    fn a_failing_transaction_writes_nothing() {
        let mut ledger = Ledger::new();
        let hold = ledger.commit(&[entries::hold("c1", usd(500))]).expect("valid")[0].transfer;
        let before = ledger.transfers().to_vec();
        let result = ledger.commit(&[entries::void(hold, "reversal"), entries::void(hold, "reversal")]);
        assert_eq!(result, Err(LedgerError::AlreadyResolved(hold)));
        assert_eq!(ledger.transfers(), before.as_slice());
        assert!(ledger.open_pending(hold).is_some(), "the hold is still open");
        assert_eq!(
            ledger.commit(&[Entry::PostHold { pending: hold, amount: usd(501), code: "capture" }]),
            Err(LedgerError::ExceedsPending(hold))
        );
        assert_eq!(ledger.commit(&[entries::hold("c1", usd(0))]), Err(LedgerError::NonPositiveAmount));
    }

    #[test]
    fn verify_finds_a_hold_resolved_twice_and_an_unbalanced_currency() {
        let hold = Transfer {
            id: TransferId(1),
            debit: AccountId::card(AccountKind::CardAvailable, "c1"),
            credit: AccountId::card(AccountKind::AuthorizationHolds, "c1"),
            amount: usd(500),
            kind: TransferKind::Pending,
            code: "authorization_hold".to_owned(),
        };
        let void = |id| Transfer {
            id: TransferId(id),
            kind: TransferKind::VoidPending { pending: TransferId(1) },
            ..hold.clone()
        };
        let report = verify(&[hold.clone(), void(2), void(3)]);
        assert!(!report.ok);
        assert_eq!(report.problems, vec!["pending 1 resolved twice (transfers 2 and 3)".to_owned()]);
        assert!(verify(&[hold.clone(), void(2)]).ok);
    }

    #[derive(Debug, Clone)]
    enum Operation {
        Hold { card: u8, amount: i64, euro: bool },
        Post { hold: usize, amount: i64 },
        Void { hold: usize },
        Refund { card: u8, amount: i64 },
    }

    fn operation() -> impl Strategy<Value = Operation> {
        prop_oneof![
            (0u8..4, 1i64..100_000, any::<bool>()).prop_map(|(card, amount, euro)| Operation::Hold {
                card,
                amount,
                euro
            }),
            (0usize..40, 1i64..100_000).prop_map(|(hold, amount)| Operation::Post { hold, amount }),
            (0usize..40).prop_map(|hold| Operation::Void { hold }),
            (0u8..4, 1i64..100_000).prop_map(|(card, amount)| Operation::Refund { card, amount }),
        ]
    }

    proptest! {
        #[test]
        fn any_sequence_of_operations_keeps_the_ledger_balanced(operations in proptest::collection::vec(operation(), 1..60)) {
            let mut ledger = Ledger::new();
            let mut holds: Vec<(TransferId, Money)> = Vec::new();
            let eur = Currency::from_code("EUR").expect("EUR");
            for operation in operations {
                let result = match operation {
                    Operation::Hold { card, amount, euro } => {
                        let amount = Money::new(amount, if euro { eur } else { Currency::USD });
                        let committed = ledger.commit(&[entries::hold(&format!("c{card}"), amount)]);
                        if let Ok(committed) = &committed { holds.push((committed[0].transfer, amount)); }
                        committed.map(|_| ())
                    }
                    Operation::Post { hold, amount } => match holds.get(hold) {
                        Some(&(id, held)) => {
                            let card = ledger.transfers()[id.0 as usize - 1].debit.card.clone().unwrap_or_default();
                            let amount = Money::new(amount, held.currency());
                            let committed = ledger.commit(&entries::capture(&card, Some((id, held)), amount));
                            if let Ok(committed) = &committed
                                && let Some(reheld) = committed[0].reheld
                            {
                                holds.push((reheld, Money::new(held.minor() - amount.minor(), held.currency())));
                            }
                            committed.map(|_| ())
                        }
                        None => Ok(()),
                    },
                    Operation::Void { hold } => match holds.get(hold) {
                        Some(&(id, _)) => ledger.commit(&[entries::void(id, "reversal")]).map(|_| ()),
                        None => Ok(()),
                    },
                    Operation::Refund { card, amount } => ledger
                        .commit(&entries::merchant_refund(&format!("c{card}"), usd(amount / 2), usd(amount - amount / 2), usd(0)))
                        .map(|_| ()),
                };
                // Resolving a hold twice is refused, never written.
                if let Err(error) = &result {
                    prop_assert!(matches!(error, LedgerError::AlreadyResolved(_)), "{error:?}");
                }
                let report = verify(ledger.transfers());
                prop_assert!(report.ok, "{:?}", report.problems);
                prop_assert!(report.currencies.values().all(|totals| totals.postings_sum == 0 && totals.pending_sum == 0));
            }
        }
    }
}
