//! Payments through the API: what a payment pays (oldest open invoices, or the invoices
//! named), partial and over-payments, the credit balance paying the next invoice, refunds,
//! what a paid invoice releases (tickets, a Support VIP subscription, a suspension), replay
//! and conflict on the reference, who sees what, and concurrent payments that never
//! allocate more than is due.

use diesel_async::RunQueryDsl;
use rust_decimal::Decimal;
use rust_decimal_macros::dec;
use serde_json::{json, Value};
use uuid::Uuid;

use grandlivre::auth::Role;
use grandlivre::clock::Clock;
use grandlivre::demo::{DEMO_CUSTOMER_1 as C1, DEMO_CUSTOMER_2 as C2};

use crate::helpers::{balance, buy_tickets, paris, seeded, TestApp};

fn dec_of(v: &Value) -> Decimal {
    v.as_str()
        .unwrap_or_else(|| panic!("a decimal string: {v}"))
        .parse()
        .unwrap()
}

/// Runs the invoicing job at the clock's instant; then moves the clock a minute on, so
/// that the next purchase lands on the next invoice.
async fn invoice(app: &TestApp) {
    app.run_job("invoicing", app.clock.now()).await;
    app.clock.advance(chrono::Duration::minutes(1));
}

/// The customer's invoices, oldest first.
async fn invoices_of(app: &TestApp, key: &str, customer: Uuid) -> Vec<Value> {
    let page = app
        .get(
            key,
            &format!("/v1/invoices?customer_id={customer}&limit=200"),
        )
        .await;
    assert_eq!(page.status, 200, "{}", page.text);
    page.body["items"].as_array().unwrap().clone()
}

async fn pay(app: &TestApp, key: &str, body: Value) -> crate::helpers::Reply {
    app.post_json(key, "/v1/payments", None, &body).await
}

fn payment(customer: Uuid, amount: &str, reference: &str, value_date: &str) -> Value {
    json!({
        "customer_id": customer,
        "amount": amount,
        "method": "transfer",
        "reference": reference,
        "value_date": value_date,
    })
}

/// (amount owed, credit balance) of the balances endpoint.
async fn owed_and_credit(app: &TestApp, key: &str, customer: Uuid) -> (Decimal, Decimal) {
    let b = app
        .get(key, &format!("/v1/customers/{customer}/balances"))
        .await;
    assert_eq!(b.status, 200, "{}", b.text);
    (
        dec_of(&b.body["amount_owed"]),
        dec_of(&b.body["credit_balance"]),
    )
}

async fn tickets_of(app: &TestApp, key: &str, customer: Uuid) -> Value {
    let b = app
        .get(key, &format!("/v1/customers/{customer}/balances"))
        .await;
    b.body["tickets"].clone()
}

#[actix_web::test]
async fn a_ticket_bought_invoiced_and_paid_is_used_by_an_authorization() {
    let (app, _conn) = seeded().await;
    app.clock
        .set(paris("2026-11-20") + chrono::Duration::hours(10));
    let admin = app.admin().await;
    let ticketing = app.key(Role::Ticketing, None).await;
    buy_tickets(&app, &admin, C2, 1, None).await;
    invoice(&app).await;
    let invoices = invoices_of(&app, &admin, C2).await;
    assert_eq!(invoices.len(), 1);
    assert_eq!(invoices[0]["amount_due"], "100.00");
    let incident = |reference: &str| {
        json!({
            "customer_id": C2, "request_ref": reference, "kind": "intervention",
            "classification": {"type": "in_scope"}, "priority": "high",
            "requester": {"certified": false, "learning_phase_end": null},
            "occurred_at": app.clock.now(), "declared_at": app.clock.now(),
            "preferred_funding": "ticket"
        })
    };
    let before = app
        .post_json(&ticketing, "/v1/authorizations", None, &incident("INC-0"))
        .await;
    assert_eq!(before.body["decision"], "denied", "{}", before.text);

    let paid = pay(&app, &admin, payment(C2, "100.00", "VIR-T-1", "2026-11-20")).await;
    assert_eq!(paid.status, 201, "{}", paid.text);
    assert_eq!(
        paid.body["allocations"],
        json!([{"invoice_id": invoices[0]["id"], "invoice_number": invoices[0]["number"], "amount": "100.00"}])
    );
    assert_eq!(paid.body["to_credit_balance"], "0.00");
    let invoice = app
        .get(
            &admin,
            &format!("/v1/invoices/{}", invoices[0]["id"].as_str().unwrap()),
        )
        .await;
    assert_eq!(
        (
            &invoice.body["status"],
            &invoice.body["amount_paid"],
            &invoice.body["amount_due"]
        ),
        (&json!("paid"), &json!("100.00"), &json!("0.00"))
    );
    assert_eq!(
        tickets_of(&app, &admin, C2).await,
        json!({"available": 1, "pending_payment": 0})
    );
    assert_eq!(owed_and_credit(&app, &admin, C2).await, (dec!(0), dec!(0)));
    assert_eq!(balance(&app, &admin, C2, "411").await, dec!(0));

    let used = app
        .post_json(&ticketing, "/v1/authorizations", None, &incident("INC-1"))
        .await;
    assert_eq!(
        (&used.body["decision"], &used.body["funding"]),
        (&json!("approved"), &json!("ticket")),
        "{}",
        used.text
    );
    app.assert_ledger_verifies(&admin).await;
}

