//! `ghostcard demo`: one card's story told with the domain core, in memory.
//!
//! It exercises the same rules the server uses (purchase power, card creation checks, CVV2, the authorization
//! decision, the card lifecycle, plans and the ledger) and checks the ledger against the plan at the end. It
//! writes nothing anywhere.

use anyhow::{Context, Result, anyhow, ensure};
use chrono::{DateTime, Datelike, Duration, Utc};
use ghostcard_domain::card::{Card, CardEvent, CloseReason, MerchantBinding};
use ghostcard_domain::card_number::{Bin, CardNumber, Expiry};
use ghostcard_domain::country::Country;
use ghostcard_domain::cvv::Cvk;
use ghostcard_domain::decision::{
    AuthorizationRequest, AuthorizationRules, CardholderStanding, CvvCheck, Decision, DecisionInput, Mcc, MessageClass,
    Outcome, TransactionType, decide,
};
use ghostcard_domain::issuance::check_card_creation;
use ghostcard_domain::ledger::{AccountId, AccountKind, Ledger, TransferId, entries, verify};
use ghostcard_domain::money::{Currency, Money};
use ghostcard_domain::plan::{Plan, PlanKind, PlanTerms};
use ghostcard_domain::purchase_power::{CardholderPosition, PurchasePowerPolicy, purchase_power};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use serde_json::json;

#[derive(Debug, clap::Args)]
pub struct Arguments {
    /// Seed for everything random (card number, keys): the same seed tells the same story.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// When the story starts, as an RFC 3339 instant such as 2026-11-26T12:00:00Z (default: now).
    #[arg(long, value_name = "INSTANT")]
    now: Option<DateTime<Utc>>,
    /// Print the story as one JSON document (amounts in minor units) instead of text.
    #[arg(long)]
    json: bool,
}

/// One chapter of the story: a title, what a person reads, and the same facts for scripts.
#[derive(Debug, Serialize)]
struct Step {
    title: String,
    lines: Vec<String>,
    facts: serde_json::Value,
}

pub fn run(arguments: &Arguments) -> Result<()> {
    let steps = tell(arguments.seed, arguments.now.unwrap_or_else(Utc::now))?;
    if arguments.json {
        println!("{}", serde_json::to_string_pretty(&json!({ "steps": steps }))?);
        return Ok(());
    }
    for (number, step) in steps.iter().enumerate() {
        println!("{}. {}", number + 1, step.title);
        for line in &step.lines {
            println!("   {line}");
        }
        println!();
    }
    Ok(())
}

const CARD_ID: &str = "card_demo";

