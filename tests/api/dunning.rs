//! Non-payment (seed 001), day by day through the API: an invoice past due is overdue, a
//! formal notice 15 days past due suspends support, a notice left without effect for 30
//! days terminates the contracts with their early-termination fees; every step once for
//! the same instant; a suspension set by hand is left alone.

use chrono::{DateTime, Duration, NaiveDate, Utc};
use serde_json::{json, Value};
use uuid::Uuid;

use grandlivre::auth::Role;
use grandlivre::demo::{DEMO_CUSTOMER_1 as C1, DEMO_CUSTOMER_2 as C2};

use crate::helpers::{d, new_customer, paris, pay_invoice, seeded, TestApp};

/// Runs `job` for 10:00 Paris on `day`, the clock set there too.
async fn run(app: &TestApp, job: &str, day: NaiveDate) -> Value {
    let at: DateTime<Utc> = paris(&day.to_string()) + Duration::hours(10);
    app.clock.set(at);
    app.run_job(job, at).await
}

/// What the ticketing system is told for an in-scope incident of `customer` on `day`.
async fn decision(app: &TestApp, customer: Uuid, day: NaiveDate, reference: &str) -> Value {
    let key = app.key(Role::Ticketing, None).await;
    let at = paris(&day.to_string()) + Duration::hours(10);
    let asked = app
        .post_json(
            &key,
            "/v1/authorizations",
            None,
            &json!({
                "customer_id": customer,
                "request_ref": reference,
                "kind": "intervention",
                "classification": {"type": "in_scope"},
                "priority": "high",
                "requester": {"certified": false, "learning_phase_end": null},
                "occurred_at": at,
                "declared_at": at,
                "preferred_funding": "auto"
            }),
        )
        .await;
    assert_eq!(asked.status, 201, "{}", asked.text);
    json!([asked.body["decision"], asked.body["reason"]])
}