#[actix_web::test]
async fn a_support_vip_subscription_starts_on_its_payments_value_date() {
    let (app, _conn) = seeded().await;
    let admin = app.admin().await;
    app.clock
        .set(paris("2026-03-10") + chrono::Duration::hours(9));
    let created = app
        .post_json(
            &admin,
            "/v1/subscriptions",
            None,
            &json!({"customer_id": C2, "offer_code": "support_vip_annual"}),
        )
        .await;
    assert_eq!(created.status, 201, "{}", created.text);
    let sub = created.body["id"].as_str().unwrap().to_string();
    invoice(&app).await;
    let invoices = invoices_of(&app, &admin, C2).await;
    assert_eq!(invoices[0]["amount_due"], "588.00", "490.00 + 20 % VAT");

    // the transfer reached the bank on the 20th; finance reports it on the 23rd
    app.clock
        .set(paris("2026-03-23") + chrono::Duration::hours(9));
    let paid = pay(
        &app,
        &admin,
        payment(C2, "588.00", "VIR-VIP-1", "2026-03-20"),
    )
    .await;
    assert_eq!(paid.status, 201, "{}", paid.text);
    let view = app.get(&admin, &format!("/v1/subscriptions/{sub}")).await;
    assert_eq!(
        (
            &view.body["status"],
            &view.body["anchor_date"],
            &view.body["start_date"]
        ),
        (&json!("active"), &json!("2026-03-20"), &json!("2026-03-20")),
        "{}",
        view.text
    );
    assert_eq!(
        view.body["current_term"]["end"], "2027-03-20",
        "{}",
        view.text
    );

    let billing = |as_of: &str| {
        let body = json!({ "as_of": format!("{as_of}T00:00:00+01:00") });
        let admin = admin.clone();
        let app = &app;
        async move {
            let ran = app
                .post_json(&admin, "/v1/jobs/billing/run", None, &body)
                .await;
            assert_eq!(ran.status, 200, "{}", ran.text);
            ran.body["charges_created"].as_u64().unwrap()
        }
    };
    app.clock.set(paris("2027-03-21"));
    assert_eq!(
        billing("2027-03-19").await,
        0,
        "period 0 is not charged again"
    );
    assert_eq!(
        billing("2027-03-20").await,
        1,
        "period 1 starts a year after"
    );
    let charges = app
        .get(&admin, &format!("/v1/customers/{C2}/charges?limit=200"))
        .await;
    let periods: Vec<(Value, Value)> = charges.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["subscription_id"] == json!(sub))
        .map(|c| (c["period_index"].clone(), c["service_start"].clone()))
        .collect();
    assert_eq!(
        periods,
        [(json!(0), Value::Null), (json!(1), json!("2027-03-20"))]
    );
}

