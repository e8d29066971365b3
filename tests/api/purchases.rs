//! Purchases invoiced at once (tickets and credits), their deferred revenue (487)
//! recognised as they are used, the legal mentions their invoices carry, and the invoices'
//! period filter, through HTTP.

use chrono::Duration;
use diesel_async::RunQueryDsl;
use rust_decimal::Decimal;
use rust_decimal_macros::dec;
use serde_json::{json, Value};
use uuid::Uuid;

use grandlivre::auth::Role;
use grandlivre::clock::Clock;
use grandlivre::demo::{DEMO_CUSTOMER_1 as C1, DEMO_CUSTOMER_2 as C2};
use grandlivre::jobs::{self, Job};

use crate::helpers::{
    authorization_request, balance, buy_tickets, paris, pay_invoice, seeded, subscribe,
    use_credits, TestApp,
};

const BREAKAGE: &str = "/v1/ledger/accounts/00000000-0000-4000-8000-000000007088";

async fn invoice(app: &TestApp, key: &str, id: &Value) -> Value {
    let read = app
        .get(key, &format!("/v1/invoices/{}", id.as_str().unwrap()))
        .await;
    assert_eq!(read.status, 200, "{}", read.text);
    read.body
}

/// An incident of `customer` authorized on a ticket over HTTP, at the clock's instant.
async fn authorize_ticket(app: &TestApp, key: &str, customer: Uuid, reference: &str) -> String {
    let req = authorization_request(
        customer,
        reference,
        "intervention",
        None,
        "ticket",
        app.clock.now(),
    );
    let held = app
        .post_json(
            key,
            "/v1/authorizations",
            None,
            &serde_json::to_value(&req).unwrap(),
        )
        .await;
    assert_eq!(held.body["funding"], "ticket", "{}", held.text);
    held.body["id"].as_str().unwrap().to_string()
}

async fn capture(app: &TestApp, key: &str, authorization: &str) {
    let captured = app
        .post_json(
            key,
            &format!("/v1/authorizations/{authorization}/capture"),
            None,
            &json!({}),
        )
        .await;
    assert_eq!(captured.body["status"], "captured", "{}", captured.text);
}

async fn tickets_used(conn: &mut diesel_async::AsyncPgConnection, purchase: &Value) -> i32 {
    #[derive(diesel::QueryableByName)]
    struct Used {
        #[diesel(sql_type = diesel::sql_types::Integer)]
        tickets_used: i32,
    }
    let id: Uuid = purchase["id"].as_str().unwrap().parse().unwrap();
    diesel::sql_query("SELECT tickets_used FROM ticket_purchases WHERE id = $1")
        .bind::<diesel::sql_types::Uuid, _>(id)
        .get_result::<Used>(conn)
        .await
        .unwrap()
        .tickets_used
}

/// A purchase's invoice is paid in full by bank transfer today, naming it.
async fn paid(purchase: &Value, app: &TestApp) {
    let admin = app.admin().await;
    let invoice = invoice(app, &admin, &purchase["invoice_id"]).await;
    let today = grandlivre::calendar::paris_date(app.clock.now()).to_string();
    let due = invoice["amount_due"].as_str().unwrap().to_string();
    pay_invoice(app, &invoice, &due, &today).await;
}

