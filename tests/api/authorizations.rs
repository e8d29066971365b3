//! The ticketing hot path over HTTP and under concurrency: decisions, holds, capture, void,
//! expiry, interventions and their 5-day dispute window.

use chrono::{DateTime, Duration, Utc};
use rust_decimal_macros::dec;
use serde_json::{json, Value};
use uuid::Uuid;

use grandlivre::auth::Role;
use grandlivre::authorizations::decision::Funding;
use grandlivre::authorizations::store::{self as authz, AuthorizationRequest};
use grandlivre::calendar::BusinessHours;
use grandlivre::charges::{self, ChargeSource};
use grandlivre::clock::Clock;
use grandlivre::demo::{DEMO_CUSTOMER_1 as C1, DEMO_CUSTOMER_2 as C2};
use grandlivre::jobs::{self, Job};
use grandlivre::money::{Amount, Unit};
use grandlivre::wallets::store as wallets;

use crate::helpers::{
    authorization_request, authorize_and_capture, paris, pay_invoice_of, seeded, subscribe, TestApp,
};

fn request(customer: Uuid, reference: &str, classification: Value, funding: &str) -> Value {
    json!({
        "customer_id": customer,
        "request_ref": reference,
        "kind": "intervention",
        "classification": classification,
        "priority": "high",
        "requester": {"certified": false, "learning_phase_end": null},
        "occurred_at": "2026-11-20T09:00:00+01:00",
        "declared_at": "2026-11-20T10:00:00+01:00",
        "preferred_funding": funding
    })
}

async fn tickets(app: &TestApp, customer: Uuid, n: i32) {
    let mut conn = app.db.conn().await;
    let (p, _) = wallets::buy_tickets(&mut conn, customer, n, None, Utc::now())
        .await
        .unwrap();
    // invoiced and paid through the API: the payment makes them usable
    pay_invoice_of(app, customer, &format!("tickets-{}", p.id), None)
        .await
        .expect("the purchase is owed");
}

async fn available_tickets(app: &TestApp, customer: Uuid, at: DateTime<Utc>) -> i64 {
    let mut conn = app.db.conn().await;
    wallets::balances(&mut conn, customer, at)
        .await
        .unwrap()
        .tickets
        .available
}