#[actix_web::test]
async fn a_partial_payment_leaves_the_invoice_open_with_less_due() {
    let (app, _conn) = seeded().await;
    app.clock
        .set(paris("2026-11-20") + chrono::Duration::hours(10));
    let admin = app.admin().await;
    buy_tickets(&app, &admin, C2, 1, None).await;
    invoice(&app).await;
    let paid = pay(&app, &admin, payment(C2, "40.00", "VIR-P-1", "2026-11-20")).await;
    assert_eq!(paid.status, 201, "{}", paid.text);
    let inv = &invoices_of(&app, &admin, C2).await[0];
    assert_eq!(
        (&inv["status"], &inv["amount_paid"], &inv["amount_due"]),
        (&json!("issued"), &json!("40.00"), &json!("60.00"))
    );
    assert_eq!(
        owed_and_credit(&app, &admin, C2).await,
        (dec!(60.00), dec!(0))
    );
    assert_eq!(balance(&app, &admin, C2, "411").await, dec!(60.00));
    assert_eq!(
        tickets_of(&app, &admin, C2).await,
        json!({"available": 0, "pending_payment": 1}),
        "nothing released while something is due"
    );
    let rest = pay(&app, &admin, payment(C2, "60", "VIR-P-2", "2026-11-20")).await;
    assert_eq!(
        rest.body["allocations"][0]["amount"], "60.00",
        "{}",
        rest.text
    );
    assert_eq!(
        tickets_of(&app, &admin, C2).await,
        json!({"available": 1, "pending_payment": 0})
    );
}

#[actix_web::test]
async fn an_overpayment_becomes_a_credit_balance_that_pays_the_next_invoices() {
    let (app, _conn) = seeded().await;
    app.clock
        .set(paris("2026-11-20") + chrono::Duration::hours(10));
    let admin = app.admin().await;
    buy_tickets(&app, &admin, C2, 1, None).await;
    invoice(&app).await;
    let paid = pay(&app, &admin, payment(C2, "250.00", "VIR-O-1", "2026-11-20")).await;
    assert_eq!(paid.status, 201, "{}", paid.text);
    assert_eq!(paid.body["to_credit_balance"], "150.00");
    assert_eq!(
        owed_and_credit(&app, &admin, C2).await,
        (dec!(0), dec!(150.00))
    );
    assert_eq!(balance(&app, &admin, C2, "4191").await, dec!(150.00));

    // the next invoice (100.00) is paid by the credit balance at issue: tickets usable
    buy_tickets(&app, &admin, C2, 1, None).await;
    invoice(&app).await;
    let second = &invoices_of(&app, &admin, C2).await[1];
    assert_eq!(
        (
            &second["status"],
            &second["amount_paid"],
            &second["amount_due"]
        ),
        (&json!("paid"), &json!("100.00"), &json!("0.00")),
        "{second}"
    );
    assert_eq!(
        tickets_of(&app, &admin, C2).await,
        json!({"available": 2, "pending_payment": 0})
    );
    // the one after (200.00) takes the 50.00 left and asks the rest
    buy_tickets(&app, &admin, C2, 2, None).await;
    invoice(&app).await;
    let third = &invoices_of(&app, &admin, C2).await[2];
    assert_eq!(
        (
            &third["status"],
            &third["amount_paid"],
            &third["amount_due"]
        ),
        (&json!("issued"), &json!("50.00"), &json!("150.00"))
    );
    assert_eq!(
        owed_and_credit(&app, &admin, C2).await,
        (dec!(150.00), dec!(0))
    );
    assert_eq!(balance(&app, &admin, C2, "411").await, dec!(150.00));
    assert_eq!(balance(&app, &admin, C2, "4191").await, dec!(0));
    app.assert_ledger_verifies(&admin).await;
}