#[actix_web::test]
async fn dunning_day_by_day_from_due_date_to_termination() {
    let (app, _conn) = seeded().await;
    let admin = app.admin().await;
    let finance = app.key(Role::Finance, None).await;
    app.clock.set(paris("2026-11-02") + Duration::hours(9));
    // the demo customer with a SEPA mandate: a fibre access (36 months, monthly) and
    // premium assistance (yearly, billed in advance)
    let customer = C1;
    let mut subs = Vec::new();
    for offer in ["ip_access_fibre", "premium_assistance"] {
        let sub = app
            .post_json(
                &admin,
                "/v1/subscriptions",
                None,
                &json!({"customer_id": customer, "offer_code": offer, "start_date": "2026-11-02"}),
            )
            .await;
        assert_eq!(sub.status, 201, "{}", sub.text);
        subs.push(sub.body["id"].as_str().unwrap().to_string());
    }
    run(&app, "billing", d("2026-11-02")).await;
    let issued = run(&app, "invoicing", d("2026-11-02")).await;
    assert_eq!(issued["invoices_issued"], 1, "{issued}");
    let invoices = app
        .get(&finance, &format!("/v1/invoices?customer_id={customer}"))
        .await;
    let invoice = invoices.body["items"][0].clone();
    assert_eq!(
        (
            &invoice["due_on"],
            &invoice["amount_due"],
            &invoice["status"]
        ),
        (&json!("2026-12-02"), &json!("1487.88"), &json!("issued")),
        "{invoice}"
    );
    let total = invoice["totals"]["total_ttc"].clone();
    let invoice_path = format!("/v1/invoices/{}", invoice["id"].as_str().unwrap());
    let customer_path = format!("/v1/customers/{customer}");

    // due on 2 December: not overdue that day
    let ran = run(&app, "dunning", d("2026-12-02")).await;
    assert_eq!(
        (&ran["job"], &ran["invoices_overdue"]),
        (&json!("dunning"), &json!(0))
    );
    assert_eq!(
        app.get(&finance, &invoice_path).await.body["status"],
        "issued"
    );

    // the next day it is, and the customer shows what is overdue, still served
    let ran = run(&app, "dunning", d("2026-12-03")).await;
    assert_eq!(
        (&ran["invoices_overdue"], &ran["notices_sent"]),
        (&json!(1), &json!(0))
    );
    assert_eq!(
        app.get(&finance, &invoice_path).await.body["status"],
        "overdue"
    );
    let seen = app.get(&finance, &customer_path).await;
    assert_eq!(
        (&seen.body["status"], &seen.body["dunning"]),
        (
            &json!("active"),
            &json!({"overdue_amount": total, "overdue_since": "2026-12-02", "notice": null})
        )
    );
    assert_eq!(
        decision(&app, customer, d("2026-12-03"), "T-1").await,
        json!(["approved", "covered_by_subscription"])
    );

    // 14 days past due: nothing more; 15 days: the notice, and support suspended
    for day in ["2026-12-04", "2026-12-10", "2026-12-16"] {
        let ran = run(&app, "dunning", d(day)).await;
        assert_eq!(ran["notices_sent"], 0, "{day}: {ran}");
    }
    let ran = run(&app, "dunning", d("2026-12-17")).await;
    assert_eq!(ran["notices_sent"], 1, "{ran}");
    let seen = app.get(&finance, &customer_path).await;
    assert_eq!(seen.body["status"], "suspended");
    let notice = &seen.body["dunning"]["notice"];
    assert_eq!(
        (
            &notice["sent_on"],
            &notice["amount"],
            &notice["status"],
            &notice["closed_on"]
        ),
        (&json!("2026-12-17"), &total, &json!("open"), &json!(null))
    );
    assert_eq!(
        decision(&app, customer, d("2026-12-17"), "T-2").await,
        json!(["denied", "account_suspended"])
    );
    // the customer sees its own standing
    let own = app.key(Role::Customer, Some(customer)).await;
    assert_eq!(
        app.get(&own, &customer_path).await.body["dunning"]["notice"]["status"],
        "open"
    );

    // the same instant again changes nothing
    let again = run(&app, "dunning", d("2026-12-17")).await;
    assert_eq!(
        (
            &again["invoices_overdue"],
            &again["notices_sent"],
            &again["notices_enforced"]
        ),
        (&json!(0), &json!(0), &json!(0))
    );

    // 29 days after the notice the contract stands; on the 30th it is terminated
    let ran = run(&app, "dunning", d("2027-01-15")).await;
    assert_eq!(ran["notices_enforced"], 0, "{ran}");
    for sub in &subs {
        let seen = app.get(&admin, &format!("/v1/subscriptions/{sub}")).await;
        assert_eq!(seen.body["status"], "active");
    }
    let ran = run(&app, "dunning", d("2027-01-16")).await;
    assert_eq!(
        (
            &ran["notices_enforced"],
            &ran["subscriptions_terminated"],
            &ran["failed"]
        ),
        (&json!(1), &json!(2), &json!([])),
        "{ran}"
    );
    for sub in &subs {
        let seen = app.get(&admin, &format!("/v1/subscriptions/{sub}")).await;
        assert_eq!(seen.body["status"], "ended");
    }
    let charges = app
        .get(&finance, &format!("/v1/customers/{customer}/charges"))
        .await;
    let fees: Vec<&Value> = charges.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["source"] == "early_termination")
        .collect();
    assert_eq!(
        fees.len(),
        1,
        "the fibre access's early-termination fee (premium assistance is paid up to its \
         term's end): {}",
        charges.text
    );
    assert_eq!(fees[0]["offer_code"], "ip_access_fibre");
    let seen = app.get(&finance, &customer_path).await;
    assert_eq!(
        (
            &seen.body["status"],
            &seen.body["dunning"]["notice"]["status"],
            &seen.body["dunning"]["notice"]["closed_on"]
        ),
        (
            &json!("suspended"),
            &json!("enforced"),
            &json!("2027-01-16")
        )
    );
    let again = run(&app, "dunning", d("2027-01-16")).await;
    assert_eq!(
        (
            &again["notices_sent"],
            &again["notices_enforced"],
            &again["subscriptions_terminated"]
        ),
        (&json!(0), &json!(0), &json!(0)),
        "an enforced notice is not sent again while the same invoice stays overdue: {again}"
    );
}

