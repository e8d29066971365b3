//! A property of invoicing over random charge sets, checked against a model written here
//! from DOMAIN.md (not the service's own rounding code): each line's net rounded to the
//! cent (a TTC-priced line's net is `round(TTC ÷ (1 + rate))`), VAT per rate on the sum of
//! that rate's nets (BR-CO-17), half away from zero; the invoice's TTC is exactly what the
//! receivable 411 was debited, VAT 44571 took the VAT, deferred revenue 487 took the nets
//! of tickets and credits sold (never negative) and revenue 706 the rest.

use std::collections::BTreeMap;

use chrono::Duration;
use proptest::prelude::*;
use proptest::strategy::ValueTree;
use proptest::test_runner::{Config, TestRunner};
use rust_decimal::{Decimal, RoundingStrategy};
use serde_json::Value;

use grandlivre::auth::Role;
use grandlivre::catalog::PriceBasis;
use grandlivre::charges::{self, ChargeSource, NewCharge};
use grandlivre::clock::Clock;

use crate::helpers::{balance, new_customer, paris, seeded};

/// How many random charge sets one run checks.
const CASES: usize = 24;

#[derive(Debug, Clone)]
struct Line {
    source: ChargeSource,
    quantity: Decimal,
    unit_price: Decimal,
    basis: PriceBasis,
    rate: Decimal,
}

fn any_line() -> impl Strategy<Value = Line> {
    (
        prop::sample::select(vec![
            ChargeSource::OneOff,
            ChargeSource::SubscriptionPeriod,
            ChargeSource::TicketPurchase,
            ChargeSource::CreditPurchase,
        ]),
        (1i64..=4000, 0u32..=2),
        0i64..=99_999_999,
        prop::bool::ANY,
        prop::sample::select(vec!["0.2", "0.1", "0.055", "0.021", "0"]),
    )
        .prop_map(|(source, (q, q_scale), p, ttc, rate)| Line {
            source,
            quantity: Decimal::new(q, q_scale),
            unit_price: Decimal::new(p, 4),
            basis: if ttc { PriceBasis::Ttc } else { PriceBasis::Ht },
            rate: rate.parse().unwrap(),
        })
}

fn cents(d: Decimal) -> Decimal {
    d.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero)
}

fn dec(v: &Value) -> Decimal {
    v.as_str()
        .unwrap_or_else(|| panic!("a decimal string: {v}"))
        .parse()
        .unwrap()
}

fn deferred(source: ChargeSource) -> bool {
    matches!(
        source,
        ChargeSource::TicketPurchase | ChargeSource::CreditPurchase
    )
}

#[actix_web::test]
async fn random_charge_sets_invoice_and_post_as_the_rules_say() {
    let (app, mut conn) = seeded().await;
    let finance = app.key(Role::Finance, None).await;
    app.clock.set(paris("2026-11-20") + Duration::hours(10));
    let now = app.clock.now();
    let mut runner = TestRunner::new(Config::default());
    let strategy = prop::collection::vec(any_line(), 1..7);
    for case in 0..CASES {
        let lines = strategy.new_tree(&mut runner).unwrap().current();
        let customer = new_customer(&app, &finance, &format!("p{case}")).await;
        for (i, l) in lines.iter().enumerate() {
            let charge = NewCharge {
                customer_id: customer,
                subscription_id: None,
                offer_code: None,
                source: l.source,
                period_index: None,
                description: format!("line {i}"),
                quantity: l.quantity,
                unit_price: l.unit_price,
                price_basis: l.basis,
                vat_rate: l.rate,
                service_start: None,
                service_end: None,
                idempotency_key: Some(format!("p{case}-{i}")),
            };
            assert!(charges::insert(&mut conn, &charge, now).await.unwrap());
        }
        let ran = app.run_job("invoicing", now).await;
        assert_eq!(ran["invoices_issued"], 1, "case {case}: {ran}");

        // the model
        let nets: Vec<Decimal> = lines
            .iter()
            .map(|l| match l.basis {
                PriceBasis::Ht => cents(l.quantity * l.unit_price),
                PriceBasis::Ttc => cents(l.quantity * l.unit_price / (Decimal::ONE + l.rate)),
            })
            .collect();
        let mut bases: BTreeMap<Decimal, Decimal> = BTreeMap::new();
        for (l, n) in lines.iter().zip(&nets) {
            *bases.entry(l.rate.normalize()).or_default() += n;
        }
        let vat: Decimal = bases.iter().map(|(r, b)| cents(b * r)).sum();
        let ht: Decimal = nets.iter().sum();
        let deferred_net: Decimal = lines
            .iter()
            .zip(&nets)
            .filter(|(l, _)| deferred(l.source))
            .map(|(_, n)| n)
            .sum();

        // the invoice
        let page = app
            .get(&finance, &format!("/v1/invoices?customer_id={customer}"))
            .await;
        let invoice = &page.body["items"][0];
        let t = &invoice["totals"];
        let context = format!("case {case}: {lines:?} → {invoice}");
        assert_eq!(
            (
                dec(&t["total_ht"]),
                dec(&t["total_vat"]),
                dec(&t["total_ttc"])
            ),
            (ht, vat, ht + vat),
            "{context}"
        );
        let breakdown: BTreeMap<Decimal, (Decimal, Decimal)> = t["vat_breakdown"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| {
                (
                    dec(&v["vat_rate"]).normalize(),
                    (dec(&v["base_ht"]), dec(&v["vat"])),
                )
            })
            .collect();
        let expected: BTreeMap<Decimal, (Decimal, Decimal)> = bases
            .iter()
            .map(|(r, b)| (*r, (*b, cents(b * r))))
            .collect();
        assert_eq!(breakdown, expected, "{context}");

        // the ledger
        assert_eq!(
            balance(&app, &finance, customer, "411").await,
            ht + vat,
            "{context}"
        );
        let d487 = balance(&app, &finance, customer, "487").await;
        assert!(d487 >= Decimal::ZERO, "{context}");
        assert_eq!(d487, deferred_net, "{context}");
        assert_eq!(
            balance(&app, &finance, customer, "706").await,
            ht - deferred_net,
            "{context}"
        );
        assert_eq!(
            balance(&app, &finance, customer, "44571").await,
            vat,
            "{context}"
        );
    }
    app.assert_ledger_verifies(&finance).await;
}