#[actix_web::test]
async fn a_payment_pays_the_invoices_it_names_in_their_order() {
    let (app, _conn) = seeded().await;
    app.clock
        .set(paris("2026-11-20") + chrono::Duration::hours(10));
    let admin = app.admin().await;
    for n in [1, 2, 3] {
        buy_tickets(&app, &admin, C2, n, None).await;
        invoice(&app).await;
    }
    buy_tickets(&app, &admin, C1, 1, None).await;
    invoice(&app).await;
    let invoices = invoices_of(&app, &admin, C2).await;
    let id = |i: usize| invoices[i]["id"].clone();
    let named = json!({
        "customer_id": C2, "amount": "350.00", "method": "card", "reference": "CB-N-1",
        "value_date": "2026-11-20", "invoice_ids": [id(2), id(0)]
    });
    let paid = pay(&app, &admin, named).await;
    assert_eq!(paid.status, 201, "{}", paid.text);
    let parts: Vec<(Value, Value)> = paid.body["allocations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["invoice_id"].clone(), a["amount"].clone()))
        .collect();
    assert_eq!(
        parts,
        [(id(2), json!("300.00")), (id(0), json!("50.00"))],
        "the third first, then the first"
    );
    let after = invoices_of(&app, &admin, C2).await;
    let due: Vec<&Value> = after.iter().map(|i| &i["amount_due"]).collect();
    assert_eq!(due, [&json!("50.00"), &json!("200.00"), &json!("0.00")]);

    // another customer's invoice, a paid one, a repeated one: refused on invoice_ids
    let c1_invoice = invoices_of(&app, &admin, C1).await[0]["id"].clone();
    for (n, ids) in [
        json!([c1_invoice]),
        json!([id(2)]),
        json!([id(0), id(0)]),
        json!([]),
    ]
    .into_iter()
    .enumerate()
    {
        let refused = pay(
            &app,
            &admin,
            json!({
                "customer_id": C2, "amount": "10.00", "method": "transfer",
                "reference": format!("VIR-BAD-{n}"), "value_date": "2026-11-20",
                "invoice_ids": ids
            }),
        )
        .await;
        let problem = refused.problem(422, "invalid_request");
        assert_eq!(
            problem["errors"][0]["field"], "invoice_ids",
            "{}",
            refused.text
        );
    }
    assert_eq!(
        owed_and_credit(&app, &admin, C2).await,
        (dec!(250.00), dec!(0))
    );
}

#[actix_web::test]
async fn the_reference_replays_the_first_payment_and_refuses_another_body() {
    let (app, _conn) = seeded().await;
    app.clock
        .set(paris("2026-11-20") + chrono::Duration::hours(10));
    let admin = app.admin().await;
    let finance = app.key(Role::Finance, None).await;
    buy_tickets(&app, &admin, C2, 1, None).await;
    invoice(&app).await;
    let body = payment(C2, "100.00", "VIR-R-1", "2026-11-19");
    let first = pay(&app, &finance, body.clone()).await;
    assert_eq!(first.status, 201, "{}", first.text);
    // the same payment reported again, by another staff key: the first one
    let again = pay(&app, &admin, body.clone()).await;
    assert_eq!(again.status, 200, "{}", again.text);
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    assert_eq!(again.body, first.body);
    let other = pay(&app, &admin, payment(C2, "90.00", "VIR-R-1", "2026-11-19")).await;
    let problem = other.problem(409, "idempotency_conflict");
    assert_eq!(problem["errors"][0]["field"], "reference");
    let list = app
        .get(&admin, &format!("/v1/payments?customer_id={C2}"))
        .await;
    assert_eq!(list.body["items"].as_array().unwrap().len(), 1);
    let one = app
        .get(
            &admin,
            &format!("/v1/payments/{}", first.body["id"].as_str().unwrap()),
        )
        .await;
    assert_eq!(one.body, first.body);
    assert_eq!(balance(&app, &admin, C2, "411").await, dec!(0));

    // what a request may not hold
    for (body, field) in [
        (payment(C2, "0.00", "VIR-X-1", "2026-11-19"), "amount"),
        (payment(C2, "1.001", "VIR-X-2", "2026-11-19"), "amount"),
        (
            payment(C2, "10000000000.00", "VIR-X-3", "2026-11-19"),
            "amount",
        ),
        (payment(C2, "1.00", "VIR-X-4", "2026-11-21"), "value_date"),
        (
            payment(Uuid::nil(), "1.00", "VIR-X-5", "2026-11-19"),
            "customer_id",
        ),
        (payment(C2, "1.00", "", "2026-11-19"), "reference"),
        (payment(C2, "1.00", "  ", "2026-11-19"), "reference"),
        (payment(C2, "1.00", "VIR\n7", "2026-11-19"), "reference"),
        (
            payment(C2, "1.00", &"R".repeat(201), "2026-11-19"),
            "reference",
        ),
    ] {
        let refused = pay(&app, &admin, body).await;
        let problem = refused.problem(422, "invalid_request");
        assert_eq!(problem["errors"][0]["field"], field, "{}", refused.text);
    }
    let customer = app.key(Role::Customer, Some(C2)).await;
    pay(
        &app,
        &customer,
        payment(C2, "1.00", "VIR-X-6", "2026-11-19"),
    )
    .await
    .problem(403, "forbidden");
}

#[actix_web::test]
async fn a_refund_pays_back_the_credit_balance_never_more() {
    let (app, _conn) = seeded().await;
    app.clock
        .set(paris("2026-11-20") + chrono::Duration::hours(10));
    let admin = app.admin().await;
    let paid = pay(&app, &admin, payment(C2, "80.00", "VIR-F-1", "2026-11-20")).await;
    assert_eq!(paid.body["to_credit_balance"], "80.00", "{}", paid.text);
    let bank_before = dec_of(
        &app.get(
            &admin,
            "/v1/ledger/accounts/00000000-0000-4000-8000-000000000512",
        )
        .await
        .body["balance"]["posted"],
    );
    let refunds = format!("/v1/customers/{C2}/refunds");
    let body = |amount: &str, reference: &str| json!({"amount": amount, "reference": reference, "value_date": "2026-11-20"});
    let beyond = app
        .post_json(&admin, &refunds, None, &body("80.01", "RBT-1"))
        .await;
    let problem = beyond.problem(422, "beyond_credit_balance");
    assert_eq!(problem["errors"][0]["field"], "amount");
    let refunded = app
        .post_json(&admin, &refunds, None, &body("30.00", "RBT-2"))
        .await;
    assert_eq!(refunded.status, 201, "{}", refunded.text);
    assert_eq!(refunded.body["credit_balance"], "50.00");
    let replay = app
        .post_json(&admin, &refunds, None, &body("30.00", "RBT-2"))
        .await;
    assert_eq!((replay.status, &replay.body), (200, &refunded.body));
    app.post_json(&admin, &refunds, None, &body("20.00", "RBT-2"))
        .await
        .problem(409, "idempotency_conflict");
    assert_eq!(
        owed_and_credit(&app, &admin, C2).await,
        (dec!(0), dec!(50.00))
    );
    let bank_after = dec_of(
        &app.get(
            &admin,
            "/v1/ledger/accounts/00000000-0000-4000-8000-000000000512",
        )
        .await
        .body["balance"]["posted"],
    );
    assert_eq!(bank_before - bank_after, dec!(30.00));
    let all = app
        .post_json(&admin, &refunds, None, &body("50.00", "RBT-3"))
        .await;
    assert_eq!(all.body["credit_balance"], "0.00", "{}", all.text);
    app.post_json(&admin, &refunds, None, &body("0.01", "RBT-4"))
        .await
        .problem(422, "beyond_credit_balance");
    app.post_json(
        &admin,
        &format!("/v1/customers/{}/refunds", Uuid::nil()),
        None,
        &body("1.00", "RBT-5"),
    )
    .await
    .problem(404, "not_found");
    app.assert_ledger_verifies(&admin).await;
}

#[actix_web::test]
async fn a_customer_key_sees_its_own_payments_only() {
    let (app, _conn) = seeded().await;
    app.clock
        .set(paris("2026-11-20") + chrono::Duration::hours(10));
    let admin = app.admin().await;
    let theirs = pay(&app, &admin, payment(C2, "10.00", "VIR-C2", "2026-11-20")).await;
    let mine = pay(&app, &admin, payment(C1, "10.00", "VIR-C1", "2026-11-20")).await;
    let c1 = app.key(Role::Customer, Some(C1)).await;
    let path = |p: &Value| format!("/v1/payments/{}", p["id"].as_str().unwrap());
    assert_eq!(app.get(&c1, &path(&mine.body)).await.status, 200);
    app.get(&c1, &path(&theirs.body))
        .await
        .problem(404, "not_found");
    let own = app.get(&c1, "/v1/payments").await;
    let ids: Vec<&Value> = own.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| &p["id"])
        .collect();
    assert_eq!(ids, [&mine.body["id"]]);
    app.get(&c1, &format!("/v1/payments?customer_id={C2}"))
        .await
        .problem(404, "not_found");
    let ticketing = app.key(Role::Ticketing, None).await;
    app.get(&ticketing, "/v1/payments")
        .await
        .problem(403, "forbidden");
}

