//! The test clock over HTTP (issue 11, item 15): read and moved forward by an admin, its
//! time on every response, and every "now" of the service following it: a dispute window
//! closes and a credit lot expires as the clock passes them.

use actix_web::test::TestRequest;
use chrono::{DateTime, Duration, Utc};
use serde_json::json;

use grandlivre::auth::Role;
use grandlivre::clock::Clock;
use grandlivre::demo::{DEMO_CUSTOMER_1 as C1, DEMO_CUSTOMER_2 as C2};

use crate::helpers::{paris, seeded, Reply, TestApp};

fn at(s: &str) -> DateTime<Utc> {
    s.parse().unwrap()
}

/// The instant of a reply's `Test-Clock` header.
#[track_caller]
fn stamped(reply: &Reply) -> DateTime<Utc> {
    let value = reply
        .header("test-clock")
        .unwrap_or_else(|| panic!("no Test-Clock header ({}): {}", reply.status, reply.text));
    DateTime::parse_from_rfc3339(value)
        .unwrap_or_else(|e| panic!("{value:?}: {e}"))
        .with_timezone(&Utc)
}

async fn move_clock(app: &TestApp, key: &str, to: &str) -> Reply {
    app.send(
        TestRequest::put()
            .uri("/v1/test-clock")
            .insert_header(("Authorization", format!("Bearer {key}")))
            .insert_header(("Content-Type", "application/json"))
            .set_payload(json!({ "now": to }).to_string()),
    )
    .await
}

#[actix_web::test]
async fn the_test_clock_moves_forward_only_and_stamps_every_response() {
    let app = TestApp::spawn().await;
    let admin = app.admin().await;
    app.clock.set(at("2026-11-20T14:00:00Z"));

    let read = app.get(&admin, "/v1/test-clock").await;
    assert_eq!(read.status, 200, "{}", read.text);
    assert_eq!(read.body, json!({"now": "2026-11-20T14:00:00Z"}));
    assert_eq!(read.header("test-clock"), Some("2026-11-20T14:00:00Z"));

    let moved = move_clock(&app, &admin, "2026-11-26T00:00:00+01:00").await;
    assert_eq!(moved.status, 200, "{}", moved.text);
    assert_eq!(moved.body, json!({"now": "2026-11-25T23:00:00Z"}));
    assert_eq!(stamped(&moved), at("2026-11-25T23:00:00Z"), "the new time");
    assert_eq!(app.clock.now(), at("2026-11-25T23:00:00Z"));
    let same = move_clock(&app, &admin, "2026-11-25T23:00:00Z").await;
    assert_eq!(
        same.status, 200,
        "its own time changes nothing: {}",
        same.text
    );

    // never back
    let back = move_clock(&app, &admin, "2026-11-25T22:59:59Z").await;
    let problem = back.problem(422, "invalid_request");
    assert_eq!(problem["errors"][0]["field"], "now");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("2026-11-25T23:00:00Z"),
        "{}",
        back.text
    );
    assert_eq!(app.clock.now(), at("2026-11-25T23:00:00Z"));

    // admin only; and every answer, errors and unknown paths included, carries the time
    let finance = app.key(Role::Finance, None).await;
    let refused = move_clock(&app, &finance, "2027-01-01T00:00:00Z").await;
    refused.problem(403, "forbidden");
    let anonymous = app.send(TestRequest::get().uri("/v1/test-clock")).await;
    anonymous.problem(401, "unauthorized");
    let unknown = app.get(&admin, "/v1/no-such-thing").await;
    unknown.problem(404, "not_found");
    let control = app.get(&admin, "/v1/customers/%00").await;
    control.problem(400, "invalid_parameter");
    let health = app.send(TestRequest::get().uri("/healthz")).await;
    for reply in [&refused, &anonymous, &unknown, &control, &health, &back] {
        assert_eq!(stamped(reply), at("2026-11-25T23:00:00Z"), "{}", reply.text);
    }
}