#[actix_web::test]
async fn tickets_used_one_by_one_recognise_their_purchase_oldest_first() {
    let (app, mut conn) = seeded().await;
    let finance = app.key(Role::Finance, None).await;
    let ticketing = app.key(Role::Ticketing, None).await;
    app.clock.set(paris("2026-11-20") + Duration::hours(10));
    let one = buy_tickets(&app, &finance, C2, 1, Some("one")).await;
    app.clock.set(paris("2026-11-20") + Duration::hours(11));
    let three = buy_tickets(&app, &finance, C2, 3, Some("three")).await;
    let totals = invoice(&app, &finance, &three["invoice_id"]).await["totals"].clone();
    assert_eq!(
        (
            &totals["total_ht"],
            &totals["total_vat"],
            &totals["total_ttc"]
        ),
        (&json!("250.00"), &json!("50.00"), &json!("300.00"))
    );
    // the newer purchase paid first: the older is still used first once paid
    paid(&three, &app).await;
    paid(&one, &app).await;
    assert_eq!(balance(&app, &finance, C2, "487").await, dec!(333.33));

    let mut deferred = vec![balance(&app, &finance, C2, "487").await];
    for n in 0..4 {
        let authorization = authorize_ticket(&app, &ticketing, C2, &format!("INC-{n}")).await;
        capture(&app, &ticketing, &authorization).await;
        deferred.push(balance(&app, &finance, C2, "487").await);
    }
    let fell: Vec<Decimal> = deferred.windows(2).map(|w| w[0] - w[1]).collect();
    assert_eq!(
        fell,
        [dec!(83.33), dec!(83.33), dec!(83.33), dec!(83.34)],
        "{deferred:?}"
    );
    assert_eq!(balance(&app, &finance, C2, "487").await, dec!(0.00));
    assert_eq!(balance(&app, &finance, C2, "706").await, dec!(333.33));
    assert_eq!(tickets_used(&mut conn, &one).await, 1);
    assert_eq!(tickets_used(&mut conn, &three).await, 3);
    // a capture that uses no ticket recognises nothing
    let held = app
        .get(&finance, &format!("/v1/customers/{C2}/balances"))
        .await;
    assert_eq!(held.body["tickets"]["available"], 0, "{}", held.text);
    app.assert_ledger_verifies(&finance).await;
}

/// Two captures at once, on two purchases of one ticket each: both meet on the oldest
/// purchase's row; the one that waited takes the next purchase, never no purchase.
#[actix_web::test]
async fn concurrent_ticket_uses_take_one_purchase_each() {
    let (app, mut conn) = seeded().await;
    let finance = app.key(Role::Finance, None).await;
    let ticketing = app.key(Role::Ticketing, None).await;
    app.clock.set(paris("2026-11-20") + Duration::hours(10));
    let first = buy_tickets(&app, &finance, C2, 1, Some("first")).await;
    app.clock.set(paris("2026-11-20") + Duration::hours(11));
    let second = buy_tickets(&app, &finance, C2, 1, Some("second")).await;
    paid(&first, &app).await;
    paid(&second, &app).await;
    let a = authorize_ticket(&app, &ticketing, C2, "INC-A").await;
    let b = authorize_ticket(&app, &ticketing, C2, "INC-B").await;
    let lock = format!(
        "SELECT * FROM ticket_purchases WHERE id = '{}'",
        first["id"].as_str().unwrap()
    );
    app.while_rows_are_held(&lock, 2, async {
        tokio::join!(capture(&app, &ticketing, &a), capture(&app, &ticketing, &b))
    })
    .await;
    assert_eq!(tickets_used(&mut conn, &first).await, 1);
    assert_eq!(tickets_used(&mut conn, &second).await, 1);
    assert_eq!(balance(&app, &finance, C2, "487").await, dec!(0.00));
    assert_eq!(balance(&app, &finance, C2, "706").await, dec!(166.66));
    app.assert_ledger_verifies(&finance).await;
}

