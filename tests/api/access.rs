//! Bearer API keys, roles, and what each role may reach.

use actix_web::test::TestRequest;
use diesel_async::RunQueryDsl;
use grandlivre::auth::Role;

use crate::helpers::TestApp;

#[actix_web::test]
async fn missing_or_invalid_keys_are_401() {
    let app = TestApp::spawn().await;
    let reply = app
        .send(TestRequest::get().uri("/v1/ledger/accounts"))
        .await;
    reply.problem(401, "unauthorized");
    assert_eq!(reply.header("www-authenticate"), Some("Bearer"));
    app.get("gl_admin_0000", "/v1/ledger/accounts")
        .await
        .problem(401, "unauthorized");
    let basic = TestRequest::get()
        .uri("/v1/ledger/accounts")
        .insert_header(("Authorization", "Basic YTpi"));
    app.send(basic).await.problem(401, "unauthorized");
}

#[actix_web::test]
async fn revoked_keys_are_401() {
    let app = TestApp::spawn().await;
    let key = app.key(Role::Finance, None).await;
    let mut conn = app.db.conn().await;
    diesel::sql_query("UPDATE api_keys SET revoked_at = now()")
        .execute(&mut conn)
        .await
        .unwrap();
    app.get(&key, "/v1/ledger/accounts")
        .await
        .problem(401, "unauthorized");
}

#[actix_web::test]
async fn roles_outside_the_endpoint_are_403() {
    let (app, _conn) = crate::helpers::seeded().await;
    let ticketing = app.key(Role::Ticketing, None).await;
    let customer = app
        .key(Role::Customer, Some(grandlivre::demo::DEMO_CUSTOMER_1))
        .await;
    let finance = app.key(Role::Finance, None).await;
    let admin = app.admin().await;
    for path in ["/v1/ledger/accounts", "/v1/ledger/verify"] {
        app.get(&ticketing, path).await.problem(403, "forbidden");
        app.get(&customer, path).await.problem(403, "forbidden");
        assert_eq!(app.get(&finance, path).await.status, 200);
        assert_eq!(app.get(&admin, path).await.status, 200);
    }
    let body = serde_json::json!({"description": "x", "postings": []});
    app.post_json(&ticketing, "/v1/ledger/transactions", Some("k"), &body)
        .await
        .problem(403, "forbidden");
}

#[actix_web::test]
async fn public_operations_need_no_key() {
    let app = TestApp::spawn().await;
    for path in ["/healthz", "/readyz", "/metrics", "/openapi.json"] {
        let reply = app.send(TestRequest::get().uri(path)).await;
        assert_eq!(reply.status, 200, "{path}: {}", reply.text);
        assert!(reply.header("x-request-id").is_some());
    }
}

#[actix_web::test]
async fn request_ids_are_echoed_and_metrics_count_routes() {
    let app = TestApp::spawn().await;
    let reply = app
        .send(
            TestRequest::get()
                .uri("/healthz")
                .insert_header(("X-Request-Id", "abc-123")),
        )
        .await;
    assert_eq!(reply.header("x-request-id"), Some("abc-123"));
    let reply = app
        .send(
            TestRequest::get()
                .uri("/healthz")
                .insert_header(("X-Request-Id", "bad id")),
        )
        .await;
    assert_ne!(reply.header("x-request-id"), Some("bad id"));
    let metrics = app.send(TestRequest::get().uri("/metrics")).await.text;
    assert!(
        metrics.contains(r#"http_requests_total{method="GET",route="/healthz",status="200"} 2"#),
        "{metrics}"
    );
    assert!(metrics.contains("http_request_duration_seconds_bucket"));
    assert!(metrics.contains("db_pool_connections"));
}

#[actix_web::test]
async fn readiness_fails_when_migrations_are_behind() {
    let app = TestApp::spawn().await;
    assert_eq!(
        app.send(TestRequest::get().uri("/readyz")).await.status,
        200
    );
    let mut conn = app.db.owner_conn().await;
    diesel::sql_query("DELETE FROM __diesel_schema_migrations")
        .execute(&mut conn)
        .await
        .unwrap();
    app.send(TestRequest::get().uri("/readyz"))
        .await
        .problem(503, "service_unavailable");
}