fn tell(seed: u64, start: DateTime<Utc>) -> Result<Vec<Step>> {
    let usd = Currency::USD;
    let mut rng = StdRng::seed_from_u64(seed);
    let cvk = Cvk::from_bytes(rng.random());
    let bin = Bin::parse("424242")?;
    let country = Country::parse("US")?;
    let rules = AuthorizationRules::defaults(country, usd.minor_per_major());
    let policy = PurchasePowerPolicy::defaults(usd)?;
    let terms = PlanTerms::defaults(usd);
    let mut ledger = Ledger::new();
    let mut steps = Vec::new();

    // 1. The cardholder and their purchase power.
    let position = CardholderPosition {
        signed_up_at: start - Duration::days(92),
        plans_repaid_without_late_fee: 0,
        cards_not_in_plan: Money::zero(usd),
        plan_balances: Money::zero(usd),
        overdue: false,
        restricted: false,
    };
    let power = purchase_power(&policy, &position, start)?;
    steps.push(Step {
        title: "Ada signed up three months ago".to_owned(),
        lines: vec![
            format!("Purchase power: {} available of a {} limit.", power.available, power.limit),
            format!(
                "The limit is base {} + tenure {} + repaid plans {}, at most {}.",
                power.breakdown.base.format_amount(),
                power.breakdown.tenure.format_amount(),
                power.breakdown.repaid_plans.format_amount(),
                power.breakdown.max.format_amount()
            ),
        ],
        facts: json!({ "available": power.available.minor(), "limit": power.limit.minor() }),
    });

    // 2. A one-time card.
    let amount = Money::parse("120.00", usd)?;
    check_card_creation(amount, Money::major(10, usd)?, &power, &[], &rules.fraud, start)
        .map_err(|refusal| anyhow!("card creation refused: {}", refusal.code()))?;
    let number = CardNumber::generate(&bin, 16, &mut rng)?;
    let expiry = Expiry::new(u16::try_from(start.year() + 3)?, u8::try_from(start.month())?)?;
    let mut card = Card::issue(amount, expiry, start + Duration::hours(24));
    ledger.commit(&entries::issue_card(CARD_ID, amount))?;
    steps.push(Step {
        title: format!("Ada asks for a one-time card for {amount}, to pay in 4"),
        lines: vec![
            format!(
                "Card {}, expires {:02}/{:02}, usable until {}.",
                number.masked(),
                expiry.month(),
                expiry.year() % 100,
                card.valid_until().format("%Y-%m-%d %H:%M UTC")
            ),
            "Its CVV2 is computed from the number and expiry with the card verification key; it is never stored."
                .to_owned(),
        ],
        facts: json!({ "card": number.masked(), "amount": amount.minor(), "valid_until": card.valid_until() }),
    });

    // 3. The first purchase.
    let bookshop = MerchantBinding { acquirer_id: "000123".to_owned(), merchant_id: "BOOKSHOP-0001".to_owned() };
    let cvv = cvk.cvv2(&number, expiry);
    let purchase_at = start + Duration::hours(2);
    let request = AuthorizationRequest {
        class: MessageClass::Authorization,
        transaction_type: TransactionType::Purchase,
        amount_minor: 10_000,
        currency_numeric: usd.numeric(),
        expiry: Some(expiry),
        mcc: Mcc(5942),
        merchant: bookshop.clone(),
        country: Some(country),
    };
    let cvv_check = if cvk.verify_cvv2(&number, expiry, cvv.expose()) { CvvCheck::Match } else { CvvCheck::Mismatch };
    let decision = decide_for(&request, &card, cvv_check, &rules, purchase_at);
    let Outcome::Approved { hold } = decision.outcome else {
        return Err(anyhow!("the first purchase was declined: {:?}", decision.decline_reason()));
    };
    card.hold(hold)?;
    if decision.first_use {
        card.apply(CardEvent::FirstUse(bookshop.clone()), purchase_at)?;
    }
    let hold_id = ledger.commit(&[entries::hold(CARD_ID, hold)])?[0].transfer;
    steps.push(Step {
        title: format!("A bookshop asks for {hold}"),
        lines: vec![
            format!(
                "Approved ({}), CVV2 {}; {} is held.",
                decision.response_code,
                decision.cvv_result.map_or("not sent", |result| result.code()),
                hold
            ),
            format!(
                "The card is now {} and bound to merchant {}; {} remains.",
                card.status(),
                bookshop.merchant_id,
                card.remaining()
            ),
        ],
        facts: json!({ "response_code": decision.response_code, "held": card.held().minor(), "status": card.status() }),
    });

    // 4. A second purchase elsewhere.
    let cafe = MerchantBinding { acquirer_id: "000456".to_owned(), merchant_id: "CAFE-0042".to_owned() };
    let second = AuthorizationRequest { amount_minor: 1_500, mcc: Mcc(5814), merchant: cafe, ..request.clone() };
    let declined = decide_for(&second, &card, CvvCheck::Match, &rules, purchase_at + Duration::minutes(30));
    let reason = declined.decline_reason().context("the second purchase must be declined")?;
    steps.push(Step {
        title: "A café tries to charge 15.00 USD on the same card".to_owned(),
        lines: vec![format!("Declined: {} ({}). {}", reason.code(), declined.response_code, reason.message())],
        facts: json!({ "response_code": declined.response_code, "decline_reason": reason.code() }),
    });

    // 5. The bookshop captures less than it authorized; the plan starts with the capture.
    let captured = Money::parse("90.00", usd)?;
    let capture_at = start + Duration::hours(26);
    card.capture(captured, captured)?;
    let committed = ledger.commit(&entries::capture(CARD_ID, Some((hold_id, hold)), captured))?;
    let rehold: TransferId = committed[0].reheld.context("the rest of the hold is re-held")?;
    let mut plan = Plan::new(PlanKind::PayIn4, captured, capture_at.date_naive(), &terms)?;
    let first = plan.collection_succeeded(1)?;
    ledger.commit(&entries::collect(CARD_ID, plan.money(first)))?;
    let mut lines = vec![
        format!("{} of the hold stays held until it is refunded, expires or is adjusted.", card.held()),
        format!("A pay-in-4 plan on {captured}; the first installment is collected at once:"),
    ];
    lines.extend(schedule(&plan));
    steps.push(Step {
        title: format!("The bookshop captures {captured}"),
        lines,
        facts: json!({ "captured": card.captured().minor(), "plan": plan }),
    });

    // 6. A merchant refund flows into the plan.
    let refunded = Money::parse("30.00", usd)?;
    let refund_at = capture_at + Duration::days(3);
    let restored = card.refund(refunded)?;
    let application = plan.apply_refund(refunded.minor(), refund_at.date_naive())?;
    ledger.commit(&entries::merchant_refund(
        CARD_ID,
        plan.money(application.to_overdue + application.to_future),
        plan.money(application.excess),
        restored,
    ))?;
    let mut lines = vec!["It pays anything overdue first, then lowers the installments to come evenly:".to_owned()];
    lines.extend(schedule(&plan));
    steps.push(Step {
        title: format!("The bookshop refunds {refunded}"),
        lines,
        facts: json!({ "to_overdue": application.to_overdue, "to_future": application.to_future, "excess": application.excess, "plan": plan }),
    });

    // 7. Ada refunds the unused amount; nothing is left open, so the card closes.
    card.release(card.held())?;
    let released = card.refund_unused()?;
    let mut unused = vec![entries::void(rehold, "refund_unused")];
    unused.extend(entries::release_unused(CARD_ID, released));
    ledger.commit(&unused)?;
    card.apply(CardEvent::Close(CloseReason::UnusedRefunded), refund_at)?;
    steps.push(Step {
        title: "Ada refunds the unused amount".to_owned(),
        lines: vec![format!(
            "The card's amount is now {} ({} captured, {} held, {} remaining); the card is {}.",
            card.amount(),
            card.captured(),
            card.held(),
            card.remaining(),
            card.status()
        )],
        facts: json!({ "amount": card.amount().minor(), "remaining": card.remaining().minor(), "status": card.status() }),
    });

    // 8. The books.
    let report = verify(ledger.transfers());
    ensure!(report.ok, "the ledger does not verify: {:?}", report.problems);
    let receivable = ledger.posted_balance(&AccountId::card(AccountKind::CardholderReceivable, CARD_ID), usd);
    ensure!(receivable == plan.balance(), "receivable {receivable} differs from the plan balance {}", plan.balance());
    let totals = report.currencies.get("USD").copied().unwrap_or_default();
    steps.push(Step {
        title: "The ledger verifies".to_owned(),
        lines: vec![
            format!(
                "{} transfers; USD postings sum to {}; open holds {}.",
                totals.transfers, totals.postings_sum, totals.open_holds
            ),
            format!("Ada owes {}, exactly the plan's unpaid installments.", plan.money(receivable)),
        ],
        facts: json!({ "ok": report.ok, "currencies": report.currencies, "receivable": receivable }),
    });
    Ok(steps)
}