/// A sheet may be disputed until the end of the fifth day after it (Paris): moved
/// over HTTP to 23:00 that day the clock still lets a dispute through, an hour later it
/// refuses the next.
#[actix_web::test]
async fn a_dispute_window_closes_as_the_test_clock_passes_it() {
    let (app, _conn) = seeded().await;
    let admin = app.admin().await;
    let ticketing = app.key(Role::Ticketing, None).await;
    let customer = app.key(Role::Customer, Some(C2)).await;
    // where `serve --test-clock --test-clock-start` would start it
    app.clock.set(paris("2026-11-20") + Duration::hours(15));
    let on_time = app.misdeclared_sheet(&ticketing, C2, "CLOCK-1", 50).await;
    let late = app.misdeclared_sheet(&ticketing, C2, "CLOCK-2", 50).await;
    let read = app
        .get(&customer, &format!("/v1/interventions/{on_time}"))
        .await;
    assert_eq!(
        (&read.body["sheet_at"], &read.body["dispute_deadline"]),
        (
            &json!("2026-11-20T14:00:00Z"),
            &json!("2026-11-25T23:00:00Z")
        ),
        "{}",
        read.text
    );

    let moved = move_clock(&app, &admin, "2026-11-25T23:00:00+01:00").await;
    assert_eq!(moved.status, 200, "{}", moved.text);
    let dispute = |id: String| {
        let (app, key) = (&app, ticketing.clone());
        async move {
            app.post_json(
                &key,
                &format!("/v1/interventions/{id}/dispute"),
                None,
                &json!({}),
            )
            .await
        }
    };
    let disputed = dispute(on_time).await;
    assert_eq!(disputed.body["status"], "disputed", "{}", disputed.text);

    let moved = move_clock(&app, &admin, "2026-11-26T00:00:00+01:00").await;
    assert_eq!(moved.status, 200, "{}", moved.text);
    let closed = dispute(late).await;
    closed.problem(409, "invalid_state");
    assert_eq!(stamped(&closed), paris("2026-11-26"));
}

/// A Service+ pack taken 2026-01-31 grants 20 credits expiring 2027-01-31 00:00 Paris. The
/// jobs run without `as_of`, at the clock's time: the lot is granted at once, still alive
/// one second before its expiry, expired once the clock reaches it.
#[actix_web::test]
async fn a_lot_expires_when_the_test_clock_reaches_its_expiry() {
    let (app, _conn) = seeded().await;
    let admin = app.admin().await;
    app.clock.set(paris("2026-01-31") + Duration::hours(9));
    let subscribe = |offer: &str, parent: Option<&str>| {
        let (app, key) = (&app, admin.clone());
        let body = json!({"customer_id": C1, "offer_code": offer, "parent_id": parent});
        async move {
            let created = app.post_json(&key, "/v1/subscriptions", None, &body).await;
            assert_eq!(created.status, 201, "{}", created.text);
            assert_eq!(
                created.body["start_date"], "2026-01-31",
                "today, by the clock"
            );
            created.body["id"].as_str().unwrap().to_string()
        }
    };
    let parent = subscribe("premium_assistance", None).await;
    subscribe("service_plus_pack", Some(&parent)).await;
    let run = |job: &'static str| {
        let (app, key) = (&app, admin.clone());
        async move {
            let run = app
                .post_json(&key, &format!("/v1/jobs/{job}/run"), None, &json!({}))
                .await;
            assert_eq!(run.status, 200, "{}", run.text);
            assert_eq!(
                run.body["as_of"],
                json!(app.clock.now()),
                "the clock's time"
            );
            run.body
        }
    };
    assert_eq!(run("renewals").await["lots_granted"], 1);
    let lots_path = format!("/v1/customers/{C1}/credit-lots");
    let lots = app.get(&admin, &lots_path).await;
    assert_eq!(
        (&lots.body[0]["granted"], &lots.body[0]["expires_at"]),
        (&json!("20.00"), &json!("2027-01-30T23:00:00Z")),
        "{}",
        lots.text
    );

    let moved = move_clock(&app, &admin, "2027-01-30T23:59:59+01:00").await;
    assert_eq!(moved.status, 200, "{}", moved.text);
    assert_eq!(run("credit-expiry").await["lots_expired"], 0);
    let moved = move_clock(&app, &admin, "2027-01-31T00:00:00+01:00").await;
    assert_eq!(moved.status, 200, "{}", moved.text);
    assert_eq!(run("credit-expiry").await["lots_expired"], 1);
    let lots = app.get(&admin, &lots_path).await;
    assert_eq!(lots.body[0]["remaining"], "0.00", "{}", lots.text);
    assert_eq!(lots.body[0]["expired"], "20.00", "{}", lots.text);
    app.assert_ledger_verifies(&admin).await;
}