/// The dunning job suspends C2 15 days past due; a payment that leaves 0.01 overdue
/// changes nothing, the one that clears it lifts the suspension at once (DOMAIN.md).
#[actix_web::test]
async fn paying_what_is_overdue_lifts_the_suspension_at_once() {
    let (app, _conn) = seeded().await;
    app.clock
        .set(paris("2026-11-20") + chrono::Duration::hours(10));
    let admin = app.admin().await;
    buy_tickets(&app, &admin, C2, 1, None).await;
    invoice(&app).await;
    // due 2026-12-20: the notice 15 days later
    let at = paris("2027-01-04") + chrono::Duration::hours(10);
    app.clock.set(at);
    let ran = app.run_job("dunning", at).await;
    assert_eq!(ran["notices_sent"], 1, "{ran}");
    let customer = || async { app.get(&admin, &format!("/v1/customers/{C2}")).await.body };
    assert_eq!(customer().await["status"], "suspended");
    pay(&app, &admin, payment(C2, "99.99", "VIR-S-1", "2027-01-04")).await;
    assert_eq!(
        customer().await["status"],
        "suspended",
        "0.01 still overdue"
    );
    assert_eq!(customer().await["dunning"]["overdue_amount"], "0.01");
    pay(&app, &admin, payment(C2, "0.01", "VIR-S-2", "2027-01-04")).await;
    let seen = customer().await;
    assert_eq!(
        (
            &seen["status"],
            &seen["dunning"]["notice"]["status"],
            &seen["dunning"]["overdue_amount"]
        ),
        (&json!("active"), &json!("cleared"), &json!("0.00"))
    );
    assert_eq!(invoices_of(&app, &admin, C2).await[0]["status"], "paid");
}