fn decide_for(
    request: &AuthorizationRequest,
    card: &Card,
    cvv: CvvCheck,
    rules: &AuthorizationRules,
    now: DateTime<Utc>,
) -> Decision {
    decide(&DecisionInput {
        request,
        card: Some(card),
        cvv,
        standing: CardholderStanding::default(),
        cardholder_approvals: &[],
        rules,
        now,
    })
}

fn schedule(plan: &Plan) -> Vec<String> {
    plan.installments
        .iter()
        .map(|installment| {
            format!(
                "  {}. due {}  {:>10}  {}",
                installment.seq,
                installment.due_date,
                plan.money(installment.amount()).to_string(),
                installment.status.as_str()
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn story() -> Vec<Step> {
        let start = DateTime::parse_from_rfc3339("2026-11-26T12:00:00Z").expect("valid").with_timezone(&Utc);
        tell(7, start).expect("the story runs to the end")
    }

    #[test]
    fn the_story_declines_the_second_purchase_and_ends_balanced() {
        let steps = story();
        assert_eq!(steps.len(), 8);
        assert_eq!(steps[3].facts["decline_reason"], "card_already_used");
        assert_eq!(steps[3].facts["response_code"], "05");
        assert_eq!(steps[6].facts["amount"], 6_000);
        assert_eq!(steps[6].facts["status"], "closed");
        assert_eq!(steps[7].facts["ok"], true);
        assert_eq!(steps[7].facts["currencies"]["USD"]["postings_sum"], 0);
        assert_eq!(steps[7].facts["receivable"], 3_750);
    }

    #[test]
    fn the_refund_lowers_the_three_installments_to_come() {
        let steps = story();
        let amounts: Vec<i64> = steps[5].facts["plan"]["installments"]
            .as_array()
            .expect("installments")
            .iter()
            .map(|installment| {
                ["principal", "interest", "fee"].iter().map(|part| installment[part].as_i64().unwrap_or(0)).sum()
            })
            .collect();
        assert_eq!(amounts, vec![2_250, 1_250, 1_250, 1_250]);
    }

    #[test]
    fn the_story_never_shows_a_full_card_number() {
        let text = serde_json::to_string(&story()).expect("serializable");
        let mut rng = StdRng::seed_from_u64(7);
        let _cvk: [u8; 16] = rng.random();
        let number = CardNumber::generate(&Bin::parse("424242").expect("valid"), 16, &mut rng).expect("valid");
        assert!(!text.contains(number.expose()));
        assert!(text.contains(&number.masked()));
    }
}
