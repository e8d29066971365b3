//! Invoices issued by purchases (at once) and by the `invoicing` job: DOMAIN.md's worked
//! examples, mixed HT- and TTC-priced lines, numbers gapless under concurrency and across a
//! rolled back issue, immutability in the database, the ledger's postings.

use chrono::Duration;
use diesel_async::{RunQueryDsl, SimpleAsyncConnection};
use rust_decimal::Decimal;
use rust_decimal_macros::dec;
use serde_json::{json, Value};
use uuid::Uuid;

use grandlivre::auth::Role;
use grandlivre::catalog::PriceBasis;
use grandlivre::charges::{self, ChargeSource, NewCharge};
use grandlivre::clock::Clock;
use grandlivre::demo::{DEMO_CUSTOMER_1 as C1, DEMO_CUSTOMER_2 as C2};

use crate::helpers::{balance, buy_tickets, d, new_customer, paris, seeded, TestApp};

/// A one-off charge of `customer` to invoice, 100.00 HT at 20 %.
fn one_off(customer: Uuid, key: &str) -> NewCharge {
    NewCharge {
        customer_id: customer,
        subscription_id: None,
        offer_code: None,
        source: ChargeSource::OneOff,
        period_index: None,
        description: format!("one-off {key}"),
        quantity: dec!(1),
        unit_price: dec!(100.00),
        price_basis: PriceBasis::Ht,
        vat_rate: dec!(0.20),
        service_start: None,
        service_end: None,
        idempotency_key: Some(key.into()),
    }
}

async fn run_invoicing(app: &TestApp) -> Value {
    app.run_job("invoicing", app.clock.now()).await
}

/// Every invoice, through the API's pages.
async fn all_invoices(app: &TestApp, key: &str, query: &str) -> Vec<Value> {
    let mut items = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/invoices?limit=7&{query}&cursor={c}"),
            None => format!("/v1/invoices?limit=7&{query}"),
        };
        let page = app.get(key, &path).await;
        assert_eq!(page.status, 200, "{}", page.text);
        items.extend(page.body["items"].as_array().unwrap().iter().cloned());
        match page.body["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return items,
        }
    }
}