#[actix_web::test]
async fn a_credit_purchase_is_invoiced_at_once_and_recognised_to_the_cent() {
    let (app, mut conn) = seeded().await;
    let finance = app.key(Role::Finance, None).await;
    let admin = app.admin().await;
    let parent = subscribe(&mut conn, C1, "premium_assistance", "2026-01-01", None).await;
    subscribe(
        &mut conn,
        C1,
        "service_plus_pack",
        "2026-01-01",
        Some(parent),
    )
    .await;
    // 8.01 credits at 82.2027 are sold 658.44
    let priced = app
        .post_json(
            &admin,
            "/v1/offers/service_credit/prices",
            None,
            &json!({"effective_from": "2026-03-01", "unit_price": "82.2027"}),
        )
        .await;
    assert_eq!(priced.status, 201, "{}", priced.text);
    app.clock.set(paris("2026-03-10") + Duration::hours(10));
    let path = format!("/v1/customers/{C1}/credit-purchases");
    let bought = app
        .post_json(&finance, &path, Some("cp"), &json!({"credits": "8.01"}))
        .await;
    assert_eq!(bought.status, 201, "{}", bought.text);
    assert_eq!(bought.body["invoice_number"], "F2026-000001");
    let issued = invoice(&app, &finance, &bought.body["invoice_id"]).await;
    assert_eq!(
        (
            &issued["totals"]["total_ht"],
            &issued["totals"]["total_vat"],
            &issued["totals"]["total_ttc"]
        ),
        (&json!("658.44"), &json!("131.69"), &json!("790.13"))
    );
    assert_eq!(balance(&app, &finance, C1, "411").await, dec!(790.13));
    assert_eq!(balance(&app, &finance, C1, "487").await, dec!(658.44));
    // a replay: the same lot and invoice, nothing issued
    let again = app
        .post_json(&finance, &path, Some("cp"), &json!({"credits": "8.01"}))
        .await;
    assert_eq!((again.status, &again.body), (200, &bought.body));
    let listed = app.get(&finance, "/v1/invoices").await;
    assert_eq!(listed.body["items"].as_array().unwrap().len(), 1);
    let lots = app
        .get(&finance, &format!("/v1/customers/{C1}/credit-lots"))
        .await;
    assert_eq!(lots.body[0]["invoice_id"], bought.body["invoice_id"]);

    // 1.90 used (156.19), the rest expires a year on (502.25): 487 back to zero
    let used = use_credits(&mut conn, C1, dec!(1.90), "use", app.clock.now()).await;
    assert!(used.is_ok(), "{used:?}");
    assert_eq!(balance(&app, &finance, C1, "487").await, dec!(502.25));
    serde_json::to_value(
        jobs::run(
            &mut conn,
            Job::CreditExpiry,
            paris("2027-03-10"),
            paris("2027-03-10"),
        )
        .await
        .unwrap(),
    )
    .unwrap();
    assert_eq!(balance(&app, &finance, C1, "487").await, dec!(0.00));
    let revenue = balance(&app, &finance, C1, "706").await;
    let breakage: Decimal = app.get(&finance, BREAKAGE).await.body["balance"]["posted"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!((revenue, breakage), (dec!(156.19), dec!(502.25)));
    assert_eq!(revenue + breakage, dec!(658.44));
    app.assert_ledger_verifies(&finance).await;
}

#[actix_web::test]
async fn invoices_carry_legal_mentions_frozen_at_issue() {
    let (app, _conn) = seeded().await;
    let finance = app.key(Role::Finance, None).await;
    let admin = app.admin().await;
    app.clock.set(paris("2026-11-20") + Duration::hours(10));
    let bought = buy_tickets(&app, &finance, C1, 1, Some("one")).await;
    let issued = invoice(&app, &finance, &bought["invoice_id"]).await;
    assert_eq!(
        issued["seller"],
        json!({
            "legal_name": "Grandlivre Services SAS", "siren": "900000035",
            "vat_number": "FR73900000035",
            "address": {"street_number": "8", "street": "Rue du Faubourg Montmartre",
                        "postcode": "75009", "town": "Paris", "country": "FR"}
        })
    );
    let buyer = json!({
        "legal_name": "Atelier Démo SARL", "siren": "900000019", "vat_number": "FR25900000019",
        "address": {"street_number": "12", "street": "Rue de la Paix", "postcode": "75002",
                    "town": "Paris", "country": "FR"}
    });
    assert_eq!(issued["buyer"], buyer);
    assert_eq!(
        issued["legal"],
        json!({
            "late_payment_penalty_rate": "0.1215", "recovery_indemnity": "40.00",
            "operation_category": "services", "payment_days": 30
        })
    );

    let moved = json!({"street_number": "3", "street": "Quai Perrache", "postcode": "69002",
                       "town": "Lyon", "country": "FR"});
    let patched = app
        .patch_json(
            &admin,
            &format!("/v1/customers/{C1}"),
            &json!({"address": moved, "legal_name": "Atelier Démo SAS"}),
        )
        .await;
    assert_eq!(patched.status, 200, "{}", patched.text);
    assert_eq!(invoice(&app, &finance, &bought["invoice_id"]).await, issued);
    let next = buy_tickets(&app, &finance, C1, 1, Some("two")).await;
    let later = invoice(&app, &finance, &next["invoice_id"]).await;
    assert_eq!(later["buyer"]["address"], moved);
    assert_eq!(later["buyer"]["legal_name"], "Atelier Démo SAS");
}

#[actix_web::test]
async fn invoices_filter_on_their_issue_period() {
    let (app, _conn) = seeded().await;
    let finance = app.key(Role::Finance, None).await;
    for (day, idem) in [
        ("2026-11-20", "a"),
        ("2026-11-25", "b"),
        ("2026-12-01", "c"),
    ] {
        // 23:30 Paris: still that Paris day, the next one in UTC
        app.clock
            .set(paris(day) + Duration::hours(23) + Duration::minutes(30));
        buy_tickets(&app, &finance, C1, 1, Some(idem)).await;
    }
    let issued = async |query: &str| -> Vec<String> {
        let page = app.get(&finance, &format!("/v1/invoices?{query}")).await;
        assert_eq!(page.status, 200, "{}", page.text);
        page.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["issued_on"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        issued("issued_from=2026-11-21").await,
        ["2026-11-25", "2026-12-01"]
    );
    assert_eq!(
        issued("issued_to=2026-11-25").await,
        ["2026-11-20", "2026-11-25"]
    );
    assert_eq!(
        issued("issued_from=2026-11-25&issued_to=2026-11-25").await,
        ["2026-11-25"]
    );
    assert_eq!(
        issued(&format!("issued_from=2026-11-20&customer_id={C2}")).await,
        Vec::<String>::new()
    );
    let reversed = app
        .get(
            &finance,
            "/v1/invoices?issued_from=2026-11-25&issued_to=2026-11-24",
        )
        .await;
    let problem = reversed.problem(400, "invalid_parameter");
    assert_eq!(
        problem["errors"][0]["field"], "issued_to",
        "{}",
        reversed.text
    );
    let impossible = app
        .get(&finance, "/v1/invoices?issued_from=2026-02-30")
        .await;
    let problem = impossible.problem(400, "invalid_parameter");
    assert_eq!(
        problem["errors"][0]["field"], "issued_from",
        "{}",
        impossible.text
    );
}

/// A paid purchase of 3 tickets (250.00 net): one used, one taken back by a credit note (its
/// 100.00 goes to the credit balance, the invoice being paid), the last used: 487 ends at
/// 0.00 and 706 at what was not credited. The credit balance then pays the next purchase
/// at once, whose ticket is usable without a payment.
#[actix_web::test]
async fn a_credit_note_between_ticket_uses_and_a_credit_balance_that_pays_a_purchase() {
    let (app, _conn) = seeded().await;
    let finance = app.key(Role::Finance, None).await;
    let ticketing = app.key(Role::Ticketing, None).await;
    app.clock.set(paris("2026-11-20") + Duration::hours(10));
    let three = buy_tickets(&app, &finance, C2, 3, Some("three")).await;
    paid(&three, &app).await;
    let first = authorize_ticket(&app, &ticketing, C2, "T-1").await;
    capture(&app, &ticketing, &first).await;
    assert_eq!(balance(&app, &finance, C2, "487").await, dec!(166.67));

    let noted = app
        .post_json(
            &finance,
            &format!(
                "/v1/invoices/{}/credit-notes",
                three["invoice_id"].as_str().unwrap()
            ),
            Some("one-back"),
            &json!({"reason": "One ticket bought too many", "lines": [
                {"charge_id": invoice(&app, &finance, &three["invoice_id"]).await["lines"][0]["charge_id"],
                 "quantity": "1"}]}),
        )
        .await;
    assert_eq!(noted.status, 201, "{}", noted.text);
    assert_eq!(noted.body["totals"]["total_ttc"], "100.00");
    assert_eq!(balance(&app, &finance, C2, "487").await, dec!(83.34));
    assert_eq!(balance(&app, &finance, C2, "4191").await, dec!(100.00));

    app.clock.advance(Duration::minutes(5));
    let last = authorize_ticket(&app, &ticketing, C2, "T-2").await;
    capture(&app, &ticketing, &last).await;
    assert_eq!(balance(&app, &finance, C2, "487").await, dec!(0.00));
    assert_eq!(balance(&app, &finance, C2, "706").await, dec!(166.67));
    assert_eq!(balance(&app, &finance, C2, "TICKET-WALLET").await, dec!(0));

    // the credit balance pays the next ticket at once
    let next = buy_tickets(&app, &finance, C2, 1, Some("next")).await;
    assert_eq!(next["status"], "available", "{next}");
    let paid_at_once = invoice(&app, &finance, &next["invoice_id"]).await;
    assert_eq!(
        (&paid_at_once["status"], &paid_at_once["amount_paid"]),
        (&json!("paid"), &json!("100.00"))
    );
    assert_eq!(balance(&app, &finance, C2, "4191").await, dec!(0.00));
    app.clock.advance(Duration::minutes(5));
    let third = authorize_ticket(&app, &ticketing, C2, "T-3").await;
    capture(&app, &ticketing, &third).await;
    assert_eq!(balance(&app, &finance, C2, "487").await, dec!(0.00));
    app.assert_ledger_verifies(&finance).await;
}

/// A paid purchase of 3 tickets (250.00 net): two used (83.33 each), the last taken back by
/// a credit note (83.33): the cent the rounding left in 487 is earned, so 487 ends at 0.00
/// and 706 at 250.00 less the note.
#[actix_web::test]
async fn a_credit_note_that_takes_a_purchases_last_tickets_leaves_nothing_deferred() {
    let (app, _conn) = seeded().await;
    let finance = app.key(Role::Finance, None).await;
    let ticketing = app.key(Role::Ticketing, None).await;
    app.clock.set(paris("2026-11-20") + Duration::hours(10));
    let three = buy_tickets(&app, &finance, C2, 3, Some("three")).await;
    paid(&three, &app).await;
    for t in ["T-1", "T-2"] {
        let used = authorize_ticket(&app, &ticketing, C2, t).await;
        capture(&app, &ticketing, &used).await;
        app.clock.advance(Duration::minutes(5));
    }
    assert_eq!(balance(&app, &finance, C2, "487").await, dec!(83.34));
    let charge =
        invoice(&app, &finance, &three["invoice_id"]).await["lines"][0]["charge_id"].clone();
    let noted = app
        .post_json(
            &finance,
            &format!(
                "/v1/invoices/{}/credit-notes",
                three["invoice_id"].as_str().unwrap()
            ),
            Some("last-back"),
            &json!({"reason": "The last ticket was not needed",
                    "lines": [{"charge_id": charge, "quantity": "1"}]}),
        )
        .await;
    assert_eq!(noted.status, 201, "{}", noted.text);
    assert_eq!(noted.body["totals"]["total_ht"], "83.33");
    assert_eq!(balance(&app, &finance, C2, "487").await, dec!(0.00));
    assert_eq!(balance(&app, &finance, C2, "706").await, dec!(166.67));
    assert_eq!(balance(&app, &finance, C2, "TICKET-WALLET").await, dec!(0));
    // nothing is left to take back
    let again = app
        .post_json(
            &finance,
            &format!(
                "/v1/invoices/{}/credit-notes",
                three["invoice_id"].as_str().unwrap()
            ),
            Some("more-back"),
            &json!({"reason": "again", "lines": [{"charge_id": charge, "quantity": "1"}]}),
        )
        .await;
    assert_eq!(again.status, 409, "{}", again.text);
    app.assert_ledger_verifies(&finance).await;
}