#[actix_web::test]
async fn a_suspension_set_by_hand_is_left_to_the_hand_that_set_it() {
    let (app, _conn) = seeded().await;
    let admin = app.admin().await;
    let finance = app.key(Role::Finance, None).await;
    app.clock.set(paris("2026-11-02") + Duration::hours(9));
    let customer = new_customer(&app, &finance, "by-hand").await;
    let patched = app
        .patch_json(
            &admin,
            &format!("/v1/customers/{customer}"),
            &json!({"status": "suspended"}),
        )
        .await;
    assert_eq!(patched.status, 200, "{}", patched.text);
    let ran = run(&app, "dunning", d("2027-06-01")).await;
    assert_eq!(
        (&ran["notices_sent"], &ran["notices_cleared"]),
        (&json!(0), &json!(0))
    );
    let seen = app
        .get(&finance, &format!("/v1/customers/{customer}"))
        .await;
    assert_eq!(
        (&seen.body["status"], &seen.body["dunning"]),
        (
            &json!("suspended"),
            &json!({"overdue_amount": "0.00", "overdue_since": null, "notice": null})
        )
    );
}

/// Pays what `invoice` asks on `day`, the clock set there.
async fn pay_on(app: &TestApp, invoice: &Value, day: &str) {
    app.clock.set(paris(day) + Duration::hours(12));
    let due = invoice["amount_due"].as_str().unwrap().to_string();
    pay_invoice(app, invoice, &due, day).await;
}

/// Seed 001's cap: the assistance fees paid over the 12 months before a date — tickets
/// count, a one-off service does not, a payment older than 12 months does not.
#[actix_web::test]
async fn the_liability_cap_is_the_assistance_fees_paid_over_twelve_months() {
    let (app, mut conn) = seeded().await;
    let finance = app.key(Role::Finance, None).await;
    let buy = async |day: &str, quantity: u32| {
        app.clock.set(paris(day) + Duration::hours(10));
        let bought = app
            .post_json(
                &finance,
                &format!("/v1/customers/{C2}/ticket-purchases"),
                Some(&format!("cap-{day}")),
                &json!({ "quantity": quantity }),
            )
            .await;
        assert_eq!(bought.status, 201, "{}", bought.text);
        let id = bought.body["invoice_id"].as_str().unwrap().to_string();
        app.get(&finance, &format!("/v1/invoices/{id}")).await.body
    };
    let old = buy("2025-11-10", 1).await;
    pay_on(&app, &old, "2025-11-10").await;
    let recent = buy("2026-06-01", 2).await;
    pay_on(&app, &recent, "2026-06-01").await;
    // a one-off service, paid too: not an assistance fee
    let setup = grandlivre::charges::NewCharge {
        customer_id: C2,
        subscription_id: None,
        offer_code: None,
        source: grandlivre::charges::ChargeSource::OneOff,
        period_index: None,
        description: "Configuration".into(),
        quantity: 1.into(),
        unit_price: 150.into(),
        price_basis: grandlivre::catalog::PriceBasis::Ht,
        vat_rate: "0.2".parse().unwrap(),
        service_start: None,
        service_end: None,
        idempotency_key: Some("cap-setup".into()),
    };
    let now = paris("2026-06-02") + Duration::hours(10);
    assert!(grandlivre::charges::insert(&mut conn, &setup, now)
        .await
        .unwrap());
    app.clock.set(now);
    let ran = app.run_job("invoicing", now).await;
    assert_eq!(ran["invoices_issued"], 1, "{ran}");
    let page = app
        .get(
            &finance,
            &format!("/v1/invoices?customer_id={C2}&status=issued"),
        )
        .await;
    pay_on(&app, &page.body["items"][0], "2026-06-02").await;

    app.clock.set(paris("2026-11-24") + Duration::hours(10));
    let path = format!("/v1/customers/{C2}/liability-cap");
    let today = app.get(&finance, &path).await;
    assert_eq!(
        today.body,
        json!({"customer_id": C2, "from": "2025-11-24", "to": "2026-11-24",
               "amount": "200.00", "payments": 1}),
        "{}",
        today.text
    );
    let earlier = app.get(&finance, &format!("{path}?on=2026-05-31")).await;
    assert_eq!(
        (&earlier.body["amount"], &earlier.body["from"]),
        (&json!("100.00"), &json!("2025-05-31"))
    );
    // the customer reads its own; another customer's key sees nothing; a bad date is named
    let own = app.key(Role::Customer, Some(C2)).await;
    assert_eq!(app.get(&own, &path).await.body["amount"], "200.00");
    let other = app.key(Role::Customer, Some(C1)).await;
    assert_eq!(app.get(&other, &path).await.status, 404);
    app.get(&finance, &format!("{path}?on=2026-02-30"))
        .await
        .problem(400, "invalid_parameter");
}