#[actix_web::test]
async fn tickets_bought_are_invoiced_at_once_as_domain_md_works_them_out() {
    let (app, mut conn) = seeded().await;
    let finance = app.key(Role::Finance, None).await;
    app.clock.set(paris("2026-11-20") + Duration::hours(10));
    let bought = buy_tickets(&app, &finance, C1, 1, Some("one")).await;
    assert_eq!(bought["invoice_number"], "F2026-000001", "{bought}");
    let bought3 = buy_tickets(&app, &finance, C2, 3, Some("three")).await;
    assert_eq!(bought3["invoice_number"], "F2026-000002", "{bought3}");

    // the same request again: the same purchase and invoice, nothing issued
    let again = app
        .post_json(
            &finance,
            &format!("/v1/customers/{C1}/ticket-purchases"),
            Some("one"),
            &json!({ "quantity": 1 }),
        )
        .await;
    assert_eq!((again.status, &again.body), (200, &bought));
    // and the invoicing run finds nothing left to invoice
    let run = run_invoicing(&app).await;
    assert_eq!(
        (&run["invoices_issued"], &run["failed"]),
        (&json!(0), &json!([])),
        "{run}"
    );
    let mine = all_invoices(&app, &finance, &format!("customer_id={C1}")).await;
    assert_eq!(mine.len(), 1);
    let one = &mine[0];
    assert_eq!(one["number"], "F2026-000001");
    assert_eq!(one["id"], bought["invoice_id"]);
    assert_eq!(
        (&one["issued_on"], &one["due_on"]),
        (&json!("2026-11-20"), &json!("2026-12-20"))
    );
    assert_eq!(one["status"], "issued");
    assert_eq!(
        one["totals"],
        json!({
            "vat_breakdown": [{"vat_rate": "0.2", "base_ht": "83.33", "vat": "16.67"}],
            "total_ht": "83.33", "total_vat": "16.67", "total_ttc": "100.00"
        })
    );
    assert_eq!(one["amount_due"], "100.00");
    assert_eq!(
        (
            &one["lines"][0]["net_ht"],
            &one["lines"][0]["price_basis"],
            &one["lines"][0]["quantity"]
        ),
        (&json!("83.33"), &json!("ttc"), &json!("1"))
    );
    let three = &all_invoices(&app, &finance, &format!("customer_id={C2}")).await[0];
    assert_eq!(three["number"], "F2026-000002");
    assert_eq!(
        (
            &three["totals"]["total_ht"],
            &three["totals"]["total_vat"],
            &three["totals"]["total_ttc"]
        ),
        (&json!("250.00"), &json!("50.00"), &json!("300.00"))
    );
    // the charges now name their invoice
    for c in charges::for_customer(&mut conn, C2, None, 10)
        .await
        .unwrap()
    {
        assert_eq!(
            c.invoice_id.map(|i| i.to_string()).as_deref(),
            three["id"].as_str()
        );
    }

    assert_eq!(all_invoices(&app, &finance, "").await.len(), 2);
    assert_eq!(all_invoices(&app, &finance, "status=issued").await.len(), 2);

    // the ledger: receivable = TTC, deferred revenue = the tickets' net, all balanced
    assert_eq!(balance(&app, &finance, C1, "411").await, dec!(100.00));
    assert_eq!(balance(&app, &finance, C1, "487").await, dec!(83.33));
    assert_eq!(balance(&app, &finance, C2, "411").await, dec!(300.00));
    assert_eq!(balance(&app, &finance, C2, "487").await, dec!(250.00));
    app.assert_ledger_verifies(&finance).await;

    // a customer key reads its own; another's answers exactly as an unknown id
    let own = app.key(Role::Customer, Some(C1)).await;
    let path = format!("/v1/invoices/{}", one["id"].as_str().unwrap());
    let read = app.get(&own, &path).await;
    assert_eq!((read.status, &read.body), (200, one));
    assert_eq!(all_invoices(&app, &own, "").await, vec![one.clone()]);
    let hidden_id = three["id"].as_str().unwrap();
    let hidden = app.get(&own, &format!("/v1/invoices/{hidden_id}")).await;
    let unknown_id = Uuid::now_v7().to_string();
    let unknown = app.get(&own, &format!("/v1/invoices/{unknown_id}")).await;
    hidden.problem(404, "not_found");
    let without_request = |text: String| {
        let mut body: Value = serde_json::from_str(&text).unwrap();
        body.as_object_mut().unwrap().remove("request_id");
        body
    };
    assert_eq!(
        without_request(hidden.text.replace(hidden_id, "ID")),
        without_request(unknown.text.replace(&unknown_id, "ID"))
    );
    app.get(&own, &format!("/v1/invoices?customer_id={C2}"))
        .await
        .problem(404, "not_found");

    // issued content is immutable in the database, even for the service role
    let id = one["id"].as_str().unwrap();
    for sql in [
        format!("UPDATE invoices SET total_ttc = 0, total_ht = 0, total_vat = 0 WHERE id = '{id}'"),
        format!("UPDATE invoices SET due_on = due_on + 1 WHERE id = '{id}'"),
        format!("DELETE FROM invoices WHERE id = '{id}'"),
        format!("UPDATE invoice_lines SET net_ht = 0 WHERE invoice_id = '{id}'"),
        format!("DELETE FROM invoice_lines WHERE invoice_id = '{id}'"),
        format!("DELETE FROM invoice_vat WHERE invoice_id = '{id}'"),
    ] {
        let refused = conn.batch_execute(&sql).await.unwrap_err().to_string();
        assert!(
            refused.contains("an issued invoice is never"),
            "{sql}: {refused}"
        );
    }
    // its status may move (payments will)
    let moved = diesel::sql_query(format!(
        "UPDATE invoices SET status = 'issued' WHERE id = '{id}'"
    ))
    .execute(&mut conn)
    .await
    .unwrap();
    assert_eq!(moved, 1);
    assert_eq!(app.get(&finance, &path).await.body, *one);
}

