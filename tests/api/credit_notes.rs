//! Credit notes through HTTP: partial and full on an unpaid invoice, exact totals per VAT
//! rate with a TTC-priced ticket line (the note that credits the rest takes the rest of
//! the VAT), nothing beyond what remains, numbers gapless under concurrent requests, a
//! ticket purchase credited (its tickets taken back, refused once used), a paid invoice
//! credited to the customer's credit balance, and the ledger after each note.

use chrono::Duration;
use diesel_async::SimpleAsyncConnection;
use rust_decimal::Decimal;
use rust_decimal_macros::dec;
use serde_json::{json, Value};
use uuid::Uuid;

use grandlivre::auth::Role;
use grandlivre::catalog::PriceBasis;
use grandlivre::charges::{self, ChargeSource, NewCharge};
use grandlivre::clock::Clock;
use grandlivre::demo::{DEMO_CUSTOMER_1 as C1, DEMO_CUSTOMER_2 as C2};

use crate::helpers::{balance, buy_tickets, paris, pay_invoice, seeded, TestApp};

/// A one-off charge of `customer` priced excl. VAT.
fn service(
    customer: Uuid,
    name: &str,
    quantity: Decimal,
    price: Decimal,
    rate: Decimal,
) -> NewCharge {
    NewCharge {
        customer_id: customer,
        subscription_id: None,
        offer_code: None,
        source: ChargeSource::OneOff,
        period_index: None,
        description: name.into(),
        quantity,
        unit_price: price,
        price_basis: PriceBasis::Ht,
        vat_rate: rate,
        service_start: None,
        service_end: None,
        idempotency_key: Some(format!("{customer}:{name}")),
    }
}

/// Runs the invoicing job now and returns the customer's only invoice.
async fn invoice_of(app: &TestApp, key: &str, customer: Uuid) -> Value {
    app.run_job("invoicing", app.clock.now()).await;
    let page = app
        .get(key, &format!("/v1/invoices?customer_id={customer}"))
        .await;
    assert_eq!(
        page.body["items"].as_array().map(Vec::len),
        Some(1),
        "{}",
        page.text
    );
    page.body["items"][0].clone()
}

async fn get_invoice(app: &TestApp, key: &str, invoice: &Value) -> Value {
    let read = app
        .get(
            key,
            &format!("/v1/invoices/{}", invoice["id"].as_str().unwrap()),
        )
        .await;
    assert_eq!(read.status, 200, "{}", read.text);
    read.body
}