#[actix_web::test]
async fn concurrent_payments_of_one_customer_never_allocate_more_than_is_due() {
    let (app, mut conn) = seeded().await;
    app.clock
        .set(paris("2026-11-20") + chrono::Duration::hours(10));
    let admin = app.admin().await;
    for n in [1, 2, 3] {
        buy_tickets(&app, &admin, C2, n, None).await;
        invoice(&app).await;
    }
    // 20 payments of 37.50 (750.00) on 600.00 of invoices, all at once on the customer row
    let payments = futures_util::future::join_all((0..20).map(|i| {
        let admin = admin.clone();
        let app = &app;
        async move {
            pay(
                app,
                &admin,
                payment(C2, "37.50", &format!("VIR-CC-{i}"), "2026-11-20"),
            )
            .await
        }
    }));
    let replies = app
        .while_rows_are_held(
            &format!("SELECT 1 FROM customers WHERE id = '{C2}'"),
            4,
            payments,
        )
        .await;
    for r in &replies {
        assert_eq!(r.status, 201, "{}", r.text);
    }
    let credited: Decimal = replies
        .iter()
        .map(|r| dec_of(&r.body["to_credit_balance"]))
        .sum();
    assert_eq!(credited, dec!(150.00));

    #[derive(diesel::QueryableByName)]
    struct Over {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let over: Over = diesel::sql_query(
        "SELECT count(*) AS n FROM invoices i WHERE i.total_ttc < \
         (SELECT coalesce(sum(amount), 0) FROM invoice_settlements s WHERE s.invoice_id = i.id)",
    )
    .get_result(&mut conn)
    .await
    .unwrap();
    assert_eq!(over.n, 0, "no invoice settled beyond its total");
    let invoices = invoices_of(&app, &admin, C2).await;
    assert!(
        invoices.iter().all(|i| i["status"] == "paid"),
        "{invoices:?}"
    );
    assert_eq!(
        owed_and_credit(&app, &admin, C2).await,
        (dec!(0), dec!(150.00))
    );
    assert_eq!(balance(&app, &admin, C2, "411").await, dec!(0));
    assert_eq!(balance(&app, &admin, C2, "4191").await, dec!(150.00));
    app.assert_ledger_verifies(&admin).await;
}