#[actix_web::test]
async fn decisions_are_idempotent_on_the_request_ref() {
    let (app, _conn) = seeded().await;
    tickets(&app, C2, 1).await;
    app.clock.set(paris("2026-11-20") + Duration::hours(11));
    let key = app.key(Role::Ticketing, None).await;
    let body = request(C2, "TCK-1", json!({"type": "in_scope"}), "auto");
    let first = app.post_json(&key, "/v1/authorizations", None, &body).await;
    assert_eq!(first.status, 201, "{}", first.text);
    assert_eq!(
        (
            first.body["decision"].as_str(),
            first.body["funding"].as_str(),
            first.body["reason"].as_str()
        ),
        (Some("approved"), Some("ticket"), Some("paid_ticket"))
    );
    assert!(first.body["hold_id"].is_string());
    assert_eq!(
        first.body["take_charge_due_at"], "2026-11-20T13:00:00Z",
        "4 business hours after 10:00 Paris: 14:00 Paris"
    );
    let replay = app.post_json(&key, "/v1/authorizations", None, &body).await;
    assert_eq!(
        (replay.status, &replay.body["id"], &replay.body["hold_id"]),
        (200, &first.body["id"], &first.body["hold_id"])
    );
    assert_eq!(
        available_tickets(&app, C2, app.clock.now()).await,
        0,
        "one ticket held, once"
    );
    let mut other = body.clone();
    other["priority"] = json!("critical");
    app.post_json(&key, "/v1/authorizations", None, &other)
        .await
        .problem(409, "idempotency_conflict");
    let customer = app.key(Role::Customer, Some(C2)).await;
    app.post_json(&customer, "/v1/authorizations", None, &body)
        .await
        .problem(403, "forbidden");
    let mut bad = body.clone();
    bad["classification"] = json!({"type": "out_of_scope", "sub_kind": "astrology"});
    app.post_json(&key, "/v1/authorizations", None, &bad)
        .await
        .problem(422, "invalid_request");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fifty_concurrent_requests_and_three_tickets() {
    let (app, _conn) = seeded().await;
    tickets(&app, C2, 3).await;
    let pool = app.db.pool(25);
    let at = paris("2026-11-20") + Duration::hours(11);
    let tasks: Vec<_> = (0..50)
        .map(|i| {
            let pool = pool.clone();
            tokio::spawn(async move {
                let req: AuthorizationRequest = serde_json::from_value(request(
                    C2,
                    &format!("TCK-{i}"),
                    json!({"type": "in_scope"}),
                    "auto",
                ))
                .unwrap();
                let mut conn = pool.get().await.unwrap();
                authz::authorize(&mut conn, &req, at, &BusinessHours::default()).await
            })
        })
        .collect();
    let mut with_ticket = 0;
    for t in tasks {
        let (view, _) = t.await.unwrap().expect("every request gets a decision");
        if view.funding == Some(Funding::Ticket) {
            with_ticket += 1;
        } else {
            assert_eq!(serde_json::to_value(view.reason).unwrap(), "no_coverage");
        }
    }
    assert_eq!(with_ticket, 3);
}

#[actix_web::test]
async fn a_suspended_customer_is_denied() {
    let (app, _conn) = seeded().await;
    tickets(&app, C2, 2).await;
    let admin = app.admin().await;
    let patched = app
        .send(
            actix_web::test::TestRequest::patch()
                .uri(&format!("/v1/customers/{C2}"))
                .insert_header(("Authorization", format!("Bearer {admin}")))
                .insert_header(("Content-Type", "application/json"))
                .set_payload(json!({"status": "suspended"}).to_string()),
        )
        .await;
    assert_eq!(patched.status, 200);
    let reply = app
        .post_json(
            &admin,
            "/v1/authorizations",
            None,
            &request(C2, "S-1", json!({"type": "in_scope"}), "auto"),
        )
        .await;
    assert_eq!(
        (
            reply.body["decision"].as_str(),
            reply.body["reason"].as_str()
        ),
        (Some("denied"), Some("account_suspended"))
    );
    assert!(reply.body["hold_id"].is_null());
    app.post_json(
        &admin,
        &format!(
            "/v1/authorizations/{}/capture",
            reply.body["id"].as_str().unwrap()
        ),
        None,
        &json!({}),
    )
    .await
    .problem(409, "invalid_state");
}

#[actix_web::test]
async fn capture_for_less_than_held_releases_the_rest_and_states_are_final() {
    let (app, mut conn) = seeded().await;
    let parent = subscribe(&mut conn, C1, "premium_assistance", "2026-01-01", None).await;
    subscribe(
        &mut conn,
        C1,
        "service_plus_pack",
        "2026-01-01",
        Some(parent),
    )
    .await;
    let now = paris("2026-11-20") + Duration::hours(11);
    wallets::buy_credits(
        &mut conn,
        C1,
        Amount::new(dec!(10), Unit::Credit).unwrap(),
        None,
        now - Duration::days(1),
    )
    .await
    .unwrap();
    app.clock.set(now);
    let key = app.key(Role::Ticketing, None).await;
    let mut body = request(C1, "SVC-1", json!({"type": "in_scope"}), "credits");
    body["kind"] = json!("service_purchase");
    body["service_code"] = json!("training");
    let held = app.post_json(&key, "/v1/authorizations", None, &body).await;
    assert_eq!(
        (held.body["funding"].as_str(), held.body["credits"].as_str()),
        (Some("credits"), Some("4.00")),
        "{}",
        held.text
    );
    assert_eq!(
        wallets::balances(&mut conn, C1, now)
            .await
            .unwrap()
            .credits
            .total
            .0,
        dec!(6),
        "4 held"
    );
    let id = held.body["id"].as_str().unwrap();
    let captured = app
        .post_json(
            &key,
            &format!("/v1/authorizations/{id}/capture"),
            None,
            &json!({"units": "3"}),
        )
        .await;
    assert_eq!(
        (captured.status, captured.body["status"].as_str()),
        (200, Some("captured")),
        "{}",
        captured.text
    );
    assert_eq!(
        wallets::balances(&mut conn, C1, now)
            .await
            .unwrap()
            .credits
            .total
            .0,
        dec!(7),
        "the unused credit is back"
    );
    app.post_json(
        &key,
        &format!("/v1/authorizations/{id}/capture"),
        None,
        &json!({}),
    )
    .await
    .problem(409, "invalid_state");
    app.post_json(
        &key,
        &format!("/v1/authorizations/{id}/void"),
        None,
        &json!({}),
    )
    .await
    .problem(409, "invalid_state");

    let mut again = body.clone();
    again["request_ref"] = json!("SVC-2");
    let second = app
        .post_json(&key, "/v1/authorizations", None, &again)
        .await;
    let id2 = second.body["id"].as_str().unwrap();
    app.post_json(
        &key,
        &format!("/v1/authorizations/{id2}/capture"),
        None,
        &json!({"units": "5"}),
    )
    .await
    .problem(422, "invalid_request");
    assert_eq!(
        app.post_json(
            &key,
            &format!("/v1/authorizations/{id2}/void"),
            None,
            &json!({})
        )
        .await
        .body["status"],
        "voided"
    );
    app.post_json(
        &key,
        &format!("/v1/authorizations/{id2}/capture"),
        None,
        &json!({}),
    )
    .await
    .problem(409, "invalid_state");
    assert_eq!(
        wallets::balances(&mut conn, C1, now)
            .await
            .unwrap()
            .credits
            .total
            .0,
        dec!(7)
    );
    let admin = app.admin().await;
    assert_eq!(
        app.get(&admin, "/v1/ledger/verify").await.body["mismatches"],
        json!([])
    );
}

#[actix_web::test]
async fn holds_expire_after_seven_days() {
    let (app, mut conn) = seeded().await;
    tickets(&app, C2, 1).await;
    let at = paris("2026-11-20") + Duration::hours(11);
    let req: AuthorizationRequest =
        serde_json::from_value(request(C2, "EXP-1", json!({"type": "in_scope"}), "ticket"))
            .unwrap();
    let (view, _) = authz::authorize(&mut conn, &req, at, &BusinessHours::default())
        .await
        .unwrap();
    assert_eq!(view.hold_expires_at, Some(at + Duration::days(7)));
    assert_eq!(
        jobs::run(
            &mut conn,
            Job::HoldExpiry,
            at + Duration::days(7) - Duration::seconds(1),
            at
        )
        .await
        .map(|r| serde_json::to_value(r).unwrap()["holds_expired"].clone())
        .unwrap(),
        0
    );
    assert_eq!(available_tickets(&app, C2, at).await, 0);
    assert_eq!(
        jobs::run(&mut conn, Job::HoldExpiry, at + Duration::days(7), at)
            .await
            .map(|r| serde_json::to_value(r).unwrap()["holds_expired"].clone())
            .unwrap(),
        1
    );
    assert_eq!(
        available_tickets(&app, C2, at).await,
        1,
        "the ticket is released"
    );
    let late = authz::capture(
        &mut conn,
        view.id,
        Default::default(),
        at + Duration::days(8),
    )
    .await;
    assert!(
        matches!(
            late,
            Err(authz::AuthorizationError::WrongState(_, "expired"))
        ),
        "{late:?}"
    );
}

async fn release(conn: &mut diesel_async::AsyncPgConnection, at: DateTime<Utc>) -> u32 {
    jobs::run(conn, Job::InterventionRelease, at, at)
        .await
        .map(|r| serde_json::to_value(r).unwrap()["charges_created"].as_u64())
        .unwrap()
        .unwrap() as u32
}

#[actix_web::test]
async fn misdeclared_interventions_are_disputable_for_five_days() {
    let (app, mut conn) = seeded().await;
    let key = app.key(Role::Ticketing, None).await;
    let sheet = paris("2026-11-20") + Duration::hours(15);
    app.clock.set(sheet);
    let mut ids = Vec::new();
    for n in 0..3 {
        let body = request(
            C2,
            &format!("MIS-{n}"),
            json!({"type": "misdeclared"}),
            "auto",
        );
        let decided = app.post_json(&key, "/v1/authorizations", None, &body).await;
        assert_eq!(
            (
                decided.body["funding"].as_str(),
                decided.body["price"].as_str(),
                decided.body["hourly"].as_bool()
            ),
            (Some("chargeable"), Some("90.00"), Some(true)),
            "{}",
            decided.text
        );
        let id = decided.body["id"].as_str().unwrap();
        let captured = app
            .post_json(
                &key,
                &format!("/v1/authorizations/{id}/capture"),
                None,
                &json!({"minutes": 50}),
            )
            .await;
        ids.push(
            captured.body["intervention_id"]
                .as_str()
                .unwrap()
                .to_string(),
        );
    }
    // day 5 after the sheet: still disputable; day 6: too late
    app.clock.set(paris("2026-11-25") + Duration::hours(23));
    let disputed = app
        .post_json(
            &key,
            &format!("/v1/interventions/{}/dispute", ids[0]),
            None,
            &json!({}),
        )
        .await;
    assert_eq!(disputed.body["status"], "disputed", "{}", disputed.text);
    assert_eq!(
        disputed.body["amount"], "90.00",
        "50 min = 4 started quarters × 22.50"
    );
    let disputed = app
        .post_json(
            &key,
            &format!("/v1/interventions/{}/dispute", ids[1]),
            None,
            &json!({}),
        )
        .await;
    assert_eq!(disputed.status, 200);
    app.clock.set(paris("2026-11-26"));
    app.post_json(
        &key,
        &format!("/v1/interventions/{}/dispute", ids[2]),
        None,
        &json!({}),
    )
    .await
    .problem(409, "invalid_state");
    let finance = app.key(Role::Finance, None).await;
    let voided = app
        .post_json(
            &finance,
            &format!("/v1/interventions/{}/resolve", ids[0]),
            None,
            &json!({"outcome": "for_customer"}),
        )
        .await;
    assert_eq!(voided.body["status"], "voided");
    let upheld = app
        .post_json(
            &finance,
            &format!("/v1/interventions/{}/resolve", ids[1]),
            None,
            &json!({"outcome": "against_customer"}),
        )
        .await;
    assert_eq!(upheld.body["status"], "upheld");
    assert_eq!(
        release(&mut conn, paris("2026-11-26")).await,
        2,
        "the upheld one and the undisputed one"
    );
    assert_eq!(release(&mut conn, paris("2026-12-26")).await, 0);
    let billed: Vec<_> = charges::for_customer(&mut conn, C2, None, 50)
        .await
        .unwrap()
        .into_iter()
        .filter(|c| c.source == ChargeSource::Intervention)
        .map(|c| c.amount.0)
        .collect();
    assert_eq!(billed, [dec!(90.00), dec!(90.00)]);
}

/// An Assistance+ pack with 10 appointments a period: 8 taken, then 6 concurrent requests
/// → exactly 2 held on the quota, 4 overage. Voiding one gives it back; captures record
/// each appointment where its authorization put it.
#[actix_web::test]
async fn appointments_are_held_on_the_quota_at_authorization() {
    let (app, mut conn) = seeded().await;
    let parent = subscribe(&mut conn, C1, "premium_assistance", "2026-01-31", None).await;
    let pack = subscribe(
        &mut conn,
        C1,
        "assistance_plus_pack",
        "2026-01-31",
        Some(parent),
    )
    .await;
    let at = paris("2026-06-01") + Duration::hours(10);
    for i in 0..8 {
        let req = authorization_request(C1, &format!("rdv-{i}"), "appointment", None, "auto", at);
        let taken = authorize_and_capture(&mut conn, &req, at).await.unwrap();
        assert_eq!(taken.funding, Some(Funding::Quota), "appointment {i}");
    }
    let appointment = |n: usize| -> AuthorizationRequest {
        let mut r = request(C1, &format!("RDV-{n}"), json!({"type": "in_scope"}), "auto");
        r["kind"] = json!("appointment");
        serde_json::from_value(r).unwrap()
    };
    let pool = app.db.pool(6);
    let tasks: Vec<_> = (0..6)
        .map(|n| {
            let (pool, req) = (pool.clone(), appointment(n));
            tokio::spawn(async move {
                let mut conn = pool.get().await.unwrap();
                authz::authorize(&mut conn, &req, at, &BusinessHours::default())
                    .await
                    .unwrap()
                    .0
            })
        })
        .collect();
    let mut views = Vec::new();
    for t in tasks {
        views.push(t.await.unwrap());
    }
    let on_quota: Vec<_> = views
        .iter()
        .filter(|v| v.funding == Some(Funding::Quota))
        .collect();
    assert_eq!(on_quota.len(), 2, "{views:#?}");
    assert!(on_quota.iter().all(|v| v.hold_id.is_some()));
    let over: Vec<_> = views
        .iter()
        .filter(|v| v.funding == Some(Funding::Overage))
        .collect();
    assert_eq!(over.len(), 4);
    assert!(over.iter().all(|v| v.hold_id.is_none()));

    // a void gives the appointment back to the quota
    authz::void(&mut conn, on_quota[0].id, at).await.unwrap();
    let (again, _) = authz::authorize(&mut conn, &appointment(10), at, &BusinessHours::default())
        .await
        .unwrap();
    assert_eq!(again.funding, Some(Funding::Quota));

    // captures: two on the quota, one overage, one overage not delivered (0 units)
    let one = authz::Capture {
        minutes: None,
        units: None,
    };
    let none = authz::Capture {
        minutes: None,
        units: Some(grandlivre::money::DecimalString(dec!(0))),
    };
    for id in [on_quota[1].id, again.id, over[0].id] {
        let done = authz::capture(&mut conn, id, one, at).await.unwrap();
        assert_eq!(done.status, authz::AuthorizationStatus::Captured);
    }
    authz::capture(&mut conn, over[1].id, none, at)
        .await
        .unwrap();
    let balances = wallets::balances(&mut conn, C1, at).await.unwrap();
    let period = &balances.appointments[0];
    assert_eq!(period.subscription_id, pack);
    assert_eq!((period.quota, period.used, period.overage), (10, 10, 1));
}

#[actix_web::test]
async fn hourly_interventions_are_billed_per_started_increment_of_their_offer() {
    let (app, mut conn) = seeded().await;
    // the catalog names 20-minute increments for intervention time (90.00 per hour)
    diesel_async::RunQueryDsl::execute(
        diesel::sql_query(
            "UPDATE offers SET increment_minutes = 20 WHERE code = 'intervention_time'",
        ),
        &mut conn,
    )
    .await
    .unwrap();
    let key = app.key(Role::Ticketing, None).await;
    app.clock.set(paris("2026-11-20") + Duration::hours(15));
    let intervention = app.misdeclared_sheet(&key, C2, "MIS-20", 21).await;
    let disputed = app
        .post_json(
            &key,
            &format!("/v1/interventions/{intervention}/dispute"),
            None,
            &json!({}),
        )
        .await;
    assert_eq!(
        (
            disputed.body["amount"].as_str(),
            disputed.body["quantity"].as_str()
        ),
        (Some("60.00"), Some("2")),
        "21 min = 2 started 20-minute increments × 30.00: {}",
        disputed.text
    );
}

/// Ten concurrent disputes of one sheet: one is accepted, nine find it disputed already;
/// an unknown sheet is a 404.
#[actix_web::test]
async fn a_sheet_is_disputed_once() {
    let (app, _conn) = seeded().await;
    let key = app.key(Role::Ticketing, None).await;
    app.clock.set(paris("2026-11-20") + Duration::hours(15));
    let sheet = app.misdeclared_sheet(&key, C2, "MIS-ONCE", 30).await;
    let path = format!("/v1/interventions/{sheet}/dispute");
    let empty = json!({});
    // another session holds the sheet's row while the ten disputes arrive
    let replies = app
        .while_rows_are_held(
            &format!("SELECT 1 FROM interventions WHERE id = '{sheet}'"),
            8,
            futures_util::future::join_all(
                (0..10).map(|_| app.post_json(&key, &path, None, &empty)),
            ),
        )
        .await;
    let mut statuses: Vec<u16> = replies.iter().map(|r| r.status).collect();
    statuses.sort();
    assert_eq!(statuses, [[200].as_slice(), &[409; 9]].concat());
    app.post_json(
        &key,
        &format!("/v1/interventions/{}/dispute", Uuid::now_v7()),
        None,
        &json!({}),
    )
    .await
    .problem(404, "not_found");
}