/// The charge id of the invoice's line `n`.
fn charge(invoice: &Value, n: usize) -> String {
    invoice["lines"][n]["charge_id"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn credit_note(
    app: &TestApp,
    key: &str,
    invoice: &Value,
    idem: &str,
    body: &Value,
) -> crate::helpers::Reply {
    let path = format!(
        "/v1/invoices/{}/credit-notes",
        invoice["id"].as_str().unwrap()
    );
    app.post_json(key, &path, Some(idem), body).await
}

async fn issued(app: &TestApp, key: &str, invoice: &Value, idem: &str, body: &Value) -> Value {
    let note = credit_note(app, key, invoice, idem, body).await;
    assert_eq!(note.status, 201, "{}", note.text);
    note.body
}

/// (total HT, VAT, TTC) of a document.
fn totals(doc: &Value) -> [&str; 3] {
    let t = &doc["totals"];
    [
        t["total_ht"].as_str().unwrap(),
        t["total_vat"].as_str().unwrap(),
        t["total_ttc"].as_str().unwrap(),
    ]
}

/// 411, 706, 487 and 44571 of the customer.
async fn books(app: &TestApp, key: &str, customer: Uuid) -> [Decimal; 4] {
    [
        balance(app, key, customer, "411").await,
        balance(app, key, customer, "706").await,
        balance(app, key, customer, "487").await,
        balance(app, key, customer, "44571").await,
    ]
}

/// Pays `amount` of `invoice` by bank transfer today, naming it.
async fn pay(app: &TestApp, invoice: &Value, amount: Decimal) {
    let today = grandlivre::calendar::paris_date(app.clock.now()).to_string();
    pay_invoice(app, invoice, &amount.to_string(), &today).await;
}

#[actix_web::test]
async fn partial_then_full_credit_notes_on_an_unpaid_invoice() {
    let (app, mut conn) = seeded().await;
    let finance = app.key(Role::Finance, None).await;
    app.clock.set(paris("2026-11-20") + Duration::hours(10));
    let now = app.clock.now();
    // three remote sessions priced 100.00 incl. VAT, like tickets (which a purchase now
    // invoices alone, at once: `a_paid_ticket_purchase_credited_…` credits those)
    let sessions = NewCharge {
        price_basis: PriceBasis::Ttc,
        ..service(C1, "remote session", dec!(3), dec!(100.00), dec!(0.20))
    };
    for c in [
        service(C1, "setup", dec!(2), dec!(39.90), dec!(0.20)),
        service(C1, "book", dec!(1), dec!(10.00), dec!(0.055)),
        sessions,
    ] {
        assert!(charges::insert(&mut conn, &c, now).await.unwrap());
        app.clock.advance(Duration::seconds(1));
    }
    let invoice = invoice_of(&app, &finance, C1).await;
    // 20 %: 79.80 + 250.00 = 329.80 → 65.96; 5.5 %: 10.00 → 0.55
    assert_eq!(totals(&invoice), ["339.80", "66.51", "406.31"], "{invoice}");
    let (setup, book, tickets) = (
        charge(&invoice, 0),
        charge(&invoice, 1),
        charge(&invoice, 2),
    );
    assert_eq!(
        books(&app, &finance, C1).await,
        [dec!(406.31), dec!(339.80), dec!(0), dec!(66.51)]
    );

    // one of the two setups
    let one = json!({"reason": "One setup was not done", "lines": [{"charge_id": setup, "quantity": "1"}]});
    let first = issued(&app, &finance, &invoice, "n1", &one).await;
    assert_eq!(first["number"], "A2026-000001");
    assert_eq!(first["invoice_number"], invoice["number"]);
    assert_eq!(
        (&first["issued_on"], &first["reason"]),
        (&json!("2026-11-20"), &json!("One setup was not done"))
    );
    assert_eq!(totals(&first), ["39.90", "7.98", "47.88"]);
    assert_eq!(
        first["lines"],
        json!([{"charge_id": setup, "description": "setup", "quantity": "1", "unit_price": "39.90",
                "price_basis": "ht", "vat_rate": "0.2", "net_ht": "39.90"}])
    );
    assert_eq!(
        (&first["applied_to_invoice"], &first["to_credit_balance"]),
        (&json!("47.88"), &json!("0.00"))
    );
    let after = get_invoice(&app, &finance, &invoice).await;
    assert_eq!(
        (
            &after["amount_due"],
            &after["amount_credited"],
            &after["status"]
        ),
        (&json!("358.43"), &json!("47.88"), &json!("issued"))
    );
    assert_eq!(after["credit_notes"][0]["number"], "A2026-000001");
    assert_eq!(
        books(&app, &finance, C1).await,
        [dec!(358.43), dec!(299.90), dec!(0), dec!(58.53)]
    );

    // beyond what remains: named, nothing written
    for (body, field) in [
        (
            json!({"reason": "x", "lines": [{"charge_id": setup, "quantity": "2"}]}),
            "lines[0].quantity",
        ),
        (
            json!({"reason": "x", "lines": [{"charge_id": setup, "amount": "39.91"}]}),
            "lines[0].amount",
        ),
        (
            json!({"reason": "x", "lines": [{"charge_id": tickets, "quantity": "4"}]}),
            "lines[0].quantity",
        ),
        (
            json!({"reason": "x", "lines": [{"charge_id": book, "quantity": "1", "amount": "1.00"}]}),
            "lines[0]",
        ),
        (
            json!({"reason": "x", "lines": [{"charge_id": book}, {"charge_id": book}]}),
            "lines[1].charge_id",
        ),
        (
            json!({"reason": "x", "lines": [{"charge_id": Uuid::now_v7()}]}),
            "lines[0].charge_id",
        ),
        (json!({"reason": "x", "lines": []}), "lines"),
        (json!({"reason": "   "}), "reason"),
        (json!({"reason": "x".repeat(501)}), "reason"),
    ] {
        let refused = credit_note(
            &app,
            &finance,
            &invoice,
            &format!("bad-{field}-{body}"),
            &body,
        )
        .await;
        assert_eq!(
            refused.problem(422, "invalid_request")["errors"][0]["field"],
            field,
            "{body}"
        );
    }
    assert_eq!(
        get_invoice(&app, &finance, &invoice).await["amount_due"],
        "358.43"
    );

    // a second note is limited to the rest: the other setup
    let second = issued(&app, &finance, &invoice, "n2", &one).await;
    assert_eq!(
        (second["number"].as_str(), totals(&second)),
        (Some("A2026-000002"), ["39.90", "7.98", "47.88"])
    );
    let refused = credit_note(&app, &finance, &invoice, "n2-again", &one).await;
    let problem = refused.problem(422, "invalid_request");
    assert_eq!(problem["errors"][0]["field"], "lines[0].charge_id");

    // a session (TTC) and 3.00 of the book at 5.5 %: 0.165 → 0.17, half away from zero
    let mixed = json!({"reason": "Goodwill", "lines": [
        {"charge_id": tickets, "quantity": "1"}, {"charge_id": book, "amount": "3.00"}]});
    let third = issued(&app, &finance, &invoice, "n3", &mixed).await;
    assert_eq!(
        third["totals"],
        json!({"vat_breakdown": [
            {"vat_rate": "0.055", "base_ht": "3.00", "vat": "0.17"},
            {"vat_rate": "0.2", "base_ht": "83.33", "vat": "16.67"}],
            "total_ht": "86.33", "total_vat": "16.84", "total_ttc": "103.17"})
    );
    assert_eq!(third["lines"][1]["quantity"], Value::Null);
    assert_eq!(
        books(&app, &finance, C1).await,
        [dec!(207.38), dec!(173.67), dec!(0), dec!(33.71)]
    );

    // everything left: 7.00 of the book (VAT 0.385 would round to 0.39; 0.38 remain) and
    // two sessions (166.67, VAT 33.33): the invoice is credited to the cent
    let last = issued(
        &app,
        &finance,
        &invoice,
        "n4",
        &json!({"reason": "Cancelled"}),
    )
    .await;
    assert_eq!(
        last["totals"],
        json!({"vat_breakdown": [
            {"vat_rate": "0.055", "base_ht": "7.00", "vat": "0.38"},
            {"vat_rate": "0.2", "base_ht": "166.67", "vat": "33.33"}],
            "total_ht": "173.67", "total_vat": "33.71", "total_ttc": "207.38"})
    );
    assert_eq!(last["lines"][1]["quantity"], "2");
    let done = get_invoice(&app, &finance, &invoice).await;
    assert_eq!(
        (
            &done["amount_due"],
            &done["amount_credited"],
            &done["status"]
        ),
        (&json!("0.00"), &json!("406.31"), &json!("credited"))
    );
    let numbers: Vec<&str> = done["credit_notes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["number"].as_str().unwrap())
        .collect();
    assert_eq!(
        numbers,
        [
            "A2026-000001",
            "A2026-000002",
            "A2026-000003",
            "A2026-000004"
        ]
    );
    assert_eq!(books(&app, &finance, C1).await, [Decimal::ZERO; 4]);
    let nothing = credit_note(&app, &finance, &invoice, "n5", &json!({"reason": "again"})).await;
    assert_eq!(
        nothing.problem(422, "invalid_request")["errors"][0]["field"],
        "lines"
    );
    app.assert_ledger_verifies(&finance).await;

    // a note is immutable, like an invoice
    let id = first["id"].as_str().unwrap();
    for sql in [
        format!("UPDATE credit_notes SET reason = 'other' WHERE id = '{id}'"),
        format!("DELETE FROM credit_note_lines WHERE credit_note_id = '{id}'"),
        format!("UPDATE credit_note_vat SET vat = 0 WHERE credit_note_id = '{id}'"),
    ] {
        let refused = conn.batch_execute(&sql).await.unwrap_err().to_string();
        assert!(refused.contains("never"), "{sql}: {refused}");
    }
}

#[actix_web::test]
async fn keys_replays_and_who_sees_what() {
    let (app, mut conn) = seeded().await;
    let finance = app.key(Role::Finance, None).await;
    app.clock.set(paris("2026-11-20") + Duration::hours(10));
    let c = service(C1, "setup", dec!(1), dec!(50.00), dec!(0.20));
    assert!(charges::insert(&mut conn, &c, app.clock.now())
        .await
        .unwrap());
    let invoice = invoice_of(&app, &finance, C1).await;
    let body = json!({"reason": "Wrong price"});
    let path = format!(
        "/v1/invoices/{}/credit-notes",
        invoice["id"].as_str().unwrap()
    );

    app.post_json(&finance, &path, None, &body)
        .await
        .problem(400, "missing_idempotency_key");
    let own = app.key(Role::Customer, Some(C1)).await;
    app.post_json(&own, &path, Some("k"), &body)
        .await
        .problem(403, "forbidden");
    let unknown = format!("/v1/invoices/{}/credit-notes", Uuid::now_v7());
    app.post_json(&finance, &unknown, Some("k"), &body)
        .await
        .problem(404, "not_found");

    let first = credit_note(&app, &finance, &invoice, "k", &body).await;
    assert_eq!(first.status, 201, "{}", first.text);
    let again = credit_note(&app, &finance, &invoice, "k", &body).await;
    assert_eq!((again.status, &again.body), (200, &first.body));
    assert_eq!(again.header("idempotent-replayed"), Some("true"));
    let other = json!({"reason": "Another reason"});
    credit_note(&app, &finance, &invoice, "k", &other)
        .await
        .problem(409, "idempotency_conflict");

    let note = format!("/v1/credit-notes/{}", first.body["id"].as_str().unwrap());
    assert_eq!(app.get(&own, &note).await.body, first.body);
    let theirs = app.key(Role::Customer, Some(C2)).await;
    app.get(&theirs, &note).await.problem(404, "not_found");
    let ticketing = app.key(Role::Ticketing, None).await;
    app.get(&ticketing, &note).await.problem(403, "forbidden");
    let listed = app.get(&own, "/v1/credit-notes").await;
    assert_eq!(listed.body["items"], json!([first.body]));
    assert_eq!(
        app.get(&theirs, "/v1/credit-notes").await.body["items"],
        json!([])
    );
    app.get(&theirs, &format!("/v1/credit-notes?customer_id={C1}"))
        .await
        .problem(404, "not_found");
    let by_invoice = format!(
        "/v1/credit-notes?invoice_id={}",
        invoice["id"].as_str().unwrap()
    );
    assert_eq!(
        app.get(&finance, &by_invoice).await.body["items"],
        json!([first.body])
    );
    let none = format!("/v1/credit-notes?invoice_id={}", Uuid::now_v7());
    assert_eq!(app.get(&finance, &none).await.body["items"], json!([]));
    app.get(&finance, "/v1/credit-notes?cursor=nope")
        .await
        .problem(400, "invalid_cursor");
}

#[actix_web::test]
async fn numbers_stay_gapless_under_concurrent_notes_and_never_credit_too_much() {
    let (app, _conn) = seeded().await;
    let finance = app.key(Role::Finance, None).await;
    app.clock.set(paris("2026-11-20") + Duration::hours(10));
    buy_tickets(&app, &finance, C2, 10, Some("tickets-10")).await;
    let invoice = invoice_of(&app, &finance, C2).await;
    assert_eq!(totals(&invoice), ["833.33", "166.67", "1000.00"]);
    let one = json!({"reason": "One ticket", "lines": [{"charge_id": charge(&invoice, 0), "quantity": "1"}]});
    // twelve notes of one ticket each on ten tickets, all waiting on the customer's row
    let keys: Vec<String> = (0..12).map(|i| format!("c{i}")).collect();
    let replies = app
        .while_rows_are_held(
            &format!("SELECT id FROM customers WHERE id = '{C2}'"),
            8,
            futures_util::future::join_all(
                keys.iter()
                    .map(|k| credit_note(&app, &finance, &invoice, k, &one)),
            ),
        )
        .await;
    let created: Vec<&Value> = replies
        .iter()
        .filter(|r| r.status == 201)
        .map(|r| &r.body)
        .collect();
    assert_eq!(
        created.len(),
        10,
        "{:?}",
        replies.iter().map(|r| &r.text).collect::<Vec<_>>()
    );
    for refused in replies.iter().filter(|r| r.status != 201) {
        refused.problem(422, "invalid_request");
    }
    let mut numbers: Vec<&str> = created
        .iter()
        .map(|n| n["number"].as_str().unwrap())
        .collect();
    numbers.sort();
    let expected: Vec<String> = (1..=10).map(|n| format!("A2026-{n:06}")).collect();
    assert_eq!(numbers, expected);
    // each 100.00; the last to issue takes the rest of the net and VAT (83.36 + 16.64)
    let mut ttc = Decimal::ZERO;
    for n in &created {
        assert_eq!(n["totals"]["total_ttc"], "100.00", "{n}");
        ttc += n["totals"]["total_ttc"]
            .as_str()
            .unwrap()
            .parse::<Decimal>()
            .unwrap();
    }
    assert_eq!(ttc, dec!(1000.00));
    let last = created
        .iter()
        .find(|n| n["number"] == "A2026-000010")
        .unwrap();
    assert_eq!(totals(last), ["83.36", "16.64", "100.00"]);
    let done = get_invoice(&app, &finance, &invoice).await;
    assert_eq!(
        (&done["amount_due"], &done["status"]),
        (&json!("0.00"), &json!("credited"))
    );
    assert_eq!(books(&app, &finance, C2).await, [Decimal::ZERO; 4]);
    app.assert_ledger_verifies(&finance).await;
}

#[actix_web::test]
async fn a_paid_ticket_purchase_credited_takes_back_unused_tickets_only() {
    let (app, _conn) = seeded().await;
    let finance = app.key(Role::Finance, None).await;
    app.clock.set(paris("2026-11-20") + Duration::hours(10));
    buy_tickets(&app, &finance, C1, 3, Some("tickets-3")).await;
    let invoice = invoice_of(&app, &finance, C1).await;
    pay(&app, &invoice, dec!(300.00)).await;
    assert_eq!(
        get_invoice(&app, &finance, &invoice).await["status"],
        "paid"
    );
    // one ticket used by an intervention
    let ticketing = app.key(Role::Ticketing, None).await;
    let used = app
        .post_json(
            &ticketing,
            "/v1/authorizations",
            None,
            &json!({
                "customer_id": C1, "request_ref": "incident-1", "kind": "intervention",
                "classification": {"type": "in_scope"}, "priority": "high",
                "requester": {"certified": false, "learning_phase_end": null},
                "occurred_at": app.clock.now(), "declared_at": app.clock.now(),
                "preferred_funding": "ticket"
            }),
        )
        .await;
    assert_eq!(used.body["funding"], "ticket", "{}", used.text);
    let capture = format!(
        "/v1/authorizations/{}/capture",
        used.body["id"].as_str().unwrap()
    );
    let captured = app.post_json(&ticketing, &capture, None, &json!({})).await;
    assert_eq!(captured.body["status"], "captured", "{}", captured.text);
    let before = books(&app, &finance, C1).await;

    // all three: one was used
    let tickets = charge(&invoice, 0);
    let all =
        json!({"reason": "Unused tickets", "lines": [{"charge_id": tickets, "quantity": "3"}]});
    let refused = credit_note(&app, &finance, &invoice, "all", &all).await;
    assert!(refused.problem(409, "already_used")["detail"]
        .as_str()
        .unwrap()
        .contains("2 of its tickets remain unused"));
    // two: the invoice was paid, so the note goes to the customer's credit balance
    let two =
        json!({"reason": "Unused tickets", "lines": [{"charge_id": tickets, "quantity": "2"}]});
    let note = issued(&app, &finance, &invoice, "two", &two).await;
    assert_eq!(totals(&note), ["166.67", "33.33", "200.00"]);
    assert_eq!(
        (&note["applied_to_invoice"], &note["to_credit_balance"]),
        (&json!("0.00"), &json!("200.00"))
    );
    let held = app
        .get(&finance, &format!("/v1/customers/{C1}/balances"))
        .await;
    assert_eq!(
        held.body["tickets"],
        json!({"available": 0, "pending_payment": 0}),
        "{}",
        held.text
    );
    assert_eq!(balance(&app, &finance, C1, "4191").await, dec!(200.00));
    let [r411, r706, r487, vat] = before;
    assert_eq!(
        books(&app, &finance, C1).await,
        [r411, r706, r487 - dec!(166.67), vat - dec!(33.33)]
    );
    let after = get_invoice(&app, &finance, &invoice).await;
    assert_eq!(
        (&after["status"], &after["amount_due"]),
        (&json!("paid"), &json!("0.00"))
    );
    // the used ticket cannot be taken back
    let last = json!({"reason": "The last one", "lines": [{"charge_id": tickets}]});
    credit_note(&app, &finance, &invoice, "last", &last)
        .await
        .problem(409, "already_used");
    app.assert_ledger_verifies(&finance).await;
}

#[actix_web::test]
async fn a_partly_paid_invoice_is_credited_first_on_what_it_still_asks() {
    let (app, mut conn) = seeded().await;
    let finance = app.key(Role::Finance, None).await;
    app.clock.set(paris("2026-11-20") + Duration::hours(10));
    let c = service(C1, "audit", dec!(1), dec!(100.00), dec!(0.20));
    assert!(charges::insert(&mut conn, &c, app.clock.now())
        .await
        .unwrap());
    let invoice = invoice_of(&app, &finance, C1).await;
    pay(&app, &invoice, dec!(50.00)).await;
    let note = issued(
        &app,
        &finance,
        &invoice,
        "all",
        &json!({"reason": "Not delivered"}),
    )
    .await;
    assert_eq!(
        (
            &note["totals"]["total_ttc"],
            &note["applied_to_invoice"],
            &note["to_credit_balance"]
        ),
        (&json!("120.00"), &json!("70.00"), &json!("50.00"))
    );
    let after = get_invoice(&app, &finance, &invoice).await;
    assert_eq!(
        (
            &after["status"],
            &after["amount_due"],
            &after["amount_paid"],
            &after["amount_credited"]
        ),
        (
            &json!("paid"),
            &json!("0.00"),
            &json!("50.00"),
            &json!("70.00")
        )
    );
    assert_eq!(books(&app, &finance, C1).await, [Decimal::ZERO; 4]);
    assert_eq!(balance(&app, &finance, C1, "4191").await, dec!(50.00));
    app.assert_ledger_verifies(&finance).await;
}

#[actix_web::test]
async fn bought_credits_are_taken_back_whole_and_only_while_untouched() {
    let (app, mut conn) = seeded().await;
    let finance = app.key(Role::Finance, None).await;
    let start = "2026-02-02";
    let parent = crate::helpers::subscribe(&mut conn, C1, "premium_assistance", start, None).await;
    crate::helpers::subscribe(&mut conn, C1, "service_plus_pack", start, Some(parent)).await;
    app.clock.set(paris("2026-02-10") + Duration::hours(9));
    let path = format!("/v1/customers/{C1}/credit-purchases");
    let mut lots = Vec::new();
    for (idem, credits) in [("five", "5"), ("two", "2")] {
        let bought = app
            .post_json(&finance, &path, Some(idem), &json!({ "credits": credits }))
            .await;
        assert_eq!(bought.status, 201, "{}", bought.text);
        lots.push(bought.body);
    }
    // each purchase is invoiced at once, on its own invoice
    let mut invoices = Vec::new();
    for lot in &lots {
        let of = json!({ "id": lot["invoice_id"] });
        invoices.push(get_invoice(&app, &finance, &of).await);
    }
    let (five, two) = (charge(&invoices[0], 0), charge(&invoices[1], 0));
    // one credit of the first lot used
    let used = crate::helpers::use_credits(&mut conn, C1, dec!(1), "svc-1", app.clock.now()).await;
    assert!(used.is_ok(), "{used:?}");

    let used_lot = json!({"reason": "x", "lines": [{"charge_id": five}]});
    credit_note(&app, &finance, &invoices[0], "cn-five", &used_lot)
        .await
        .problem(409, "already_used");
    let part = json!({"reason": "x", "lines": [{"charge_id": two, "quantity": "1"}]});
    let refused = credit_note(&app, &finance, &invoices[1], "cn-part", &part).await;
    assert_eq!(
        refused.problem(422, "invalid_request")["errors"][0]["field"],
        "lines[0].quantity"
    );
    let before = balance(&app, &finance, C1, "487").await;
    let whole = json!({"reason": "Bought twice", "lines": [{"charge_id": two}]});
    let note = issued(&app, &finance, &invoices[1], "cn-two", &whole).await;
    assert_eq!(note["lines"][0]["quantity"], "2");
    let net: Decimal = note["totals"]["total_ht"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(net > Decimal::ZERO);
    assert_eq!(balance(&app, &finance, C1, "487").await, before - net);
    let listed = app
        .get(&finance, &format!("/v1/customers/{C1}/credit-lots"))
        .await;
    let lot = listed
        .body
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["id"] == lots[1]["id"])
        .unwrap();
    assert_eq!(
        (&lot["remaining"], &lot["credited"], &lot["consumed"]),
        (&json!("0.00"), &lot["granted"], &json!("0.00")),
        "{lot}"
    );
    // 7 credits issued, 2 back to the issuer
    assert_eq!(
        balance(&app, &finance, C1, "CREDIT-ISSUED").await,
        dec!(5.00)
    );
    app.assert_ledger_verifies(&finance).await;
}