#[actix_web::test]
async fn a_mixed_invoice_takes_vat_per_rate_on_the_sum_of_its_nets() {
    let (app, mut conn) = seeded().await;
    let finance = app.key(Role::Finance, None).await;
    app.clock.set(paris("2026-11-20") + Duration::hours(10));
    let now = app.clock.now();
    let charge = |description: &str,
                  quantity: Decimal,
                  unit_price: Decimal,
                  price_basis: PriceBasis,
                  rate: Decimal| NewCharge {
        customer_id: C1,
        subscription_id: None,
        offer_code: None,
        source: ChargeSource::OneOff,
        period_index: None,
        description: description.into(),
        quantity,
        unit_price,
        price_basis,
        vat_rate: rate,
        service_start: Some(d("2026-11-01")),
        service_end: Some(d("2026-11-30")),
        idempotency_key: Some(description.into()),
    };
    // 3 × 0.20 HT and 10.00 HT at 5.5 %, then a service at 100.00 TTC
    for c in [
        charge("usage", dec!(3), dec!(0.20), PriceBasis::Ht, dec!(0.20)),
        charge("book", dec!(1), dec!(10.00), PriceBasis::Ht, dec!(0.055)),
        charge("visit", dec!(1), dec!(100.00), PriceBasis::Ttc, dec!(0.20)),
    ] {
        assert!(charges::insert(&mut conn, &c, now).await.unwrap());
    }

    let ran = run_invoicing(&app).await;
    assert_eq!(ran["invoices_issued"], 1, "{ran}");
    let invoice = &all_invoices(&app, &finance, &format!("customer_id={C1}")).await[0];
    // 20 %: 0.60 + 83.33 = 83.93 → VAT 16.786 → 16.79 (never 0.12 + 16.67 = 16.79 by luck:
    // per rate on the sum); 5.5 %: 10.00 → 0.55
    assert_eq!(
        invoice["totals"],
        json!({
            "vat_breakdown": [
                {"vat_rate": "0.055", "base_ht": "10.00", "vat": "0.55"},
                {"vat_rate": "0.2", "base_ht": "83.93", "vat": "16.79"}
            ],
            "total_ht": "93.93", "total_vat": "17.34", "total_ttc": "111.27"
        }),
        "{invoice}"
    );
    let nets: Vec<&Value> = invoice["lines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| &l["net_ht"])
        .collect();
    assert_eq!(nets, [&json!("0.60"), &json!("10.00"), &json!("83.33")]);
    assert_eq!(invoice["lines"][0]["service_start"], "2026-11-01");
    // services earned at once (706), nothing deferred (487), VAT collected
    assert_eq!(balance(&app, &finance, C1, "411").await, dec!(111.27));
    assert_eq!(balance(&app, &finance, C1, "706").await, dec!(93.93));
    assert_eq!(balance(&app, &finance, C1, "487").await, dec!(0.00));
    app.assert_ledger_verifies(&finance).await;
}

#[actix_web::test]
async fn numbers_stay_gapless_under_concurrent_runs_and_a_rolled_back_issue() {
    let (app, mut conn) = seeded().await;
    let finance = app.key(Role::Finance, None).await;
    app.clock.set(paris("2026-11-20") + Duration::hours(10));
    let mut customers = Vec::new();
    for i in 0..20 {
        let c = new_customer(&app, &finance, &format!("c{i}")).await;
        let charge = one_off(c, &format!("t{i}"));
        assert!(charges::insert(&mut conn, &charge, app.clock.now())
            .await
            .unwrap());
        customers.push(c);
    }
    // two runs and five ticket purchases (invoiced at once) at the same time
    let purchases = futures_util::future::join_all((0..5).map(|i| {
        let finance = &finance;
        let customer = customers[i * 4];
        let app = &app;
        async move { buy_tickets(app, finance, customer, 1, Some(&format!("p{i}"))).await }
    }));
    let (a, b, _) = tokio::join!(run_invoicing(&app), run_invoicing(&app), purchases);
    assert_eq!(
        a["invoices_issued"].as_u64().unwrap() + b["invoices_issued"].as_u64().unwrap(),
        20,
        "{a} {b}"
    );
    assert_eq!((&a["failed"], &b["failed"]), (&json!([]), &json!([])));
    let mut numbers: Vec<String> = all_invoices(&app, &finance, "")
        .await
        .iter()
        .map(|i| i["number"].as_str().unwrap().to_string())
        .collect();
    numbers.sort();
    let expected: Vec<String> = (1..=25).map(|n| format!("F2026-{n:06}")).collect();
    assert_eq!(numbers, expected);

    // a customer whose invoice fails once its number is taken (its total does not fit an
    // invoice), between two that succeed: its number is given back
    app.clock.set(paris("2026-11-21") + Duration::hours(10));
    let bad = new_customer(&app, &finance, "bad").await;
    let huge = NewCharge {
        customer_id: bad,
        subscription_id: None,
        offer_code: None,
        source: ChargeSource::OneOff,
        period_index: None,
        description: "too large for an invoice".into(),
        quantity: dec!(9999999),
        unit_price: dec!(999999),
        price_basis: PriceBasis::Ht,
        vat_rate: dec!(0.20),
        service_start: None,
        service_end: None,
        idempotency_key: Some("huge".into()),
    };
    assert!(charges::insert(&mut conn, &huge, app.clock.now())
        .await
        .unwrap());
    for c in [customers[0], customers[19]] {
        let charge = one_off(c, &format!("again-{c}"));
        assert!(charges::insert(&mut conn, &charge, app.clock.now())
            .await
            .unwrap());
    }
    let ran = run_invoicing(&app).await;
    assert_eq!(ran["invoices_issued"], 2, "{ran}");
    assert_eq!(ran["failed"][0]["id"], bad.to_string(), "{ran}");
    let mut numbers: Vec<(String, String)> = all_invoices(&app, &finance, "")
        .await
        .iter()
        .map(|i| {
            (
                i["number"].as_str().unwrap().to_string(),
                i["issued_on"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    numbers.sort();
    assert_eq!(numbers.len(), 27);
    for (n, (number, _)) in numbers.iter().enumerate() {
        assert_eq!(*number, format!("F2026-{:06}", n + 1));
    }
    // numbers and dates in the same order
    assert!(numbers.windows(2).all(|w| w[0].1 <= w[1].1), "{numbers:?}");
    assert_eq!(numbers[26].1, "2026-11-21");
    // the failed customer's charge waits for the next run, and the ledger holds
    let again = run_invoicing(&app).await;
    assert_eq!(
        (&again["invoices_issued"], &again["failed"][0]["id"]),
        (&json!(0), &json!(bad))
    );
    // an issue whose transaction began before the series' last issue date (a page that
    // started before midnight, numbered after): dated as the number it takes, never before
    app.clock.set(paris("2026-11-20") + Duration::hours(23));
    let late = one_off(customers[1], "late");
    assert!(charges::insert(&mut conn, &late, app.clock.now())
        .await
        .unwrap());
    let ran = run_invoicing(&app).await;
    assert_eq!(ran["invoices_issued"], 1, "{ran}");
    let last = all_invoices(&app, &finance, "")
        .await
        .into_iter()
        .find(|i| i["number"] == "F2026-000028")
        .expect("F2026-000028");
    assert_eq!(
        (&last["issued_on"], &last["due_on"]),
        (&json!("2026-11-21"), &json!("2026-12-21"))
    );
    app.assert_ledger_verifies(&finance).await;
}
