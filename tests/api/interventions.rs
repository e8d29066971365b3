//! Interventions over HTTP: read one or by page, each customer only its own.

use chrono::Duration;
use serde_json::json;
use uuid::Uuid;

use grandlivre::auth::Role;
use grandlivre::demo::{DEMO_CUSTOMER_1 as C1, DEMO_CUSTOMER_2 as C2};

use crate::helpers::{paris, seeded};

#[actix_web::test]
async fn interventions_are_read_one_or_by_page_by_their_customer() {
    let (app, _conn) = seeded().await;
    let ticketing = app.key(Role::Ticketing, None).await;
    app.clock.set(paris("2026-11-20") + Duration::hours(15));
    let sheet = app.misdeclared_sheet(&ticketing, C2, "MIS-READ", 50).await;
    let path = format!("/v1/interventions/{sheet}");

    let read = app.get(&ticketing, &path).await;
    assert_eq!(read.status, 200, "{}", read.text);
    assert_eq!(
        (
            &read.body["customer_id"],
            &read.body["status"],
            &read.body["amount"]
        ),
        (&json!(C2), &json!("pending"), &json!("90.00"))
    );
    let own = app.key(Role::Customer, Some(C2)).await;
    assert_eq!(app.get(&own, &path).await.body, read.body);
    // another customer's sheet answers exactly as an unknown one
    let other = app.key(Role::Customer, Some(C1)).await;
    let hidden = app.get(&other, &path).await;
    let unknown = app
        .get(&other, &format!("/v1/interventions/{}", Uuid::now_v7()))
        .await;
    hidden.problem(404, "not_found");
    assert_eq!(
        hidden.body["detail"]
            .as_str()
            .map(|d| d.replace(&sheet, "ID")),
        unknown.body["detail"].as_str().map(|d| d
            .split_whitespace()
            .map(|w| if Uuid::parse_str(w).is_ok() { "ID" } else { w })
            .collect::<Vec<_>>()
            .join(" "))
    );

    let page = |query: String| {
        let key = ticketing.clone();
        let app = &app;
        async move {
            let reply = app.get(&key, &format!("/v1/interventions?{query}")).await;
            assert_eq!(reply.status, 200, "{}", reply.text);
            reply.body["items"].as_array().unwrap().len()
        }
    };
    assert_eq!(page("status=pending".into()).await, 1);
    assert_eq!(page("status=disputed".into()).await, 0);
    assert_eq!(page(format!("customer_id={C1}")).await, 0);
    let mine = app.get(&own, "/v1/interventions").await;
    assert_eq!(mine.body["items"][0]["id"], json!(sheet));
    let theirs = app.get(&other, "/v1/interventions").await;
    assert_eq!(theirs.body["items"], json!([]));
    app.get(&ticketing, "/v1/interventions?status=lost")
        .await
        .problem(400, "invalid_parameter");
}

/// An authorization for a customer that does not exist is a 404, as the contract says.
#[actix_web::test]
async fn an_unknown_customer_is_not_found() {
    let (app, _conn) = seeded().await;
    let ticketing = app.key(Role::Ticketing, None).await;
    let body = json!({
        "customer_id": Uuid::now_v7(),
        "request_ref": "NOBODY",
        "kind": "intervention",
        "classification": {"type": "misdeclared"},
        "priority": "high",
        "requester": {"certified": false, "learning_phase_end": null},
        "occurred_at": "2026-11-20T09:00:00+01:00",
        "declared_at": "2026-11-20T10:00:00+01:00",
        "preferred_funding": "auto"
    });
    app.post_json(&ticketing, "/v1/authorizations", None, &body)
        .await
        .problem(404, "not_found");
}
